//! The authentication flow, independent of PAM.
//!
//! Order of events, and why:
//! 0. With `first_factor=publickey`, sshd must report an accepted SSH key for this connection
//!    (`SSH_AUTH_INFO_0`); otherwise deny at once, before any prompt, `nullok` or exemption:
//!    a key + code stack has no password module, so without a key the code alone would log in.
//! 1. The user name is validated before it touches any path.
//! 2. The enrollment is loaded. Unenrolled users are prompted and denied like a wrong code (no
//!    enumeration), unless `nullok`, where they get `Ignore` without a prompt. An enrollment
//!    that exists but is unusable always denies: `nullok` never turns a broken file into a pass.
//! 3. The code is asked for *before* taking the user's lock, so a user typing slowly never
//!    blocks another login of the same user.
//! 4. An answer that sshd replaced with its fixed bad string (root under
//!    `PermitRootLogin prohibit-password`) is denied without being counted: the user typed
//!    something we never saw, so it is neither a failure nor a guess.
//! 5. Under the user's lock: the record is read again (what an administrator changed while the
//!    client sat at the prompt counts), then lockout check, verification, replay check, state
//!    update. The decision stands only if the new state was saved.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::decision::{Decision, Reason};
use crate::exemption::{nss_groups, own_addresses};
use crate::grace;
use crate::policy::{FirstFactor, PassMode, Policy};
use crate::recovery::RecoveryCode;
use crate::state::{FileStateStore, StateStore};
use crate::store::{Store, StoreError, UserRecord};
use crate::totp::{self, TotpParams, Verification};
use crate::user_name::{UserName, nss_account};

/// How the module talks to the user. PAM's conversation in production, a script in tests.
pub trait Conversation {
    /// Shows `prompt` and returns the answer typed without echo. The buffer is wiped on drop.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError>;

    /// Like [`Conversation::ask_hidden`], but the answer is shown while typed when `echo`
    /// (PAM_PROMPT_ECHO_ON; config `echo_code`). Conversations that cannot show it ask hidden.
    fn ask(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        let _ = echo;
        self.ask_hidden(prompt)
    }

    /// Shows `text` without asking anything (PAM_TEXT_INFO): the explanation, QR code and
    /// recovery codes of an enrollment at login. sshd passes such text on with the next prompt.
    fn info(&mut self, text: &str) -> Result<(), ConversationError>;
}

/// The client did not answer (disconnected, no conversation function, refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationError(pub String);

/// Who is logging in and how far they got, as the PAM application reports it. All of it is
/// untrusted input except `ssh_auth_info`, which only sshd sets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt<'a> {
    /// `PAM_USER`.
    pub user: &'a str,
    /// `PAM_RHOST`.
    pub rhost: Option<&'a str>,
    /// `PAM_SERVICE` (`sshd`, `su`, ...): grace is per service.
    pub service: Option<&'a str>,
    /// `PAM_RUSER`: who asked (`su` sets the invoking user): grace is per requesting user.
    pub ruser: Option<&'a str>,
    /// `SSH_AUTH_INFO_0` from the PAM environment: `None` when absent (password
    /// authentication, OpenSSH < 7.8, another service), empty for keyboard-interactive alone,
    /// one `method [details]` line per method that completed earlier in this connection.
    pub ssh_auth_info: Option<&'a str>,
    /// `PAM_AUTHTOK` as an earlier module left it (`use_first_pass`, `try_first_pass`).
    pub authtok: Option<&'a [u8]>,
    /// An earlier module left a password in `PAM_AUTHTOK` (whatever the mode): a password
    /// module ran before this one, and its verdict is unknown here (see `crate::grace`).
    pub earlier_password: bool,
    /// Where `forward_pass` leaves the password part of the answer, for the caller to set as
    /// `PAM_AUTHTOK` whatever the decision (so the next module checks it either way).
    pub forwarded: Option<&'a RefCell<Option<Zeroizing<Vec<u8>>>>>,
    /// How a fleet login (`[fleet] backend = "etcd"`) reaches etcd: the module passes the
    /// loader of `libecs_mfa_etcd.so`, mfa-enroll and tests the client linked in. `None`: a
    /// fleet login is denied (`backend_error`).
    pub connect: Option<crate::fleet::transport::Connector>,
}

impl<'a> Attempt<'a> {
    /// An attempt by `user` with no other information (the CLI's `verify`, tests).
    pub fn user(user: &'a str) -> Self {
        Self {
            user,
            ..Self::default()
        }
    }
}

/// Authenticates `attempt.user` with the store and state directories named by `policy`.
///
/// `clock` is read when each moment comes, not once: a client may sit at the prompt for as long
/// as sshd's `LoginGraceTime` (or forever with 0), and the code is checked against the time it
/// was typed, not the time the prompt appeared.
pub fn authenticate(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    authenticate_as(conv, policy, &nss_account, attempt, clock)
}

/// Where the flow reads the time: [`crate::clock::now`] in production, a script in tests.
pub type Clock<'a> = &'a dyn Fn() -> SystemTime;

/// `clock` in Unix seconds (0 before 1970: nothing is in grace then).
pub(crate) fn unix_at(clock: Clock<'_>) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`authenticate`] with another source of canonical account names (tests: a fixed list).
fn authenticate_as(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    account_of: &dyn Fn(&UserName) -> Option<UserName>,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    let store = Store::new(&policy.store_dir);
    let state = FileStateStore::new(&policy.state_dir);
    authenticate_with(conv, policy, &store, &state, account_of, attempt, clock)
}

/// [`authenticate`] with an explicit store and state backend, and the function that turns the
/// given user name into the canonical account name (NSS in production).
pub fn authenticate_with(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    account_of: &dyn Fn(&UserName) -> Option<UserName>,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    if policy.first_factor == FirstFactor::PublicKey
        && let Err(why) = publickey_completed(attempt.ssh_auth_info)
    {
        return Decision::deny(Reason::NoFirstFactor).with_detail(why);
    }
    let given = match UserName::parse(attempt.user) {
        Ok(user) => user,
        Err(e) => {
            ask_and_discard(conv, policy, attempt);
            return Decision::deny(Reason::BadUser).with_detail(e.to_string());
        }
    };
    // Everything below is keyed on the account as NSS names it, never on the client's spelling.
    let Some(user) = account_of(&given) else {
        ask_and_discard(conv, policy, attempt);
        return Decision::deny(Reason::UnknownAccount);
    };
    let mut decision = decide_account(conv, policy, store, state, &user, attempt, clock);
    if user != given {
        decision.account = Some(user.to_string());
    }
    decision
}

/// Steps 2 onwards, for the canonical account `user`.
fn decide_account(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    user: &UserName,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    let rhost = attempt.rhost;
    // A network rule that matched loopback or an own address is reported on the final line.
    let mut note = None;
    if !policy.exemptions.is_empty() {
        let verdict = policy
            .exemptions
            .check(user, rhost, nss_groups, |a| own_addresses().contains(&a));
        if let Some(why) = verdict.exempt {
            // forward_pass: an exempt user types just the password, for the next module.
            forward_all(conv, policy, attempt);
            return Decision::ignore(Reason::Exempt).with_detail(why.to_string());
        }
        note = verdict.refused_local.map(|(addr, net)| {
            format!(
                "exempt_networks {net} not applied: rhost {addr} is this host's own address \
                 (TCP forwarding relays through it); MFA required"
            )
        });
    }
    let decision = decide_enrolled(conv, policy, store, state, user, attempt, clock);
    match note {
        Some(note) if decision.detail.is_none() => decision.with_detail(note),
        _ => decision,
    }
}

/// Steps 2 to 5, for a user who is not exempt.
fn decide_enrolled(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    user: &UserName,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    if let Some(fleet) = &policy.fleet {
        let local_copy = LocalCopy { store, state };
        return crate::auth_fleet::decide_enrolled(
            conv,
            policy,
            fleet,
            &local_copy,
            user,
            attempt,
            clock,
        );
    }
    let record = match store.load(user) {
        Ok(record) => record,
        Err(StoreError::NotEnrolled)
            if let Some(key) =
                may_enroll_at_login(policy, user, attempt.ssh_auth_info, clock()) =>
        {
            return match crate::login_enrollment::run(conv, policy, store, state, user, &key, clock)
            {
                Some(decision) => decision,
                // Another login of this user enrolled meanwhile: ask for a code as usual.
                None => {
                    let later = Attempt {
                        ssh_auth_info: None,
                        ..*attempt
                    };
                    decide_enrolled(conv, policy, store, state, user, &later, clock)
                }
            };
        }
        Err(StoreError::NotEnrolled) if policy.nullok => {
            forward_all(conv, policy, attempt);
            return Decision::ignore(Reason::NotEnrolled).with_detail("nullok");
        }
        Err(StoreError::NotEnrolled) => {
            ask_and_discard(conv, policy, attempt);
            return Decision::deny(Reason::NotEnrolled);
        }
        Err(e) => {
            ask_and_discard(conv, policy, attempt);
            return Decision::deny(Reason::BadFile).with_detail(e.to_string());
        }
    };
    let grace = grace::grace_id(policy, user, attempt);
    // Grace before the prompt, except with forward_pass, whose prompt is read first and the
    // grace decided at the moment the answer arrives (a prompt left open outlives no grace).
    if let (Some(key), false) = (grace, grace::after_the_answer(policy))
        && let Ok(Some(used)) =
            state.transact(user, |st| grace::use_grace(policy, key, unix_at(clock), st))
    {
        return grace::success(key, attempt, used);
    }
    // try_first_pass checks the password against the state as it is (lockout, replay).
    let st = match policy.pass {
        PassMode::TryFirst => state.transact(user, |st| *st).unwrap_or_default(),
        _ => crate::state::UserState::default(),
    };
    let (answer, now) = match ask_code(conv, policy, attempt, &record, &st, clock) {
        Ok(asked) => asked,
        Err(decision) => return decision,
    };
    drop(record);
    if let (Some(key), true) = (grace, grace::after_the_answer(policy))
        && let Ok(Some(used)) = state.transact(user, |st| grace::use_grace(policy, key, now, st))
    {
        return grace::success(key, attempt, used);
    }
    settle_locally(
        &LocalCopy { store, state },
        policy,
        user,
        &answer,
        now,
        None,
        grace,
    )
}

/// This host's record store and state: where a files-backend login is decided, and the fleet
/// backend's local copy (used only offline, `on_unavailable = "local"`).
pub(crate) struct LocalCopy<'a, S> {
    pub store: &'a Store,
    pub state: &'a S,
}

