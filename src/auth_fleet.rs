//! Steps 2 to 5 of the authentication flow (see `auth`) with the fleet backend
//! (`[fleet] backend = "etcd"`): the record and the state live in etcd, read together before
//! the prompt and settled with one compare-and-swap after it (`fleet::login`).
//!
//! When etcd cannot be reached (`FleetError::Unavailable` only: never after a TLS or
//! permission failure) and `on_unavailable = "local"`, the login runs on this host's local copy
//! of the records (refreshed by every online login and by `mfa-enroll fleet sync`) and its local
//! state, with a note in the audit line that fleet-wide replay protection and lockout are off.
//! Offline, recovery codes are refused (only the fleet can keep them single-use everywhere) and
//! a user the local copy does not know is denied even with `nullok` (the copy may be older than
//! the user's enrollment).
#![forbid(unsafe_code)]

use crate::auth::{
    Attempt, Clock, Conversation, Effects, LocalCopy, ask_and_discard, ask_code, decide,
    settle_locally,
};
use crate::decision::{Decision, Reason};
use crate::fleet::login::Fleet;
use crate::fleet::state::{FleetState, hotp_tag, recovery_id};
use crate::fleet::{FleetConfig, FleetError, OnUnavailable};
use crate::grace;
use crate::policy::Policy;
use crate::state::StateStore;
use crate::store::{SaveMode, Store, StoreError, UserRecord};
use crate::user_name::UserName;

/// Steps 2 to 5 for `user` with the fleet backend.
pub(crate) fn decide_enrolled(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    config: &FleetConfig,
    local_copy: &LocalCopy<'_, impl StateStore>,
    user: &UserName,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    let store = local_copy.store;
    let local = config.on_unavailable == OnUnavailable::Local;
    let opened = match attempt.connect {
        Some(connect) => Fleet::open(config, Some(&policy.state_dir), connect),
        None => Err(FleetError::LocalFile(
            "no etcd client in this program (internal error)".into(),
        )),
    };
    let fleet = match opened {
        Ok(fleet) => fleet,
        Err(e) => {
            ask_and_discard(conv, policy, attempt);
            return denial(&e);
        }
    };
    let snapshot = match fleet.read(user) {
        Ok(snapshot) => snapshot,
        Err(e) if local && e.is_unavailable() => {
            return offline(conv, policy, local_copy, user, attempt, clock, &e);
        }
        Err(e) => {
            ask_and_discard(conv, policy, attempt);
            return denial(&e);
        }
    };
    let note = if local {
        refresh_local_copy(store, user, snapshot.record.as_ref())
    } else {
        None
    };
    let Some(digits) = snapshot.record.as_ref().map(|r| r.params.digits()) else {
        if policy.nullok {
            crate::auth::forward_all(conv, policy, attempt);
            return Decision::ignore(Reason::NotEnrolled).with_detail("nullok");
        }
        ask_and_discard(conv, policy, attempt);
        return with_note(Decision::deny(Reason::NotEnrolled), note);
    };
    let grace = grace::grace_id(policy, user, attempt);
    if let (Some(id), Ok(unix)) = (grace, clock().duration_since(std::time::UNIX_EPOCH))
        && grace::in_grace(policy, &snapshot.state.login, id, unix.as_secs())
    {
        let now = unix.as_secs();
        // Password stacks take the mark out of the fleet state (see `grace`); a lost race or
        // an unreachable fleet means no grace: the code is asked as usual.
        let used = if grace::deferred(policy) {
            fleet
                .settle(user, snapshot.clone(), |_, st| {
                    grace::use_grace(policy, id, now, &mut st.login)
                })
                .ok()
                .and_then(|(used, _)| used)
        } else {
            grace::use_grace(policy, id, now, &mut snapshot.state.login.clone())
        };
        if let Some(used) = used {
            return with_note(grace::decision(conv, policy, attempt, digits, used), note);
        }
    }
    let Some(record) = snapshot.record.as_ref() else {
        return Decision::deny(Reason::Internal);
    };
    let (answer, now) = match ask_code(conv, policy, attempt, record, clock) {
        Ok(asked) => asked,
        Err(decision) => return decision,
    };
    let settled = fleet.settle(user, snapshot, |record, st| {
        let Some(current) = record else {
            return Decision::deny(Reason::NotEnrolled)
                .with_detail("the enrollment was removed while the code was being typed");
        };
        let FleetState {
            login,
            used_recovery,
            hotp,
        } = st;
        let mut effects = FleetEffects {
            used_recovery,
            hotp,
            // The record's recovery codes are already the unused ones.
            left: current.recovery_codes.len().saturating_sub(1),
        };
        let mut decision = decide(current, policy, &answer, now, login, &mut effects);
        grace::grant(policy, grace, &mut decision, now, login);
        decision
    });
    match settled {
        Ok((decision, _)) => with_note(decision, note),
        Err(e) if local && e.is_unavailable() => {
            let why = offline_note(&e);
            with_note(
                settle_locally(local_copy, policy, user, &answer, now, Some(&why), grace),
                Some(why),
            )
        }
        Err(e) => denial(&e),
    }
}

