//! Volatile per-user login state: the last accepted time step (replay prevention) and the
//! failure counter with its lockout (throttling).
//!
//! The state lives apart from the enrollment (default `/run/ecs-mfa`, a tmpfs): a full or
//! read-only root disk never blocks a login, and losing it on reboot only forgets a few steps of
//! replay history, which a reboot outlasts anyway. Every read-decide-write cycle runs under an
//! exclusive per-user `flock` (see [`StateStore::transact`]), so N concurrent logins with one
//! code produce exactly one success.
//!
//! File `<state>/<user>.state` (format version 1), replaced atomically, never edited in place:
//! ```toml
//! version = 1
//! last_accepted = 1764300030   # start time of the last accepted step (0 = none)
//! failures = 0                 # consecutive failures
//! locked_until = 0             # Unix time the current lockout ends (0 = none)
//! grace = ["9f2c4e1a0b3d5c77:1764300930"]  # grace_seconds: (client, key) digest : until
//! hotp_resync = 0              # HOTP: the counter a resynchronising code must have (0 = none)
//! used_recovery = ["3f1c0a9b2e7d4c51"]  # recovery codes used, not yet removed from the record
//! hotp = "a41f09c3d2e5b670:12" # HOTP: tag of the token's secret : next counter
//! generation = 3               # highest record generation a login has seen
//! ```
//!
//! Logins decide on this state only: a recovery code is used up and an HOTP counter moved
//! here, in the login's one state write, so a full or read-only store cannot refuse them. The
//! login then tries to fold the change into the record too (durable across a reboot, which
//! empties `/run`); a failure of that is ignored and named in the audit line. `used_recovery`
//! forgets codes no longer in the record, `hotp` is ignored once the record's token is
//! another (the tag), so a reset needs no clean-up for them to stay correct.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secure_fs::{self, FileRules, FsError};
use crate::user_name::{Person, UserName};

/// Where a packaged install keeps volatile state.
pub const DEFAULT_STATE_DIR: &str = "/run/ecs-mfa";
const STATE_VERSION: u32 = 1;
const MAX_STATE_BYTES: u64 = 4096;

/// The tag that ties an HOTP counter in the state to one token's secret (a reset to a new
/// token makes the old counter stale): 64 bits of SHA-256, not enough to learn anything.
pub fn hotp_tag(secret: &[u8]) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"ecs-mfa hotp tag\0")
        .chain_update(secret)
        .finalize();
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(tag)
}

/// Whose login state: an account's own token (`<state>/<user>.state`, fleet `state/<user>`)
/// or one person's token on a shared account (`<state>/<user>~<person>.state`, fleet
/// `state/<user>~<person>`). Replay marks, failures, lockouts, grace and HOTP counters are per
/// token: alice's lockout on `root` does not lock bob out. `~` is in no user or person name,
/// so no two owners share a file or key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    user: UserName,
    person: Option<Person>,
}

impl Owner {
    /// The state of `person`'s token on `user` (`None`, or the account's own name: the
    /// account's own token).
    pub fn new(user: &UserName, person: Option<&Person>) -> Self {
        Self {
            user: user.clone(),
            person: person.filter(|p| p.as_str() != user.as_str()).cloned(),
        }
    }

    /// The state of `user`'s own token.
    pub fn account(user: &UserName) -> Self {
        Self::new(user, None)
    }

    /// The account.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The person, on a shared account.
    pub fn person(&self) -> Option<&Person> {
        self.person.as_ref()
    }

    /// `<user>` or `<user>~<person>`: the state file's stem, the fleet state key's last part.
    pub fn stem(&self) -> String {
        match &self.person {
            None => self.user.to_string(),
            Some(person) => format!("{}~{person}", self.user),
        }
    }
}

/// Record generations above this are not believed (see [`UserState::trusted_generation`]).
pub const MAX_GENERATION: u64 = 1 << 32;

/// How far above a record's generation a login state's may be and still be followed by an
/// administrator's write (see [`generation_after`]).
pub const MAX_GENERATION_LEAP: u64 = 1000;