/// Step 5 on local files: under the user's state lock, the record as it is *now* (a reset,
/// re-enrollment or removal while this client sat at the prompt takes effect for this login
/// too), then the decision. `offline`: the fleet is unreachable and this is its local copy
/// (`on_unavailable = "local"`): recovery codes are refused, since only the fleet can keep
/// them single-use everywhere.
pub(crate) fn settle_locally(
    local: &LocalCopy<'_, impl StateStore>,
    policy: &Policy,
    user: &UserName,
    answer: &[u8],
    now: u64,
    offline: Option<&str>,
    grace: Option<grace::Key>,
) -> Decision {
    let (store, state) = (local.store, local.state);
    let started = std::time::Instant::now();
    // A recovery-shaped answer: Argon2 before the lock (and pacing after it), so that no
    // attempt holds the user's lock for longer than a file read and write.
    let (pre, digits) = match recovery_code_in(answer, 6).map(|_| store.load(user)) {
        Some(Ok(record)) => {
            let st = state.transact(user, |st| *st).unwrap_or_default();
            (
                precheck_recovery(&record, policy, answer, now, &st),
                record.params.digits(),
            )
        }
        _ => (None, 6),
    };
    let decision = state.transact(user, |st| match store.load(user) {
        Ok(current) => {
            let mut effects = FileEffects {
                store,
                user: &current.user,
                offline,
            };
            let mut decision = decide(
                &current,
                policy,
                answer,
                now,
                st,
                &mut effects,
                pre.as_ref(),
            );
            grace::grant(policy, grace, &mut decision, now, st);
            decision
        }
        Err(StoreError::NotEnrolled) => Decision::deny(Reason::NotEnrolled)
            .with_detail("the enrollment was removed while the code was being typed"),
        Err(e) => Decision::deny(Reason::BadFile).with_detail(e.to_string()),
    });
    pace_answer(answer, digits, started);
    decision.unwrap_or_else(|e| Decision::deny(Reason::Internal).with_detail(e.to_string()))
}

/// Step 3 and 4: gets the code (asked, or from `PAM_AUTHTOK`, see [`read_code`]) for the
/// enrollment `record` (as read before the prompt); the code and the time in Unix seconds
/// *when the answer arrived* (the window is placed around the moment the code was typed), or
/// the denial.
pub(crate) fn ask_code(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    attempt: &Attempt<'_>,
    record: &UserRecord,
    st: &crate::state::UserState,
    clock: Clock<'_>,
) -> Result<(Zeroizing<Vec<u8>>, u64), Decision> {
    let unix = || {
        clock()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let is_the_code = |token: &[u8]| first_pass_is_a_code(record, policy, st, token, unix());
    let digits = record.params.digits();
    let answer = match read_code(conv, policy, attempt, digits, &is_the_code) {
        Ok(answer) => answer,
        Err(ConversationError(why)) => {
            return Err(Decision::deny(Reason::NoCode).with_detail(format!("conversation: {why}")));
        }
    };
    // Typed by the client itself for an ordinary account: a wrong code like any other.
    if is_sshd_fake_answer(&answer) && crate::sshd_answer::sshd_may_replace(attempt.user) {
        return Err(Decision::deny(Reason::SshdReplacedAnswer).with_detail(
            "sshd replaced the typed code (root without PermitRootLogin yes, or an account sshd \
             refuses), or the client typed that string itself: no code can pass; not counted. \
             For root set PermitRootLogin yes (with AuthenticationMethods \
             publickey,keyboard-interactive) or no",
        ));
    }
    let Ok(since_epoch) = clock().duration_since(UNIX_EPOCH) else {
        return Err(Decision::deny(Reason::Internal).with_detail("system clock is before 1970"));
    };
    Ok((answer, since_epoch.as_secs()))
}

/// What a decision changes besides the login state it is given. The decision is made on the
/// state only (files: `used_recovery` and `hotp` in the state file, saved by the login's one
/// state write; fleet: the fleet state, in the same compare-and-swap), so a full or read-only
/// store never refuses a login. Files then fold the change into the record as a best effort.
pub(crate) trait Effects {
    /// Uses up the recovery code with this hash (one of `record`'s) in `st`:
    /// `Ok(Some((remaining, note)))`, `Ok(None)` when it is already used (another login used
    /// it), `Err` with the denial when it cannot be done. `note`: for the audit line.
    fn use_recovery(
        &mut self,
        record: &UserRecord,
        st: &mut crate::state::UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision>;
    /// The next HOTP counter of `record`'s token (where the last accepted code left it).
    fn hotp_next(&self, record: &UserRecord, st: &crate::state::UserState) -> u64;
    /// Moves the HOTP counter forward to `next` (never back) in `st`, or says why not.
    /// `Ok(note)`: for the audit line.
    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut crate::state::UserState,
        next: u64,
    ) -> Result<Option<String>, Decision>;
}

/// [`Effects`] on local files. `offline`: the fleet is unreachable and this is its local copy:
/// recovery codes and HOTP counters are refused (only the fleet keeps them single-use).
struct FileEffects<'a> {
    store: &'a Store,
    user: &'a UserName,
    offline: Option<&'a str>,
}

impl FileEffects<'_> {
    fn refuse_offline(&self, what: &str) -> Result<(), Decision> {
        match self.offline {
            Some(why) => Err(
                Decision::deny(Reason::BackendUnavailable).with_detail(format!(
                    "{what} need the fleet (single use on every server), not counted; {why}"
                )),
            ),
            None => Ok(()),
        }
    }

    /// Best effort: applies `change` to the record too (durable across a reboot, which empties
    /// the state directory). The state already holds the change, so a failure (a full or
    /// read-only store) does not refuse the login: it is returned as the audit note.
    fn fold(&self, what: &str, change: impl FnOnce(&mut UserRecord)) -> Option<String> {
        self.store.update(self.user, change).err().map(|e| {
            format!(
                "{what} recorded in the login state only (lost if the server reboots before a \
                 later login or mfa-enroll command writes the record): {e}"
            )
        })
    }
}

impl Effects for FileEffects<'_> {
    fn use_recovery(
        &mut self,
        record: &UserRecord,
        st: &mut crate::state::UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision> {
        self.refuse_offline("recovery codes")?;
        if st.used_recovery.contains(hash) {
            return Ok(None);
        }
        if !st.used_recovery.use_code(hash, &record.recovery_codes) {
            return Err(Decision::deny(Reason::BadFile).with_detail(format!(
                "more than {} recovery codes used and not yet removed from the record; \
                 mfa-enroll recovery --user {} issues new ones",
                crate::state::USED_RECOVERY_SLOTS,
                record.user
            )));
        }
        let remaining = st.used_recovery.unused_in(&record.recovery_codes);
        let note = self.fold("recovery code use", |current| {
            current.recovery_codes.retain(|h| h != hash);
        });
        Ok(Some((remaining, note)))
    }

    fn hotp_next(&self, record: &UserRecord, st: &crate::state::UserState) -> u64 {
        let counter = record.hotp.unwrap_or(0);
        match st.hotp {
            Some((tag, next)) if tag == crate::fleet::state::hotp_tag(record.secret.as_bytes()) => {
                counter.max(next)
            }
            _ => counter,
        }
    }

    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut crate::state::UserState,
        next: u64,
    ) -> Result<Option<String>, Decision> {
        self.refuse_offline("HOTP tokens")?;
        let next = next.max(self.hotp_next(record, st));
        st.hotp = Some((
            crate::fleet::state::hotp_tag(record.secret.as_bytes()),
            next,
        ));
        let tag = crate::fleet::state::hotp_tag(record.secret.as_bytes());
        Ok(self.fold("HOTP counter", |current| {
            if crate::fleet::state::hotp_tag(current.secret.as_bytes()) == tag
                && let Some(counter) = &mut current.hotp
            {
                *counter = (*counter).max(next);
            }
        }))
    }
}

/// Codes beyond the HOTP look-ahead window that are still searched for a resynchronisation.
pub const HOTP_RESYNC_LIMIT: u64 = 1000;

/// The recovery code (or legacy 8-digit scratch code, for 6-digit tokens) an answer is shaped
/// like, if any.
fn recovery_code_in(answer: &[u8], digits: u8) -> Option<RecoveryCode> {
    RecoveryCode::parse(answer).or_else(|| {
        (digits == 6)
            .then(|| RecoveryCode::from_scratch_code(answer))
            .flatten()
    })
}

/// What Argon2 found for a recovery-shaped answer, before any lock: the hash of the record it
/// matched, if any.
pub(crate) struct RecoveryMatch(Option<String>);

/// The Argon2 part of a recovery-shaped answer, outside every lock: `None` for other answers.
/// It runs only when `st` (the user's state as read just before, without holding a lock across
/// this) shows no lockout, no clock problem and no rollback: other attempts cost no CPU (see
/// `recovery::CHECK_WALL`). Attempts racing in parallel before the first failure is recorded
/// each run it once; then the lockout stops them.
pub(crate) fn precheck_recovery(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &crate::state::UserState,
) -> Option<RecoveryMatch> {
    let code = recovery_code_in(answer, record.params.digits())?;
    let tolerance = record
        .params
        .period()
        .saturating_mul(u64::from(policy.window) + 1);
    let mut st = *st;
    st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
    let hopeless = st.locked_for(now).is_some()
        || st.mark_ahead(now, tolerance).is_some()
        || st.see_generation(record.generation).is_err();
    if hopeless {
        return Some(RecoveryMatch(None));
    }
    Some(RecoveryMatch(
        code.find_in(&record.recovery_codes)
            .map(|i| record.recovery_codes[i].clone()),
    ))
}

/// After the decision, with no lock held: a recovery-shaped answer takes
/// [`crate::recovery::CHECK_WALL`] from `started`, whatever happened.
pub(crate) fn pace_answer(answer: &[u8], digits: u8, started: std::time::Instant) {
    if recovery_code_in(answer, digits).is_some() {
        crate::recovery::pace(started);
    }
}

