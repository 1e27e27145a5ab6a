//! The enrollment store: one root-owned record per user in `store=DIR`
//! (default `/var/lib/ecs-mfa/users`, directory `0700`, files `0600`).
//!
//! The store changes only when an administrator enrolls, resets or removes a user; logins only
//! read it. Writers serialise on an `flock` of the store directory and replace records
//! atomically, with fsync, so a crash leaves the old or the new record and never a partial one.
#![forbid(unsafe_code)]

pub mod account;
pub mod record;

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::secure_fs::{FsError, Problem};
pub use account::AccountRecord;
pub use record::{RecordError, UserRecord};

use crate::secure_fs::{self, FileRules};
use crate::user_name::{Person, UserName};
use record::MAX_RECORD_BYTES;

/// Where a packaged install keeps enrollments.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/ecs-mfa/users";

/// The enrollment store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Whether [`Store::save`] may replace an existing enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// Fail with [`StoreError::AlreadyEnrolled`] if the user has a record (or any file by
    /// that name, even an invalid one).
    CreateNew,
    /// Replace whatever is there.
    Replace,
    /// `reset`: replace the token that is there *when written* (a person removed since the
    /// reset read the record stays removed: [`StoreError::NoSuchPerson`], or
    /// [`StoreError::NotEnrolled`] for an account with no record); `keep_keys`: with the keys
    /// that token is bound to then (a key bound while the reset waited at its prompt stays
    /// bound). An invalid record is replaced whole by the account's own token, as with
    /// `Replace`.
    Reset {
        /// No `--key` was given: the stored token's keys, not the record's.
        keep_keys: bool,
    },
}

impl SaveMode {
    /// `--force` (or a reset) replaces, anything else creates.
    pub fn replacing(replace: bool) -> Self {
        if replace {
            Self::Replace
        } else {
            Self::CreateNew
        }
    }
}

/// `record` as [`SaveMode::Reset`] writes it onto `account` (the stored record, valid): the
/// token must still be there, and keeps the keys it has now unless the reset named keys. Any
/// other mode: `record` as it is.
pub fn reset_onto(
    account: &AccountRecord,
    record: &UserRecord,
    mode: SaveMode,
) -> Result<UserRecord, StoreError> {
    let mut record = record.clone();
    if let SaveMode::Reset { keep_keys } = mode {
        let Some(stored) = account.token(record.person.as_ref()) else {
            return Err(match &record.person {
                Some(person) => StoreError::NoSuchPerson(person.to_string()),
                None => StoreError::NotEnrolled,
            });
        };
        if keep_keys {
            record.keys = stored.keys.clone();
        }
    }
    Ok(record)
}

impl Store {
    /// A store rooted at `dir`. Nothing is touched until a method is called.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record file of `user`.
    pub fn record_path(&self, user: &UserName) -> PathBuf {
        self.dir.join(file_name(user))
    }

    /// Loads and validates `user`'s record. Only a readable store without a record for the
    /// user is [`StoreError::NotEnrolled`]; a store directory that does not exist is
    /// [`StoreError::NoStore`] (a typo or an unmounted volume must never make every user look
    /// unenrolled, which `nullok` would let in), and anything else wrong is an error. Every
    /// error but `NotEnrolled` must deny the login.
    pub fn load_account(&self, user: &UserName) -> Result<AccountRecord, StoreError> {
        let Some(dir) = secure_fs::open_dir(&self.dir)? else {
            return Err(StoreError::NoStore(self.dir.clone()));
        };
        let name = file_name(user);
        let bytes = dir
            .read(&name, FileRules::Private, MAX_RECORD_BYTES)?
            .ok_or(StoreError::NotEnrolled)?;
        AccountRecord::parse(&bytes, user).map_err(|error| StoreError::Record {
            path: self.dir.join(&name),
            error,
        })
    }

    /// The token of `person` in `user`'s record (see [`pick`]).
    pub fn load_token(
        &self,
        user: &UserName,
        person: Option<&Person>,
    ) -> Result<UserRecord, StoreError> {
        pick(&self.load_account(user)?, person).cloned()
    }

    /// `user`'s only token: an account with several people is [`StoreError::PersonNeeded`].
    pub fn load(&self, user: &UserName) -> Result<UserRecord, StoreError> {
        self.load_token(user, None)
    }