/// The generation an administrator's write gives a record whose generation is `current`, when
/// its tokens' login states have seen up to `seen` ([`UserState::trusted_generation`]): one
/// more than both, so that a record rolled back before this write works again and every older
/// value stays refused. A `seen` more than [`MAX_GENERATION_LEAP`] above `current` is not
/// followed: only a forged state gets there (a fleet host can write state, and no record is
/// rolled back over a thousand administrators' writes), and following it carried the record
/// to [`MAX_GENERATION`], beyond which nothing is believed: rollback detection off for good.
/// The write then puts that state right ([`UserState::remember_written`]).
pub fn generation_after(current: u64, seen: u64) -> u64 {
    let followed = if seen > current.saturating_add(MAX_GENERATION_LEAP) {
        current
    } else {
        current.max(seen)
    };
    followed.saturating_add(1)
}

/// One user's replay and throttle state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserState {
    #[serde(default)]
    version: u32,
    /// Start time (Unix seconds) of the last accepted step; 0 when none.
    pub last_accepted: u64,
    /// Consecutive failed attempts since the last success.
    pub failures: u32,
    /// Unix time until which every attempt is refused; 0 when not locked.
    pub locked_until: u64,
    /// `grace_seconds`: where a code was accepted recently, and until when that spares the
    /// next login the code.
    #[serde(default)]
    pub grace: Grace,
    /// HOTP resynchronisation: a code matched this counter minus one, beyond the look-ahead
    /// window; a code for exactly this counter next resynchronises the token (0: none).
    #[serde(default)]
    pub hotp_resync: u64,
    /// Files backend: the recovery codes used by logins (digests, see [`recovery_tag`]) that
    /// may still be in the record (folding them into it failed, e.g. a full disk).
    #[serde(default)]
    pub used_recovery: UsedRecovery,
    /// Files backend: an HOTP token's next counter as logins left it, with the tag of the
    /// token's secret ([`hotp_tag`]): `(tag, next)`.
    #[serde(default, deserialize_with = "hotp_mark")]
    pub hotp: Option<(u64, u64)>,
    /// The highest record generation a login of this user has seen (both backends): a record
    /// with a lower one is an old value written back (a restored backup), and is refused.
    #[serde(default)]
    pub generation: u64,
}

fn hotp_mark<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<(u64, u64)>, D::Error> {
    let text = String::deserialize(d)?;
    parse_hotp_mark(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("hotp is not tag:counter"))
}

/// `"<16 hex>:<counter>"`, the stored form of an HOTP mark (both backends).
pub fn parse_hotp_mark(text: &str) -> Option<(u64, u64)> {
    let (tag, next) = text.split_once(':')?;
    Some((u64::from_str_radix(tag, 16).ok()?, next.parse().ok()?))
}

/// How many used recovery codes the files backend's state holds at once (a record has 10).
pub const USED_RECOVERY_SLOTS: usize = 16;

/// The name a used recovery code goes by in the state (both backends): 64 bits of SHA-256 of
/// its Argon2 hash string (which has its own random salt), so regenerated codes never match.
pub fn recovery_tag(hash: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(hash.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(tag)
}

/// Recovery codes used by logins and not yet removed from the record (files backend): up to
/// [`USED_RECOVERY_SLOTS`] tags, 0 = empty slot. `Copy`, like the rest of the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsedRecovery([u64; USED_RECOVERY_SLOTS]);

impl UsedRecovery {
    /// Whether the code with this hash was used.
    pub fn contains(&self, hash: &str) -> bool {
        let tag = recovery_tag(hash);
        self.0.contains(&tag)
    }

    /// Forgets every code that is no longer one of `hashes` (the record's), then records
    /// `hash` as used. `false` when there is no room (more codes than slots are unused).
    pub fn use_code(&mut self, hash: &str, hashes: &[String]) -> bool {
        self.keep_only(hashes);
        let tag = recovery_tag(hash);
        if self.0.contains(&tag) {
            return true;
        }
        match self.0.iter().position(|&t| t == 0) {
            Some(i) => {
                self.0[i] = tag;
                true
            }
            None => false,
        }
    }

    /// Forgets the codes that are not in `hashes` (folded into the record, or regenerated).
    pub fn keep_only(&mut self, hashes: &[String]) {
        let tags: Vec<u64> = hashes.iter().map(|h| recovery_tag(h)).collect();
        for t in &mut self.0 {
            if !tags.contains(t) {
                *t = 0;
            }
        }
    }

    /// How many of `hashes` are not used.
    pub fn unused_in(&self, hashes: &[String]) -> usize {
        hashes.iter().filter(|h| !self.contains(h)).count()
    }

    /// Forgets them all.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn to_toml_array(self) -> String {
        let items: Vec<String> = self
            .0
            .iter()
            .filter(|&&t| t != 0)
            .map(|t| format!("\"{t:016x}\""))
            .collect();
        format!("[{}]", items.join(", "))
    }
}