/// Step 5's decision, on the current record and the locked (or compared-and-swapped) state.
///
/// `pre`: the Argon2 part of a recovery-shaped answer, done by [`precheck_recovery`] before the
/// lock (or the compare-and-swap) so that no lock is held while Argon2 runs or while a check
/// is paced; `None` computes it here (never for logins: see `settle_locally`). Nothing in here
/// waits: the caller paces recovery-shaped answers after releasing the lock ([`pace_answer`]).
pub(crate) fn decide(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &mut crate::state::UserState,
    effects: &mut dyn Effects,
    pre: Option<&RecoveryMatch>,
) -> Decision {
    let params = record.params;
    let recovery = recovery_code_in(answer, params.digits());
    // Refusals before the check: the caller's pacing makes them take what a check takes.
    let refuse = |d: Decision| d;
    // An older record than one seen before: a replaced secret written back (issue 23.6).
    if let Err(seen) = st.see_generation(record.generation) {
        return refuse(Decision::deny(Reason::BadFile).with_detail(format!(
            "record generation {} is older than {seen} seen before: rolled back? (a restored \
             backup or an old value written back): mfa-enroll reset --user {} replaces it, or \
             mfa-enroll recovery --user {} keeps it (with new recovery codes)",
            record.generation, record.user, record.user
        )));
    }
    // Clock anomalies first: state written while the clock was ahead must neither lock the
    // user out for longer than policy allows nor pass for replays.
    st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
    let tolerance = params.period().saturating_mul(u64::from(policy.window) + 1);
    st.clamp_mark(now, tolerance, policy.throttle.lockout_max_seconds);
    if let Some(ahead) = st.mark_ahead(now, tolerance) {
        return refuse(Decision::deny(Reason::StateInFuture).with_detail(format!(
            "the last accepted code is {ahead} s ahead of this server's clock (it was ahead, or \
             was set back): every code would be a replay until then; check the clock, then \
             mfa-enroll unlock --user {}",
            record.user
        )));
    }
    if let Some(left) = st.locked_for(now) {
        // Not verified and not counted: a locked-out user learns nothing, and an attacker
        // cannot extend the lockout by hammering it.
        let mut d = Decision::deny(Reason::Throttled);
        d.failures = Some(st.failures);
        d.locked_for = Some(left);
        return refuse(d);
    }
    if let Some(code) = recovery {
        return decide_recovery(record, &code, policy, now, st, effects, pre);
    }
    if record.hotp.is_some() {
        return decide_hotp(record, policy, answer, now, st, effects);
    }
    let verification = match totp::normalize_code(answer, params.digits()) {
        Some(code) => totp::verify(
            &record.secret,
            params,
            &code,
            now,
            policy.window,
            st.last_accepted,
        ),
        None => Verification::Rejected,
    };
    let mut decision = match verification {
        Verification::Accepted { step, skew } => {
            st.record_success(params.step_start(step));
            return Decision::success(skew);
        }
        Verification::Replayed { skew } => Decision {
            skew: Some(skew),
            ..Decision::deny(Reason::Replay)
        },
        Verification::Rejected => {
            let d = Decision::deny(Reason::BadCode);
            match drift_hint(record, answer, now, policy.window, st.failures) {
                Some(hint) => d.with_detail(hint),
                None => d,
            }
        }
    };
    st.record_failure(now, &policy.throttle);
    decision.failures = Some(st.failures);
    decision.locked_for = st.locked_for(now);
    decision
}

/// Steps on each side searched for a clock-drift hint (±10 minutes at 30 s).
const DRIFT_SEARCH_STEPS: u8 = 20;

/// When codes keep failing (from the second consecutive failure on, so a single typo costs
/// nothing extra), says whether the code would have matched a step outside the window: a
/// drifting phone clock rather than a wrong secret. Never accepts anything.
fn drift_hint(
    record: &UserRecord,
    answer: &[u8],
    now: u64,
    window: u8,
    failures_before: u32,
) -> Option<String> {
    if failures_before == 0 {
        return None;
    }
    let code = totp::normalize_code(answer, record.params.digits())?;
    let skew = match totp::verify(
        &record.secret,
        record.params,
        &code,
        now,
        DRIFT_SEARCH_STEPS,
        0,
    ) {
        Verification::Accepted { skew, .. } | Verification::Replayed { skew } => skew,
        Verification::Rejected => {
            return Some(format!(
                "no match within ±{DRIFT_SEARCH_STEPS} steps either: wrong secret or wrong account in the app?"
            ));
        }
    };
    let seconds = skew * record.params.period() as i64;
    Some(format!(
        "clocks differ by {} s: the code matches {skew:+} steps ({seconds:+} s), outside \
         window={window}; check the server's clock (mfa-enroll doctor) and the phone's",
        seconds.abs()
    ))
}

/// A recovery code. The Argon2 checks run on the record read under this user's lock but
/// *outside* the store-wide lock, so one user's (garbage) recovery attempts never delay another
/// user's login; the matching hash is then removed by `consume` (under the store lock, by
/// value, for files; in the state's compare-and-swap for the fleet), so two logins with one
/// code (or a regeneration in between) still give at most one success. Only input shaped like
/// a recovery code gets here, so TOTP logins never pay for Argon2.
fn decide_recovery(
    record: &UserRecord,
    code: &RecoveryCode,
    policy: &Policy,
    now: u64,
    st: &mut crate::state::UserState,
    effects: &mut dyn Effects,
    pre: Option<&RecoveryMatch>,
) -> Decision {
    // The hash found before the lock counts only if it is still one of the record's (a
    // regeneration or reset meanwhile makes it stale: then it is no match).
    let matched = match pre {
        Some(RecoveryMatch(found)) => found
            .clone()
            .filter(|hash| record.recovery_codes.contains(hash)),
        None => code
            .find_in(&record.recovery_codes)
            .map(|i| record.recovery_codes[i].clone()),
    };
    let consumed = match matched {
        None => Ok(None),
        Some(hash) => effects.use_recovery(record, st, &hash),
    };
    match consumed {
        Ok(Some((remaining, note))) => {
            st.forget_failures();
            let d = Decision {
                remaining: Some(remaining),
                ..Decision::new_success(Reason::RecoveryCode)
            };
            match note {
                Some(note) => d.with_detail(note),
                None => d,
            }
        }
        Ok(None) => {
            st.record_failure(now, &policy.throttle);
            Decision {
                failures: Some(st.failures),
                locked_for: st.locked_for(now),
                ..Decision::deny(Reason::BadCode).with_detail("not a valid recovery code")
            }
        }
        // The code is not consumed and the login is not accepted: fail closed.
        Err(denial) => denial,
    }
}

/// An HOTP (counter) token. The code must match one of the `hotp_window` counters from the
/// next one on; the counter then moves past it (only forward, only on a success: wrong codes
/// never desynchronise the token). A code further ahead (up to [`HOTP_RESYNC_LIMIT`]) is not
/// accepted but remembered: if the next code is the one right after it, the token is
/// resynchronised (two consecutive codes, as RFC 4226 §7.4 suggests). Codes before the counter
/// are replays.
fn decide_hotp(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &mut crate::state::UserState,
    effects: &mut dyn Effects,
) -> Decision {
    let params = record.params;
    let next = effects.hotp_next(record, st);
    let window = u64::from(policy.hotp_window);
    let Some(code) = totp::normalize_code(answer, params.digits()) else {
        return hotp_failure(Decision::deny(Reason::BadCode), now, policy, st);
    };
    let accept =
        |counter: u64, st: &mut crate::state::UserState, effects: &mut dyn Effects| match effects
            .advance_hotp(record, st, counter.saturating_add(1))
        {
            Ok(note) => {
                st.forget_failures();
                st.hotp_resync = 0;
                let d = Decision::success(
                    i64::try_from(counter.saturating_sub(next)).unwrap_or(i64::MAX),
                );
                match note {
                    Some(note) => d.with_detail(note),
                    None => d,
                }
            }
            Err(denial) => denial,
        };
    if let Some(counter) = totp::hotp_verify(&record.secret, params, &code, next, window) {
        return accept(counter, st, effects);
    }
    let beyond = next.saturating_add(window);
    if let Some(counter) =
        totp::hotp_verify(&record.secret, params, &code, beyond, HOTP_RESYNC_LIMIT)
    {
        if st.hotp_resync != 0 && counter == st.hotp_resync {
            let d = accept(counter, st, effects);
            let note = match &d.detail {
                Some(note) => format!("HOTP token resynchronised by two consecutive codes; {note}"),
                None => "HOTP token resynchronised by two consecutive codes".to_string(),
            };
            return d.with_detail(note);
        }
        let d = hotp_failure(
            Decision::deny(Reason::BadCode).with_detail(
                "HOTP code beyond the look-ahead window (the token was pressed many times): the \
                 next code from the token resynchronises it",
            ),
            now,
            policy,
            st,
        );
        st.hotp_resync = counter.saturating_add(1);
        return d;
    }
    let back = next.saturating_sub(window);
    if next > 0 && totp::hotp_verify(&record.secret, params, &code, back, next - back).is_some() {
        return hotp_failure(Decision::deny(Reason::Replay), now, policy, st);
    }
    hotp_failure(Decision::deny(Reason::BadCode), now, policy, st)
}

fn hotp_failure(
    mut decision: Decision,
    now: u64,
    policy: &Policy,
    st: &mut crate::state::UserState,
) -> Decision {
    st.record_failure(now, &policy.throttle);
    st.hotp_resync = 0;
    decision.failures = Some(st.failures);
    decision.locked_for = st.locked_for(now);
    decision
}

/// The SSH key fingerprint (`SHA256:...`) if `user` may enroll at this login: enrollment at
/// login is on, the deadline has not passed, the user is in `enroll_groups` (if set), and sshd
/// reports that a public key was accepted first in this connection. Anything else: `None`, and
/// the user is treated as unenrolled, exactly as without the feature.
fn may_enroll_at_login(
    policy: &Policy,
    user: &UserName,
    ssh_auth_info: Option<&str>,
    now: SystemTime,
) -> Option<String> {
    let rules = policy.enroll_at_login.as_ref()?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if rules.until.is_some_and(|until| now >= until) {
        return None;
    }
    let key = ssh_auth_info?
        .lines()
        .find_map(|l| l.strip_prefix("publickey "))
        .and_then(crate::login_enrollment::fingerprint)?;
    if !rules.groups.is_empty() {
        let groups = nss_groups(user)?;
        if !rules.groups.iter().any(|g| groups.contains(g)) {
            return None;
        }
    }
    Some(key)
}

