//! The login on the fleet (`[fleet] backend = "etcd"`): the record and the state live in etcd,
//! read together before the prompt and settled with one compare-and-swap after it
//! (`crate::fleet::login`).
//!
//! When etcd cannot be reached (`FleetError::Unavailable` only: never after a TLS or
//! permission failure) and `on_unavailable = "local"`, the login goes on with this host's local
//! copy of the records (refreshed by every online login and by `mfa-enroll fleet sync`) and its
//! local state ([`Files`], offline), with a note in the audit line that fleet-wide replay
//! protection and lockout are off. Offline, recovery codes are refused, there is no grace, and
//! a user the local copy does not know is denied even with `nullok` (the copy may be older than
//! the user's enrollment).
#![forbid(unsafe_code)]

use std::time::Instant;

use super::backend::{Backend, Before};
use super::files::Files;
use super::grace::{self, Key, PendingGrace};
use super::verify::{self, Effects};
use crate::decision::{Decision, Reason};
use crate::fleet::login::{Fleet, Snapshot};
use crate::fleet::state::{FleetState, recovery_id};
use crate::fleet::transport::Connector;
use crate::fleet::{FleetConfig, FleetError, OnUnavailable};
use crate::policy::Policy;
use crate::state::hotp_tag;
use crate::state::{FileStateStore, UserState};
use crate::store::{SaveMode, Store, UserRecord};
use crate::user_name::UserName;

/// [`Backend`] on etcd, with the local copy behind it.
pub struct Etcd<'a> {
    policy: &'a Policy,
    config: &'a FleetConfig,
    connect: Connector,
    /// Connected at the first use (a failure is the login's denial).
    fleet: Option<Fleet>,
    /// What was read before the prompt, with its revisions (the compare of the settle).
    snapshot: Option<Snapshot>,
    /// The local copy; offline once etcd was found unreachable.
    local: Files<'a>,
}

impl<'a> Etcd<'a> {
    /// The fleet of `config` (`policy.fleet`), reached through `connect`.
    pub fn new(policy: &'a Policy, config: &'a FleetConfig, connect: Connector) -> Self {
        Self {
            policy,
            config,
            connect,
            fleet: None,
            snapshot: None,
            local: Files::new(policy),
        }
    }

    fn fleet(&mut self) -> Result<&Fleet, FleetError> {
        if self.fleet.is_none() {
            let fleet = Fleet::open(self.config, Some(&self.policy.state_dir), self.connect)?;
            self.fleet = Some(fleet);
        }
        self.fleet
            .as_ref()
            .ok_or_else(|| FleetError::LocalFile("no fleet connection (internal error)".into()))
    }

    fn local_allowed(&self) -> bool {
        self.config.on_unavailable == OnUnavailable::Local
    }
}

impl Backend for Etcd<'_> {
    fn read(&mut self, user: &UserName) -> Result<Before, Decision> {
        let local = self.local_allowed();
        let read = self.fleet().and_then(|fleet| fleet.read(user));
        let snapshot = match read {
            Ok(snapshot) => snapshot,
            Err(e) if local && e.is_unavailable() && self.fleet.is_some() => {
                self.local.go_offline(offline_note(&e));
                return self.local.read(user);
            }
            Err(e) => return Err(denial(&e)),
        };
        let note = if local {
            refresh_local_copy(self.local.store(), user, snapshot.record.as_ref())
        } else {
            None
        };
        let before = Before {
            record: snapshot.record.clone(),
            state: snapshot.state.login,
            note,
        };
        self.snapshot = Some(snapshot);
        Ok(before)
    }

    /// Immediate keys only read the snapshot; deferred ones take the mark out by
    /// compare-and-swap (see `grace`). When the fleet cannot be written the login goes on
    /// with the old snapshot and asks for the code.
    fn take_grace(&mut self, user: &UserName, key: Key, now: u64) -> Option<PendingGrace> {
        let policy = self.policy;
        let (Some(fleet), Some(snapshot)) = (&self.fleet, &self.snapshot) else {
            return None;
        };
        if !grace::in_grace(policy, &snapshot.state.login, key.id, now) {
            return None;
        }
        if !key.deferred {
            let mut st = snapshot.state.login;
            return grace::use_grace(policy, key, now, &mut st);
        }
        match fleet.settle(user, snapshot.clone(), |_, st| {
            grace::use_grace(policy, key, now, &mut st.login)
        }) {
            Ok((used, newer)) => {
                self.snapshot = Some(newer);
                used
            }
            Err(_) => None,
        }
    }

    fn settle(&mut self, user: &UserName, answer: &[u8], now: u64, grace: Option<Key>) -> Decision {
        if self.local.is_offline() {
            return self.local.settle(user, answer, now, grace);
        }
        let policy = self.policy;
        let (Some(fleet), Some(snapshot)) = (&self.fleet, self.snapshot.take()) else {
            return Decision::deny(Reason::Internal).with_detail("settle before read");
        };
        let started = Instant::now();
        let digits = snapshot.record.as_ref().map_or(6, |r| r.params.digits());
        // A recovery-shaped answer: Argon2 before the compare-and-swap, pacing after it.
        let pre = snapshot
            .record
            .as_ref()
            .and_then(|r| verify::precheck_recovery(r, policy, answer, now, &snapshot.state.login));
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
            let mut decision = verify::decide(
                current,
                policy,
                answer,
                now,
                login,
                &mut effects,
                pre.as_ref(),
            );
            grace::grant(policy, grace, &mut decision, now, login);
            decision
        });
        verify::pace_answer(answer, digits, started);
        match settled {
            Ok((decision, _)) => decision,
            Err(e) if self.local_allowed() && e.is_unavailable() => {
                self.local.go_offline(offline_note(&e));
                self.local.settle(user, answer, now, grace)
            }
            Err(e) => denial(&e),
        }
    }

    fn enrollment_store(&self) -> Option<(&Store, &FileStateStore)> {
        None
    }

    /// Gets only what is left of the login's etcd time (2 × `timeout_ms`, docs/fleet.md
    /// "Deadlines and memory"): authentication and setcred together never wait longer than a
    /// login may. When nothing is left, no grace period starts (the next login asks for a
    /// code).
    fn commit_grace(
        &mut self,
        user: &UserName,
        pending: PendingGrace,
        now: u64,
        login_started: Instant,
    ) -> Result<(), String> {
        let until = login_started + self.config.timeout.saturating_mul(2);
        if Instant::now() >= until {
            return Err("no time left of the login's etcd deadline (2 x timeout_ms)".into());
        }
        let fleet = self.fleet().map_err(|e| e.to_string())?;
        // The read and the compare-and-swap share what is left: setcred runs in sshd's
        // privileged monitor and must not stretch the login's etcd time.
        fleet
            .etcd
            .within_until(until, || {
                let snapshot = fleet.read(user)?;
                fleet.settle(user, snapshot, |_, st| {
                    grace::commit(pending, now, &mut st.login)
                })
            })
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
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
        _: &mut UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision> {
        let id = recovery_id(hash);
        if self.used_recovery.contains(&id) {
            return Ok(None);
        }
        self.used_recovery.push(id);
        Ok(Some((self.left, None)))
    }

    fn hotp_next(&self, record: &UserRecord, _: &UserState) -> u64 {
        // The snapshot's record already carries the fleet's counter (FleetState::apply_to).
        record.hotp.unwrap_or(0)
    }

    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut UserState,
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

/// The denial for a fleet error.
fn denial(e: &FleetError) -> Decision {
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