impl<'de> Deserialize<'de> for UsedRecovery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        if items.len() > USED_RECOVERY_SLOTS {
            return Err(serde::de::Error::custom("too many used recovery codes"));
        }
        let mut used = Self::default();
        for (slot, item) in items.iter().enumerate() {
            if item.len() != 16 {
                return Err(serde::de::Error::custom(
                    "a used recovery code is not 16 hex",
                ));
            }
            used.0[slot] = u64::from_str_radix(item, 16)
                .map_err(|_| serde::de::Error::custom("a used recovery code is not 16 hex"))?;
        }
        Ok(used)
    }
}

/// How far (seconds) a replay mark may lie ahead of the clock in normal operation: a step
/// times `window + 1` (a phone up to `window` steps ahead, plus the step itself). The login's
/// clock check (`login::verify::decide`) and `mfa-enroll unlock` use the same figure.
pub fn replay_tolerance(period: u64, window: u8) -> u64 {
    period.saturating_mul(u64::from(window) + 1)
}

/// How many (client, key) pairs keep a grace period at once; the oldest is dropped.
pub const GRACE_SLOTS: usize = 4;

/// The grace periods of one user: up to [`GRACE_SLOTS`] marks, each the digest of a (client
/// address, SSH key) pair and the time its grace ends. Digests, so the state file holds no
/// address or key. `Copy`, like the rest of the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grace([GraceMark; GRACE_SLOTS]);

/// One grace period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraceMark {
    /// 64-bit digest of the scope, client address and key fingerprint (0: empty slot).
    pub id: u64,
    /// Unix time the grace ends.
    pub until: u64,
}

impl Grace {
    /// Whether `id` has a grace period that lasts beyond `now`. A mark that ends more than
    /// `max_seconds` (`grace_seconds`) after `now` covers nothing: no grant makes one (a grant
    /// ends `grace_seconds` after the time it was made), so it was forged (fleet hosts can
    /// write state) or the clock was set back; the login asks for a code.
    pub fn covers(&self, id: u64, now: u64, max_seconds: u64) -> bool {
        let limit = now.saturating_add(max_seconds);
        id != 0
            && self
                .0
                .iter()
                .any(|m| m.id == id && m.until > now && m.until <= limit)
    }

    /// Starts (or extends) the grace period of `id` until `until`, dropping expired marks,
    /// marks that end later than this fresh one (longer than `grace_seconds` allows now: see
    /// [`Grace::covers`]) and, when full, the one that ends first.
    pub fn grant(&mut self, id: u64, until: u64, now: u64) {
        for m in &mut self.0 {
            if m.until <= now || m.until > until {
                *m = GraceMark::default();
            }
        }
        let slot = match self.0.iter().position(|m| m.id == id) {
            Some(i) => i,
            None => match self.0.iter().position(|m| m.id == 0) {
                Some(i) => i,
                None => (0..GRACE_SLOTS)
                    .min_by_key(|&i| self.0[i].until)
                    .unwrap_or(0),
            },
        };
        self.0[slot] = GraceMark { id, until };
    }