/// The application gave a user name the module cannot even read (a PAM error, not UTF-8):
/// denied like any impossible name, after a prompt, so the client cannot tell it apart from a
/// wrong code.
pub fn deny_unreadable_user(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    ssh_auth_info: Option<&str>,
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
    ask_and_discard(conv, policy, &attempt);
    Decision::deny(Reason::BadUser).with_detail(why)
}

/// Whether `ssh_auth_info` shows a completed `publickey` method; `Err` says what to fix.
fn publickey_completed(ssh_auth_info: Option<&str>) -> Result<(), &'static str> {
    match ssh_auth_info {
        None => Err(
            "first_factor=publickey: SSH_AUTH_INFO_0 is absent, so no SSH key was accepted \
             (password authentication reached this stack: set PasswordAuthentication no and \
             AuthenticationMethods publickey,keyboard-interactive; or OpenSSH < 7.8, or a service \
             other than sshd)",
        ),
        Some(info) if info.lines().any(|l| l.starts_with("publickey ")) => Ok(()),
        Some(_) => Err(
            "first_factor=publickey: no SSH key was accepted before keyboard-interactive in this \
             connection: set AuthenticationMethods publickey,keyboard-interactive (and check \
             Match blocks with sshd -T -C user=NAME,addr=IP)",
        ),
    }
}

/// OpenSSH's `fake_password()` (auth-pam.c): when sshd will refuse the login whatever PAM says
/// (root without `PermitRootLogin yes`, an invalid account), it passes PAM this string, cut or
/// repeated to the length of what was typed, instead of the answer.
const SSHD_FAKE_ANSWER: &[u8] = b"\x08\n\r\x7fINCORRECT";

fn is_sshd_fake_answer(answer: &[u8]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .zip(SSHD_FAKE_ANSWER.iter().cycle())
            .all(|(a, b)| a == b)
}

/// The prompt of `forward_pass`, as google-authenticator words it.
pub const FORWARD_PASS_PROMPT: &str = "Password & verification code: ";

/// Where the code comes from (`PassMode`): asked; `PAM_AUTHTOK` (`use_first_pass`, or
/// `try_first_pass` when it *is* a valid code, `is_the_code`: a password that merely looks like
/// one is not taken, not counted, and the code is asked for); or the end of a "password & code"
/// answer (`forward_pass`), whose password part is left in `attempt.forwarded` for the next
/// module.
fn read_code(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    attempt: &Attempt<'_>,
    digits: u8,
    is_the_code: &dyn Fn(&[u8]) -> bool,
) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
    let first = attempt.authtok.map(|t| Zeroizing::new(t.to_vec()));
    match policy.pass {
        PassMode::Prompt => conv.ask(&policy.prompt, policy.echo_code),
        PassMode::UseFirst => first.ok_or_else(|| {
            ConversationError(
                "use_first_pass: no PAM_AUTHTOK from an earlier module in the stack".into(),
            )
        }),
        PassMode::TryFirst => match first {
            Some(token) if is_code_shaped(&token, digits) && is_the_code(&token) => Ok(token),
            _ => conv.ask(&policy.prompt, policy.echo_code),
        },
        PassMode::Forward => {
            let whole = conv.ask(FORWARD_PASS_PROMPT, policy.echo_code)?;
            if is_sshd_fake_answer(&whole) && crate::sshd_answer::sshd_may_replace(attempt.user) {
                return Ok(whole);
            }
            let (password, code) = split_password_and_code(&whole, digits);
            if let Some(slot) = attempt.forwarded {
                *slot.borrow_mut() = Some(Zeroizing::new(password.to_vec()));
            }
            Ok(Zeroizing::new(code.to_vec()))
        }
    }
}

/// `forward_pass` for a user who needs no code (unenrolled under `nullok`): the whole answer is
/// the password, for the next module.
pub(crate) fn forward_all(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    attempt: &Attempt<'_>,
) {
    if policy.pass == PassMode::Forward
        && let Ok(whole) = conv.ask(FORWARD_PASS_PROMPT, policy.echo_code)
        && let Some(slot) = attempt.forwarded
    {
        *slot.borrow_mut() = Some(whole);
    }
}

/// `try_first_pass`: whether `token` (the password an earlier module checked) is a TOTP/HOTP
/// code that `record` accepts at `now` on a copy of the user's state `st` (so a lockout or a
/// replay makes it "not the code", like any wrong one: no oracle), writing nothing. Only then is it taken
/// as the code (and checked again, for real, under the lock); a password that merely looks like
/// a code or a recovery code is neither taken nor counted, and the code is asked for.
fn first_pass_is_a_code(
    record: &UserRecord,
    policy: &Policy,
    st: &crate::state::UserState,
    token: &[u8],
    now: u64,
) -> bool {
    // Recovery codes are never taken from the password: checking one costs Argon2, and this
    // check is not counted (a recovery code is typed at the prompt).
    if totp::normalize_code(token, record.params.digits()).is_none() {
        return false;
    }
    /// Effects that write nothing.
    struct DryRun;
    impl Effects for DryRun {
        fn use_recovery(
            &mut self,
            _: &UserRecord,
            _: &mut crate::state::UserState,
            _: &str,
        ) -> Result<Option<(usize, Option<String>)>, Decision> {
            Ok(Some((0, None)))
        }
        fn hotp_next(&self, record: &UserRecord, _: &crate::state::UserState) -> u64 {
            record.hotp.unwrap_or(0)
        }
        fn advance_hotp(
            &mut self,
            _: &UserRecord,
            _: &mut crate::state::UserState,
            _: u64,
        ) -> Result<Option<String>, Decision> {
            Ok(None)
        }
    }
    let mut scratch = *st;
    decide(record, policy, token, now, &mut scratch, &mut DryRun, None).outcome
        == crate::decision::Outcome::Success
}

/// A TOTP code of `digits` digits, or a recovery code (or a legacy 8-digit scratch code).
fn is_code_shaped(token: &[u8], digits: u8) -> bool {
    totp::normalize_code(token, digits).is_some()
        || RecoveryCode::parse(token).is_some()
        || RecoveryCode::from_scratch_code(token).is_some()
}

/// Splits "password" + "code" typed as one answer: the code is a recovery code at the end
/// (`xxxxx-xxxxx`), else the last `digits` characters if they are digits. Without either, the
/// whole answer is the password and the code is empty (a wrong code: the next module still
/// checks the password, so the client cannot tell which of the two was wrong).
pub fn split_password_and_code(answer: &[u8], digits: u8) -> (&[u8], &[u8]) {
    const RECOVERY_LEN: usize = 11;
    if answer.len() >= RECOVERY_LEN {
        let (password, tail) = answer.split_at(answer.len() - RECOVERY_LEN);
        if tail[5] == b'-' && RecoveryCode::parse(tail).is_some() {
            return (password, tail);
        }
    }
    let n = usize::from(digits);
    if answer.len() >= n {
        let (password, tail) = answer.split_at(answer.len() - n);
        if tail.iter().all(u8::is_ascii_digit) {
            return (password, tail);
        }
    }
    (answer, &[])
}

