//! The login sequence, written once for every backend (see `super` for the order and why).
#![forbid(unsafe_code)]

use std::time::UNIX_EPOCH;

use zeroize::Zeroizing;

use super::attempt::{Attempt, Clock, unix_at};
use super::backend::{Backend, Before};
use super::choose::Chooser;
use super::conversation::{self, Conversation, ConversationError};
use super::enrollment::{self, Whom};
use super::grace;
use super::verify;
use crate::decision::{Decision, Reason};
use crate::exemption::{nss_groups, own_addresses};
use crate::policy::{FirstFactor, Policy};
use crate::ssh_auth_info::SshAuthInfo;
use crate::state::UserState;
use crate::store::UserRecord;
use crate::user_name::{UserName, nss_account};

/// One login: the client (conversation), the rules (policy), who is asking (attempt) and the
/// time (clock, read when each moment comes). [`Login::run`] takes it through the sequence on
/// a backend and says what happened.
pub struct Login<'a> {
    conv: &'a mut dyn Conversation,
    policy: &'a Policy,
    attempt: Attempt<'a>,
    clock: Clock<'a>,
    /// The given name to the canonical account (NSS in production, a list in tests).
    accounts: &'a dyn Fn(&UserName) -> Option<UserName>,
    /// `forward_pass`: the password part of the answer, once it was read.
    forward: Option<Zeroizing<Vec<u8>>>,
    /// `mfa-enroll verify --person`: the token to check (see [`Chooser::person`]).
    person: Option<crate::user_name::Person>,
}

/// What a login did.
pub struct Finished {
    /// The decision (and everything the audit line reports).
    pub decision: Decision,
    /// `forward_pass`: the password typed before the code, to set as `PAM_AUTHTOK` for the
    /// next module whatever the decision (so it is checked either way and the client cannot
    /// tell which part was wrong).
    pub forward: Option<Zeroizing<Vec<u8>>>,
}

impl<'a> Login<'a> {
    /// A login of `attempt.user`, keyed on the account NSS names.
    pub fn new(
        conv: &'a mut dyn Conversation,
        policy: &'a Policy,
        attempt: Attempt<'a>,
        clock: Clock<'a>,
    ) -> Self {
        Self {
            conv,
            policy,
            attempt,
            clock,
            accounts: &nss_account,
            forward: None,
            person: None,
        }
    }

    /// The same login checking `person`'s token on a shared account, whatever the key
    /// (`mfa-enroll verify --person`; the module never does this).
    pub fn for_person(self, person: Option<crate::user_name::Person>) -> Self {
        Self { person, ..self }
    }

    /// The same login with another source of canonical account names (tests: a fixed list).
    pub fn with_accounts(self, accounts: &'a dyn Fn(&UserName) -> Option<UserName>) -> Self {
        Self { accounts, ..self }
    }

    /// The whole sequence on `backend`.
    pub fn run(mut self, backend: &mut dyn Backend) -> Finished {
        let decision = self.authenticate(backend);
        Finished {
            decision,
            forward: self.forward,
        }
    }

    /// Steps 0 and 1: the first factor, then the user name, before any file or prompt.
    fn authenticate(&mut self, backend: &mut dyn Backend) -> Decision {
        if self.policy.first_factor == FirstFactor::PublicKey
            && let Err(why) = publickey_completed(self.attempt.ssh_auth_info)
        {
            return Decision::deny(Reason::NoFirstFactor).with_detail(why);
        }
        let given = match UserName::parse(self.attempt.user) {
            Ok(user) => user,
            Err(e) => {
                self.ask_and_discard();
                return Decision::deny(Reason::BadUser).with_detail(e.to_string());
            }
        };
        // Everything below is keyed on the account as NSS names it, never on the client's
        // spelling.
        let Some(user) = (self.accounts)(&given) else {
            self.ask_and_discard();
            return Decision::deny(Reason::UnknownAccount);
        };
        let mut decision = self.for_account(backend, &user);
        if user != given {
            decision = decision.with_account(user.to_string());
        }
        decision
    }

