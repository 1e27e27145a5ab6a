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
use super::choose::{Choice, Chooser};
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
use crate::state::{FileStateStore, Owner, UserState};
use crate::store::{AccountRecord, Store, UserRecord};
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
    /// What chose the token at the read (see `super::choose`).
    chooser: Option<Chooser>,
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
            chooser: None,
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
    fn read(&mut self, user: &UserName, chooser: &Chooser) -> Result<Before, Decision> {
        self.chooser = Some(chooser.clone());
        let local = self.local_allowed();
        let read = self
            .fleet()
            .and_then(|fleet| read_chosen(fleet, user, chooser));
        let snapshot = match read {
            Ok(snapshot) => snapshot,
            Err(e) if local && e.is_unavailable() && self.fleet.is_some() => {
                self.local.go_offline(offline_note(&e));
                return self.local.read(user, chooser);
            }
            Err(e) => return Err(denial(&e)),
        };
        let note = if local {
            refresh_local_copy(self.local.store(), user, snapshot.record.as_ref())
        } else {
            None
        };
        let shared = snapshot
            .record
            .as_ref()
            .is_some_and(AccountRecord::is_shared);
        let (record, unbound) = match snapshot.record.as_ref().map(|a| chooser.choose(a)) {
            None => (None, false),
            Some(Choice::Token(token)) if token.owner() == snapshot.owner => {
                (Some(token.clone()), false)
            }
            Some(Choice::Token(_)) => {
                return Err(Decision::deny(Reason::BackendError).with_detail(
                    "the record changed between the two reads of this login; log in again",
                ));
            }
            Some(Choice::Unbound) => (None, true),
        };
        let before = Before {
            record,
            unbound,
            shared,
            state: snapshot.state.login,
            note,
        };
        self.snapshot = Some(snapshot);
        Ok(before)
    }

    /// Immediate keys only read the snapshot; deferred ones take the mark out by
    /// compare-and-swap (see `grace`). When the fleet cannot be written the login goes on
    /// with the old snapshot and asks for the code.
    fn take_grace(&mut self, owner: &Owner, key: Key, now: u64) -> Option<PendingGrace> {
        let policy = self.policy;
        let (Some(fleet), Some(snapshot)) = (&self.fleet, &self.snapshot) else {
            return None;
        };
        if snapshot.owner != *owner {
            return None;
        }
        if !grace::in_grace(policy, &snapshot.state.login, key.id, now) {
            return None;
        }
        if !key.deferred {
            let mut st = snapshot.state.login;
            return grace::use_grace(policy, key, now, &mut st);
        }
        match fleet.settle(snapshot.clone(), |_, st| {
            grace::use_grace(policy, key, now, &mut st.login)
        }) {
            Ok((used, newer)) => {
                self.snapshot = Some(newer);
                used
            }
            Err(_) => None,
        }
    }

    fn settle(&mut self, owner: &Owner, answer: &[u8], now: u64, grace: Option<Key>) -> Decision {
        if self.local.is_offline() {
            return self.local.settle(owner, answer, now, grace);
        }
        let policy = self.policy;
        let (Some(fleet), Some(snapshot), Some(chooser)) =
            (&self.fleet, self.snapshot.take(), self.chooser.as_ref())
        else {
            return Decision::deny(Reason::Internal).with_detail("settle before read");
        };
        if snapshot.owner != *owner {
            return Decision::deny(Reason::Internal).with_detail("settle of another token");
        }
        let started = Instant::now();
        let token = snapshot
            .record
            .as_ref()
            .and_then(|a| a.token(owner.person()));
        let digits = token.map_or(6, |r| r.params.digits());
        // A recovery-shaped answer: Argon2 before the compare-and-swap, pacing after it.
        let pre = token
            .and_then(|r| verify::precheck_recovery(r, policy, answer, now, &snapshot.state.login));
        let settled = fleet.settle(
            snapshot,
            |record: Option<&AccountRecord>, st: &mut FleetState| {
                let Some(account) = record else {
                    return Decision::deny(Reason::NotEnrolled)
                        .with_detail("the enrollment was removed while the code was being typed");
                };
                let current = match chooser.again(account, owner) {
                    Ok(current) => current,
                    Err(denial) => return denial,
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
            },
        );
        verify::pace_answer(answer, digits, started);
        match settled {
            Ok((decision, _)) => decision,
            Err(e) if self.local_allowed() && e.is_unavailable() => {
                self.local.go_offline(offline_note(&e));
                self.local.settle(owner, answer, now, grace)
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
        owner: &Owner,
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
                let snapshot = fleet.read(owner)?;
                fleet.settle(snapshot, |_, st| grace::commit(pending, now, &mut st.login))
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
    record: Option<&AccountRecord>,
) -> Option<String> {
    let result = match record {
        Some(record) => match store.load_account(user) {
            Ok(local) if local == *record => Ok(()),
            _ => store.save_account(record),
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

/// Step 1 of a fleet login: the record with the state of the token `chooser` picks. The first
/// read fetches the account's own token's state; when the key chose a person's token, a
/// second read (within the same step deadline) fetches the record again with that token's
/// state, so that the settle compares that pair.
fn read_chosen(fleet: &Fleet, user: &UserName, chooser: &Chooser) -> Result<Snapshot, FleetError> {
    fleet.etcd.within(|| {
        // The account's own state, if unreadable, fails only a login that uses it: a person's
        // login on a shared account reads and settles that person's state alone (a host that
        // wrote garbage there must not lock every person out, where no unlock reaches).
        let (first, bad_state) = fleet.read_now_to_choose(&Owner::account(user))?;
        let owner = match first.record.as_ref().map(|a| chooser.choose(a)) {
            Some(Choice::Token(token)) => token.owner(),
            _ => return bad_state.map_or(Ok(first), Err),
        };
        if owner == first.owner {
            return bad_state.map_or(Ok(first), Err);
        }
        fleet.read_now(&owner)
    })
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
