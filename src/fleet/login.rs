//! What one login (and every state change) does against etcd: one read, then one
//! compare-and-swap.
//!
//! 1. Before the prompt, one transaction reads `records/<user>` and `state/<user>` together
//!    (linearizable: a minority node cannot answer it). On a shared account whose key chose a
//!    person's token, a second one reads the record with that token's `state/<user>~<person>`
//!    (within the same deadline); the settle compares that pair.
//! 2. After the code is typed, the decision is made on that snapshot and committed with one
//!    transaction whose compares are the `mod_revision`s of *both* keys: if an administrator
//!    changed the record, or another host changed the state (the same code on two hosts at
//!    once, failures counted elsewhere), the compare fails, the failure branch returns both
//!    current values, and the decision is made again on them. Two hosts racing on one code:
//!    exactly one commit succeeds; the other re-decides and sees a replay.
//!
//! So a TOTP login costs two round trips when nothing races, and nothing ever decides on a
//! stale record or state.
//!
//! Time: each of the two steps has one deadline, `timeout_ms`, for all it does (endpoints,
//! token refresh, and for step 2 every compare-and-swap retry): a login waits at most
//! 2 × `timeout_ms` for etcd, whatever the servers do (docs/fleet.md, "Deadlines and memory").
#![forbid(unsafe_code)]

use std::path::Path;

use zeroize::Zeroizing;

use super::etcd::{Cmp, Etcd, Kv, Op};
use super::seal::FleetKeys;
use super::state::FleetState;
use super::transport::Connector;
use super::{FleetConfig, FleetError};
use crate::state::Owner;
use crate::store::AccountRecord;
use crate::user_name::UserName;

/// Compare-and-swap attempts before a login gives up (each one lost to another writer).
const MAX_ATTEMPTS: usize = 8;

/// A connection to the fleet: the etcd client, the fleet key(s) and the key prefix.
pub struct Fleet {
    /// The client.
    pub etcd: Etcd,
    /// Opens (and, for administrators, seals) records.
    pub keys: FleetKeys,
    prefix: String,
}

/// One account's record and one token's state as read together, with their revisions.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Whose state this is (the account's own token, or a person's on a shared account).
    pub owner: Owner,
    /// The record, with the recovery codes the owner's token already used removed; `None`:
    /// not enrolled.
    pub record: Option<AccountRecord>,
    /// `mod_revision` of the record key (0: absent).
    pub record_revision: i64,
    /// The state (default when absent).
    pub state: FleetState,
    /// `mod_revision` of the state key (0: absent).
    pub state_revision: i64,
}

impl Fleet {
    /// Connects with the host's credentials from `config` (`token_cache` and `connect`: see
    /// [`Etcd::new`]).
    pub fn open(
        config: &FleetConfig,
        token_cache: Option<&Path>,
        connect: Connector,
    ) -> Result<Self, FleetError> {
        Ok(Self {
            keys: FleetKeys::load(&config.fleet_key_file)?,
            etcd: Etcd::new(config, token_cache, connect)?,
            prefix: config.prefix.clone(),
        })
    }

    /// Connects as another etcd RBAC user (an administrator).
    pub fn open_as(
        config: &FleetConfig,
        user: &str,
        password: Zeroizing<String>,
        connect: Connector,
    ) -> Result<Self, FleetError> {
        Ok(Self {
            keys: FleetKeys::load(&config.fleet_key_file)?,
            etcd: Etcd::with_user(config, user, password, connect)?,
            prefix: config.prefix.clone(),
        })
    }

