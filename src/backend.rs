//! Where enrollments and login state live, behind one interface for `mfa-enroll`: local files
//! (the default) or the fleet (etcd, `[fleet] backend = "etcd"`). The module's login flow has
//! its own fleet path (`auth_fleet`); administration goes through here, so every command works
//! the same against either backend.
#![forbid(unsafe_code)]

use zeroize::Zeroizing;

use crate::fleet::login::Fleet;
use crate::fleet::records::Saved;
use crate::fleet::{FleetError, transport};
use crate::policy::Policy;
use crate::state::{FileStateStore, StateError, StateStore, UserState};
use crate::store::{SaveMode, Store, StoreError, UserRecord};
use crate::user_name::UserName;

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

    /// Loads `user`'s record (fleet: with the recovery codes already used removed).
    pub fn load(&self, user: &UserName) -> Result<UserRecord, StoreError> {
        match self {
            Self::Files(store) => store.load(user),
            Self::Fleet(fleet) => fleet
                .read(user)
                .map_err(StoreError::Fleet)?
                .record
                .ok_or(StoreError::NotEnrolled),
        }
    }

    /// Saves a record ([`SaveMode::CreateNew`] never replaces one).
    pub fn save(&self, record: &UserRecord, mode: SaveMode) -> Result<(), StoreError> {
        match self {
            Self::Files(store) => store.save(record, mode),
            Self::Fleet(fleet) => {
                match fleet.save_record(record, mode).map_err(StoreError::Fleet)? {
                    Saved::Written => Ok(()),
                    Saved::AlreadyEnrolled => Err(StoreError::AlreadyEnrolled),
                }
            }
        }
    }

    /// Edits `user`'s record; never loses a concurrent change (files: under the store lock;
    /// fleet: compare-and-swap, `change` may run again on the newer record).
    pub fn update<R>(
        &self,
        user: &UserName,
        mut change: impl FnMut(&mut UserRecord) -> R,
    ) -> Result<R, StoreError> {
        match self {
            Self::Files(store) => store.update(user, change),
            Self::Fleet(fleet) => fleet
                .update_record(user, &mut change)
                .map_err(StoreError::Fleet)?
                .ok_or(StoreError::NotEnrolled),
        }
    }

    /// Removes `user`'s record.
    pub fn remove(&self, user: &UserName) -> Result<(), StoreError> {
        match self {
            Self::Files(store) => store.remove(user),
            Self::Fleet(fleet) => match fleet.remove_record(user).map_err(StoreError::Fleet)? {
                true => Ok(()),
                false => Err(StoreError::NotEnrolled),
            },
        }
    }

    /// Whether `user` has a record (valid or not).
    pub fn is_enrolled(&self, user: &UserName) -> Result<bool, StoreError> {
        match self {
            Self::Files(store) => store.is_enrolled(user),
            Self::Fleet(fleet) => fleet
                .etcd
                .get(&fleet.record_key(user))
                .map(|kv| kv.is_some())
                .map_err(StoreError::Fleet),
        }
    }

    /// Users with a record (files: every `*.toml` name in the store that is a valid name).
    pub fn enrolled_users(&self) -> Result<Vec<UserName>, StoreError> {
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
            Self::Fleet(fleet) => fleet.enrolled_users().map_err(StoreError::Fleet),
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

/// Login state: local files, or `<prefix>state/<user>` in etcd.
pub enum States<'a> {
    /// `<state>/<user>.state`.
    Files(FileStateStore),
    /// The fleet's state, changed with compare-and-swap.
    Fleet(&'a Fleet),
}

impl StateStore for States<'_> {
    fn transact<R>(
        &self,
        user: &UserName,
        mut decide: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StateError> {
        match self {
            Self::Files(files) => files.transact(user, decide),
            Self::Fleet(fleet) => {
                let snapshot = fleet.read(user).map_err(StateError::Fleet)?;
                fleet
                    .settle(user, snapshot, |_, st| decide(&mut st.login))
                    .map(|(result, _)| result)
                    .map_err(StateError::Fleet)
            }
        }
    }
}
