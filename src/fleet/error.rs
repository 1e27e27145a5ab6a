//! Why the fleet backend could not do what was asked: [`FleetError`], with the per-endpoint
//! failures of an outage or a refusal typed ([`Failures`], [`Cause`]) so that callers match on
//! them instead of searching the text. The `Display` text is what audit lines, `mfa-enroll`
//! and docs/fleet.md show (e.g. `etcd unavailable: https://10.0.0.11:2379: timeout (global);
//! https://10.0.0.12:2379: HTTP 503: ...`).
#![forbid(unsafe_code)]

use std::fmt;

/// The message of a full database (etcd's NOSPACE alarm), as logins and `mfa-enroll` show it.
pub const DATABASE_FULL: &str =
    "etcd database full (NOSPACE alarm): see docs/fleet.md, Space and compaction";

/// Why the fleet backend could not do what was asked. Every variant denies a login; only
/// [`FleetError::Unavailable`] may fall back to the local copy (`on_unavailable = "local"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// No endpoint answered within the budget: connection refused or reset, timeout, quorum
    /// lost (etcd's 503/500 after its own 7 s). Possibly not committed, possibly committed.
    Unavailable(Failures),
    /// An endpoint answered in a way that is never bypassed: TLS verification failed (wrong
    /// CA, bad client certificate), 4xx (permission denied, bad request), not etcd.
    Refused(Failures),
    /// A file this host needs (certificate, key, fleet key, password) is missing or unsafe.
    LocalFile(String),
    /// A value in etcd is not what ecs-mfa writes, or cannot be opened with this host's fleet
    /// key (a record sealed with another key, tampered with, or moved to another user).
    BadValue(String),
    /// Too many concurrent changes to one user's state; the login is denied.
    Contention,
}

impl FleetError {
    /// Whether this is an outage (the only class that may use the local copy).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether etcd refused for lack of permission (RBAC: HTTP 403), e.g. a host's
    /// credentials used to write a record.
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Self::Refused(failures) => failures
                .0
                .iter()
                .any(|f| matches!(f.cause, Cause::Http { status: 403, .. })),
            _ => false,
        }
    }

    /// A refusal of one request for one cause (no endpoint named).
    pub(crate) fn refused(cause: Cause) -> Self {
        Self::Refused(Failures(vec![EndpointFailure {
            endpoint: None,
            cause,
        }]))
    }
}

/// What went wrong at each endpoint tried, in the order tried (one entry without an endpoint
/// when the operation had one target or failed as a whole). Shown joined with `"; "`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures(pub Vec<EndpointFailure>);

/// One endpoint's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointFailure {
    /// The endpoint's URL, when the failure is one of several tried.
    pub endpoint: Option<String>,
    /// What happened there.
    pub cause: Cause,
}

/// Why one request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The transport's words: connection refused or reset, timeout, TLS verification.
    Transport(String),
    /// The operation's budget was spent before the request was sent.
    BudgetSpent,
    /// Not tried: the operation's deadline (`timeout_ms`, in ms here) passed first.
    NotTried { budget_ms: u128 },
    /// etcd answered with an HTTP error; `message` is its text made printable (for 429, with
    /// the '?' that stood for spaces turned back into spaces).
    Http { status: u16, message: String },
    /// The answer is not what etcd sends (too large, not UTF-8, not JSON, a bad shape).
    NotEtcd { status: Option<u16>, why: String },
    /// The RBAC token was refused (`twice`: again after it was renewed).
    TokenRefused { twice: bool },
    /// Authentication answered without a token.
    NoToken,
    /// The search for the oldest readable revision took more than its four budgets.
    HistorySearchTooLong,
}

impl Cause {
    /// etcd's "required revision has been compacted" (a read below the compacted revision).
    pub fn is_compacted(&self) -> bool {
        // Server text comes back with spaces as '?' (etcd.rs, `clean`).
        matches!(self, Self::Http { message, .. }
            if message.replace('?', " ").contains("revision has been compacted"))
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(why) => write!(f, "etcd unavailable: {why}"),
            Self::Refused(why) => write!(f, "etcd refused: {why}"),
            Self::LocalFile(why) => write!(f, "fleet: {why}"),
            Self::BadValue(why) => write!(f, "fleet: {why}"),
            Self::Contention => f.write_str(
                "fleet: the user's state kept changing under concurrent logins; try again",
            ),
        }
    }
}

impl std::error::Error for FleetError {}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            failure.fmt(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for EndpointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(endpoint) => write!(f, "{endpoint}: {}", self.cause),
            None => self.cause.fmt(f),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(why) => f.write_str(why),
            Self::BudgetSpent => f.write_str("budget spent"),
            Self::NotTried { budget_ms } => {
                write!(f, "not tried, deadline of {budget_ms} ms passed")
            }
            Self::Http {
                status: 403,
                message,
            } => write!(f, "permission denied (HTTP 403): {message}"),
            Self::Http {
                status: 429,
                message,
            } if message.contains("database space exceeded") => {
                write!(f, "{DATABASE_FULL} (HTTP 429: {message})")
            }
            Self::Http { status, message } => write!(f, "HTTP {status}: {message}"),
            Self::NotEtcd {
                status: Some(status),
                why,
            } => write!(f, "HTTP {status}: {why} (not etcd?)"),
            Self::NotEtcd { status: None, why } => write!(f, "{why} (not etcd?)"),
            Self::TokenRefused { twice: false } => f.write_str("the RBAC token was refused"),
            Self::TokenRefused { twice: true } => f.write_str("the RBAC token was refused twice"),
            Self::NoToken => f.write_str("authentication gave no token"),
            Self::HistorySearchTooLong => {
                f.write_str("the history search took more than 4 x timeout_ms")
            }
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
