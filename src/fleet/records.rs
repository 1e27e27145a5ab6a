//! Record administration against etcd (`mfa-enroll`): records are sealed here, with the
//! current fleet key, and written only with credentials that etcd RBAC allows to write them
//! (administrators; hosts may only read records).
#![forbid(unsafe_code)]

use std::time::Duration;

use super::FleetError;
use super::etcd::{Alarm, Cmp, MemberStatus, Op};
use super::login::Fleet;
use crate::state::{Owner, generation_after};
use crate::store::{AccountRecord, SaveMode, UserRecord};
use crate::user_name::UserName;

const MAX_ATTEMPTS: usize = 8;

/// What [`Fleet::save_record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written, with this generation (never below the stored record's).
    Written(u64),
    /// `CreateNew` and the user already has a record: nothing written.
    AlreadyEnrolled,
    /// A rule of shared accounts refuses the token (a key bound to another person, a second
    /// token bound to no key): why; nothing written.
    Refused(String),
    /// [`SaveMode::Reset`] and the token is no longer there (removed since the reset read
    /// it): nothing written.
    NoSuchToken,
}

/// How far beyond the record's counter an HOTP counter in the fleet state is folded into the
/// record (`fleet fold`, any admin write): far more than a token advances between two daily
/// folds (look-ahead 3 per login, resynchronisation at most 1000).
pub const MAX_HOTP_FOLD: u64 = 100_000;

impl Fleet {
    /// Seals `record` (one token) into its account's record and writes it: a new record,
    /// another person added, or the token of `record.person` replaced; the account's generation
    /// becomes `record.generation`. Compare-and-swap on the record key: two administrators
    /// enrolling at once give one enrollment, and neither loses the other's person. `CreateNew`
    /// never replaces a token (nor, for the account's own token, any record).
    pub fn save_record(&self, record: &UserRecord, mode: SaveMode) -> Result<Saved, FleetError> {
        let key = self.record_key(&record.user);
        for _ in 0..MAX_ATTEMPTS {
            let current = self.etcd.get(&key)?;
            let revision = current.as_ref().map_or(0, |kv| kv.mod_revision);
            let opened = current
                .as_ref()
                .map(|kv| self.open_record(&record.user, kv));
            let mut floor = 0;
            let mut account = match opened {
                None if matches!(mode, SaveMode::Reset { .. }) => return Ok(Saved::NoSuchToken),
                None => AccountRecord::single(record.clone()),
                Some(_) if mode == SaveMode::CreateNew && record.person.is_none() => {
                    return Ok(Saved::AlreadyEnrolled);
                }
                // An invalid record is replaced whole by the account's own token, as before.
                Some(Err(_)) if mode != SaveMode::CreateNew && record.person.is_none() => {
                    AccountRecord::single(record.clone())
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(mut account)) => {
                    floor = account.generation.saturating_add(1);
                    if mode == SaveMode::CreateNew
                        && account.token(record.person.as_ref()).is_some()
                    {
                        return Ok(Saved::AlreadyEnrolled);
                    }
                    let Ok(record) = crate::store::reset_onto(&account, record, mode) else {
                        return Ok(Saved::NoSuchToken);
                    };
                    if let Err(e) = account.put(record) {
                        return Ok(Saved::Refused(crate::store::refusal(e)));
                    }
                    account
                }
            };
            // Never below the stored record's (see `Store::save`).
            let generation = record.generation.max(floor);
            account.set_generation(generation);
            if self.put_record(&key, &account, revision)? {
                return Ok(Saved::Written(generation));
            }
        }
        Err(FleetError::Contention)
    }

    /// Seals and writes `account` if the record key is still at `revision` (0: absent).
    fn put_record(
        &self,
        key: &str,
        account: &AccountRecord,
        revision: i64,
    ) -> Result<bool, FleetError> {
        let text = account
            .to_toml()
            .map_err(|e| FleetError::BadValue(e.to_string()))?;
        let sealed = self.keys.seal(text.as_bytes(), key)?;
        let compare = [Cmp::ModRevision(key.to_string(), revision)];
        Ok(self
            .etcd
            .txn(&compare, &[Op::Put(key.to_string(), sealed)], &[])?
            .succeeded)
    }