    /// Writes `record` (one token) durably and atomically into its account's file, creating the
    /// store directory (`0700 root:root`) if needed: a new file, another person added to the
    /// account, or the token of `record.person` replaced. The account's generation becomes
    /// `record.generation`, or one more than the file's if that is not higher (never lower: a
    /// generation computed before the lock must not go below an administrator's write made
    /// meanwhile, which logins have already seen); returns the generation written. With
    /// [`SaveMode::CreateNew`] an existing token is never replaced (and, for the account's own
    /// token, no existing file, even an invalid one).
    pub fn save(&self, record: &UserRecord, mode: SaveMode) -> Result<u64, StoreError> {
        let dir = secure_fs::open_or_create_dir(&self.dir)?;
        let _lock = dir.lock_dir()?;
        let name = file_name(&record.user);
        let mut floor = 0;
        let account = match dir.read(&name, FileRules::Private, MAX_RECORD_BYTES) {
            Ok(None) if matches!(mode, SaveMode::Reset { .. }) => {
                return Err(StoreError::NotEnrolled);
            }
            Ok(None) => AccountRecord::single(record.clone()),
            _ if mode == SaveMode::CreateNew && record.person.is_none() => {
                return Err(StoreError::AlreadyEnrolled);
            }
            // An invalid file is replaced whole by the account's own token, as before.
            Ok(Some(bytes))
                if mode != SaveMode::CreateNew
                    && record.person.is_none()
                    && AccountRecord::parse(&bytes, &record.user).is_err() =>
            {
                AccountRecord::single(record.clone())
            }
            Ok(Some(bytes)) => {
                let mut account = self.parse(&name, &bytes, &record.user)?;
                floor = account.generation.saturating_add(1);
                if mode == SaveMode::CreateNew && account.token(record.person.as_ref()).is_some() {
                    return Err(StoreError::AlreadyEnrolled);
                }
                let record = reset_onto(&account, record, mode)?;
                account
                    .put(record)
                    .map_err(|e| StoreError::Refused(refusal(e)))?;
                account
            }
            // Replacing the account's own token replaces whatever is there (an unreadable file
            // included), as before shared accounts.
            Err(_) if mode != SaveMode::CreateNew && record.person.is_none() => {
                AccountRecord::single(record.clone())
            }
            Err(e) => return Err(e.into()),
        };
        let mut account = account;
        let generation = record.generation.max(floor);
        account.set_generation(generation);
        self.write(&dir, &account)?;
        Ok(generation)
    }

    /// Writes `account` (all its tokens) as it is: the fleet's local copy, `import`.
    pub fn save_account(&self, account: &AccountRecord) -> Result<(), StoreError> {
        let dir = secure_fs::open_or_create_dir(&self.dir)?;
        let _lock = dir.lock_dir()?;
        self.write(&dir, account)
    }

    /// Loads `user`'s record under the store lock, lets `change` edit the token of `person`
    /// (`None`: the account's own), and writes the file back (durably, atomically) if it
    /// changed, all before the lock is released: two updates can never overwrite each other.
    /// Used to consume a recovery code and to regenerate codes.
    pub fn update<R>(
        &self,
        user: &UserName,
        person: Option<&Person>,
        change: impl FnOnce(&mut UserRecord) -> R,
    ) -> Result<R, StoreError> {
        self.update_account(user, |account| {
            let token = account
                .token_mut(person)
                .ok_or_else(|| no_such_person(person))?;
            Ok(change(token))
        })
    }

    /// Like [`Self::update`] for the whole account: `change` may add, edit or remove tokens (or
    /// refuse with an error, and nothing is written). No token left removes the file.
    pub fn update_account<R>(
        &self,
        user: &UserName,
        change: impl FnOnce(&mut AccountRecord) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let Some(dir) = secure_fs::open_dir(&self.dir)? else {
            return Err(StoreError::NotEnrolled);
        };
        let _lock = dir.lock_dir()?;
        let name = file_name(user);
        let bytes = dir
            .read(&name, FileRules::Private, MAX_RECORD_BYTES)?
            .ok_or(StoreError::NotEnrolled)?;
        let before = self.parse(&name, &bytes, user)?;
        let mut account = before.clone();
        let result = change(&mut account)?;
        if account.tokens.is_empty() {
            dir.remove_stale_temps(&name)?;
            dir.remove(&name)?;
            dir.sync()?;
        } else if account != before {
            self.write(&dir, &account)?;
        }
        Ok(result)
    }

    fn parse(
        &self,
        name: &str,
        bytes: &[u8],
        user: &UserName,
    ) -> Result<AccountRecord, StoreError> {
        AccountRecord::parse(bytes, user).map_err(|error| StoreError::Record {
            path: self.dir.join(name),
            error,
        })
    }

    /// Removes `user`'s record (under the store lock, durably).
    pub fn remove(&self, user: &UserName) -> Result<(), StoreError> {
        let Some(dir) = secure_fs::open_dir(&self.dir)? else {
            return Err(StoreError::NotEnrolled);
        };
        let _lock = dir.lock_dir()?;
        let name = file_name(user);
        dir.remove_stale_temps(&name)?;
        if !dir.remove(&name)? {
            return Err(StoreError::NotEnrolled);
        }
        dir.sync()?;
        Ok(())
    }