    /// When the grace period of `id` ends, if it has one.
    pub fn until(&self, id: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|m| id != 0 && m.id == id)
            .map(|m| m.until)
    }

    /// Takes the grace period of `id` out (a grace login of a password stack, until
    /// `pam_sm_setcred` puts it back: see `crate::login::grace`).
    pub fn remove(&mut self, id: u64) {
        for m in &mut self.0 {
            if id != 0 && m.id == id {
                *m = GraceMark::default();
            }
        }
    }

    /// Forgets every grace period (reset, remove, `unlock --all-grace`).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The marks in use.
    pub fn marks(&self) -> impl Iterator<Item = &GraceMark> {
        self.0.iter().filter(|m| m.id != 0)
    }

    /// The stored form: `["<16 hex>:<until>", ...]`.
    pub fn to_toml_array(&self) -> String {
        let items: Vec<String> = self
            .marks()
            .map(|m| format!("\"{:016x}:{}\"", m.id, m.until))
            .collect();
        format!("[{}]", items.join(", "))
    }

    /// Parses the stored form.
    pub fn from_strings(items: &[String]) -> Result<Self, String> {
        if items.len() > GRACE_SLOTS {
            return Err("too many grace marks".into());
        }
        let mut grace = Self::default();
        for (slot, item) in items.iter().enumerate() {
            let (id, until) = item.split_once(':').ok_or("a grace mark is not id:until")?;
            let id = u64::from_str_radix(id, 16).map_err(|_| "a grace id is not hex")?;
            let until = until.parse().map_err(|_| "a grace end is not a number")?;
            grace.0[slot] = GraceMark { id, until };
        }
        Ok(grace)
    }
}

impl<'de> Deserialize<'de> for Grace {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        Self::from_strings(&items).map_err(serde::de::Error::custom)
    }
}

/// When to lock a user out and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures that start a lockout.
    pub max_failures: u32,
    /// Length of the first lockout, in seconds.
    pub lockout_seconds: u64,
    /// Longest lockout, in seconds; each further failure doubles the delay up to this.
    pub lockout_max_seconds: u64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            lockout_seconds: 30,
            lockout_max_seconds: 900,
        }
    }
}

impl UserState {
    /// Seconds left in the current lockout, if the user is locked out at `now`.
    pub fn locked_for(&self, now: u64) -> Option<u64> {
        (now < self.locked_until).then(|| self.locked_until - now)
    }

    /// Counts a failed attempt. From the `max_failures`-th consecutive failure on, each failure
    /// locks the user out for `lockout_seconds`, doubling with every further failure (the user
    /// gets one attempt per lockout) up to `lockout_max_seconds`.
    /// A failure also ends every grace period: after a wrong code, the next login asks again
    /// wherever it comes from.
    pub fn record_failure(&mut self, now: u64, policy: &ThrottlePolicy) {
        self.grace.clear();
        self.failures = self.failures.saturating_add(1);
        if policy.max_failures > 0 && self.failures >= policy.max_failures {
            let doublings = (self.failures - policy.max_failures).min(32);
            let delay = policy
                .lockout_seconds
                .saturating_mul(1u64 << doublings)
                .min(policy.lockout_max_seconds);
            self.locked_until = now.saturating_add(delay);
        }
    }

    /// A lockout that ends further than `max_seconds` from `now` can only come from a clock
    /// that was ahead when it started (bad RTC, VM restore): it is shortened to end
    /// `max_seconds` from now, so no lockout is ever longer than policy allows. Returns whether
    /// it changed anything.
    pub fn clamp_lockout(&mut self, now: u64, max_seconds: u64) -> bool {
        let limit = now.saturating_add(max_seconds);
        if self.locked_until > limit {
            self.locked_until = limit;
            return true;
        }
        false
    }

    /// How far (seconds) the replay mark lies ahead of `now` beyond `tolerance` (the window a
    /// phone may legitimately be ahead by). `Some` means the server's clock was ahead when a
    /// code was accepted, or was set back since: every code would be refused as a replay until
    /// real time catches up, so it is reported as a clock problem instead.
    /// A replay mark further ahead than `tolerance + max_seconds` is pulled back to that limit,
    /// like a lockout ([`UserState::clamp_lockout`]): whether it comes from a clock that was
    /// far ahead or from a fleet host that wrote it, logins are refused as `state_in_future`
    /// for at most `max_seconds` (`lockout_max_seconds`) plus the window, then work again. The
    /// mark stays ahead of every code that is valid now, so no used code becomes valid.
    /// Returns whether it changed anything.
    pub fn clamp_mark(&mut self, now: u64, tolerance: u64, max_seconds: u64) -> bool {
        let limit = now.saturating_add(tolerance).saturating_add(max_seconds);
        if self.last_accepted > limit {
            self.last_accepted = limit;
            return true;
        }
        false
    }

