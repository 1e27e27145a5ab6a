//! An account's enrollment file: its tokens. Most accounts have one token bound to no key, and
//! their file stays format 1 (`super::record`), byte for byte as before shared accounts. A
//! shared account (`root` on most ECS images, a `deploy` account) holds one token per person,
//! each bound to that person's SSH keys, in format 2:
//!
//! ```toml
//! # ecs-mfa enrollment record. Managed by mfa-enroll; do not edit.
//! version = 2
//! user = "root"
//! generation = 5                     # +1 at every administrator's write (absent: 0)
//!
//! [[token]]
//! person = "alice"                   # who; "root" (the account name) = the account's own token
//! keys = ["SHA256:Xr4...", "SHA256:9aQ..."]   # ssh-keygen -l fingerprints; [] = bound to no key
//! secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
//! algorithm = "SHA1"
//! digits = 6
//! period = 30
//! created = 1764300000
//! issuer = "web-01"
//! recovery_codes = []
//! enrolled_by = "admin"              # admin | import | login, as in format 1
//! # type = "hotp" / counter = 0, enrolled_key = "SHA256:...", as in format 1
//! ```
//!
//! Rules (a file that breaks one is invalid, and every login of the account is denied, like any
//! invalid record): 1 to [`MAX_TOKENS`] tokens; person names are unique; a key fingerprint is
//! bound to at most one token of the account (the key must choose exactly one token); at most
//! one token is bound to no key (several unbound tokens would each be a way in for any key:
//! every attempt would try them all).
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::record::{FORMAT_VERSION, RecordError, TokenText, UserRecord, is_fingerprint, line_of};
use crate::user_name::{Person, UserName};

pub use super::record::SHARED_FORMAT_VERSION;
/// Most tokens one account may hold (a team sharing `root`, with room to spare: a login reads
/// the whole file).
pub const MAX_TOKENS: usize = 500;
/// Most keys one token may be bound to.
pub const MAX_KEYS: usize = 32;

/// All tokens of one account, as stored in `<store>/<user>.toml` (or the fleet's
/// `records/<user>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The account (must match the file name).
    pub user: UserName,
    /// Raised by every administrator's write (see [`UserRecord::generation`], which every
    /// token carries a copy of).
    pub generation: u64,
    /// The tokens, in the order they were enrolled.
    pub tokens: Vec<UserRecord>,
}

#[derive(Deserialize)]
struct Peek {
    version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    #[allow(dead_code)]
    version: u32,
    user: String,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    token: Vec<RawToken>,
}

/// Deliberately no `Debug`: it holds the secret as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    person: String,
    #[serde(default)]
    keys: Vec<String>,
    secret: Zeroizing<String>,
    algorithm: String,
    digits: u8,
    period: u64,
    created: u64,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    recovery_codes: Vec<String>,
    #[serde(default)]
    enrolled_by: String,
    #[serde(default)]
    enrolled_key: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    counter: Option<u64>,
}

impl AccountRecord {
    /// An account with one token.
    pub fn single(token: UserRecord) -> Self {
        Self {
            user: token.user.clone(),
            generation: token.generation,
            tokens: vec![token],
        }
    }

    /// Parses a record file of either format for `expected_user`.
    pub fn parse(bytes: &[u8], expected_user: &UserName) -> Result<Self, RecordError> {
        let text = std::str::from_utf8(bytes).map_err(|_| RecordError::Malformed { line: None })?;
        let malformed = |e: toml::de::Error| RecordError::Malformed {
            line: e.span().map(|span| line_of(text, span.start)),
        };
        let version = toml::from_str::<Peek>(text).map_err(malformed)?.version;
        if version == FORMAT_VERSION {
            return UserRecord::parse(bytes, expected_user).map(Self::single);
        }
        if version != SHARED_FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let raw: RawAccount = toml::from_str(text).map_err(malformed)?;
        if raw.user != expected_user.as_str() {
            return Err(RecordError::WrongUser);
        }
        if raw.token.len() > MAX_TOKENS {
            return Err(RecordError::Account(format!(
                "{} tokens, more than {MAX_TOKENS}",
                raw.token.len()
            )));
        }
        let mut tokens = Vec::with_capacity(raw.token.len());
        for raw_token in raw.token {
            tokens.push(token_from(raw_token, expected_user, raw.generation)?);
        }
        let account = Self {
            user: expected_user.clone(),
            generation: raw.generation,
            tokens,
        };
        account.check()?;
        Ok(account)
    }

