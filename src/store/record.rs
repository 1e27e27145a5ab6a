//! The per-user enrollment record: `<store>/<user>.toml`, format version 1.
//!
//! ```toml
//! # ecs-mfa enrollment record. Managed by mfa-enroll; do not edit.
//! version = 1
//! user = "alice"
//! secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"   # base32, unpadded
//! algorithm = "SHA1"                           # SHA1 | SHA256 | SHA512
//! digits = 6                                   # 6 | 8
//! period = 30                                  # 30 | 60 seconds
//! created = 1764300000                         # Unix time of enrollment
//! issuer = "web-01"                            # shown in the authenticator app
//! recovery_codes = []                          # hashes of unused recovery codes
//! enrolled_by = "admin"                        # admin | import | login (absent: older record)
//! enrolled_key = "SHA256:..."                  # login only: the SSH key that proved the user
//! type = "hotp"                                # HOTP tokens only (absent: TOTP)
//! counter = 0                                  # HOTP: the next counter at enrollment
//! generation = 4                               # +1 at every administrator's write (absent: 0)
//! ```
//!
//! Unknown keys, a missing key, another `version` or a `user` that does not match the file name
//! make the record invalid (the login is denied). Parse errors never quote the file: it holds a
//! secret. The record is written by hand (not through a serializer) so that every buffer
//! holding the secret is one we zeroize.
#![forbid(unsafe_code)]

use std::fmt::Write;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::recovery::is_valid_hash;
use crate::totp::{Algorithm, SecretKey, TotpError, TotpParams};
use crate::user_name::{Person, UserName};

/// The record format of an account with one token bound to no key (every record before shared
/// accounts): still read, and still written for such an account (see `super::account`).
pub const FORMAT_VERSION: u32 = 1;
/// The record format of an account with people (or keys bound to its token): `super::account`.
pub const SHARED_FORMAT_VERSION: u32 = 2;
/// Largest record file accepted. A token is under 2 KiB (recovery hashes included); a shared
/// account holds up to `super::account::MAX_TOKENS` of them.
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// One token: the whole enrollment of an ordinary account, or one person's token on a shared
/// account (`super::account::AccountRecord` holds an account's tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The account this record belongs to (must match the file name).
    pub user: UserName,
    /// Whose token this is on a shared account; `None`: the account's own token (a format 1
    /// record, or the token whose person is the account name). Its login state is
    /// `<user>~<person>` (see `crate::state::Owner`), the account's own token's is `<user>`.
    pub person: Option<Person>,
    /// `SHA256:` fingerprints of the SSH keys this token is bound to: a login with one of these
    /// keys uses this token and no other. Empty: bound to no key.
    pub keys: Vec<String>,
    /// The shared TOTP secret.
    pub secret: SecretKey,
    /// Algorithm, digits and period.
    pub params: TotpParams,
    /// Unix time of enrollment.
    pub created: u64,
    /// Issuer shown by authenticator apps (kept to re-show the same QR code later).
    pub issuer: String,
    /// Argon2id PHC strings of the unused recovery codes (validated when read).
    pub recovery_codes: Vec<String>,
    /// How the enrollment was made.
    pub origin: Origin,
    /// `Some(counter)`: a counter-based (HOTP, RFC 4226) token whose next code is for
    /// `counter` or later (logins keep the counter in the state: see `auth`); `None`: TOTP.
    pub hotp: Option<u64>,
    /// Raised by every administrator's write of the record (absent in the file: 0). The login
    /// state remembers the highest generation seen, so an older record written back (a backup
    /// restored, an etcd administrator) is refused instead of reviving a replaced secret.
    pub generation: u64,
}

/// How an enrollment was made (shown by `mfa-enroll status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written before this was recorded.
    Unrecorded,
    /// `mfa-enroll enroll` or `reset`.
    Admin,
    /// `mfa-enroll import`.
    Import,
    /// By the user at the first SSH login, proven by this SSH key (`SHA256:` fingerprint).
    Login { key: String },
}

impl Origin {
    /// The word stored in the record and shown by `status`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unrecorded => "",
            Self::Admin => "admin",
            Self::Import => "import",
            Self::Login { .. } => "login",
        }
    }
}

/// The file as serde sees it. Deliberately no `Debug`: it holds the secret as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    version: u32,
    user: String,
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
    #[serde(default)]
    generation: u64,
}

