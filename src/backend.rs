//! Where enrollments and login state live, behind one interface for `mfa-enroll`: local files
//! (the default) or the fleet (etcd, `[fleet] backend = "etcd"`). The module's login flow has
//! its own seam (`login::backend`); administration goes through here, so every command works
//! the same against either backend.
#![forbid(unsafe_code)]

use std::fmt;

use zeroize::Zeroizing;

use crate::fleet::login::Fleet;
use crate::fleet::records::Saved;
use crate::fleet::{FleetError, transport};
use crate::policy::Policy;
use crate::state::{FileStateStore, Owner, StateError, StateStore, UserState, generation_after};
use crate::store::{AccountRecord, SaveMode, Store, StoreError, UserRecord, pick};
use crate::user_name::{Person, UserName};

/// Why a backend operation failed: the records, the login state, or the fleet under either.
/// The layers below (`store`, `state`) know nothing of the fleet; the choice of backend, and
/// so this union, lives here.
#[derive(Debug)]
pub enum Error {
    /// The local record store.
    Store(StoreError),
    /// The local state files.
    State(StateError),
    /// The fleet, reading or writing records (or any other fleet operation).
    Fleet(FleetError),
    /// The fleet, reading or writing a user's login state (shown as `state: ...`, like a
    /// local state error).
    FleetState(FleetError),
    /// An administrator's change that a rule refuses (a key bound to another person, a key
    /// that is not bound): why, naming people and keys only.
    Refused(String),
}