    /// Reads the record with `owner`'s fleet state folded into its token (used recovery codes
    /// removed, HOTP counter moved: [`super::state::FleetState::apply_to`]), lets `change` edit
    /// that token and writes the record back if it differs from the stored value (so a `change`
    /// that does nothing still folds), with a generation one more than both the stored
    /// record's and the highest the state has seen; unless someone else changed it meanwhile
    /// (then again, on the current record). `None`: no such token; else the result and the
    /// generation written (`None`: unchanged).
    pub fn update_record<R>(
        &self,
        owner: &Owner,
        mut change: impl FnMut(&mut UserRecord) -> R,
    ) -> Result<Option<(R, Option<u64>)>, FleetError> {
        let user = owner.user();
        let key = self.record_key(user);
        for _ in 0..MAX_ATTEMPTS {
            let snapshot = self.read(owner)?;
            let Some(mut account) = snapshot.record else {
                return Ok(None);
            };
            let Some(kv) = self.etcd.get(&key)? else {
                return Ok(None);
            };
            if kv.mod_revision != snapshot.record_revision {
                continue;
            }
            let stored = self.open_record(user, &kv)?;
            let Some(token) = account.token_mut(owner.person()) else {
                return Ok(None);
            };
            // An HOTP counter the state moved implausibly far is not made permanent: fleet
            // hosts can write state (a forged counter locks the token out until the state is
            // repaired, never longer). Logins still use the higher one (fail closed).
            if let (Some(folded_next), Some(stored_next)) = (
                token.hotp,
                stored.token(owner.person()).and_then(|t| t.hotp),
            ) && folded_next > stored_next.saturating_add(MAX_HOTP_FOLD)
            {
                token.hotp = Some(stored_next);
            }
            let result = change(token);
            if account == stored {
                return Ok(Some((result, None)));
            }
            let generation =
                generation_after(stored.generation, snapshot.state.login.trusted_generation());
            account.set_generation(generation);
            if self.put_record(&key, &account, snapshot.record_revision)? {
                return Ok(Some((result, Some(generation))));
            }
        }
        Err(FleetError::Contention)
    }

    /// Lets `change` edit `user`'s whole record (add, move or remove people and keys; an
    /// `Err` writes nothing) and writes it back by compare-and-swap with a generation one more
    /// than the stored one and `seen` (the highest the states have seen). No token left
    /// deletes the record. `None`: not enrolled; else the result and the generation written.
    pub fn update_account<R>(
        &self,
        user: &UserName,
        seen: u64,
        mut change: impl FnMut(&mut AccountRecord) -> Result<R, FleetError>,
    ) -> Result<Option<(R, Option<u64>)>, FleetError> {
        let key = self.record_key(user);
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.etcd.get(&key)? else {
                return Ok(None);
            };
            let stored = self.open_record(user, &kv)?;
            let mut account = stored.clone();
            let result = change(&mut account)?;
            if account == stored {
                return Ok(Some((result, None)));
            }
            if account.tokens.is_empty() {
                let compare = [Cmp::ModRevision(key.clone(), kv.mod_revision)];
                if self
                    .etcd
                    .txn(&compare, &[Op::Delete(key.clone())], &[])?
                    .succeeded
                {
                    return Ok(Some((result, None)));
                }
                continue;
            }
            let generation = generation_after(stored.generation, seen);
            account.set_generation(generation);
            if self.put_record(&key, &account, kv.mod_revision)? {
                return Ok(Some((result, Some(generation))));
            }
        }
        Err(FleetError::Contention)
    }

    /// Deletes `user`'s record; `false` if there was none. The state stays (its replay mark
    /// keeps used codes used if the same secret is imported again).
    pub fn remove_record(&self, user: &UserName) -> Result<bool, FleetError> {
        let key = self.record_key(user);
        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.etcd.get(&key)? else {
                return Ok(false);
            };
            let compare = [Cmp::ModRevision(key.clone(), kv.mod_revision)];
            if self
                .etcd
                .txn(&compare, &[Op::Delete(key.clone())], &[])?
                .succeeded
            {
                return Ok(true);
            }
        }
        Err(FleetError::Contention)
    }

    /// Whether `user` has a record (valid or not: nothing is opened).
    pub fn has_record(&self, user: &UserName) -> Result<bool, FleetError> {
        Ok(self.etcd.get(&self.record_key(user))?.is_some())
    }

    /// Every user with a record (keys only: nothing is opened).
    pub fn enrolled_users(&self) -> Result<Vec<UserName>, FleetError> {
        let prefix = format!("{}records/", self.prefix());
        let answer = self.etcd.txn(
            &[],
            &[Op::Prefix {
                prefix: prefix.clone(),
                keys_only: true,
            }],
            &[],
        )?;
        let mut users: Vec<UserName> = answer
            .reads
            .into_iter()
            .flatten()
            .filter_map(|kv| UserName::parse(kv.key.strip_prefix(&prefix)?).ok())
            .collect();
        users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(users)
    }

    /// Every sealed record value under the prefix, with its key (for `fleet status`, rotation).
    pub fn record_values(&self) -> Result<Vec<super::etcd::Kv>, FleetError> {
        let prefix = format!("{}records/", self.prefix());
        let answer = self.etcd.txn(
            &[],
            &[Op::Prefix {
                prefix,
                keys_only: false,
            }],
            &[],
        )?;
        Ok(answer.reads.into_iter().flatten().collect())
    }
}