/// The fields of one token as read from a file (format 1's top level, or one `[[token]]` of
/// format 2), before they are checked. Deliberately no `Debug`: it holds the secret as text.
pub(super) struct TokenText {
    pub secret: Zeroizing<String>,
    pub algorithm: String,
    pub digits: u8,
    pub period: u64,
    pub created: u64,
    pub issuer: String,
    pub recovery_codes: Vec<String>,
    pub enrolled_by: String,
    pub enrolled_key: String,
    pub kind: Option<String>,
    pub counter: Option<u64>,
}

impl TokenText {
    /// Checks every field and makes the token of `user` (no person, no keys, generation 0:
    /// the caller sets them).
    pub fn into_token(self, user: &UserName) -> Result<UserRecord, RecordError> {
        let algorithm: Algorithm = self.algorithm.parse().map_err(RecordError::Totp)?;
        let params =
            TotpParams::new(algorithm, self.digits, self.period).map_err(RecordError::Totp)?;
        let secret = SecretKey::from_base32(&self.secret).map_err(RecordError::Totp)?;
        if !self.issuer.chars().all(is_issuer_char) {
            return Err(RecordError::BadField("issuer"));
        }
        if !self.recovery_codes.iter().all(|h| is_valid_hash(h)) {
            return Err(RecordError::BadField("recovery_codes"));
        }
        let origin = match (self.enrolled_by.as_str(), self.enrolled_key) {
            ("", key) if key.is_empty() => Origin::Unrecorded,
            ("admin", key) if key.is_empty() => Origin::Admin,
            ("import", key) if key.is_empty() => Origin::Import,
            ("login", key) if is_fingerprint(&key) => Origin::Login { key },
            _ => return Err(RecordError::BadField("enrolled_by")),
        };
        let hotp = match (self.kind.as_deref(), self.counter) {
            (None | Some("totp"), None) => None,
            (Some("hotp"), Some(counter)) => Some(counter),
            (Some("hotp"), None) => return Err(RecordError::BadField("counter")),
            _ => return Err(RecordError::BadField("type")),
        };
        Ok(UserRecord {
            user: user.clone(),
            person: None,
            keys: Vec::new(),
            secret,
            params,
            created: self.created,
            issuer: self.issuer,
            recovery_codes: self.recovery_codes,
            origin,
            hotp,
            generation: 0,
        })
    }
}

/// Why a record file's contents are unusable. Never contains the file's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not UTF-8 or not TOML, or wrong keys/types; the 1-based line where parsing stopped.
    Malformed { line: Option<usize> },
    /// A `version` other than [`FORMAT_VERSION`].
    UnsupportedVersion(u32),
    /// The `user` field names another account than the file name.
    WrongUser,
    /// A TOTP parameter or the secret is invalid.
    Totp(TotpError),
    /// A string field holds characters the format does not allow.
    BadField(&'static str),
    /// The tokens of a shared account break a rule (two people with one name or one key,
    /// more than one token bound to no key, too many tokens): what, naming people and keys
    /// only (both checked names, never secrets).
    Account(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed { line: Some(line) } => {
                write!(f, "malformed record (line {line}; contents not shown)")
            }
            Self::Malformed { line: None } => write!(f, "malformed record (not UTF-8 TOML)"),
            Self::UnsupportedVersion(v) => {
                write!(
                    f,
                    "record format version {v} is not supported (expected {FORMAT_VERSION} or {SHARED_FORMAT_VERSION})"
                )
            }
            Self::WrongUser => write!(f, "record belongs to another user than its file name"),
            Self::Totp(e) => write!(f, "invalid record: {e}"),
            Self::BadField(field) => write!(f, "invalid record: bad characters in {field}"),
            Self::Account(why) => write!(f, "invalid record: {why}"),
        }
    }
}

impl std::error::Error for RecordError {}