pub(crate) fn ask_and_discard(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    attempt: &Attempt<'_>,
) {
    // The answer is ignored (and wiped on drop); asking makes an unknown user look like a
    // known one to the client, and input shaped like a recovery code (or an imported 8-digit
    // scratch code) takes the time it takes for an enrolled user (waiting, not computing), so
    // timing does not tell either.
    // try_first_pass: no token is a code of an unknown user, so it is asked like a known user
    // whose password is not the code.
    if let Ok(answer) = read_code(
        conv,
        policy,
        attempt,
        TotpParams::default().digits(),
        &|_| false,
    ) && (RecoveryCode::parse(&answer).is_some()
        || RecoveryCode::from_scratch_code(&answer).is_some())
    {
        crate::recovery::wait_like_a_check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Outcome;
    use crate::state::FileStateStore;
    use crate::store::SaveMode;
    use crate::test_util::Scratch;
    use crate::totp::{SecretKey, TotpParams};
    use std::time::Duration;

    /// A scripted client: answers prompts from a list and records every prompt seen.
    struct Script {
        answers: Vec<Option<&'static str>>,
        prompts: Vec<String>,
        infos: Vec<String>,
    }

    impl Script {
        fn answering(answers: &[Option<&'static str>]) -> Self {
            Self {
                answers: answers.iter().rev().copied().collect(),
                prompts: vec![],
                infos: vec![],
            }
        }
    }

    impl Conversation for Script {
        fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            self.prompts.push(prompt.to_owned());
            match self.answers.pop().flatten() {
                Some(a) => Ok(Zeroizing::new(a.as_bytes().to_vec())),
                None => Err(ConversationError("no answer".into())),
            }
        }

        fn info(&mut self, text: &str) -> Result<(), ConversationError> {
            self.infos.push(text.to_owned());
            Ok(())
        }
    }

    const NOW: u64 = 1_764_300_015;

    /// The accounts of these tests, standing in for NSS: `ALICE` and `alice@corp.example` are
    /// spellings of the account `alice` (a case-insensitive, aliasing directory), `ghost` has no
    /// account, every other valid name is its own account.
    fn test_accounts(user: &UserName) -> Option<UserName> {
        match user.as_str() {
            "ALICE" | "Alice" | "alice@corp.example" => Some(UserName::parse("alice").unwrap()),
            "ghost" => None,
            _ => Some(user.clone()),
        }
    }

    /// [`authenticate`] with the test accounts instead of NSS.
    fn authenticate_in_test(
        conv: &mut (impl Conversation + ?Sized),
        policy: &Policy,
        attempt: &Attempt<'_>,
        now: SystemTime,
    ) -> Decision {
        authenticate_as(conv, policy, &test_accounts, attempt, &move || now)
    }

    struct Fixture {
        _scratch: Scratch,
        policy: Policy,
        secret: SecretKey,
    }

    impl Fixture {
        fn new() -> Self {
            let scratch = Scratch::new("auth");
            let policy = Policy {
                store_dir: scratch.0.join("users"),
                state_dir: scratch.0.join("run"),
                ..Policy::default()
            };
            let secret = SecretKey::from_bytes(b"12345678901234567890".to_vec()).unwrap();
            let record = UserRecord {
                user: UserName::parse("alice").unwrap(),
                secret: secret.clone(),
                params: TotpParams::default(),
                created: 0,
                issuer: "test".into(),
                recovery_codes: vec![],
                origin: crate::store::record::Origin::Admin,
                hotp: None,
                generation: 0,
            };
            Store::new(&policy.store_dir)
                .save(&record, SaveMode::CreateNew)
                .unwrap();
            Self {
                _scratch: scratch,
                policy,
                secret,
            }
        }

        fn code(&self, at: u64) -> String {
            totp::code_at(&self.secret, TotpParams::default(), at).to_string()
        }

        fn login(&self, user: &str, answer: Option<&str>, at: u64) -> (Decision, usize) {
            let answer: Option<&'static str> = answer.map(|a| &*a.to_owned().leak());
            self.login_as(&Attempt::user(user), answer, at)
        }

        fn login_as(
            &self,
            attempt: &Attempt<'_>,
            answer: Option<&str>,
            at: u64,
        ) -> (Decision, usize) {
            let answer: Option<&'static str> = answer.map(|a| &*a.to_owned().leak());
            let mut conv = Script::answering(&[answer]);
            let d = authenticate_in_test(
                &mut conv,
                &self.policy,
                attempt,
                UNIX_EPOCH + Duration::from_secs(at),
            );
            (d, conv.prompts.len())
        }
    }

    #[test]
    fn correct_code_succeeds_after_exactly_one_prompt() {
        let f = Fixture::new();
        let mut conv = Script::answering(&[Some(&*f.code(NOW).leak())]);
        let d = authenticate_in_test(
            &mut conv,
            &f.policy,
            &Attempt::user("alice"),
            UNIX_EPOCH + Duration::from_secs(NOW),
        );
        assert_eq!(d, Decision::success(0));
        assert_eq!(conv.prompts, vec!["Verification code: ".to_string()]);
    }

    /// A login whose clock is `start` until the prompt is answered and `answered` after it.
    fn login_typed_later(f: &Fixture, answer: &str, start: u64, answered: u64) -> Decision {
        use std::cell::Cell;
        let at = Cell::new(start);
        struct Late<'a>(&'a Cell<u64>, u64, String);
        impl Conversation for Late<'_> {
            fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
                self.0.set(self.1);
                Ok(Zeroizing::new(self.2.clone().into_bytes()))
            }
            fn info(&mut self, _: &str) -> Result<(), ConversationError> {
                Ok(())
            }
        }
        let mut conv = Late(&at, answered, answer.to_string());
        let clock = || UNIX_EPOCH + Duration::from_secs(at.get());
        authenticate_as(
            &mut conv,
            &f.policy,
            &test_accounts,
            &Attempt::user("alice"),
            &clock,
        )
    }

    #[test]
    fn the_code_is_checked_at_the_time_it_was_typed_not_when_the_prompt_appeared() {
        let f = Fixture::new();
        let start = NOW - NOW % 30;
        // The phone's code 62 s after the prompt appeared: accepted.
        let later = f.code(start + 62);
        let d = login_typed_later(&f, &later, start, start + 62);
        assert_eq!(d.outcome, Outcome::Success, "{d:?}");
        // The code of the prompt's moment, typed 62 s later: two steps old, refused.
        let f = Fixture::new();
        let old = f.code(start);
        let d = login_typed_later(&f, &old, start, start + 62);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
    }

    #[test]
    fn replayed_code_is_rejected() {
        let f = Fixture::new();
        let code = f.code(NOW);
        assert_eq!(
            f.login("alice", Some(&code), NOW).0.outcome,
            Outcome::Success
        );
        let (d, prompts) = f.login("alice", Some(&code), NOW + 5);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::Replay, 1)
        );
        // The next step's code works.
        let next = f.code(NOW + 30);
        assert_eq!(
            f.login("alice", Some(&next), NOW + 30).0.outcome,
            Outcome::Success
        );
    }

    #[test]
    fn wrong_and_malformed_codes_are_denied_and_counted() {
        let f = Fixture::new();
        let right = f.code(NOW);
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        for (i, answer) in [wrong, "", "12345", &"9".repeat(10_000), "12 34 5x"]
            .into_iter()
            .enumerate()
        {
            let (d, prompts) = f.login("alice", Some(answer), NOW);
            assert_eq!(
                (d.outcome, d.reason, prompts),
                (Outcome::Deny, Reason::BadCode, 1)
            );
            assert_eq!(d.failures, Some(i as u32 + 1));
        }
    }

    #[test]
    fn repeated_failures_say_whether_the_phone_clock_drifts() {
        let f = Fixture::new();
        let early = f.code(NOW + 5 * 30);
        let (d, _) = f.login("alice", Some(&early), NOW);
        assert_eq!(
            (d.reason, d.detail.as_deref()),
            (Reason::BadCode, None),
            "first failure: no extra work"
        );
        let (d, _) = f.login("alice", Some(&early), NOW);
        let detail = d.detail.unwrap();
        assert!(detail.contains("clocks differ by 150 s"), "{detail}");
        assert!(detail.contains("matches +5 steps (+150 s)"), "{detail}");
        assert_eq!(d.outcome, Outcome::Deny, "a hint never accepts");
        let (d, _) = f.login("alice", Some("000000"), NOW);
        assert!(d.detail.as_deref().unwrap().contains("wrong secret"));
        assert!(!crate::audit::line(&Default::default(), &d).contains(&early));
    }

    #[test]
    fn lockout_refuses_even_the_right_code_until_it_expires() {
        let f = Fixture::new();
        for _ in 0..5 {
            f.login("alice", Some("abcdef"), NOW);
        }
        let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW + 1);
        assert_eq!((d.reason, d.locked_for), (Reason::Throttled, Some(29)));
        // Attempts during the lockout are not counted.
        assert_eq!(d.failures, Some(5));
        let later = NOW + 31;
        let (d, _) = f.login("alice", Some(&f.code(later)), later);
        assert_eq!(d.outcome, Outcome::Success);
        // Success resets the counter.
        let (d, _) = f.login("alice", Some("abcdef"), later);
        assert_eq!(d.failures, Some(1));
    }

    /// State written while the server's clock was a day ahead (bad RTC, VM restore).
    fn state_from_a_clock_a_day_ahead(f: &Fixture, accepted: bool) {
        let state = FileStateStore::new(&f.policy.state_dir);
        let alice = UserName::parse("alice").unwrap();
        let ahead = NOW + 86_400;
        state
            .transact(&alice, |st| {
                if accepted {
                    st.record_success(ahead - ahead % 30);
                } else {
                    for _ in 0..12 {
                        st.record_failure(ahead, &f.policy.throttle);
                    }
                }
            })
            .unwrap();
    }

    #[test]
    fn a_lockout_from_a_clock_that_was_ahead_never_exceeds_the_maximum() {
        let f = Fixture::new();
        state_from_a_clock_a_day_ahead(&f, false);
        let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
        assert_eq!((d.reason, d.locked_for), (Reason::Throttled, Some(900)));
        // 900 s later (not a day) the right code works.
        let later = NOW + 901;
        let (d, _) = f.login("alice", Some(&f.code(later)), later);
        assert_eq!(d.outcome, Outcome::Success, "{d:?}");
    }

    #[test]
    fn a_replay_mark_ahead_of_the_clock_is_a_clock_problem_that_unlock_clears() {
        let f = Fixture::new();
        state_from_a_clock_a_day_ahead(&f, true);
        for _ in 0..6 {
            let (d, prompts) = f.login("alice", Some(&f.code(NOW)), NOW);
            assert_eq!(
                (d.outcome, d.reason, d.failures, prompts),
                (Outcome::Deny, Reason::StateInFuture, None, 1)
            );
            assert!(d.detail.unwrap().contains("s ahead of this server's clock"));
        }
        // What `mfa-enroll unlock` does.
        let state = FileStateStore::new(&f.policy.state_dir);
        let alice = UserName::parse("alice").unwrap();
        state
            .transact(&alice, |st| {
                st.unlock(NOW, crate::state::replay_tolerance(30, 1))
            })
            .unwrap();
        let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
        assert_eq!(
            d.reason,
            Reason::Replay,
            "the current step stays used: {d:?}"
        );
        let next = NOW + 30;
        assert_eq!(
            f.login("alice", Some(&f.code(next)), next).0.outcome,
            Outcome::Success
        );
        // In normal operation the mark still refuses replays (one window ahead is normal).
        let (d, _) = f.login("alice", Some(&f.code(next)), next);
        assert_eq!(d.reason, Reason::Replay);
    }

    #[test]
    fn unenrolled_users_are_prompted_and_denied_like_a_wrong_code() {
        let f = Fixture::new();
        let (d, prompts) = f.login("bob", Some("123456"), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::NotEnrolled, 1)
        );
    }

    #[test]
    fn nullok_ignores_unenrolled_users_without_a_prompt_but_not_broken_files() {
        let mut f = Fixture::new();
        f.policy.nullok = true;
        let (d, prompts) = f.login("bob", Some("123456"), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Ignore, Reason::NotEnrolled, 0)
        );
        // An enrolled user still needs the code.
        let (d, _) = f.login("alice", Some("abcdef"), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        // A record that exists but is unsafe is a denial, never an ignore.
        let path = f.policy.store_dir.join("alice.toml");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let (d, prompts) = f.login("alice", Some(&f.code(NOW)), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::BadFile, 1)
        );
    }

    #[test]
    fn nullok_never_turns_a_missing_or_unreadable_store_into_a_pass() {
        let mut f = Fixture::new();
        f.policy.nullok = true;
        f.policy.store_dir = f.policy.store_dir.with_file_name("typo");
        for user in ["alice", "bob"] {
            let (d, prompts) = f.login(user, Some("123456"), NOW);
            assert_eq!(
                (d.outcome, d.reason, prompts),
                (Outcome::Deny, Reason::BadFile, 1),
                "{user}"
            );
            assert!(d.detail.unwrap().contains("does not exist"));
        }
        // A store below a directory others can change: the same (the whole path is checked).
        let store = f.policy.store_dir.with_file_name("users");
        let above = store.parent().unwrap().to_owned();
        f.policy.store_dir = store;
        std::fs::set_permissions(&above, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let (d, prompts) = f.login("bob", Some("123456"), NOW);
        std::fs::set_permissions(&above, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::BadFile, 1)
        );
        assert!(d.detail.unwrap().contains("a directory on the way"));
        // A store that is a file, not a directory: the same.
        f.policy.store_dir = f
            .policy
            .state_dir
            .with_file_name("users")
            .join("alice.toml");
        let (d, _) = f.login("alice", Some("123456"), NOW);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadFile));
    }

    #[test]
    fn every_spelling_of_an_account_is_that_account() {
        let mut f = Fixture::new();
        f.policy.nullok = true;
        // Another spelling is alice: her record, her replay mark, and both names logged.
        let (d, prompts) = f.login("ALICE", Some(&f.code(NOW)), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Success, Reason::Ok, 1)
        );
        assert_eq!(d.account.as_deref(), Some("alice"));
        let line = crate::audit::line(
            &crate::audit::Context {
                user: Some("ALICE".into()),
                ..Default::default()
            },
            &d,
        );
        assert!(line.starts_with("user=ALICE account=alice "), "{line}");
        let (d, _) = f.login("alice@corp.example", Some(&f.code(NOW)), NOW);
        assert_eq!(d.reason, Reason::Replay, "the same account's replay mark");
        let (d, _) = f.login("alice", Some("000000"), NOW + 30);
        assert_eq!(d.account, None, "no account= when the names agree");
        // nullok never skips MFA for an enrolled account through another spelling.
        let (d, prompts) = f.login("Alice", Some("000000"), NOW + 30);
        assert_eq!((d.outcome, prompts), (Outcome::Deny, 1));
        // An account NSS does not know: prompted and denied, never ignored (even with nullok).
        let (d, prompts) = f.login("ghost", Some("123456"), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::UnknownAccount, 1)
        );
    }

    #[test]
    fn path_like_user_names_are_denied_before_touching_files() {
        let f = Fixture::new();
        for user in ["../../etc/passwd", "alice/../alice", "", "a\nb"] {
            let (d, prompts) = f.login(user, Some(&f.code(NOW)), NOW);
            assert_eq!(
                (d.outcome, d.reason, prompts),
                (Outcome::Deny, Reason::BadUser, 1)
            );
        }
    }

    /// Gives alice a fresh set of recovery codes and returns them as typed text.
    fn with_recovery_codes(f: &Fixture) -> Vec<String> {
        let (codes, hashes) = crate::recovery::generate().unwrap();
        let user = UserName::parse("alice").unwrap();
        Store::new(&f.policy.store_dir)
            .update(&user, |r| r.recovery_codes = hashes)
            .unwrap();
        codes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_recovery_code_works_once_at_the_same_prompt() {
        let f = Fixture::new();
        let codes = with_recovery_codes(&f);
        let (d, prompts) = f.login("alice", Some(&codes[3].to_uppercase()), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Success, Reason::RecoveryCode, 1)
        );
        assert_eq!(d.remaining, Some(9));
        assert!(
            crate::audit::line(&Default::default(), &d)
                .contains("reason=recovery_code remaining=9")
        );
        let (d, _) = f.login("alice", Some(&codes[3]), NOW);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
        let (d, _) = f.login("alice", Some("zzzzz-zzzzz"), NOW);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
        // Other codes and TOTP still work.
        assert_eq!(f.login("alice", Some(&codes[0]), NOW).0.remaining, Some(8));
        assert_eq!(
            f.login("alice", Some(&f.code(NOW)), NOW).0.outcome,
            Outcome::Success
        );
    }

    #[test]
    fn two_parallel_logins_with_one_recovery_code_give_one_success() {
        let f = Fixture::new();
        let codes = with_recovery_codes(&f);
        let code: &'static str = codes[5].clone().leak();
        let results: Vec<Decision> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| f.login("alice", Some(code), NOW).0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results
            .iter()
            .filter(|d| d.outcome == Outcome::Success)
            .count();
        assert_eq!(wins, 1, "{results:#?}");
        let record = Store::new(&f.policy.store_dir)
            .load(&UserName::parse("alice").unwrap())
            .unwrap();
        assert_eq!(record.recovery_codes.len(), 9);
    }

    #[test]
    fn recovery_shaped_input_takes_the_same_time_but_argon2_only_where_it_can_match() {
        let f = Fixture::new();
        let codes = with_recovery_codes(&f);
        // (Argon2 runs, wall time) of one login.
        let cost = |user: &str, answer: &str| {
            let before = crate::recovery::verifications();
            let started = std::time::Instant::now();
            f.login(user, Some(answer), NOW);
            let took = started.elapsed();
            assert!(
                took >= crate::recovery::CHECK_WALL,
                "{user} {answer}: {took:?} is shorter than a check"
            );
            crate::recovery::verifications() - before
        };
        let wrong = "zzzzz-zzzzz";
        assert_eq!(cost("alice", wrong), 10, "enrolled, 10 codes left");
        assert_eq!(cost("alice", &codes[0]), 10, "the right code");
        assert_eq!(cost("alice", &codes[1]), 9);
        assert_eq!(cost("alice", wrong), 8, "8 codes left");
        // Attempts that cannot match cost no Argon2 at all: unknown, impossible, locked out.
        assert_eq!(cost("nobody", wrong), 0, "not enrolled");
        assert_eq!(
            cost("nobody", "1234 5678"),
            0,
            "scratch-shaped, not enrolled"
        );
        assert_eq!(cost("../etc", wrong), 0, "impossible user name");
        for _ in 0..4 {
            cost("alice", wrong);
        }
        let (d, _) = f.login("alice", Some(wrong), NOW);
        assert_eq!(d.reason, Reason::Throttled);
        assert_eq!(cost("alice", wrong), 0, "locked out");
        // TOTP input never pays for Argon2 (nor waits).
        let before = crate::recovery::verifications();
        f.login("alice", Some("123456"), NOW);
        f.login("nobody", Some("123456"), NOW);
        assert_eq!(crate::recovery::verifications() - before, 0);
    }

    #[test]
    fn recovery_checks_do_not_hold_the_store_lock() {
        let f = Fixture::new();
        with_recovery_codes(&f);
        let dir = crate::secure_fs::open_dir(&f.policy.store_dir)
            .unwrap()
            .unwrap();
        // Another writer (an enrollment, another user's recovery code) holds the store lock.
        let lock = dir.lock_dir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let d = f.login("alice", Some("zzzzz-zzzzz"), NOW).0;
                tx.send(d).unwrap();
            });
            let d = rx.recv_timeout(Duration::from_secs(60));
            drop(lock);
            let d = d.expect("a wrong recovery code waited for the store lock");
            assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
        });
    }

    #[test]
    fn imported_eight_digit_scratch_codes_work_once_for_six_digit_users() {
        let f = Fixture::new();
        let scratch = RecoveryCode::from_scratch_code(b"12345678").unwrap();
        let hash = scratch.hash().unwrap();
        let user = UserName::parse("alice").unwrap();
        Store::new(&f.policy.store_dir)
            .update(&user, |r| r.recovery_codes = vec![hash])
            .unwrap();
        let (d, _) = f.login("alice", Some("1234 5678"), NOW);
        assert_eq!((d.reason, d.remaining), (Reason::RecoveryCode, Some(0)));
        let (d, _) = f.login("alice", Some("12345678"), NOW);
        assert_eq!(d.reason, Reason::BadCode);
    }

    #[test]
    fn recovery_codes_are_throttled_like_totp_codes() {
        let f = Fixture::new();
        let codes = with_recovery_codes(&f);
        for _ in 0..5 {
            f.login("alice", Some("zzzzz-zzzzz"), NOW);
        }
        let (d, _) = f.login("alice", Some(&codes[0]), NOW);
        assert_eq!(d.reason, Reason::Throttled);
    }

    #[test]
    fn grace_spares_the_code_for_the_same_client_and_key_until_a_failure_or_its_end() {
        let mut f = Fixture::new();
        f.policy.grace = Some(crate::policy::GracePolicy {
            seconds: 600,
            fleet_wide: false,
        });
        let from = |rhost: &'static str, key: Option<&'static str>| Attempt {
            user: "alice",
            rhost: Some(rhost),
            ssh_auth_info: key,
            ..Attempt::default()
        };
        let other_key = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm5bXvPb3rlYwJXuFEX3JHCEYdeSyDP63klSjN8cC9x";
        let a = from("192.0.2.1", Some(KEY_INFO));
        // No grace before any code.
        let (d, prompts) = f.login_as(&a, Some(&f.code(NOW)), NOW);
        assert_eq!((d.reason, prompts), (Reason::Ok, 1));
        // Same user, address and key, within the grace: in without a prompt.
        let (d, prompts) = f.login_as(&a, None, NOW + 100);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Success, Reason::Grace, 0)
        );
        // Another address, or another key, or no key: asked.
        for other in [
            from("192.0.2.2", Some(KEY_INFO)),
            from("192.0.2.1", Some(other_key)),
            from("192.0.2.1", None),
        ] {
            let (d, prompts) = f.login_as(&other, None, NOW + 100);
            assert_eq!(
                (d.reason, prompts),
                (Reason::NoCode, 1),
                "{:?}",
                other.rhost
            );
        }
        // ... which were failures (no answer is not one), so grace still holds; a wrong code
        // from anywhere ends every grace period.
        let (d, _) = f.login_as(&a, None, NOW + 200);
        assert_eq!(d.reason, Reason::Grace);
        let (d, _) = f.login_as(&from("192.0.2.9", None), Some("000000"), NOW + 200);
        assert_eq!(d.reason, Reason::BadCode);
        let (d, prompts) = f.login_as(&a, Some(&f.code(NOW + 210)), NOW + 210);
        assert_eq!(
            (d.reason, prompts),
            (Reason::Ok, 1),
            "asked again after a failure"
        );
        // The new success starts a new grace, which ends after grace_seconds.
        let (d, _) = f.login_as(&a, None, NOW + 800);
        assert_eq!(d.reason, Reason::Grace);
        let (d, prompts) = f.login_as(&a, None, NOW + 811);
        assert_eq!((d.reason, prompts), (Reason::NoCode, 1), "ended");
    }

    #[test]
    fn grace_is_kept_in_the_state_and_cleared_by_reset_remove_or_unlock_all_grace() {
        let mut f = Fixture::new();
        f.policy.grace = Some(crate::policy::GracePolicy {
            seconds: 600,
            fleet_wide: false,
        });
        let a = Attempt {
            user: "alice",
            rhost: None,
            ..Attempt::default()
        };
        let (d, _) = f.login_as(&a, Some(&f.code(NOW)), NOW);
        assert_eq!(d.reason, Reason::Ok);
        let state = FileStateStore::new(&f.policy.state_dir);
        let alice = UserName::parse("alice").unwrap();
        let st = state.transact(&alice, |st| *st).unwrap();
        assert_eq!(st.grace.marks().count(), 1);
        let text = std::fs::read_to_string(f.policy.state_dir.join("alice.state")).unwrap();
        assert!(text.contains("grace = [\""), "{text}");
        let (d, _) = f.login_as(&a, None, NOW + 1);
        assert_eq!(
            d.reason,
            Reason::Grace,
            "a local service (no address, no key) too"
        );
        state.transact(&alice, |st| st.grace.clear()).unwrap();
        let (d, prompts) = f.login_as(&a, None, NOW + 2);
        assert_eq!((d.reason, prompts), (Reason::NoCode, 1));
        // Off by default: nothing is granted.
        let mut g = Fixture::new();
        g.policy.grace = None;
        g.login_as(&a, Some(&g.code(NOW)), NOW);
        let st = FileStateStore::new(&g.policy.state_dir)
            .transact(&alice, |st| *st)
            .unwrap();
        assert_eq!(st.grace.marks().count(), 0);
    }

    fn hotp_fixture(counter: u64) -> Fixture {
        let f = Fixture::new();
        Store::new(&f.policy.store_dir)
            .update(&UserName::parse("alice").unwrap(), |r| {
                r.hotp = Some(counter)
            })
            .unwrap();
        f
    }

    fn hotp(f: &Fixture, counter: u64) -> String {
        totp::hotp_code(&f.secret, TotpParams::default(), counter)
            .unwrap()
            .to_string()
    }

    fn stored_counter(f: &Fixture) -> Option<u64> {
        Store::new(&f.policy.store_dir)
            .load(&UserName::parse("alice").unwrap())
            .unwrap()
            .hotp
    }

    #[test]
    fn hotp_codes_move_the_counter_forward_only_on_success_and_never_twice() {
        let f = hotp_fixture(5);
        // RFC 4226 appendix D: counter 5 of the test secret is 254676.
        assert_eq!(hotp(&f, 5), "254676");
        let (d, _) = f.login("alice", Some("254676"), NOW);
        assert_eq!(d.reason, Reason::Ok);
        assert_eq!(stored_counter(&f), Some(6), "persisted in the record");
        let (d, _) = f.login("alice", Some("254676"), NOW);
        assert_eq!(d.reason, Reason::Replay, "a used code is a replay");
        // Wrong codes never move the counter (an attacker cannot desynchronise the token).
        for _ in 0..3 {
            let (d, _) = f.login("alice", Some("000000"), NOW);
            assert_eq!(d.reason, Reason::BadCode);
        }
        assert_eq!(stored_counter(&f), Some(6));
        // A code a few presses ahead (inside hotp_window) is accepted and skips the rest.
        let (d, _) = f.login("alice", Some(&hotp(&f, 8)), NOW + 1000);
        assert_eq!((d.reason, d.skew), (Reason::Ok, Some(2)));
        assert_eq!(stored_counter(&f), Some(9));
        let (d, _) = f.login("alice", Some(&hotp(&f, 7)), NOW + 1000);
        assert_eq!(d.reason, Reason::Replay, "skipped codes are dead too");
    }

    #[test]
    fn an_hotp_token_far_ahead_resynchronises_with_two_consecutive_codes() {
        let f = hotp_fixture(0);
        let (d, _) = f.login("alice", Some(&hotp(&f, 50)), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        assert!(
            d.detail.as_deref().unwrap().contains("resynchronises"),
            "{d:?}"
        );
        assert_eq!(stored_counter(&f), Some(0));
        // Not consecutive: no resync.
        let (d, _) = f.login("alice", Some(&hotp(&f, 53)), NOW);
        assert_eq!(d.outcome, Outcome::Deny);
        // Consecutive: resynchronised, accepted.
        let (d, _) = f.login("alice", Some(&hotp(&f, 54)), NOW);
        assert_eq!(d.reason, Reason::Ok, "{d:?}");
        assert_eq!(stored_counter(&f), Some(55));
        // Beyond the resync limit: just wrong.
        let (d, _) = f.login(
            "alice",
            Some(&hotp(&f, 55 + 10 + HOTP_RESYNC_LIMIT + 5)),
            NOW,
        );
        assert_eq!(d.reason, Reason::BadCode);
        assert!(d.detail.is_none(), "{d:?}");
    }

    #[test]
    fn two_parallel_logins_with_one_hotp_code_give_one_success() {
        let f = hotp_fixture(0);
        let code = hotp(&f, 0);
        let f = &f;
        let code = code.as_str();
        let results: Vec<Decision> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(move || f.login("alice", Some(code), NOW).0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results
                .iter()
                .filter(|d| d.outcome == Outcome::Success)
                .count(),
            1,
            "{results:?}"
        );
        assert_eq!(stored_counter(f), Some(1));
    }

    #[test]
    fn password_and_code_are_split_at_the_code() {
        let split = |a: &str, d| {
            let (p, c) = split_password_and_code(a.as_bytes(), d);
            (
                String::from_utf8_lossy(p).into_owned(),
                String::from_utf8_lossy(c).into_owned(),
            )
        };
        assert_eq!(split("pw123456", 6), ("pw".into(), "123456".into()));
        assert_eq!(split("pw12345678", 8), ("pw".into(), "12345678".into()));
        assert_eq!(
            split("p9123456", 6),
            ("p9".into(), "123456".into()),
            "digits in the password"
        );
        assert_eq!(
            split("123456", 6),
            ("".into(), "123456".into()),
            "no password"
        );
        assert_eq!(
            split("pwabcde-12345", 6),
            ("pw".into(), "abcde-12345".into()),
            "recovery code"
        );
        assert_eq!(split("pw", 6), ("pw".into(), "".into()));
        assert_eq!(split("pw12345x", 6), ("pw12345x".into(), "".into()));
        assert_eq!(split("", 6), ("".into(), "".into()));
    }

    #[test]
    fn no_answer_is_a_denial() {
        let f = Fixture::new();
        let (d, prompts) = f.login("alice", None, NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::NoCode, 1)
        );
    }

    #[test]
    fn clock_before_the_epoch_denies_without_panicking() {
        let f = Fixture::new();
        let mut conv = Script::answering(&[Some("123456")]);
        let before = UNIX_EPOCH - Duration::from_secs(1);
        let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), before);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::Internal));
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        let d = authenticate_in_test(
            &mut Script::answering(&[Some("123456")]),
            &f.policy,
            &Attempt::user("alice"),
            far,
        );
        assert_eq!(d.outcome, Outcome::Deny);
    }

    #[test]
    fn unwritable_state_denies_even_a_correct_code() {
        let mut f = Fixture::new();
        // A state "directory" that is a regular file cannot hold state.
        let bogus = f.policy.store_dir.join("alice.toml");
        f.policy.state_dir = bogus;
        let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::Internal));
    }

    /// A client that sits at the prompt while `meanwhile` runs (an administrator acting), then
    /// answers `answer`.
    struct SlowTypist<F: FnMut()> {
        meanwhile: F,
        answer: String,
    }

    impl<F: FnMut()> Conversation for SlowTypist<F> {
        fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            (self.meanwhile)();
            Ok(Zeroizing::new(self.answer.as_bytes().to_vec()))
        }

        fn info(&mut self, _: &str) -> Result<(), ConversationError> {
            Ok(())
        }
    }

    #[test]
    fn a_reset_or_removal_during_the_prompt_takes_effect_for_that_login() {
        let f = Fixture::new();
        let store = Store::new(&f.policy.store_dir);
        let alice = UserName::parse("alice").unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        // Reset: a new secret is saved while the old code is being typed.
        let mut conv = SlowTypist {
            meanwhile: || {
                let mut record = store.load(&alice).unwrap();
                record.secret = SecretKey::from_bytes(b"abcdefghijabcdefghij".to_vec()).unwrap();
                store.save(&record, SaveMode::Replace).unwrap();
            },
            answer: f.code(NOW),
        };
        let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), at);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Deny, Reason::BadCode),
            "old secret dead at once"
        );
        // Removal while typing.
        let mut conv = SlowTypist {
            meanwhile: || store.remove(&alice).unwrap(),
            answer: f.code(NOW),
        };
        let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), at);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::NotEnrolled));
    }

    /// A phone: reads the secret from the enrollment text it is shown and answers each
    /// confirmation with the code for `at` (after `wrong` wrong answers).
    struct Phone {
        at: u64,
        wrong: usize,
        infos: Vec<String>,
        prompts: Vec<String>,
    }

    impl Phone {
        fn new(at: u64, wrong: usize) -> Self {
            Self {
                at,
                wrong,
                infos: vec![],
                prompts: vec![],
            }
        }

        fn secret(&self) -> Option<SecretKey> {
            let line = self
                .infos
                .iter()
                .flat_map(|i| i.lines())
                .find_map(|l| l.strip_prefix("Secret: "))?;
            SecretKey::from_base32(&line.replace(' ', "")).ok()
        }
    }

    impl Conversation for Phone {
        fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            self.prompts.push(prompt.to_owned());
            let answer = match self.secret() {
                Some(_) if self.wrong > 0 => {
                    self.wrong -= 1;
                    "000000".to_string()
                }
                Some(secret) => totp::code_at(&secret, TotpParams::default(), self.at).to_string(),
                None => "123456".to_string(),
            };
            Ok(Zeroizing::new(answer.into_bytes()))
        }

        fn info(&mut self, text: &str) -> Result<(), ConversationError> {
            self.infos.push(text.to_owned());
            Ok(())
        }
    }

    fn enrolling(f: &mut Fixture) {
        f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment::default());
    }

    #[test]
    fn a_user_with_a_key_and_no_enrollment_enrolls_during_the_login() {
        let mut f = Fixture::new();
        enrolling(&mut f);
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let attempt = Attempt {
            user: "bob",
            rhost: Some("192.0.2.9"),
            ssh_auth_info: Some(KEY_INFO),
            ..Attempt::default()
        };
        let mut phone = Phone::new(NOW, 1);
        let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Success, Reason::EnrolledAtLogin),
            "{d:?}"
        );
        assert!(d.detail.as_deref().unwrap().starts_with("key SHA256:"));
        // Explanation, QR code with URI and secret, one retry hint, recovery codes.
        assert!(
            phone.infos[1].contains('\u{2588}')
                && phone.infos[1].contains("URI:    otpauth://totp/")
        );
        assert!(phone.infos.last().unwrap().contains("Recovery codes"));
        assert_eq!(
            phone.prompts,
            vec![crate::login_enrollment::CONFIRM_PROMPT; 2]
        );
        let bob = UserName::parse("bob").unwrap();
        let record = Store::new(&f.policy.store_dir).load(&bob).unwrap();
        assert_eq!(record.recovery_codes.len(), 10);
        assert!(
            matches!(record.origin, crate::store::record::Origin::Login { ref key } if key.starts_with("SHA256:"))
        );
        // The next login asks for a code; the confirmation code is used up.
        let code = totp::code_at(&record.secret, TotpParams::default(), NOW).to_string();
        let (d, prompts) = f.login_as(&attempt, Some(&code), NOW);
        assert_eq!((d.reason, prompts), (Reason::Replay, 1));
        let next = totp::code_at(&record.secret, TotpParams::default(), NOW + 30).to_string();
        assert_eq!(
            f.login_as(&attempt, Some(&next), NOW + 30).0.reason,
            Reason::Ok
        );
    }

    #[test]
    fn without_a_key_or_after_the_deadline_or_outside_the_groups_nobody_enrolls_at_login() {
        let mut f = Fixture::new();
        enrolling(&mut f);
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let bob = UserName::parse("bob").unwrap();
        let denied = |f: &Fixture, info: Option<&str>, user: &str| {
            let attempt = Attempt {
                user,
                rhost: None,
                ssh_auth_info: info,
                ..Attempt::default()
            };
            let mut phone = Phone::new(NOW, 0);
            let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
            assert_eq!(
                (d.outcome, d.reason),
                (Outcome::Deny, Reason::NotEnrolled),
                "{info:?} {d:?}"
            );
            assert!(phone.infos.is_empty(), "no QR code shown");
            assert_eq!(phone.prompts, vec!["Verification code: ".to_string()]);
        };
        for info in [
            None,
            Some(""),
            Some("password"),
            Some("keyboard-interactive"),
        ] {
            denied(&f, info, "bob");
        }
        f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
            groups: vec![],
            until: Some(NOW),
        });
        denied(&f, Some(KEY_INFO), "bob");
        f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
            groups: vec!["root".into()],
            until: None,
        });
        denied(&f, Some(KEY_INFO), "bob");
        // Three wrong codes: nothing written.
        enrolling(&mut f);
        let attempt = Attempt {
            user: "bob",
            rhost: None,
            ssh_auth_info: Some(KEY_INFO),
            ..Attempt::default()
        };
        let mut phone = Phone::new(NOW, 3);
        let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::NotEnrolled));
        assert!(matches!(
            Store::new(&f.policy.store_dir).load(&bob),
            Err(StoreError::NotEnrolled)
        ));
        // nullok is unchanged for users outside the policy, and applies after the deadline.
        f.policy.nullok = true;
        f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
            groups: vec![],
            until: Some(NOW),
        });
        let (d, _) = f.login_as(&attempt, None, NOW);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Ignore, Reason::NotEnrolled)
        );
    }

    #[test]
    fn two_first_logins_at_once_give_one_enrollment_and_the_other_is_told_it_was_not_saved() {
        let mut f = Fixture::new();
        enrolling(&mut f);
        let f = &f;
        let at = UNIX_EPOCH + Duration::from_secs(NOW);
        let results: Vec<(Decision, Phone)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(move || {
                        let attempt = Attempt {
                            user: "bob",
                            rhost: None,
                            ssh_auth_info: Some(KEY_INFO),
                            ..Attempt::default()
                        };
                        let mut phone = Phone::new(NOW, 0);
                        let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
                        (d, phone)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let enrolled: Vec<_> = results
            .iter()
            .filter(|(d, _)| d.reason == Reason::EnrolledAtLogin)
            .collect();
        assert_eq!(
            enrolled.len(),
            1,
            "{:?}",
            results.iter().map(|r| &r.0).collect::<Vec<_>>()
        );
        let other = results
            .iter()
            .find(|(d, _)| d.reason != Reason::EnrolledAtLogin)
            .unwrap();
        // Neither login holds a lock at its prompt: when both showed a QR code, the second to
        // save found the first one's record, which stands, and was told; a login that started
        // after the save was asked for a code like any enrolled user.
        if other.1.infos.is_empty() {
            assert_eq!(other.1.prompts, vec!["Verification code: ".to_string()]);
        } else {
            let told = other.0.detail.as_deref().unwrap_or_default();
            assert_eq!(other.0.reason, Reason::NotEnrolled, "{:?}", other.0);
            assert!(told.contains("enrolled meanwhile"));
            assert!(other.1.infos.last().unwrap().contains("enrolled meanwhile"));
        }
        let bob = UserName::parse("bob").unwrap();
        let record = Store::new(&f.policy.store_dir).load(&bob).unwrap();
        assert_eq!(Some(record.secret), enrolled[0].1.secret());
    }

    const KEY_INFO: &str = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";

    #[test]
    fn first_factor_publickey_denies_without_a_key_before_any_prompt_even_nullok_and_exempt() {
        let mut f = Fixture::new();
        f.policy.first_factor = FirstFactor::PublicKey;
        f.policy.nullok = true;
        f.policy.exemptions.exempt_networks = vec!["192.0.2.0/24".parse().unwrap()];
        let code = f.code(NOW);
        for info in [
            None,
            Some(""),
            Some("password"),
            Some("keyboard-interactive\n"),
            Some(" publickey ssh-ed25519 AAAA"),
        ] {
            for user in ["alice", "bob", "../x"] {
                for rhost in [None, Some("192.0.2.7")] {
                    let attempt = Attempt {
                        user,
                        rhost,
                        ssh_auth_info: info,
                        ..Attempt::default()
                    };
                    let (d, prompts) = f.login_as(&attempt, Some(&code), NOW);
                    assert_eq!(
                        (d.outcome, d.reason, prompts),
                        (Outcome::Deny, Reason::NoFirstFactor, 0),
                        "{attempt:?}"
                    );
                    assert!(
                        d.detail
                            .unwrap()
                            .contains("AuthenticationMethods publickey,keyboard-interactive")
                    );
                }
            }
        }
        // Nothing was counted: the right code still works once a key was accepted, also when
        // the key is one of several completed methods.
        for info in [KEY_INFO.to_string(), format!("password\n{KEY_INFO}\n")] {
            let attempt = Attempt {
                user: "alice",
                rhost: None,
                ssh_auth_info: Some(&info),
                ..Attempt::default()
            };
            let at = if info.starts_with("password") {
                NOW + 30
            } else {
                NOW
            };
            let (d, prompts) = f.login_as(&attempt, Some(&f.code(at)), at);
            assert_eq!((d, prompts), (Decision::success(0), 1));
        }
        // nullok and exemptions apply again once the key is there.
        let bob = Attempt {
            user: "bob",
            rhost: Some("192.0.2.7"),
            ssh_auth_info: Some(KEY_INFO),
            ..Attempt::default()
        };
        assert_eq!(f.login_as(&bob, None, NOW).0.reason, Reason::Exempt);
        // Without the setting the environment is not consulted (password + code stacks).
        f.policy.first_factor = FirstFactor::None;
        let (d, _) = f.login_as(&Attempt::user("alice"), Some(&f.code(NOW + 60)), NOW + 60);
        assert_eq!(d.outcome, Outcome::Success);
    }

    #[test]
    fn sshds_substituted_answer_is_denied_without_counting_a_failure() {
        let f = Fixture::new();
        // What sshd passes for root under prohibit-password: the junk string cut or repeated
        // to the typed length.
        for typed_len in [1, 6, 8, 11, 13, 30] {
            let fake: Vec<u8> = SSHD_FAKE_ANSWER
                .iter()
                .cycle()
                .take(typed_len)
                .copied()
                .collect();
            let fake = String::from_utf8(fake).unwrap();
            let (d, prompts) = f.login("alice", Some(&fake), NOW);
            assert_eq!(
                (d.outcome, d.reason, d.failures, prompts),
                (Outcome::Deny, Reason::SshdReplacedAnswer, None, 1),
                "{typed_len}"
            );
            assert!(d.detail.unwrap().contains("PermitRootLogin yes"));
        }
        // Not counted: a wrong code now is the first failure.
        let (d, _) = f.login("alice", Some("abcdef"), NOW);
        assert_eq!(d.failures, Some(1));
        assert!(!is_sshd_fake_answer(b""));
        assert!(!is_sshd_fake_answer(b"\x08\nX"));
    }

    #[test]
    fn a_loopback_exemption_is_not_applied_and_the_audit_line_says_so() {
        let mut f = Fixture::new();
        f.policy.exemptions.exempt_networks = vec!["127.0.0.0/8".parse().unwrap()];
        for rhost in ["127.0.0.1", "::1"] {
            let attempt = Attempt {
                user: "alice",
                rhost: Some(rhost),
                ssh_auth_info: None,
                ..Attempt::default()
            };
            let at = if rhost == "::1" { NOW + 30 } else { NOW };
            let (d, prompts) = f.login_as(&attempt, Some(&f.code(at)), at);
            assert_eq!(
                (d.outcome, d.reason, prompts),
                (Outcome::Success, Reason::Ok, 1)
            );
            assert!(d.detail.unwrap().contains("not applied"), "{rhost}");
        }
    }

    #[test]
    fn no_decision_text_contains_the_code_or_secret() {
        let f = Fixture::new();
        let code = f.code(NOW);
        let mut lines = vec![];
        for answer in [code.as_str(), code.as_str(), "999999"] {
            let (d, _) = f.login("alice", Some(answer), NOW);
            lines.push(format!(
                "{d:?} {}",
                crate::audit::line(&Default::default(), &d)
            ));
        }
        for line in lines {
            assert!(!line.contains(&code), "{line}");
            assert!(!line.contains("GEZDGNBV"), "{line}");
        }
    }
}
