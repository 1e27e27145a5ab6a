//! Audit events: one line per authentication decision, `key=value` fields, bounded length.
//!
//! ```text
//! user=alice rhost=192.0.2.7 service=sshd result=success reason=ok skew=0
//! user=alice rhost=192.0.2.7 service=sshd result=deny reason=bad_code failures=2
//! ```
//!
//! Values that come from the client (user, rhost) are reduced to printable ASCII without spaces
//! and cut at 64 characters, so nobody can forge a second line or a field. Codes and secrets are
//! never part of a [`Decision`], so they cannot reach a log.
#![forbid(unsafe_code)]

use std::fmt::{self, Write};

/// What the module returns to PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `PAM_SUCCESS`: a verified code.
    Success,
    /// `PAM_IGNORE`: MFA is not required for this user (documented cases only).
    Ignore,
    /// `PAM_AUTH_ERR`: everything else.
    Deny,
}

/// Why: the `reason=` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A fresh, correct code.
    Ok,
    /// A valid recovery code, now used up (`remaining=` tells how many are left).
    RecoveryCode,
    /// The user enrolled during this login (key first, then a confirmed code); `detail=` has
    /// the SSH key fingerprint.
    EnrolledAtLogin,
    /// A wrong code, or input that is not a code at all.
    BadCode,
    /// A correct code for a step that was already used.
    Replay,
    /// The user is locked out after too many failures.
    Throttled,
    /// No enrollment for this user.
    NotEnrolled,
    /// MFA not required: exempt network or group, or not in `require_groups`.
    Exempt,
    /// The user name cannot be valid (path characters, too long, ...).
    BadUser,
    /// NSS knows no account of that name (denied after a prompt, never ignored).
    UnknownAccount,
    /// The enrollment record or its directory is unsafe or invalid.
    BadFile,
    /// Module arguments or the config file are invalid.
    BadConfig,
    /// The client gave no answer to the prompt (conversation failed).
    NoCode,
    /// `first_factor=publickey` is set and sshd reports no accepted SSH key for this
    /// connection (password or keyboard-interactive alone). Denied before any prompt.
    NoFirstFactor,
    /// The user's replay mark lies ahead of the server's clock (the clock was ahead, or was set
    /// back): no code can pass until real time catches up. Not counted; `mfa-enroll unlock`.
    StateInFuture,
    /// sshd replaced the typed answer with its fixed bad string (root under
    /// `PermitRootLogin prohibit-password`, or an account sshd itself refuses). Not counted.
    SshdReplacedAnswer,
    /// Anything else: state I/O failure, clock error, caught panic.
    Internal,
}

impl Reason {
    /// Every reason, in the order the docs list them.
    pub const ALL: [Reason; 17] = [
        Self::Ok,
        Self::RecoveryCode,
        Self::EnrolledAtLogin,
        Self::BadCode,
        Self::Replay,
        Self::Throttled,
        Self::NotEnrolled,
        Self::Exempt,
        Self::BadUser,
        Self::UnknownAccount,
        Self::BadFile,
        Self::BadConfig,
        Self::NoCode,
        Self::NoFirstFactor,
        Self::SshdReplacedAnswer,
        Self::StateInFuture,
        Self::Internal,
    ];