    /// Writes `record`; the caller holds the store lock.
    fn write(&self, dir: &secure_fs::CheckedDir, record: &AccountRecord) -> Result<(), StoreError> {
        let name = file_name(&record.user);
        let text = record.to_toml().map_err(|error| StoreError::Record {
            path: self.dir.join(&name),
            error,
        })?;
        // A writer killed mid-write leaves a temporary file; it never blocks anything, but
        // tidy up while we hold the lock all writers hold.
        dir.remove_stale_temps(&name)?;
        dir.write_atomic(&name, text.as_bytes(), true)?;
        Ok(())
    }

    /// Whether `user` has a record file (valid or not).
    pub fn is_enrolled(&self, user: &UserName) -> Result<bool, StoreError> {
        match secure_fs::open_dir(&self.dir)? {
            Some(dir) => exists(&dir, &file_name(user)),
            None => Ok(false),
        }
    }
}

fn exists(dir: &secure_fs::CheckedDir, name: &str) -> Result<bool, StoreError> {
    match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(StoreError::Fs(FsError {
            path: dir.path().join(name),
            problem: Problem::Io("stat", e),
        })),
    }
}

/// The token of `person` (the account's name: the account's own token, as in the file);
/// without a person, the account's only token (several: [`StoreError::PersonNeeded`]).
pub fn pick<'a>(
    account: &'a AccountRecord,
    person: Option<&Person>,
) -> Result<&'a UserRecord, StoreError> {
    match (person, account.tokens.as_slice()) {
        (None, [only]) => Ok(only),
        (None, tokens) => Err(StoreError::PersonNeeded(
            tokens.iter().map(|t| t.person_name().to_string()).collect(),
        )),
        // `--person root` on `root` names the account's own token, also when the account
        // has people besides it (it used to ask for a person although one was named).
        (Some(person), _) => account.token(Some(person)).ok_or_else(|| {
            no_such_person(Some(person).filter(|p| p.as_str() != account.user.as_str()))
        }),
    }
}

/// Why the rules of shared accounts refuse a change, said without "invalid record".
pub fn refusal(error: RecordError) -> String {
    match error {
        RecordError::Account(why) => why,
        other => other.to_string(),
    }
}

fn no_such_person(person: Option<&Person>) -> StoreError {
    StoreError::NoSuchPerson(person.map_or_else(String::new, |p| p.to_string()))
}

fn file_name(user: &UserName) -> String {
    format!("{user}.toml")
}

/// Errors of the enrollment store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The user has no record (in [`Store::update`] and [`Store::remove`] also: the store
    /// directory does not exist).
    NotEnrolled,
    /// [`Store::load`]: the store directory does not exist.
    NoStore(PathBuf),
    /// A record exists and the caller asked not to replace it.
    AlreadyEnrolled,
    /// A file or directory failed a safety check or an I/O operation.
    Fs(FsError),
    /// The record file exists but its contents are invalid.
    Record { path: PathBuf, error: RecordError },
    /// The account has several people and none was named (their names).
    PersonNeeded(Vec<String>),
    /// The account has no token of this person (empty: the account's own token).
    NoSuchPerson(String),
    /// A change a rule of shared accounts refuses (a key bound to two people, a second token
    /// bound to no key): why.
    Refused(String),
}