    pub fn mark_ahead(&self, now: u64, tolerance: u64) -> Option<u64> {
        let ahead = self.last_accepted.checked_sub(now)?;
        (ahead > tolerance).then_some(ahead)
    }

    /// What an administrator's unlock, reset or removal does: failures and lockout are
    /// forgotten, the replay mark stays (no admin action may make a used code valid again).
    pub fn forget_failures(&mut self) {
        self.failures = 0;
        self.locked_until = 0;
    }

    /// `mfa-enroll unlock`: failures and lockout are forgotten. The replay mark never moves
    /// back, except out of an impossible future: a mark more than `tolerance` (a step times
    /// `window + 1`, what [`UserState::mark_ahead`] is given at login) ahead of `now` can only
    /// come from a clock that was ahead, and is pulled back to `now` (the code of the current
    /// step stays refused, the next one works). A mark inside the window (a phone a little
    /// ahead, or the unlocking host's clock a little behind the fleet's) stays: moving it would
    /// make the code just used valid again. Returns whether the mark moved.
    pub fn unlock(&mut self, now: u64, tolerance: u64) -> bool {
        self.forget_failures();
        if self.mark_ahead(now, tolerance).is_some() {
            self.last_accepted = now;
            return true;
        }
        false
    }

    /// What an administrator's action that replaces the secret (enroll --force, reset, import
    /// --force, remove) does to the state: failures, lockout, grace periods, a pending HOTP
    /// resynchronisation and the used recovery codes (of the record replaced) are forgotten.
    /// The replay mark and the tagged HOTP counter stay: if the same secret comes back (an
    /// import), codes already used stay used.
    pub fn replace_secret(&mut self) {
        self.forget_failures();
        self.grace.clear();
        self.hotp_resync = 0;
        self.used_recovery.clear();
    }

    /// Folds what logins recorded here into `record` (files backend; what an administrator's
    /// write of the record does): the used recovery codes leave it, an HOTP counter of the same
    /// token moves forward.
    pub fn fold_into(&self, record: &mut crate::store::UserRecord) {
        record
            .recovery_codes
            .retain(|h| !self.used_recovery.contains(h));
        if let (Some(counter), Some((tag, next))) = (&mut record.hotp, self.hotp)
            && tag == hotp_tag(record.secret.as_bytes())
        {
            *counter = (*counter).max(next);
        }
    }

    /// Checks the generation of the record a login reads against the highest one seen, and
    /// remembers it. `Err(highest)`: the record is older than one seen before (an old value
    /// written back: a restored backup, an etcd administrator); the login must be refused.
    pub fn see_generation(&mut self, generation: u64) -> Result<(), u64> {
        let seen = self.trusted_generation();
        if generation < seen {
            return Err(seen);
        }
        self.generation = generation;
        Ok(())
    }