    /// Step 2: exemptions (automation keys, groups, networks), then the enrolled user's login.
    fn for_account(&mut self, backend: &mut dyn Backend, user: &UserName) -> Decision {
        if let Some(key) = self.attempt.accepted_key()
            && self
                .policy
                .automation_keys
                .iter()
                .any(|entry| entry.covers(user, key))
        {
            self.forward = conversation::forward_all(self.conv, self.policy);
            return Decision::ignore(Reason::Exempt)
                .with_detail("automation key (automation_keys)")
                .with_who(None, Some(key.to_string()));
        }
        let exemptions = &self.policy.exemptions;
        // A network rule that matched loopback or an own address is reported on the final line.
        let mut note = None;
        if !exemptions.is_empty() {
            let verdict = exemptions.check(user, self.attempt.rhost, nss_groups, |a| {
                own_addresses().contains(&a)
            });
            if let Some(why) = verdict.exempt {
                // forward_pass: an exempt user types just the password, for the next module.
                self.forward = conversation::forward_all(self.conv, self.policy);
                return Decision::ignore(Reason::Exempt).with_detail(why.to_string());
            }
            note = verdict.refused_local.map(|(addr, net)| {
                format!(
                    "exempt_networks {net} not applied: rhost {addr} is this host's own address \
                     (TCP forwarding relays through it); MFA required"
                )
            });
        }
        let decision = self.enrolled(backend, user, true);
        with_note(decision, note)
    }

    /// Step 3: the record and state as they are before the prompt. `may_enroll`: an
    /// unenrolled user may enroll now (not again after an enrollment made meanwhile).
    fn enrolled(
        &mut self,
        backend: &mut dyn Backend,
        user: &UserName,
        may_enroll: bool,
    ) -> Decision {
        let chooser = Chooser {
            key: self.attempt.accepted_key().map(str::to_string),
            binding: self.policy.key_binding,
            person: self.person.clone(),
        };
        let before = match backend.read(user, &chooser) {
            Ok(before) => before,
            Err(denial) => {
                self.ask_and_discard();
                return denial;
            }
        };
        let note = before.note.clone();
        let decision = match before {
            Before {
                record: Some(record),
                state,
                shared,
                ..
            } => {
                // Shared accounts: the audit line names the person (none for the account's own
                // token) and the key.
                let who = shared.then(|| {
                    let person = record.person.as_ref().map(ToString::to_string);
                    (person, chooser.key.clone())
                });
                let decision = self.with_record(backend, record, &state);
                match who {
                    Some((person, key)) => decision.with_who(person, key),
                    None => decision,
                }
            }
            Before { unbound: true, .. } => self.unbound(backend, user, may_enroll, &chooser),
            Before { record: None, .. } => self.unenrolled(backend, user, may_enroll),
        };
        with_note(decision, note)
    }

    /// A shared account, and no token is for this key: enrollment of a new person at login
    /// (bound to this key), or a denial after a prompt like a wrong code. Never `nullok`: the
    /// account is enrolled.
    fn unbound(
        &mut self,
        backend: &mut dyn Backend,
        user: &UserName,
        may_enroll: bool,
        chooser: &Chooser,
    ) -> Decision {
        let (policy, clock) = (self.policy, self.clock);
        if may_enroll
            && let Some(key) = may_enroll_at_login(policy, user, &self.attempt, clock)
            && let Some((store, state)) = backend.enrollment_store()
        {
            let whom = Whom::NewPerson;
            match enrollment::run(self.conv, policy, store, state, user, key, whom, clock) {
                Some(decision) => return decision,
                // Another login enrolled this key meanwhile: ask for its code as usual.
                None => return self.enrolled(backend, user, false),
            }
        }
        self.ask_and_discard();
        chooser.unbound_denial().with_who(None, chooser.key.clone())
    }