impl UserRecord {
    /// Parses a record file's bytes for `expected_user`.
    pub fn parse(bytes: &[u8], expected_user: &UserName) -> Result<Self, RecordError> {
        let text = std::str::from_utf8(bytes).map_err(|_| RecordError::Malformed { line: None })?;
        let raw: RawRecord = toml::from_str(text).map_err(|e| RecordError::Malformed {
            line: e.span().map(|span| line_of(text, span.start)),
        })?;
        if raw.version != FORMAT_VERSION {
            return Err(RecordError::UnsupportedVersion(raw.version));
        }
        if raw.user != expected_user.as_str() {
            return Err(RecordError::WrongUser);
        }
        let mut record = TokenText {
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
        .into_token(expected_user)?;
        record.generation = raw.generation;
        Ok(record)
    }

    /// The login state this token uses.
    pub fn owner(&self) -> crate::state::Owner {
        crate::state::Owner::new(&self.user, self.person.as_ref())
    }

    /// The name shown for this token: its person, or the account for the account's own token.
    pub fn person_name(&self) -> &str {
        self.person
            .as_ref()
            .map_or(self.user.as_str(), Person::as_str)
    }

    /// Renders the record file. The returned buffer holds the secret and is wiped on drop.
    pub fn to_toml(&self) -> Result<Zeroizing<String>, RecordError> {
        if self.person.is_some() || !self.keys.is_empty() {
            // Format 1 has no room for them (`super::account` writes format 2 then).
            return Err(RecordError::BadField("person"));
        }
        // Reserve enough up front so the buffer never reallocates (which would leave a copy
        // of the secret in freed memory).
        let mut out = Zeroizing::new(String::with_capacity(self.text_size()));
        let _ = write!(
            out,
            "# ecs-mfa enrollment record. Managed by mfa-enroll; do not edit.\n\
             version = {FORMAT_VERSION}\n\
             user = \"{}\"\n",
            self.user,
        );
        self.write_fields(&mut out)?;
        // Only once an administrator's write set it: a record never gains the field otherwise.
        if self.generation > 0 {
            let _ = writeln!(out, "generation = {}", self.generation);
        }
        self.write_origin(&mut out)?;
        Ok(out)
    }

    /// An upper bound of this token's text (for buffers that must never reallocate).
    pub(super) fn text_size(&self) -> usize {
        let hashes: usize = self.recovery_codes.iter().map(|h| h.len() + 8).sum();
        let keys: usize = self.keys.iter().map(|k| k.len() + 4).sum();
        512 + 2 * self.secret.as_bytes().len() + 2 * self.issuer.len() + hashes + keys
    }

    /// The token's fields from `secret` to `type`/`counter`, as both formats write them.
    pub(super) fn write_fields(&self, out: &mut String) -> Result<(), RecordError> {
        if !self.issuer.chars().all(is_issuer_char) {
            return Err(RecordError::BadField("issuer"));
        }
        if !self.recovery_codes.iter().all(|h| is_valid_hash(h)) {
            return Err(RecordError::BadField("recovery_codes"));
        }
        let secret = self.secret.to_base32();
        let _ = write!(
            out,
            "secret = \"{}\"\n\
             algorithm = \"{}\"\n\
             digits = {}\n\
             period = {}\n\
             created = {}\n\
             issuer = \"{}\"\n\
             recovery_codes = [",
            secret.as_str(),
            self.params.algorithm(),
            self.params.digits(),
            self.params.period(),
            self.created,
            escape_toml(&self.issuer),
        );
        for (i, hash) in self.recovery_codes.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}\n  \"{hash}\"");
        }
        out.push_str(if self.recovery_codes.is_empty() {
            "]\n"
        } else {
            ",\n]\n"
        });
        if let Some(counter) = self.hotp {
            let _ = write!(out, "type = \"hotp\"\ncounter = {counter}\n");
        }
        Ok(())
    }

    /// `enrolled_by` (and `enrolled_key`), as both formats write them.
    pub(super) fn write_origin(&self, out: &mut String) -> Result<(), RecordError> {
        match &self.origin {
            Origin::Unrecorded => {}
            Origin::Login { key } if is_fingerprint(key) => {
                let _ = write!(out, "enrolled_by = \"login\"\nenrolled_key = \"{key}\"\n");
            }
            Origin::Login { .. } => return Err(RecordError::BadField("enrolled_key")),
            other => {
                let _ = writeln!(out, "enrolled_by = \"{}\"", other.as_str());
            }
        }
        Ok(())
    }
}

/// `SHA256:` and unpadded base64 (an OpenSSH key fingerprint).
pub fn is_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        !b64.is_empty()
            && b64.len() <= 64
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// Issuers are free text for people, but no control characters (they end up in logs and URIs).
pub(crate) fn is_issuer_char(c: char) -> bool {
    !c.is_control()
}

