//! The settings of shared accounts and automation keys: `key_binding`, `automation_keys`.
#![forbid(unsafe_code)]

use crate::user_name::UserName;

/// `key_binding`: which of an account's tokens a login's SSH key may use. A key bound to a
/// token (`mfa-enroll enroll --person P --key K`) always chooses that token and no other;
/// this decides what a key bound to no token gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyBinding {
    /// `"if-bound"` (default): on an account with no bound token, the account's token (as
    /// before shared accounts); on an account with bound tokens, nothing (denied, or
    /// enrollment at login of a new person).
    #[default]
    IfBound,
    /// `"fallback"`: a key bound to no token uses the account's own unbound token (never a
    /// person's), if it has one.
    Fallback,
    /// `"required"`: only bound tokens are ever used; every login needs a key bound to a token.
    Required,
}

impl KeyBinding {
    /// The word used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IfBound => "if-bound",
            Self::Fallback => "fallback",
            Self::Required => "required",
        }
    }
}

/// One `automation_keys` entry: a key fingerprint, on every account or on one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomationKey {
    /// `SHA256:...` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `"deploy:SHA256:..."`: only for this account; `None`: any account.
    pub account: Option<UserName>,
}

impl AutomationKey {
    /// Parses `SHA256:...` or `account:SHA256:...`.
    pub fn parse(entry: &str) -> Option<Self> {
        let (account, fingerprint) = match entry.split_once(":SHA256:") {
            Some((account, rest)) => (
                Some(UserName::parse(account).ok()?),
                format!("SHA256:{rest}"),
            ),
            None => (None, entry.to_string()),
        };
        crate::store::record::is_fingerprint(&fingerprint).then_some(Self {
            fingerprint,
            account,
        })
    }

    /// Whether this entry exempts `key` on `user`.
    pub fn covers(&self, user: &UserName, key: &str) -> bool {
        self.fingerprint == key && self.account.as_ref().is_none_or(|a| a == user)
    }
}