    /// No record: enrollment at login, `nullok`, or a denial after a prompt like a wrong code
    /// (no enumeration).
    fn unenrolled(
        &mut self,
        backend: &mut dyn Backend,
        user: &UserName,
        may_enroll: bool,
    ) -> Decision {
        let (policy, clock) = (self.policy, self.clock);
        if may_enroll
            && let Some(key) = may_enroll_at_login(policy, user, &self.attempt, clock)
            && let Some((store, state)) = backend.enrollment_store()
        {
            match enrollment::run(
                self.conv,
                policy,
                store,
                state,
                user,
                key,
                Whom::Account,
                clock,
            ) {
                Some(decision) => return decision,
                // Another login of this user enrolled meanwhile: ask for a code as usual.
                None => return self.enrolled(backend, user, false),
            }
        }
        if policy.nullok {
            self.forward = conversation::forward_all(self.conv, policy);
            return Decision::ignore(Reason::NotEnrolled).with_detail("nullok");
        }
        self.ask_and_discard();
        Decision::deny(Reason::NotEnrolled)
    }

    /// Steps 4 to 6 for an enrolled user: grace, the prompt, the settle.
    fn with_record(
        &mut self,
        backend: &mut dyn Backend,
        record: UserRecord,
        state: &UserState,
    ) -> Decision {
        let owner = record.owner();
        let grace = grace::grace_id(self.policy, &owner, &self.attempt);
        // Grace before the prompt, except with forward_pass, whose prompt is read first and the
        // grace decided at the moment the answer arrives (a prompt left open outlives no grace).
        let after = grace::after_the_answer(self.policy);
        if let (Some(key), false) = (grace, after)
            && let Some(used) = backend.take_grace(&owner, key, unix_at(self.clock))
        {
            return grace::success(key, &self.attempt, used);
        }
        let (answer, now) = match self.ask_code(&record, state) {
            Ok(asked) => asked,
            Err(decision) => return decision,
        };
        drop(record);
        if let (Some(key), true) = (grace, after)
            && let Some(used) = backend.take_grace(&owner, key, now)
        {
            return grace::success(key, &self.attempt, used);
        }
        backend.settle(&owner, &answer, now, grace)
    }

    /// Step 5: the code (asked, or from `PAM_AUTHTOK`, see [`conversation::read_code`]) for
    /// `record` as read before the prompt, and the time in Unix seconds *when the answer
    /// arrived* (the window is placed around the moment the code was typed), or the denial.
    fn ask_code(
        &mut self,
        record: &UserRecord,
        st: &UserState,
    ) -> Result<(Zeroizing<Vec<u8>>, u64), Decision> {
        let (policy, clock) = (self.policy, self.clock);
        // try_first_pass checks the password against the state as it is (lockout, replay).
        let is_the_code =
            |token: &[u8]| verify::first_pass_is_a_code(record, policy, st, token, unix_at(clock));
        let digits = record.params.digits();
        let answer =
            match conversation::read_code(self.conv, policy, &self.attempt, digits, &is_the_code) {
                Ok(answer) => answer,
                Err(ConversationError(why)) => {
                    return Err(
                        Decision::deny(Reason::NoCode).with_detail(format!("conversation: {why}"))
                    );
                }
            };
        self.forward = answer.password;
        let code = answer.code;
        // Typed by the client itself for an ordinary account: a wrong code like any other.
        if conversation::is_sshd_fake_answer(&code)
            && crate::sshd_answer::sshd_may_replace(self.attempt.user)
        {
            return Err(Decision::deny(Reason::SshdReplacedAnswer).with_detail(
                "sshd replaced the typed code (root without PermitRootLogin yes, or an account \
                 sshd refuses), or the client typed that string itself: no code can pass; not \
                 counted. For root set PermitRootLogin yes (with AuthenticationMethods \
                 publickey,keyboard-interactive) or no",
            ));
        }
        let Ok(since_epoch) = clock().duration_since(UNIX_EPOCH) else {
            return Err(Decision::deny(Reason::Internal).with_detail("system clock is before 1970"));
        };
        Ok((code, since_epoch.as_secs()))
    }