pub(crate) fn escape_toml(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// 1-based line number of byte `offset` in `text` (for parse errors that must not quote text).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    fn sample() -> UserRecord {
        UserRecord {
            user: alice(),
            secret: SecretKey::from_base32(SECRET).unwrap(),
            params: TotpParams::new(Algorithm::Sha256, 8, 60).unwrap(),
            created: 1_764_300_000,
            issuer: "web \"01\" \\ prod".into(),
            recovery_codes: vec![
                crate::recovery::RecoveryCode::parse(b"ab2cd-ef3gh")
                    .unwrap()
                    .hash()
                    .unwrap(),
            ],
            origin: Origin::Login {
                key: "SHA256:abcDEF123+/xyz".into(),
            },
            hotp: None,
            generation: 0,
            person: None,
            keys: vec![],
        }
    }

    #[test]
    fn the_generation_is_optional_and_written_only_once_set() {
        let record = sample();
        let text = record.to_toml().unwrap();
        assert!(
            !text.contains("generation"),
            "a record never gains it unasked"
        );
        let mut later = sample();
        later.generation = 12;
        let text = later.to_toml().unwrap();
        assert!(text.contains("generation = 12\n"));
        assert_eq!(UserRecord::parse(text.as_bytes(), &alice()).unwrap(), later);
    }

    #[test]
    fn record_round_trips_through_its_file_format() {
        let record = sample();
        let text = record.to_toml().unwrap();
        assert_eq!(
            UserRecord::parse(text.as_bytes(), &alice()).unwrap(),
            record
        );
        let mut empty = sample();
        empty.recovery_codes.clear();
        let text = empty.to_toml().unwrap();
        assert!(text.contains("recovery_codes = []\n"));
        assert_eq!(UserRecord::parse(text.as_bytes(), &alice()).unwrap(), empty);
    }

    fn minimal(extra: &str) -> String {
        format!(
            "version = 1\nuser = \"alice\"\nsecret = \"{SECRET}\"\nalgorithm = \"SHA1\"\n\
             digits = 6\nperiod = 30\ncreated = 0\n{extra}"
        )
    }

    #[test]
    fn a_minimal_record_parses_with_defaults() {
        let r = UserRecord::parse(minimal("").as_bytes(), &alice()).unwrap();
        assert_eq!(r.params, TotpParams::default());
        assert!(r.recovery_codes.is_empty() && r.issuer.is_empty());
    }

    #[test]
    fn invalid_records_are_refused_without_quoting_the_secret() {
        let cases: Vec<(Vec<u8>, RecordError)> = vec![
            (b"".to_vec(), RecordError::Malformed { line: Some(1) }),
            (b"\xff\xfe".to_vec(), RecordError::Malformed { line: None }),
            (
                minimal("bogus = 1\n").into_bytes(),
                RecordError::Malformed { line: Some(8) },
            ),
            (
                minimal("")
                    .replace("version = 1", "version = 2")
                    .into_bytes(),
                RecordError::UnsupportedVersion(2),
            ),
            (
                minimal("").replace("\"alice\"", "\"bob\"").into_bytes(),
                RecordError::WrongUser,
            ),
            (
                minimal("").replace("digits = 6", "digits = 9").into_bytes(),
                RecordError::Totp(TotpError::BadDigits),
            ),
            (
                minimal("")
                    .replace("period = 30", "period = 0")
                    .into_bytes(),
                RecordError::Totp(TotpError::BadPeriod),
            ),
            (
                minimal("").replace("SHA1", "MD5").into_bytes(),
                RecordError::Totp(TotpError::UnknownAlgorithm),
            ),
            (
                minimal("").replace(SECRET, "GEZDGNBV").into_bytes(),
                RecordError::Totp(TotpError::SecretTooShort),
            ),
            (
                minimal("")
                    .replace(SECRET, &format!("{SECRET}\\u0000"))
                    .into_bytes(),
                RecordError::Totp(TotpError::BadBase32),
            ),
            (
                minimal("issuer = \"a\\nb\"\n").into_bytes(),
                RecordError::BadField("issuer"),
            ),
            (
                minimal("")
                    .replace(&format!("\"{SECRET}\""), &format!("\"{SECRET}"))
                    .into_bytes(),
                RecordError::Malformed { line: Some(3) },
            ),
        ];
        for (bytes, expected) in cases {
            let err = UserRecord::parse(&bytes, &alice()).unwrap_err();
            assert_eq!(err, expected, "{}", String::from_utf8_lossy(&bytes));
            assert!(!err.to_string().contains("GEZDGNBV"));
        }
    }

    #[test]
    fn record_debug_output_hides_the_secret() {
        let shown = format!("{:?}", sample());
        assert!(!shown.contains("GEZDGNBV"), "{shown}");
    }
}