    /// One line for the man page: what the administrator reads the reason as.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "success: a fresh, correct code.",
            Self::RecoveryCode => "success: a recovery code, now used up (remaining= codes left).",
            Self::EnrolledAtLogin => {
                "success: the user enrolled during this login (SSH key first, then a confirmed code); detail= has the key fingerprint."
            }
            Self::BadCode => "denied: a wrong code, or input that is not a code.",
            Self::Replay => "denied: a correct code for a time step already used.",
            Self::Throttled => "denied: locked out after too many failures (locked_for=).",
            Self::NotEnrolled => "denied after a prompt, or ignored with nullok: no enrollment.",
            Self::Exempt => "ignored: exempt network or group, or not in require_groups.",
            Self::BadUser => "denied: a user name that cannot be valid.",
            Self::UnknownAccount => {
                "denied after a prompt, never ignored (not even with nullok): NSS knows no account of that name."
            }
            Self::BadFile => "denied: the record or the store is unsafe or invalid.",
            Self::BadConfig => "denied: bad module argument or config file.",
            Self::NoCode => "denied: the client gave no answer.",
            Self::NoFirstFactor => {
                "denied before any prompt, not counted: first_factor=publickey and sshd accepted no SSH key in this connection (detail= names the sshd setting to fix)."
            }
            Self::SshdReplacedAnswer => {
                "denied, not counted: sshd passed its fixed bad string instead of the typed code (root without PermitRootLogin yes, or an account sshd refuses)."
            }
            Self::StateInFuture => {
                "denied, not counted: the last accepted code lies ahead of the server's clock (it was ahead, or was set back); fix the clock, then mfa-enroll unlock."
            }
            Self::Internal => "denied: state unusable, clock before 1970, caught panic.",
        }
    }

    /// The word used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RecoveryCode => "recovery_code",
            Self::EnrolledAtLogin => "enrolled_at_login",
            Self::BadCode => "bad_code",
            Self::Replay => "replay",
            Self::Throttled => "throttled",
            Self::NotEnrolled => "not_enrolled",
            Self::Exempt => "exempt",
            Self::BadUser => "bad_user",
            Self::UnknownAccount => "unknown_account",
            Self::BadFile => "bad_file",
            Self::BadConfig => "bad_config",
            Self::NoCode => "no_code",
            Self::NoFirstFactor => "no_first_factor",
            Self::SshdReplacedAnswer => "sshd_replaced_answer",
            Self::StateInFuture => "state_in_future",
            Self::Internal => "internal",
        }
    }
}

/// The result of one authentication, with everything the audit line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What PAM is told.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// Observed clock skew in steps (code step minus server step), when a code matched.
    pub skew: Option<i64>,
    /// Consecutive failures after this attempt, when it failed.
    pub failures: Option<u32>,
    /// Seconds of lockout remaining (or just started).
    pub locked_for: Option<u64>,
    /// Recovery codes left after one was used.
    pub remaining: Option<usize>,
    /// The canonical account name from NSS, when it differs from the name the client gave
    /// (`Alice`, `alice@corp.example` -> `alice`): the record, state and groups used are its.
    pub account: Option<String>,
    /// Free text for the administrator (file paths, error causes). Never a code or secret.
    pub detail: Option<String>,
}

impl Decision {
    /// A verified code.
    pub fn success(skew: i64) -> Self {
        Self {
            skew: Some(skew),
            ..Self::new(Outcome::Success, Reason::Ok)
        }
    }

    /// A successful login for another reason than a TOTP code (a recovery code).
    pub fn new_success(reason: Reason) -> Self {
        Self::new(Outcome::Success, reason)
    }

    /// MFA not required for this user.
    pub fn ignore(reason: Reason) -> Self {
        Self::new(Outcome::Ignore, reason)
    }

    /// A denial.
    pub fn deny(reason: Reason) -> Self {
        Self::new(Outcome::Deny, reason)
    }

    /// Adds administrator detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn new(outcome: Outcome, reason: Reason) -> Self {
        Self {
            outcome,
            reason,
            skew: None,
            failures: None,
            locked_for: None,
            remaining: None,
            account: None,
            detail: None,
        }
    }

    /// How loud the line should be.
    pub fn severity(&self) -> Severity {
        match (self.outcome, self.reason) {
            (Outcome::Success | Outcome::Ignore, _) => Severity::Info,
            (
                _,
                Reason::BadFile
                | Reason::BadConfig
                | Reason::Internal
                | Reason::NoFirstFactor
                | Reason::SshdReplacedAnswer
                | Reason::StateInFuture,
            ) => Severity::Error,
            _ => Severity::Notice,
        }
    }
}

/// Syslog priority of an audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `LOG_INFO`: successes and ignores.
    Info,
    /// `LOG_NOTICE`: ordinary denials.
    Notice,
    /// `LOG_ERR`: denials an administrator must fix.
    Error,
}