impl Fleet {
    /// Seals again, with the current fleet key, every record sealed with an older one (the
    /// last step of a key rotation). Returns (resealed, already current). A record changed
    /// meanwhile is left to the next run (compare-and-swap), never overwritten.
    pub fn reseal_all(&self) -> Result<(usize, usize), FleetError> {
        let current = self.keys.current().id_hex();
        let (mut resealed, mut current_already) = (0, 0);
        for kv in self.record_values()? {
            if super::seal::sealed_with(&kv.value).as_deref() == Some(current.as_str()) {
                current_already += 1;
                continue;
            }
            let Some(name) = kv.key.strip_prefix(&format!("{}records/", self.prefix())) else {
                continue;
            };
            let user = UserName::parse(name)
                .map_err(|e| FleetError::BadValue(format!("{}: {e}", kv.key)))?;
            let record = self.open_record(&user, &kv)?;
            let text = record
                .to_toml()
                .map_err(|e| FleetError::BadValue(e.to_string()))?;
            let sealed = self.keys.seal(text.as_bytes(), &kv.key)?;
            let compare = [Cmp::ModRevision(kv.key.clone(), kv.mod_revision)];
            if self
                .etcd
                .txn(&compare, &[Op::Put(kv.key.clone(), sealed)], &[])?
                .succeeded
            {
                resealed += 1;
            }
        }
        Ok((resealed, current_already))
    }
}

impl Fleet {
    /// Replaces `owner`'s state value with a fresh one whose replay mark is `now` (so the code of
    /// the current step stays refused): what `mfa-enroll unlock` does with a state value that
    /// is not ecs-mfa's (hosts can write state; a broken or hostile value must not lock a user
    /// out for good). The list of used recovery codes goes with it, so the caller must tell the
    /// administrator to issue new recovery codes (`mfa-enroll recovery`).
    pub fn replace_state(&self, owner: &Owner, now: u64) -> Result<(), FleetError> {
        let mut state = super::state::FleetState::default();
        state.login.last_accepted = now;
        self.etcd
            .txn(
                &[],
                &[Op::Put(self.state_key(owner), state.to_text().into_bytes())],
                &[],
            )
            .map(|_| ())
    }
}

/// The cluster's health, for `fleet status` and `doctor` (never a login): the CLI asks the
/// fleet, not its etcd client.
impl Fleet {
    /// `endpoint`'s status and how long it took to answer ([`super::etcd::Etcd::member_status`]).
    pub fn member_status(&self, endpoint: &str) -> Result<(MemberStatus, Duration), FleetError> {
        self.etcd.member_status(endpoint)
    }

    /// The cluster's alarms ([`super::etcd::Etcd::alarms`]).
    pub fn alarms(&self) -> Result<Vec<Alarm>, FleetError> {
        self.etcd.alarms()
    }

    /// The oldest revision of `<prefix>records/` that `endpoint` can still read, 1 when the
    /// history was never compacted ([`super::etcd::Etcd::oldest_revision`]; records are what
    /// every host may read, so host credentials do).
    pub fn oldest_revision(&self, endpoint: &str, current: i64) -> Result<i64, FleetError> {
        let records = format!("{}records/", self.prefix());
        self.etcd.oldest_revision(endpoint, &records, current)
    }
}