/// The whole login on the local copy (etcd unreachable before the prompt).
fn offline(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    local_copy: &LocalCopy<'_, impl StateStore>,
    user: &UserName,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
    e: &FleetError,
) -> Decision {
    let store = local_copy.store;
    let why = offline_note(e);
    let record = match store.load(user) {
        Ok(record) => record,
        Err(StoreError::NotEnrolled) => {
            ask_and_discard(conv, policy, attempt);
            return Decision::deny(Reason::BackendUnavailable).with_detail(format!(
                "{why}; the local copy has no enrollment for this user (nullok does not apply offline: the copy may be older than the enrollment)"
            ));
        }
        Err(other) => {
            ask_and_discard(conv, policy, attempt);
            return Decision::deny(Reason::BackendUnavailable)
                .with_detail(format!("{why}; the local copy is unusable: {other}"));
        }
    };
    let (answer, now) = match ask_code(conv, policy, attempt, &record, clock) {
        Ok(asked) => asked,
        Err(decision) => return decision,
    };
    drop(record);
    let grace = grace::grace_id(policy, user, attempt);
    with_note(
        settle_locally(local_copy, policy, user, &answer, now, Some(&why), grace),
        Some(why),
    )
}

/// [`Effects`] on the fleet state: what hosts may write (they cannot write records).
struct FleetEffects<'a> {
    used_recovery: &'a mut Vec<String>,
    hotp: &'a mut Option<(u64, u64)>,
    left: usize,
}

impl Effects for FleetEffects<'_> {
    fn use_recovery(
        &mut self,
        _: &UserRecord,
        _: &mut crate::state::UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision> {
        let id = recovery_id(hash);
        if self.used_recovery.contains(&id) {
            return Ok(None);
        }
        self.used_recovery.push(id);
        Ok(Some((self.left, None)))
    }

    fn hotp_next(&self, record: &UserRecord, _: &crate::state::UserState) -> u64 {
        // The snapshot's record already carries the fleet's counter (FleetState::apply_to).
        record.hotp.unwrap_or(0)
    }

    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut crate::state::UserState,
        next: u64,
    ) -> Result<Option<String>, Decision> {
        let next = next.max(self.hotp_next(record, st));
        *self.hotp = Some((hotp_tag(record.secret.as_bytes()), next));
        Ok(None)
    }
}

fn offline_note(e: &FleetError) -> String {
    format!(
        "fleet unavailable, local copy used (on_unavailable=local: fleet-wide replay protection and lockout are off for this login): {e}"
    )
}

/// Makes the local copy of `user`'s record match the fleet's. Returns a note when it could not
/// (the login goes on: the copy only matters during an outage).
fn refresh_local_copy(
    store: &Store,
    user: &UserName,
    record: Option<&UserRecord>,
) -> Option<String> {
    let result = match record {
        Some(record) => match store.load(user) {
            Ok(local) if local == *record => Ok(()),
            _ => store.save(record, SaveMode::Replace),
        },
        None => match store.is_enrolled(user) {
            Ok(true) => store.remove(user),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        },
    };
    result
        .err()
        .map(|e| format!("the local copy was not refreshed: {e}"))
}

fn with_note(decision: Decision, note: Option<String>) -> Decision {
    match note {
        Some(note) if decision.detail.is_none() => decision.with_detail(note),
        _ => decision,
    }
}

/// The denial for a fleet error.
pub(crate) fn denial(e: &FleetError) -> Decision {
    let reason = match e {
        FleetError::Unavailable(_) => Reason::BackendUnavailable,
        FleetError::Refused(_) | FleetError::LocalFile(_) => Reason::BackendError,
        FleetError::BadValue(_) => Reason::BadFile,
        // A compare-and-swap that never succeeds within the deadline: etcd (or what answers
        // for it) misbehaves, or more logins race on one user than the deadline allows.
        FleetError::Contention => Reason::BackendError,
    };
    Decision::deny(reason).with_detail(e.to_string())
}