/// Who asked: the PAM items, as received (untrusted).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `PAM_USER`, or `None` when it could not be read.
    pub user: Option<String>,
    /// `PAM_RHOST`.
    pub rhost: Option<String>,
    /// `PAM_SERVICE`.
    pub service: Option<String>,
}

/// Longest value of a client-supplied field.
const MAX_FIELD: usize = 64;
/// Longest detail text.
const MAX_DETAIL: usize = 300;

/// Formats the audit line for `decision`.
pub fn line(ctx: &Context, decision: &Decision) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "user={}{} rhost={} service={} result={} reason={}",
        Field(ctx.user.as_deref()),
        match &decision.account {
            Some(account) => format!(" account={}", Field(Some(account))),
            None => String::new(),
        },
        Field(ctx.rhost.as_deref()),
        Field(ctx.service.as_deref()),
        match decision.outcome {
            Outcome::Success => "success",
            Outcome::Ignore => "ignore",
            Outcome::Deny => "deny",
        },
        decision.reason.as_str()
    );
    if let Some(skew) = decision.skew {
        let _ = write!(out, " skew={skew}");
    }
    if let Some(failures) = decision.failures {
        let _ = write!(out, " failures={failures}");
    }
    if let Some(secs) = decision.locked_for {
        let _ = write!(out, " locked_for={secs}s");
    }
    if let Some(n) = decision.remaining {
        let _ = write!(out, " remaining={n}");
    }
    if let Some(detail) = &decision.detail {
        let clean: String = detail
            .chars()
            .take(MAX_DETAIL)
            .map(|c| match c {
                '"' => '\'',
                c if c.is_control() => '?',
                c => c,
            })
            .collect();
        let _ = write!(out, " detail=\"{clean}\"");
    }
    out
}

/// A client-supplied value: printable ASCII, no spaces or quotes, bounded; `-` when absent.
/// Untrusted or admin text reduced to printable ASCII (anything else becomes `?`) and cut at
/// `max` characters: for values quoted in errors and logs (module arguments, who ran a command).
pub fn ascii_printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

struct Field<'a>(Option<&'a str>);

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(value) = self.0.filter(|v| !v.is_empty()) else {
            return f.write_str("-");
        };
        for (i, c) in value.chars().enumerate() {
            if i == MAX_FIELD {
                return f.write_str("...");
            }
            let safe = c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\';
            f.write_char(if safe { c } else { '?' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_documented_in_the_readme_and_config_docs() {
        let readme = include_str!("../README.md");
        let config = include_str!("../docs/config.md");
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.as_str()), "{reason:?} twice");
            let cell = format!("| `{}` |", reason.as_str());
            assert!(readme.contains(&cell), "README audit table lacks {cell}");
            assert!(
                config.contains(&format!("`{}`", reason.as_str())),
                "docs/config.md lacks {reason:?}"
            );
            assert!(!reason.meaning().is_empty());
        }
    }

    fn ctx(user: &str, rhost: &str) -> Context {
        Context {
            user: Some(user.into()),
            rhost: Some(rhost.into()),
            service: Some("sshd".into()),
        }
    }

    #[test]
    fn audit_line_has_the_documented_fields() {
        let line = line(&ctx("alice", "192.0.2.7"), &Decision::success(-1));
        assert_eq!(
            line,
            "user=alice rhost=192.0.2.7 service=sshd result=success reason=ok skew=-1"
        );
        let mut d = Decision::deny(Reason::BadCode);
        d.failures = Some(5);
        d.locked_for = Some(30);
        let line = super::line(&Context::default(), &d);
        assert_eq!(
            line,
            "user=- rhost=- service=- result=deny reason=bad_code failures=5 locked_for=30s"
        );
    }

    #[test]
    fn hostile_field_values_cannot_forge_fields_or_lines() {
        let d = Decision::deny(Reason::BadUser).with_detail("a\nb \"c\"");
        let line = line(&ctx("x result=success\nuser=root", &"h".repeat(500)), &d);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("user=x?result?success?user?root rhost=hhhh"));
        assert_eq!(line.matches("result=").count(), 1);
        assert!(line.contains(&format!("rhost={}... ", "h".repeat(64))));
        assert!(line.ends_with("detail=\"a?b 'c'\""));
    }
}
