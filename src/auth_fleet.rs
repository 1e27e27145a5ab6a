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
    pace_answer, precheck_recovery, settle_locally, unix_at,
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
    let mut snapshot = match fleet.read(user) {
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
    if snapshot.record.is_none() {
        if policy.nullok {
            crate::auth::forward_all(conv, policy, attempt);
            return Decision::ignore(Reason::NotEnrolled).with_detail("nullok");
        }
        ask_and_discard(conv, policy, attempt);
        return with_note(Decision::deny(Reason::NotEnrolled), note);
    }
    let grace = grace::grace_id(policy, user, attempt);
    if let (Some(key), false) = (grace, grace::after_the_answer(policy))
        && let (used, Some(newer)) =
            take_grace(&fleet, policy, user, key, unix_at(clock), snapshot.clone())
    {
        snapshot = newer;
        if let Some(used) = used {
            return with_note(grace::success(key, attempt, used), note);
        }
    }
    let Some(record) = snapshot.record.clone() else {
        return Decision::deny(Reason::Internal);
    };
    let asked = ask_code(conv, policy, attempt, &record, &snapshot.state.login, clock);
    let (answer, now) = match asked {
        Ok(asked) => asked,
        Err(decision) => return decision,
    };
    if let (Some(key), true) = (grace, grace::after_the_answer(policy))
        && let (used, Some(newer)) = take_grace(&fleet, policy, user, key, now, snapshot.clone())
    {
        snapshot = newer;
        if let Some(used) = used {
            return with_note(grace::success(key, attempt, used), note);
        }
    }
    let started = std::time::Instant::now();
    let digits = record.params.digits();
    // A recovery-shaped answer: Argon2 before the compare-and-swap, pacing after it.
    let pre = snapshot
        .record
        .as_ref()
        .and_then(|r| precheck_recovery(r, policy, &answer, now, &snapshot.state.login));
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
        let mut decision = decide(
            current,
            policy,
            &answer,
            now,
            login,
            &mut effects,
            pre.as_ref(),
        );
        grace::grant(policy, grace, &mut decision, now, login);
        decision
    });
    pace_answer(&answer, digits, started);
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

/// A grace check in the fleet state at `now`: immediate keys only read the snapshot; deferred
/// ones take the mark out by compare-and-swap (see `grace`). The used grace, if any, and the
/// snapshot to go on with (`None`: the fleet could not be written; go on with the old one and
/// ask for the code).
fn take_grace(
    fleet: &Fleet,
    policy: &Policy,
    user: &UserName,
    key: grace::Key,
    now: u64,
    snapshot: crate::fleet::login::Snapshot,
) -> (
    Option<grace::PendingGrace>,
    Option<crate::fleet::login::Snapshot>,
) {
    if !grace::in_grace(policy, &snapshot.state.login, key.id, now) {
        return (None, Some(snapshot));
    }
    if !key.deferred {
        let mut st = snapshot.state.login;
        return (grace::use_grace(policy, key, now, &mut st), Some(snapshot));
    }
    match fleet.settle(user, snapshot, |_, st| {
        grace::use_grace(policy, key, now, &mut st.login)
    }) {
        Ok((used, newer)) => (used, Some(newer)),
        Err(_) => (None, None),
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
    // No grace offline: only the fleet can take a mark out for good (see `grace`).
    let st = local_copy
        .state
        .transact(user, |st| *st)
        .unwrap_or_default();
    let (answer, now) = match ask_code(conv, policy, attempt, &record, &st, clock) {
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
