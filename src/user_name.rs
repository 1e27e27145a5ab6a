//! Validated user names.
//!
//! A user name arrives from the network (sshd passes whatever the client typed) and becomes part
//! of a file name in the store and the state directory. It is therefore checked before it touches
//! any path: only a conservative set of characters is allowed, so `/`, `..`, NUL, control
//! characters, white space and over-long names can never reach `openat`.
#![forbid(unsafe_code)]

use std::fmt;

/// Longest accepted user name, in bytes. Linux `useradd` stops at 32; directory services
/// (SSSD `user@domain`) can be longer, so leave room but stay far below `NAME_MAX`.
pub const MAX_LEN: usize = 64;

/// A user name that is safe to use as a file-name stem.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserName(String);

/// Why a user name was rejected. The offending name is not included: it is hostile input and
/// the caller decides how (and whether) to show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_LEN`] bytes.
    TooLong,
    /// The name starts with `-` or `.` (option-like, hidden file, `.` and `..`).
    BadFirstCharacter,
    /// The name contains a character outside `A-Z a-z 0-9 . _ - @`.
    BadCharacter,
}

impl UserName {
    /// Checks `raw` and wraps it.
    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        let bytes = raw.as_bytes();
        let first = *bytes.first().ok_or(UserNameError::Empty)?;
        if bytes.len() > MAX_LEN {
            return Err(UserNameError::TooLong);
        }
        if first == b'-' || first == b'.' {
            return Err(UserNameError::BadFirstCharacter);
        }
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@');
        if !bytes.iter().all(allowed) {
            return Err(UserNameError::BadCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's name on a shared account: who a token belongs to (`mfa-enroll enroll --person`).
/// The same characters and length as a user name, so that it is safe as part of a state file
/// name (`<user>~<person>.state`), an etcd key and an audit line without escaping.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Person(String);

impl Person {
    /// Checks `raw` like a user name and wraps it.
    pub fn parse(raw: &str) -> Result<Self, UserNameError> {
        UserName::parse(raw).map(|name| Self(name.0))
    }

    /// A person name made from free text (an `authorized_keys` comment such as
    /// `alice@laptop`): characters a name may not hold become `-`, cut at [`MAX_LEN`] bytes.
    /// `None` when nothing usable is left.
    pub fn from_label(label: &str) -> Option<Self> {
        let cleaned: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@') {
                    c
                } else {
                    '-'
                }
            })
            .take(MAX_LEN)
            .collect();
        let cleaned = cleaned.trim_start_matches(['-', '.']).trim_end_matches('-');
        Self::parse(cleaned).ok()
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Person({:?})", self.0)
    }
}

/// The account `user` names, as NSS spells it (`getpwnam(user)->pw_name`): with a
/// case-insensitive or aliasing directory (SSSD, AD, LDAP), `Alice`, `ALICE` or
/// `alice@corp.example` can all be the account `alice`, and the record, state and groups must be
/// `alice`'s whatever the client typed. `None` when NSS knows no such account (or its name is not
/// a valid user name).
pub fn nss_account(user: &UserName) -> Option<UserName> {
    let account = nix::unistd::User::from_name(user.as_str()).ok()??;
    UserName::parse(&account.name).ok()
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({:?})", self.0)
    }
}

impl fmt::Display for UserNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "user name is empty",
            Self::TooLong => "user name is longer than 64 bytes",
            Self::BadFirstCharacter => "user name starts with '-' or '.'",
            Self::BadCharacter => {
                "user name contains a character other than letters, digits, '.', '_', '-', '@'"
            }
        })
    }
}

impl std::error::Error for UserNameError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "alice",
            "bob_2",
            "svc-backup",
            "j.doe",
            "user@corp.example",
            "A",
        ] {
            assert_eq!(UserName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn path_like_and_hostile_names_are_rejected() {
        let cases = [
            ("", UserNameError::Empty),
            ("../../etc/passwd", UserNameError::BadFirstCharacter),
            ("..", UserNameError::BadFirstCharacter),
            (".hidden", UserNameError::BadFirstCharacter),
            ("-rf", UserNameError::BadFirstCharacter),
            ("a/b", UserNameError::BadCharacter),
            ("a\0b", UserNameError::BadCharacter),
            ("a\nb", UserNameError::BadCharacter),
            ("a b", UserNameError::BadCharacter),
            ("tab\t", UserNameError::BadCharacter),
            ("ünïcode", UserNameError::BadCharacter),
        ];
        for (raw, expected) in cases {
            assert_eq!(UserName::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn person_names_from_key_comments_are_cleaned_and_bounded() {
        let cases = [
            ("alice@laptop", Some("alice@laptop")),
            ("Dave Smith <dave@corp>", Some("Dave-Smith--dave@corp")),
            ("\u{1b}[2Jroot\nuser=admin", Some("2Jroot-user-admin")),
            ("-rf", Some("rf")),
            ("...", None),
            ("", None),
            ("ünï", Some("n")),
        ];
        for (label, want) in cases {
            let got = Person::from_label(label);
            assert_eq!(got.as_ref().map(Person::as_str), want, "{label:?}");
        }
        let huge = Person::from_label(&"x".repeat(100_000)).unwrap();
        assert_eq!(huge.as_str().len(), MAX_LEN);
        assert!(
            Person::parse("a~b").is_err(),
            "'~' separates account and person"
        );
    }

    #[test]
    fn over_long_names_are_rejected() {
        assert!(UserName::parse(&"a".repeat(MAX_LEN)).is_ok());
        assert_eq!(
            UserName::parse(&"a".repeat(MAX_LEN + 1)),
            Err(UserNameError::TooLong)
        );
        assert_eq!(
            UserName::parse(&"a".repeat(300)),
            Err(UserNameError::TooLong)
        );
    }
}