    /// Remembers an administrator's write of the record with `generation` (see
    /// [`generation_after`]): now the highest seen. A higher one here was either forged (the
    /// write did not follow it; kept, it would refuse every login of the token) or comes from
    /// another administrator's write at the same moment (the next login sees that again).
    pub fn remember_written(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The highest generation seen, unless it is beyond [`MAX_GENERATION`]: no administrator
    /// writes a record that often, so such a value was forged (a fleet host can write state)
    /// and counts as "none seen" (like a lowered one: documented in docs/fleet.md). Trusting it
    /// would make every later administrator's write saturate at `u64::MAX` and switch rollback
    /// detection off for good.
    pub fn trusted_generation(&self) -> u64 {
        if self.generation > MAX_GENERATION {
            0
        } else {
            self.generation
        }
    }

    /// Records an accepted code: remembers its step and clears failures and lockout.
    pub fn record_success(&mut self, step_start: u64) {
        self.last_accepted = self.last_accepted.max(step_start);
        self.failures = 0;
        self.locked_until = 0;
    }

    fn to_text(self) -> String {
        let mut text = format!(
            "version = {STATE_VERSION}\nlast_accepted = {}\nfailures = {}\nlocked_until = {}\ngrace = {}\nhotp_resync = {}\n",
            self.last_accepted,
            self.failures,
            self.locked_until,
            self.grace.to_toml_array(),
            self.hotp_resync,
        );
        // The newer fields only when set: a module from before them can still read the file.
        if self.used_recovery != UsedRecovery::default() {
            text.push_str(&format!(
                "used_recovery = {}\n",
                self.used_recovery.to_toml_array()
            ));
        }
        if let Some((tag, next)) = self.hotp {
            text.push_str(&format!("hotp = \"{tag:016x}:{next}\"\n"));
        }
        if self.generation > 0 {
            text.push_str(&format!("generation = {}\n", self.generation));
        }
        text
    }

    fn parse(bytes: &[u8]) -> Result<Self, Corruption> {
        // A zero-length file can only come from a crash between create and write on a disk
        // without fsync; treat it as fresh state rather than locking the user out.
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let text = std::str::from_utf8(bytes).map_err(|_| Corruption::NotUtf8)?;
        let state: Self =
            toml::from_str(text).map_err(|e| Corruption::Malformed(e.message().to_string()))?;
        if state.version != STATE_VERSION {
            return Err(Corruption::Version(state.version));
        }
        Ok(state)
    }
}

/// A place to keep [`UserState`], with a per-user exclusive lock: the local files
/// ([`FileStateStore`]). Its errors are [`StateError`], which knows nothing of the fleet: the
/// fleet's state is changed by compare-and-swap in `fleet::login`, and `backend::States` offers
/// the same `transact` over either backend to `mfa-enroll`, with `backend::Error`.
pub trait StateStore {
    /// Runs `decide` on `owner`'s state while holding its exclusive lock. If `decide`
    /// changed the state, it is saved before the lock is released; the result is returned only
    /// if that save succeeded, so a caller can never act on a decision that was not recorded.
    ///
    /// `decide` may run more than once (a shared backend runs it again on newer state when
    /// another writer won a race); only the run whose result is returned was saved.
    fn transact<R>(
        &self,
        owner: &Owner,
        decide: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StateError>;
}

/// [`StateStore`] on local files: `<dir>/<stem>.state` plus a `<dir>/<stem>.lock` lock file
/// (stem: [`Owner::stem`]).
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
}

impl FileStateStore {
    /// State kept in `dir`, created `0700 root:root` on first use if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl StateStore for FileStateStore {
    fn transact<R>(
        &self,
        owner: &Owner,
        mut decide: impl FnMut(&mut UserState) -> R,
    ) -> Result<R, StateError> {
        let dir = secure_fs::open_or_create_dir(&self.dir)?;
        let stem = owner.stem();
        let _lock = dir.lock_file(&format!("{stem}.lock"))?;
        let name = format!("{stem}.state");
        let before = match dir.read(&name, FileRules::Private, MAX_STATE_BYTES)? {
            Some(bytes) => UserState::parse(&bytes).map_err(|why| StateError::Corrupt {
                path: self.dir.join(&name),
                why,
            })?,
            None => UserState::default(),
        };
        let mut state = before;
        let result = decide(&mut state);
        if state != before {
            state.version = STATE_VERSION;
            // No fsync: this is tmpfs by design, and the rename is atomic regardless.
            dir.write_atomic(&name, state.to_text().as_bytes(), false)?;
        }
        Ok(result)
    }
}

/// Errors of the state backend. Any of them denies the login: without state, replay
/// prevention and throttling cannot be guaranteed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The state directory or a state file failed a safety check or an I/O operation
    /// (including a full or read-only file system).
    Fs(FsError),
    /// A state file exists but cannot be parsed. Remove it (or run `mfa-enroll unlock`).
    Corrupt { path: PathBuf, why: Corruption },
}

/// Why a state file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Corruption {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Not the TOML this module writes (the parser's message; state holds no secrets).
    Malformed(String),
    /// Another format version.
    Version(u32),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not UTF-8"),
            Self::Malformed(why) => f.write_str(why),
            Self::Version(v) => write!(f, "unsupported version {v}"),
        }
    }
}

impl From<FsError> for StateError {
    fn from(e: FsError) -> Self {
        Self::Fs(e)
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fs(e) => write!(f, "state: {e}"),
            Self::Corrupt { path, why } => write!(
                f,
                "state: {} is corrupt ({why}); remove it to reset this user's state",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StateError {}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
