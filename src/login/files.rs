//! The login on local files: records in the store directory (`<store>/<user>.toml`), login
//! state in the state directory (`<state>/<user>.state`, changed under the user's lock). Also
//! the fleet's local copy when etcd cannot be reached (`on_unavailable = "local"`): then it is
//! *offline*, and recovery codes and HOTP counters are refused (only the fleet keeps them
//! single-use on every server).
#![forbid(unsafe_code)]

use std::time::Instant;

use super::backend::{Backend, Before};
use super::choose::{Choice, Chooser};
use super::grace::{self, Key, PendingGrace};
use super::verify::{self, Effects};
use crate::decision::{Decision, Reason};
use crate::policy::{PassMode, Policy};
use crate::state::hotp_tag;
use crate::state::{FileStateStore, Owner, StateStore, USED_RECOVERY_SLOTS, UserState};
use crate::store::{AccountRecord, Store, StoreError, UserRecord};
use crate::user_name::UserName;

/// [`Backend`] on this host's files.
pub struct Files<'a> {
    policy: &'a Policy,
    store: Store,
    state: FileStateStore,
    /// `Some(why)`: this is the fleet's local copy, used because etcd is unreachable.
    offline: Option<String>,
    /// What chose the token at the read (see `super::choose`).
    chooser: Option<Chooser>,
}

impl<'a> Files<'a> {
    /// The store and state directories of `policy`.
    pub fn new(policy: &'a Policy) -> Self {
        Self {
            policy,
            store: Store::new(&policy.store_dir),
            state: FileStateStore::new(&policy.state_dir),
            offline: None,
            chooser: None,
        }
    }

    /// From now on this is the fleet's local copy, used because `why` (see the module doc).
    pub fn go_offline(&mut self, why: String) {
        self.offline = Some(why);
    }

    /// Whether this is the fleet's local copy in use because etcd is unreachable.
    pub fn is_offline(&self) -> bool {
        self.offline.is_some()
    }

    /// The store (the fleet refreshes its local copy in it).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Backend for Files<'_> {
    fn read(&mut self, user: &UserName, chooser: &Chooser) -> Result<Before, Decision> {
        self.chooser = Some(chooser.clone());
        let account = match (self.store.load_account(user), &self.offline) {
            (Ok(account), _) => Some(account),
            (Err(StoreError::NotEnrolled), None) => None,
            (Err(StoreError::NotEnrolled), Some(why)) => {
                return Err(Decision::deny(Reason::BackendUnavailable).with_detail(format!(
                    "{why}; the local copy has no enrollment for this user (nullok does not apply offline: the copy may be older than the enrollment)"
                )));
            }
            (Err(e), None) => {
                return Err(Decision::deny(Reason::BadFile).with_detail(e.to_string()));
            }
            (Err(e), Some(why)) => {
                return Err(Decision::deny(Reason::BackendUnavailable)
                    .with_detail(format!("{why}; the local copy is unusable: {e}")));
            }
        };
        let (record, unbound) = match account.as_ref().map(|a| chooser.choose(a)) {
            None => (None, false),
            Some(Choice::Token(token)) => (Some(token.clone()), false),
            Some(Choice::Unbound) => (None, true),
        };
        // Only try_first_pass looks at the state before the prompt (lockout, replay).
        let state = match (self.policy.pass, &record) {
            (PassMode::TryFirst, Some(token)) => self
                .state
                .transact(&token.owner(), |st| *st)
                .unwrap_or_default(),
            _ => UserState::default(),
        };
        let shared = account.as_ref().is_some_and(AccountRecord::is_shared);
        Ok(Before {
            record,
            unbound,
            shared,
            state,
            note: self.offline.clone(),
        })
    }

    fn take_grace(&mut self, owner: &Owner, key: Key, now: u64) -> Option<PendingGrace> {
        // No grace offline: only the fleet can take a mark out for good (see `grace`).
        if self.offline.is_some() {
            return None;
        }
        let policy = self.policy;
        self.state
            .transact(owner, |st| grace::use_grace(policy, key, now, st))
            .ok()
            .flatten()
    }