    /// Asks like for an enrolled user and denies whatever comes (see
    /// [`conversation::ask_and_discard`]).
    fn ask_and_discard(&mut self) {
        self.forward = conversation::ask_and_discard(self.conv, self.policy, &self.attempt);
    }
}

/// The application gave a user name the module cannot even read (a PAM error, not UTF-8):
/// denied like any impossible name, after a prompt, so the client cannot tell it apart from a
/// wrong code.
pub fn deny_unreadable_user(
    conv: &mut dyn Conversation,
    policy: &Policy,
    ssh_auth_info: Option<&SshAuthInfo>,
    why: String,
) -> Decision {
    if policy.first_factor == FirstFactor::PublicKey
        && let Err(first) = publickey_completed(ssh_auth_info)
    {
        return Decision::deny(Reason::NoFirstFactor).with_detail(first);
    }
    let attempt = Attempt {
        ssh_auth_info,
        ..Attempt::default()
    };
    let _ = conversation::ask_and_discard(conv, policy, &attempt);
    Decision::deny(Reason::BadUser).with_detail(why)
}

/// Whether `ssh_auth_info` shows a completed `publickey` method; `Err` says what to fix.
fn publickey_completed(ssh_auth_info: Option<&SshAuthInfo>) -> Result<(), &'static str> {
    match ssh_auth_info {
        None => Err(
            "first_factor=publickey: SSH_AUTH_INFO_0 is absent, so no SSH key was accepted \
             (password authentication reached this stack: set PasswordAuthentication no and \
             AuthenticationMethods publickey,keyboard-interactive; or OpenSSH < 7.8, or a service \
             other than sshd)",
        ),
        Some(info) if info.publickey => Ok(()),
        Some(_) => Err(
            "first_factor=publickey: no SSH key was accepted before keyboard-interactive in this \
             connection: set AuthenticationMethods publickey,keyboard-interactive (and check \
             Match blocks with sshd -T -C user=NAME,addr=IP)",
        ),
    }
}

/// The SSH key fingerprint (`SHA256:...`) if `user` may enroll at this login: enrollment at
/// login is on, the deadline has not passed, the user is in `enroll_groups` (if set), and sshd
/// reports that a public key was accepted first in this connection. Anything else: `None`, and
/// the user is treated as unenrolled, exactly as without the feature.
fn may_enroll_at_login<'k>(
    policy: &Policy,
    user: &UserName,
    attempt: &Attempt<'k>,
    clock: Clock<'_>,
) -> Option<&'k str> {
    let rules = policy.enroll_at_login.as_ref()?;
    let now = clock().duration_since(UNIX_EPOCH).ok()?.as_secs();
    if rules.until.is_some_and(|until| now >= until) {
        return None;
    }
    let key = attempt.accepted_key()?;
    if !rules.groups.is_empty() {
        let groups = nss_groups(user)?;
        if !rules.groups.iter().any(|g| groups.contains(g)) {
            return None;
        }
    }
    Some(key)
}

/// `note` (how the record was read: etcd unreachable and the local copy used, ...) added to
/// the decision's detail: every decision taken that way says so, a denial with a detail of its
/// own (`unbound_key`, lockouts) too.
fn with_note(decision: Decision, note: Option<String>) -> Decision {
    match (note, &decision.detail) {
        (None, _) => decision,
        (Some(note), None) => decision.with_detail(note),
        (Some(note), Some(detail)) => {
            let detail = format!("{detail}; {note}");
            decision.with_detail(detail)
        }
    }
}