    /// Checks the rules of the module doc (also before every write). Linear in the number of
    /// keys (a record at the limits holds 16 000, and every login checks it twice).
    pub fn check(&self) -> Result<(), RecordError> {
        let fail = |why: String| Err(RecordError::Account(why));
        if self.tokens.is_empty() {
            return fail("no token".into());
        }
        if self.tokens.len() > MAX_TOKENS {
            return fail(format!("more than {MAX_TOKENS} tokens"));
        }
        let mut unbound = None;
        let mut people: HashSet<&str> = HashSet::with_capacity(self.tokens.len());
        // Each key and the person it is bound to.
        let mut holders: HashMap<&str, &str> = HashMap::new();
        for token in &self.tokens {
            let name = token.person_name();
            if token.user != self.user {
                return fail("a token of another account".into());
            }
            if token.keys.len() > MAX_KEYS {
                return fail(format!("{name} is bound to more than {MAX_KEYS} keys"));
            }
            if token.keys.iter().any(|k| !is_fingerprint(k)) {
                return fail(format!(
                    "{name} has a key that is not a SHA256: fingerprint"
                ));
            }
            if !people.insert(name) {
                return fail(format!("two tokens of {name}"));
            }
            for key in &token.keys {
                match holders.insert(key.as_str(), name) {
                    None => {}
                    Some(other) if other == name => {
                        return fail(format!("{name} lists a key twice"));
                    }
                    Some(other) => {
                        return fail(format!("key {key} is bound to both {other} and {name}"));
                    }
                }
            }
            if token.keys.is_empty() {
                if let Some(first) = unbound {
                    return fail(format!(
                        "{first} and {name} are both bound to no key (at most one token may be: \
                         each would be a way in for every key)"
                    ));
                }
                unbound = Some(name.to_string());
            }
        }
        Ok(())
    }

    /// The token of `person` (`None`, or the account's own name: the account's own token).
    pub fn token(&self, person: Option<&Person>) -> Option<&UserRecord> {
        let person = own_or(&self.user, person);
        self.tokens
            .iter()
            .find(|t| own_or(&self.user, t.person.as_ref()) == person)
    }

    /// The token of `person`, to change.
    pub fn token_mut(&mut self, person: Option<&Person>) -> Option<&mut UserRecord> {
        let user = &self.user;
        let person = own_or(user, person);
        self.tokens
            .iter_mut()
            .find(|t| own_or(user, t.person.as_ref()) == person)
    }

    /// The token bound to `key`, if any.
    pub fn bound_to(&self, key: &str) -> Option<&UserRecord> {
        self.tokens.iter().find(|t| t.keys.iter().any(|k| k == key))
    }

    /// The token bound to no key, if any (at most one: [`Self::check`]).
    pub fn unbound(&self) -> Option<&UserRecord> {
        self.tokens.iter().find(|t| t.keys.is_empty())
    }

    /// Whether this is a shared account (anything format 1 cannot hold: several tokens, a
    /// person's token, a token bound to keys): its audit lines name the person and the key.
    pub fn is_shared(&self) -> bool {
        !self.fits_format_1()
    }

    /// Whether any token is bound to a key.
    pub fn has_bound_tokens(&self) -> bool {
        self.tokens.iter().any(|t| !t.keys.is_empty())
    }