    /// A fleet handle from parts (tests, `fleet init`).
    pub fn from_parts(etcd: Etcd, keys: FleetKeys, prefix: &str) -> Self {
        Self {
            etcd,
            keys,
            prefix: prefix.to_string(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>records/<user>`.
    pub fn record_key(&self, user: &UserName) -> String {
        format!("{}records/{user}", self.prefix)
    }

    /// `<prefix>state/<user>` (the account's own token) or `<prefix>state/<user>~<person>`.
    pub fn state_key(&self, owner: &Owner) -> String {
        format!("{}state/{}", self.prefix, owner.stem())
    }

    /// Step 1: the record of the account and the state of `owner`'s token, in one round trip.
    pub fn read(&self, owner: &Owner) -> Result<Snapshot, FleetError> {
        let answer = self
            .etcd
            .within(|| self.etcd.txn(&[], &self.reads(owner), &[]))?;
        self.snapshot(owner, answer.reads)
    }

    /// [`Self::read`] for an administrator's command that needs the record, not the state: a
    /// state value that is not ecs-mfa's (hosts can write state) is taken as none, so that
    /// it never makes the record unreadable to `show`, `status`, `remove`, `unlock` (which then
    /// replaces that value), `fleet sync` or `fleet fold`. A bad record is still an error.
    pub fn read_record(&self, owner: &Owner) -> Result<Snapshot, FleetError> {
        let answer = self
            .etcd
            .within(|| self.etcd.txn(&[], &self.reads(owner), &[]))?;
        self.snapshot_of(owner, answer.reads, true).map(|(s, _)| s)
    }

    /// [`Self::read_now`] for choosing a token (step 1 of a login, the account's own state):
    /// a state value that is not ecs-mfa's is taken as none and its error returned beside the
    /// snapshot; the login fails with it only if it then uses that state (the account's own
    /// token was chosen), never a person's login on a shared account.
    pub fn read_now_to_choose(
        &self,
        owner: &Owner,
    ) -> Result<(Snapshot, Option<FleetError>), FleetError> {
        let answer = self.etcd.txn(&[], &self.reads(owner), &[])?;
        self.snapshot_of(owner, answer.reads, true)
    }

    /// [`Self::read`] without a deadline of its own: the caller's `within` covers it (a
    /// second read of the same login step, for a person's token chosen by the first).
    pub fn read_now(&self, owner: &Owner) -> Result<Snapshot, FleetError> {
        let answer = self.etcd.txn(&[], &self.reads(owner), &[])?;
        self.snapshot(owner, answer.reads)
    }

    /// Step 2: runs `decide` on the snapshot and commits the state it leaves, if the record and
    /// state are still what was read; otherwise decides again on the current values. Returns
    /// the decision that was committed and the snapshot it was made on. All attempts share one
    /// deadline (`timeout_ms`); when it passes after a lost compare, the answer is
    /// [`FleetError::Contention`] (etcd answered: never a fallback to the local copy).
    pub fn settle<R>(
        &self,
        snapshot: Snapshot,
        decide: impl FnMut(Option<&AccountRecord>, &mut FleetState) -> R,
    ) -> Result<(R, Snapshot), FleetError> {
        self.etcd.within(|| self.settle_within(snapshot, decide))
    }

    /// [`Self::settle`] without a deadline of its own (the caller's `within` covers it).
    pub fn settle_within<R>(
        &self,
        mut snapshot: Snapshot,
        mut decide: impl FnMut(Option<&AccountRecord>, &mut FleetState) -> R,
    ) -> Result<(R, Snapshot), FleetError> {
        let owner = snapshot.owner.clone();
        let user = owner.user();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 && self.etcd.deadline_passed() {
                break;
            }
            let mut state = snapshot.state.clone();
            let result = decide(snapshot.record.as_ref(), &mut state);
            let write = if state == snapshot.state {
                Vec::new()
            } else {
                vec![Op::Put(
                    self.state_key(&owner),
                    state.to_text().into_bytes(),
                )]
            };
            let compare = [
                Cmp::ModRevision(self.record_key(user), snapshot.record_revision),
                Cmp::ModRevision(self.state_key(&owner), snapshot.state_revision),
            ];
            let answer = match self.etcd.txn(&compare, &write, &self.reads(&owner)) {
                Ok(answer) => answer,
                // etcd answered an earlier attempt: running out of time now is not an outage.
                Err(e) if attempt > 0 && self.etcd.deadline_passed() && e.is_unavailable() => {
                    return Err(FleetError::Contention);
                }
                Err(e) => return Err(e),
            };
            if answer.succeeded {
                snapshot.state = state;
                return Ok((result, snapshot));
            }
            snapshot = self.snapshot(&owner, answer.reads)?;
        }
        Err(FleetError::Contention)
    }

    fn reads(&self, owner: &Owner) -> [Op; 2] {
        [
            Op::Get(self.record_key(owner.user())),
            Op::Get(self.state_key(owner)),
        ]
    }

    fn snapshot(&self, owner: &Owner, reads: Vec<Vec<Kv>>) -> Result<Snapshot, FleetError> {
        self.snapshot_of(owner, reads, false).map(|(s, _)| s)
    }

    /// `bad_state_as_none`: see [`Self::read_record`] (the state's error, if any, comes back
    /// beside the snapshot).
    fn snapshot_of(
        &self,
        owner: &Owner,
        reads: Vec<Vec<Kv>>,
        bad_state_as_none: bool,
    ) -> Result<(Snapshot, Option<FleetError>), FleetError> {
        let mut bad_state = None;
        let mut reads = reads.into_iter();
        let record_kv = reads.next().and_then(|r| r.into_iter().next());
        let state_kv = reads.next().and_then(|r| r.into_iter().next());
        let (mut state, state_revision) = match state_kv {
            Some(kv) => match FleetState::parse(&kv.value, &kv.key) {
                Ok(state) => (state, kv.mod_revision),
                Err(e) if bad_state_as_none => {
                    bad_state = Some(e);
                    (FleetState::default(), kv.mod_revision)
                }
                Err(e) => return Err(e),
            },
            None => (FleetState::default(), 0),
        };
        let (record, record_revision) = match record_kv {
            Some(kv) => {
                let mut record = self.open_record(owner.user(), &kv)?;
                if let Some(token) = record.token_mut(owner.person()) {
                    state.apply_to(token);
                }
                (Some(record), kv.mod_revision)
            }
            None => (None, 0),
        };
        let snapshot = Snapshot {
            owner: owner.clone(),
            record,
            record_revision,
            state,
            state_revision,
        };
        Ok((snapshot, bad_state))
    }

    /// Opens and parses a record value read from `kv.key`.
    pub fn open_record(&self, user: &UserName, kv: &Kv) -> Result<AccountRecord, FleetError> {
        let plain = self.keys.open(&kv.value, &kv.key)?;
        AccountRecord::parse(&plain, user)
            .map_err(|e| FleetError::BadValue(format!("{}: {e}", kv.key)))
    }
}