impl Error {
    /// The fleet's error, if the fleet failed (records or state).
    pub fn fleet(&self) -> Option<&FleetError> {
        match self {
            Self::Fleet(e) | Self::FleetState(e) => Some(e),
            Self::Store(_) | Self::State(_) | Self::Refused(_) => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

impl From<FleetError> for Error {
    fn from(e: FleetError) -> Self {
        Self::Fleet(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(e) => e.fmt(f),
            Self::State(e) => e.fmt(f),
            Self::Fleet(e) => e.fmt(f),
            Self::FleetState(e) => write!(f, "state: {e}"),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

const NOT_ENROLLED: Error = Error::Store(StoreError::NotEnrolled);

/// The enrollment records of this host (files) or of the fleet.
pub enum Enrollments {
    /// `<store>/<user>.toml`.
    Files(Store),
    /// `<prefix>records/<user>` in etcd.
    Fleet(Box<Fleet>),
}

impl Enrollments {
    /// The backend `policy` names. `admin`: etcd RBAC credentials to use instead of the host's
    /// (writing records needs them when RBAC is on).
    pub fn for_policy(
        policy: &Policy,
        admin: Option<(&str, Zeroizing<String>)>,
    ) -> Result<Self, FleetError> {
        let Some(config) = &policy.fleet else {
            return Ok(Self::Files(Store::new(&policy.store_dir)));
        };
        let fleet = match admin {
            Some((user, password)) => Fleet::open_as(config, user, password, transport::native)?,
            None => Fleet::open(config, None, transport::native)?,
        };
        Ok(Self::Fleet(Box::new(fleet)))
    }

    /// Where `user`'s record lives, for messages.
    pub fn location(&self, user: &UserName) -> String {
        match self {
            Self::Files(store) => store.record_path(user).display().to_string(),
            Self::Fleet(fleet) => format!("etcd key {}", fleet.record_key(user)),
        }
    }

    /// The fleet, for the fleet-only commands (`fleet status`, `fleet reseal`, doctor's
    /// fleet checks); `None` on local files.
    pub fn fleet(&self) -> Option<&Fleet> {
        match self {
            Self::Files(_) => None,
            Self::Fleet(fleet) => Some(fleet),
        }
    }

    /// Loads `user`'s whole record (every token, as stored).
    pub fn load_account(&self, user: &UserName) -> Result<AccountRecord, Error> {
        match self {
            Self::Files(store) => Ok(store.load_account(user)?),
            // A host-written state value never makes the record unreadable here.
            Self::Fleet(fleet) => fleet
                .read_record(&Owner::account(user))?
                .record
                .ok_or(NOT_ENROLLED),
        }
    }

    /// Loads the token of `person` on `user` (no person: the account's only token; see
    /// [`crate::store::pick`]). Fleet: with the recovery codes that token used removed (all of
    /// them still there when its state value is not ecs-mfa's: `unlock` replaces that).
    pub fn load_token(
        &self,
        user: &UserName,
        person: Option<&Person>,
    ) -> Result<UserRecord, Error> {
        match self {
            Self::Files(store) => Ok(store.load_token(user, person)?),
            Self::Fleet(fleet) => {
                let account = self.load_account(user)?;
                let owner = pick(&account, person)?.owner();
                let snapshot = fleet.read_record(&owner)?;
                let account = snapshot.record.ok_or(NOT_ENROLLED)?;
                Ok(pick(&account, owner.person())?.clone())
            }
        }
    }

    /// Loads `user`'s only token (an account with several people: name one, see
    /// [`Self::load_token`]).
    pub fn load(&self, user: &UserName) -> Result<UserRecord, Error> {
        self.load_token(user, None)
    }

    /// Saves a token as an administrator ([`SaveMode::CreateNew`] never replaces one): a new
    /// secret (enroll, reset, import, fleet push), for the account or for one person on it.
    /// The record's generation becomes one more than both the current record's and the highest
    /// any of its tokens' login states has seen (so a record rolled back before this write
    /// works again, and every older value stays refused), the token's state remembers it, and
    /// forgets what belonged to the old secret (failures, grace periods, used recovery codes:
    /// [`UserState::replace_secret`]).
    pub fn save(&self, policy: &Policy, record: &UserRecord, mode: SaveMode) -> Result<(), Error> {
        let states = self.states(policy);
        let mut record = record.clone();
        // Above what this token's own state has seen too: a person enrolled again after the
        // record was removed (the last person removed) has a state that outlived the record,
        // and the record's other tokens no longer name it.
        let own = states
            .transact(&record.owner(), |st| st.trusted_generation())
            .unwrap_or(0);
        let seen = self.highest_generation(&states, &record.user).max(own);
        let current = self.raw_generation(&record.user).unwrap_or(0);
        record.generation = generation_after(current, seen);
        record.generation = match self {
            Self::Files(store) => store.save(&record, mode)?,
            Self::Fleet(fleet) => match fleet.save_record(&record, mode)? {
                Saved::Written(generation) => generation,
                Saved::AlreadyEnrolled => return Err(StoreError::AlreadyEnrolled.into()),
                Saved::Refused(why) => return Err(StoreError::Refused(why).into()),
                Saved::NoSuchToken => {
                    return Err(match &record.person {
                        Some(person) => StoreError::NoSuchPerson(person.to_string()).into(),
                        None => NOT_ENROLLED,
                    });
                }
            },
        };
        self.remember_written(&states, &record.owner(), record.generation, true);
        Ok(())
    }

    /// Edits one token as an administrator; never loses a concurrent change (files: under the
    /// store lock; fleet: compare-and-swap, `change` may run again on the newer record).
    /// `change` sees the token with what logins recorded in its state folded in (used
    /// recovery codes removed, HOTP counter moved), and that is written too (see
    /// [`Enrollments::fold`]). A write raises the generation (see [`Enrollments::save`]).
    pub fn update<R>(
        &self,
        policy: &Policy,
        owner: &Owner,
        mut change: impl FnMut(&mut UserRecord) -> R,
    ) -> Result<R, Error> {
        let states = self.states(policy);
        let user = owner.user();
        let (result, written) = match self {
            Self::Files(store) => {
                let st = states.transact(owner, |st| *st).unwrap_or_default();
                let seen = self.highest_generation(&states, user);
                // One write: the token's change and the file's new generation together.
                store.update_account(user, |account| {
                    let before = account.clone();
                    let token = account
                        .token_mut(owner.person())
                        .ok_or_else(|| StoreError::NoSuchPerson(person_name(owner)))?;
                    st.fold_into(token);
                    let result = change(token);
                    let mut written = None;
                    if *account != before {
                        let generation = generation_after(before.generation, seen);
                        account.set_generation(generation);
                        written = Some(generation);
                    }
                    Ok((result, written))
                })?
            }
            Self::Fleet(fleet) => fleet
                .update_record(owner, &mut change)?
                .ok_or(NOT_ENROLLED)?,
        };
        if let Some(generation) = written {
            self.remember_written(&states, owner, generation, false);
        }
        Ok(result)
    }

    /// Edits `user`'s whole record as an administrator (people and keys: add, move, remove;
    /// `Err` writes nothing). A write raises the generation; no token left removes the record.
    /// A change that breaks the record's rules (a 33rd key, a key bound twice) is refused
    /// here, as the change it is, before either backend would call the result an invalid
    /// record; the record stays as it was.
    pub fn update_account<R>(
        &self,
        policy: &Policy,
        user: &UserName,
        mut change: impl FnMut(&mut AccountRecord) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let states = self.states(policy);
        let seen = self.highest_generation(&states, user);
        let mut failure = None;
        let mut run = |account: &mut AccountRecord| {
            let before = account.clone();
            let outcome = change(account).and_then(|result| {
                if account.tokens.is_empty() {
                    return Ok(result);
                }
                account
                    .check()
                    .map(|()| result)
                    .map_err(|e| Error::Refused(crate::store::refusal(e)))
            });
            match outcome {
                Ok(result) => Some(result),
                Err(e) => {
                    // Both backends then write nothing: the account is as it was read.
                    *account = before;
                    failure = Some(e);
                    None
                }
            }
        };
        let outcome = match self {
            Self::Files(store) => store.update_account(user, |account| {
                let before = account.clone();
                let Some(result) = run(account) else {
                    return Ok(None);
                };
                if *account != before && !account.tokens.is_empty() {
                    let generation = generation_after(before.generation, seen);
                    account.set_generation(generation);
                    return Ok(Some((result, Some(generation))));
                }
                Ok(Some((result, None)))
            })?,
            Self::Fleet(fleet) => {
                match fleet.update_account(user, seen, |account| Ok(run(account)))? {
                    None => return Err(NOT_ENROLLED),
                    Some((result, generation)) => result.map(|r| (r, generation)),
                }
            }
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let (result, generation) = outcome.ok_or(NOT_ENROLLED)?;
        if let Some(generation) = generation {
            self.remember_written(&states, &Owner::account(user), generation, false);
        }
        Ok(result)
    }

    /// Folds what logins recorded in the state into `user`'s record, token by token (an
    /// administrator's write: hosts cannot write fleet records): used recovery codes leave the
    /// record, an HOTP counter moves forward. Once folded, erasing the state (a compromised
    /// fleet host can) no longer revives them. `true` if the record was written.
    ///
    /// Every token is folded even when one fails (a person's state a host made unreadable
    /// must not keep the others' used codes out of the record: what a fold bounds); the
    /// first failure is returned after. A token removed meanwhile has nothing to fold.
    pub fn fold(&self, policy: &Policy, user: &UserName) -> Result<bool, Error> {
        let before = self.raw_generation(user);
        let mut failure = None;
        for token in self.load_account(user)?.tokens {
            match self.update(policy, &token.owner(), |_| ()) {
                Ok(())
                | Err(Error::Store(StoreError::NotEnrolled | StoreError::NoSuchPerson(_))) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(self.raw_generation(user) != before),
        }
    }

    fn raw_generation(&self, user: &UserName) -> Option<u64> {
        self.load_account(user).ok().map(|r| r.generation)
    }

    /// The account's own token and every person's on `user`'s record (each has a state).
    fn owners(&self, user: &UserName) -> Vec<Owner> {
        let mut owners = vec![Owner::account(user)];
        if let Ok(account) = self.load_account(user) {
            owners.extend(account.tokens.iter().map(UserRecord::owner));
        }
        owners.dedup();
        owners
    }

    /// The highest generation any token's login state of `user` has seen.
    fn highest_generation(&self, states: &States<'_>, user: &UserName) -> u64 {
        self.owners(user)
            .iter()
            .filter_map(|owner| states.transact(owner, |st| st.trusted_generation()).ok())
            .max()
            .unwrap_or(0)
    }

    /// After an administrator's write of `owner`'s record with `generation`: the token's state
    /// remembers it (the value just replaced is refused at once) and, with `new_secret`,
    /// forgets what belonged to the old secret; every other token's state of the account that
    /// has seen a higher generation (forged: the write did not follow it, see
    /// [`generation_after`]) is put right, or that person's logins would stay refused. Best
    /// effort: a login that reads the record remembers it too.
    fn remember_written(
        &self,
        states: &States<'_>,
        owner: &Owner,
        generation: u64,
        new_secret: bool,
    ) {
        let _ = states.transact(owner, |st| {
            st.remember_written(generation);
            if new_secret {
                st.replace_secret();
            }
        });
        for other in self.owners(owner.user()) {
            if other != *owner {
                let _ = states.transact(&other, |st| {
                    if st.trusted_generation() > generation {
                        st.remember_written(generation);
                    }
                });
            }
        }
    }

    /// Removes `user`'s record (every token).
    pub fn remove(&self, user: &UserName) -> Result<(), Error> {
        match self {
            Self::Files(store) => Ok(store.remove(user)?),
            Self::Fleet(fleet) => match fleet.remove_record(user)? {
                true => Ok(()),
                false => Err(NOT_ENROLLED),
            },
        }
    }

    /// Whether `user` has a record (valid or not).
    pub fn is_enrolled(&self, user: &UserName) -> Result<bool, Error> {
        match self {
            Self::Files(store) => Ok(store.is_enrolled(user)?),
            Self::Fleet(fleet) => Ok(fleet.has_record(user)?),
        }
    }

    /// Users with a record (files: every `*.toml` name in the store that is a valid name).
    pub fn enrolled_users(&self) -> Result<Vec<UserName>, Error> {
        match self {
            Self::Files(store) => {
                let mut users: Vec<UserName> = match std::fs::read_dir(store.dir()) {
                    Ok(entries) => entries
                        .flatten()
                        .filter_map(|e| {
                            let name = e.file_name();
                            UserName::parse(name.to_str()?.strip_suffix(".toml")?).ok()
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                users.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                Ok(users)
            }
            Self::Fleet(fleet) => Ok(fleet.enrolled_users()?),
        }
    }

    /// Replaces `user`'s fleet state value with a fresh one (its replay mark at `now`): for a
    /// value that is not ecs-mfa's ([`FleetError::BadValue`]). `false` on local files, whose
    /// corrupt state files are reported, not replaced.
    pub fn replace_fleet_state(&self, owner: &Owner, now: u64) -> Result<bool, Error> {
        match self {
            Self::Files(_) => Ok(false),
            Self::Fleet(fleet) => {
                fleet.replace_state(owner, now)?;
                Ok(true)
            }
        }
    }

    /// The login state that goes with these records.
    pub fn states<'a>(&'a self, policy: &Policy) -> States<'a> {
        match self {
            Self::Files(_) => States::Files(FileStateStore::new(&policy.state_dir)),
            Self::Fleet(fleet) => States::Fleet(fleet),
        }
    }
}

/// The person of `owner` for a message (empty: the account's own token).
fn person_name(owner: &Owner) -> String {
    owner.person().map_or_else(String::new, ToString::to_string)
}

/// Login state: local files, or `<prefix>state/<stem>` in etcd (see [`Owner::stem`]).
pub enum States<'a> {
    /// `<state>/<user>.state`.
    Files(FileStateStore),
    /// The fleet's state, changed with compare-and-swap.
    Fleet(&'a Fleet),
}

impl States<'_> {
    /// [`StateStore::transact`] on either backend: files under the user's state lock, the
    /// fleet by compare-and-swap (`decide` may run again on a newer value).
    pub fn transact<R>(
        &self,
        owner: &Owner,
        mut decide: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, Error> {
        match self {
            Self::Files(files) => Ok(files.transact(owner, decide)?),
            Self::Fleet(fleet) => {
                let snapshot = fleet.read(owner).map_err(Error::FleetState)?;
                fleet
                    .settle(snapshot, |_, st| decide(&mut st.login))
                    .map(|(result, _)| result)
                    .map_err(Error::FleetState)
            }
        }
    }
}