    /// Under the user's state lock, the record as it is *now* (a reset, re-enrollment or
    /// removal while this client sat at the prompt takes effect for this login too), then the
    /// decision. A recovery-shaped answer: Argon2 before the lock (and pacing after it), so
    /// that no attempt holds the user's lock for longer than a file read and write.
    fn settle(&mut self, owner: &Owner, answer: &[u8], now: u64, grace: Option<Key>) -> Decision {
        let (policy, store, offline) = (self.policy, &self.store, self.offline.as_deref());
        let Some(chooser) = self.chooser.as_ref() else {
            return Decision::deny(Reason::Internal).with_detail("settle before read");
        };
        let user = owner.user();
        // The record as it is now, and this login's token in it.
        let current = || -> Result<UserRecord, Decision> {
            match store.load_account(user) {
                Ok(account) => chooser.again(&account, owner).cloned(),
                Err(StoreError::NotEnrolled) => Err(Decision::deny(Reason::NotEnrolled)
                    .with_detail("the enrollment was removed while the code was being typed")),
                Err(e) => Err(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
            }
        };
        let started = Instant::now();
        let (pre, digits) = match verify::recovery_code_in(answer, 6).map(|_| current()) {
            Some(Ok(record)) => {
                let st = self.state.transact(owner, |st| *st).unwrap_or_default();
                (
                    verify::precheck_recovery(&record, policy, answer, now, &st),
                    record.params.digits(),
                )
            }
            _ => (None, 6),
        };
        let decision = self.state.transact(owner, |st| match current() {
            Ok(current) => {
                let mut effects = FileEffects {
                    store,
                    owner,
                    offline,
                };
                let mut decision = verify::decide(
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
            Err(denial) => denial,
        });
        verify::pace_answer(answer, digits, started);
        let decision = decision
            .unwrap_or_else(|e| Decision::deny(Reason::Internal).with_detail(e.to_string()));
        match offline {
            Some(why) if decision.detail.is_none() => decision.with_detail(why),
            _ => decision,
        }
    }

    fn enrollment_store(&self) -> Option<(&Store, &FileStateStore)> {
        Some((&self.store, &self.state))
    }

    fn commit_grace(
        &mut self,
        owner: &Owner,
        pending: PendingGrace,
        now: u64,
        _login_started: Instant,
    ) -> Result<(), String> {
        self.state
            .transact(owner, |st| grace::commit(pending, now, st))
            .map_err(|e| e.to_string())
    }
}

/// [`Effects`] on local files: used recovery codes and HOTP counters are kept in the state
/// (saved by the login's one state write), then folded into the record as a best effort.
/// `offline`: the fleet is unreachable and this is its local copy: both are refused.
struct FileEffects<'a> {
    store: &'a Store,
    owner: &'a Owner,
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
        let owner = self.owner;
        self.store
            .update(owner.user(), owner.person(), change)
            .err()
            .map(|e| {
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
        st: &mut UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision> {
        self.refuse_offline("recovery codes")?;
        if st.used_recovery.contains(hash) {
            return Ok(None);
        }
        if !st.used_recovery.use_code(hash, &record.recovery_codes) {
            return Err(Decision::deny(Reason::BadFile).with_detail(format!(
                "more than {USED_RECOVERY_SLOTS} recovery codes used and not yet removed from the \
                 record; mfa-enroll recovery --user {}{} issues new ones",
                record.user,
                record
                    .person
                    .as_ref()
                    .map_or_else(String::new, |p| format!(" --person {p}"))
            )));
        }
        let remaining = st.used_recovery.unused_in(&record.recovery_codes);
        let note = self.fold("recovery code use", |current| {
            current.recovery_codes.retain(|h| h != hash);
        });
        Ok(Some((remaining, note)))
    }

    fn hotp_next(&self, record: &UserRecord, st: &UserState) -> u64 {
        let counter = record.hotp.unwrap_or(0);
        match st.hotp {
            Some((tag, next)) if tag == hotp_tag(record.secret.as_bytes()) => counter.max(next),
            _ => counter,
        }
    }

    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut UserState,
        next: u64,
    ) -> Result<Option<String>, Decision> {
        self.refuse_offline("HOTP tokens")?;
        let next = next.max(self.hotp_next(record, st));
        let tag = hotp_tag(record.secret.as_bytes());
        st.hotp = Some((tag, next));
        Ok(self.fold("HOTP counter", |current| {
            if hotp_tag(current.secret.as_bytes()) == tag
                && let Some(counter) = &mut current.hotp
            {
                *counter = (*counter).max(next);
            }
        }))
    }
}