impl From<FsError> for StoreError {
    fn from(e: FsError) -> Self {
        Self::Fs(e)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotEnrolled => f.write_str("user is not enrolled"),
            Self::NoStore(path) => write!(
                f,
                "{}: the enrollment store does not exist (a typo in store=, or a volume not mounted?); every login is denied",
                path.display()
            ),
            Self::AlreadyEnrolled => f.write_str("user is already enrolled"),
            Self::Fs(e) => e.fmt(f),
            Self::Record { path, error } => write!(f, "{}: {error}", path.display()),
            Self::PersonNeeded(people) => write!(
                f,
                "the account is shared by {} people ({}): name one with --person",
                people.len(),
                people.join(", ")
            ),
            Self::NoSuchPerson(person) if person.is_empty() => f.write_str(
                "the account has no token of its own (only people's tokens: name one with --person)",
            ),
            Self::NoSuchPerson(person) => {
                write!(f, "the account has no person named {person}")
            }
            Self::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Scratch;
    use crate::totp::{SecretKey, TotpParams};
    use std::os::unix::fs::PermissionsExt;

    fn record(user: &str) -> UserRecord {
        UserRecord {
            user: UserName::parse(user).unwrap(),
            secret: SecretKey::from_bytes(vec![7; 20]).unwrap(),
            params: TotpParams::default(),
            created: 1,
            issuer: "test".into(),
            recovery_codes: vec![],
            origin: crate::store::record::Origin::Admin,
            hotp: None,
            generation: 0,
            person: None,
            keys: vec![],
        }
    }

    #[test]
    fn saved_records_load_back_and_are_private() {
        let s = Scratch::new("store");
        let store = Store::new(s.0.join("users"));
        let alice = record("alice");
        store.save(&alice, SaveMode::CreateNew).unwrap();
        assert_eq!(store.load(&alice.user).unwrap(), alice);
        let dir_mode = std::fs::metadata(store.dir()).unwrap().permissions().mode();
        let file_mode = std::fs::metadata(store.record_path(&alice.user))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!((dir_mode & 0o7777, file_mode & 0o7777), (0o700, 0o600));
    }

    #[test]
    fn an_existing_enrollment_is_not_replaced_without_replace_mode() {
        let s = Scratch::new("store");
        let store = Store::new(s.0.join("users"));
        let first = record("alice");
        store.save(&first, SaveMode::CreateNew).unwrap();
        let mut second = record("alice");
        second.secret = SecretKey::from_bytes(vec![9; 20]).unwrap();
        assert_eq!(
            store.save(&second, SaveMode::CreateNew),
            Err(StoreError::AlreadyEnrolled)
        );
        assert_eq!(store.load(&first.user).unwrap(), first);
        // A write never leaves the generation where it was (see the next test).
        assert_eq!(store.save(&second, SaveMode::Replace), Ok(1));
        second.generation = 1;
        assert_eq!(store.load(&first.user).unwrap(), second);
    }

    /// Three administrators at once: each computes its generation before taking the lock, so
    /// the last to write may hold a lower one than the file has (logins that saw the higher
    /// one would take the record for a rollback and refuse it). The file's wins.
    #[test]
    fn a_save_never_lowers_the_generation_of_the_file() {
        let s = Scratch::new("store");
        let store = Store::new(s.0.join("users"));
        let mut alice = record("alice");
        alice.generation = 7;
        assert_eq!(store.save(&alice, SaveMode::CreateNew), Ok(7));
        let mut late = record("alice");
        late.generation = 5;
        late.secret = SecretKey::from_bytes(vec![9; 20]).unwrap();
        assert_eq!(store.save(&late, SaveMode::Replace), Ok(8));
        let mut bob = record("alice");
        bob.person = Some(Person::parse("bob").unwrap());
        bob.keys = vec![format!("SHA256:{}", "b".repeat(43))];
        bob.generation = 2;
        assert_eq!(store.save(&bob, SaveMode::CreateNew), Ok(9));
        let account = store.load_account(&alice.user).unwrap();
        assert_eq!(account.generation, 9);
        assert!(account.tokens.iter().all(|t| t.generation == 9));
    }

    #[test]
    fn update_rewrites_only_changed_records_and_removes_stale_temps() {
        let s = Scratch::new("store");
        let store = Store::new(&s.0);
        let alice = record("alice");
        store.save(&alice, SaveMode::CreateNew).unwrap();
        std::fs::write(s.0.join(".alice.toml.tmp-99999-0"), "partial").unwrap();
        let mtime = || {
            std::fs::metadata(s.0.join("alice.toml"))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = mtime();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(store.update(&alice.user, None, |_| 7).unwrap(), 7);
        assert_eq!(mtime(), before, "unchanged record not rewritten");
        store
            .update(&alice.user, None, |r| r.issuer = "changed".into())
            .unwrap();
        assert_eq!(store.load(&alice.user).unwrap().issuer, "changed");
        assert!(!s.0.join(".alice.toml.tmp-99999-0").exists());
        let bob = UserName::parse("bob").unwrap();
        assert_eq!(
            store.update(&bob, None, |_| ()),
            Err(StoreError::NotEnrolled)
        );
    }

    #[test]
    fn a_missing_record_means_not_enrolled_but_a_missing_store_is_an_error() {
        let s = Scratch::new("store");
        let store = Store::new(s.0.join("absent"));
        let bob = UserName::parse("bob").unwrap();
        assert_eq!(
            store.load(&bob),
            Err(StoreError::NoStore(s.0.join("absent")))
        );
        assert!(!store.is_enrolled(&bob).unwrap());
        let store = Store::new(&s.0);
        assert_eq!(store.load(&bob), Err(StoreError::NotEnrolled));
    }

    #[test]
    fn a_record_copied_under_another_name_is_refused() {
        let s = Scratch::new("store");
        let store = Store::new(&s.0);
        store.save(&record("alice"), SaveMode::CreateNew).unwrap();
        std::fs::copy(s.0.join("alice.toml"), s.0.join("mallory.toml")).unwrap();
        std::fs::set_permissions(s.0.join("mallory.toml"), PermissionsExt::from_mode(0o600))
            .unwrap();
        let err = store
            .load(&UserName::parse("mallory").unwrap())
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::Record {
                error: RecordError::WrongUser,
                ..
            }
        ));
    }
}