    /// Adds `token`, or replaces the token of the same person; the result must pass
    /// [`Self::check`] (else nothing changes).
    pub fn put(&mut self, mut token: UserRecord) -> Result<(), RecordError> {
        token.person = own_or(&self.user, token.person.as_ref()).cloned();
        let mut next = self.clone();
        match next.token_mut(token.person.as_ref()) {
            Some(slot) => *slot = token,
            None => next.tokens.push(token),
        }
        next.check()?;
        *self = next;
        Ok(())
    }

    /// Removes the token of `person`; `false` if there is none.
    pub fn remove(&mut self, person: Option<&Person>) -> bool {
        let before = self.tokens.len();
        let user = &self.user;
        let person = own_or(user, person);
        self.tokens
            .retain(|t| own_or(user, t.person.as_ref()) != person);
        self.tokens.len() != before
    }

    /// Sets the generation of the account and of every token.
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
        for token in &mut self.tokens {
            token.generation = generation;
        }
    }

    /// Whether format 1 can hold this account: one token, the account's own, bound to no key.
    pub fn fits_format_1(&self) -> bool {
        matches!(self.tokens.as_slice(), [only] if only.person.is_none() && only.keys.is_empty())
    }

    /// Renders the file: format 1 while it can hold the account (exactly what format 1 wrote
    /// before), format 2 otherwise. The buffer holds secrets and is wiped on drop.
    pub fn to_toml(&self) -> Result<Zeroizing<String>, RecordError> {
        self.check()?;
        if self.fits_format_1() {
            let mut only = self.tokens[0].clone();
            only.generation = self.generation;
            return only.to_toml();
        }
        // Enough room up front that the buffer never reallocates (a copy of a secret would
        // stay in freed memory).
        let size: usize = self.tokens.iter().map(UserRecord::text_size).sum();
        let mut out = Zeroizing::new(String::with_capacity(256 + size));
        let _ = write!(
            out,
            "# ecs-mfa enrollment record. Managed by mfa-enroll; do not edit.\n\
             version = {SHARED_FORMAT_VERSION}\nuser = \"{}\"\n",
            self.user
        );
        if self.generation > 0 {
            let _ = writeln!(out, "generation = {}", self.generation);
        }
        for token in &self.tokens {
            write_token(&mut out, token)?;
        }
        Ok(out)
    }
}

/// `person`, with the account's own name read as the account's own token (`None`), as the
/// file does: one spelling, so that a token of "root" on `root` can never be added beside the
/// account's own token (the file would hold two and be refused at every login).
fn own_or<'p>(user: &UserName, person: Option<&'p Person>) -> Option<&'p Person> {
    person.filter(|p| p.as_str() != user.as_str())
}

fn token_from(raw: RawToken, user: &UserName, generation: u64) -> Result<UserRecord, RecordError> {
    let person = Person::parse(&raw.person).map_err(|_| RecordError::BadField("person"))?;
    if !raw.keys.iter().all(|k| is_fingerprint(k)) {
        return Err(RecordError::BadField("keys"));
    }
    let mut token = TokenText {
        secret: raw.secret,
        algorithm: raw.algorithm,
        digits: raw.digits,
        period: raw.period,
        created: raw.created,
        issuer: raw.issuer,
        recovery_codes: raw.recovery_codes,
        enrolled_by: raw.enrolled_by,
        enrolled_key: raw.enrolled_key,
        kind: raw.kind,
        counter: raw.counter,
    }
    .into_token(user)?;
    token.person = (person.as_str() != user.as_str()).then_some(person);
    token.keys = raw.keys;
    token.generation = generation;
    Ok(token)
}

/// One `[[token]]` table.
fn write_token(out: &mut String, token: &UserRecord) -> Result<(), RecordError> {
    let keys: Vec<String> = token.keys.iter().map(|k| format!("\"{k}\"")).collect();
    let _ = write!(
        out,
        "\n[[token]]\nperson = \"{}\"\nkeys = [{}]\n",
        token.person_name(),
        keys.join(", "),
    );
    token.write_fields(out)?;
    token.write_origin(out)
}

#[cfg(test)]
#[path = "account_tests.rs"]
mod tests;
