//! Audit lines: one per authentication decision (the [`Decision`] comes from `decision`),
//! `key=value` fields, bounded length.
//!
//! ```text
//! user=alice rhost=192.0.2.7 service=sshd result=success reason=ok skew=0
//! user=alice rhost=192.0.2.7 service=sshd result=deny reason=bad_code failures=2
//! user=root person=alice key=SHA256:Xr4... rhost=192.0.2.7 service=sshd result=success reason=ok skew=0
//! ```
//!
//! `person=` and `key=` appear on shared accounts (the token's person and the key that chose
//! it) and `key=` for automation keys; person names are checked names, keys fingerprints.
//!
//! Values that come from the client (user, rhost) are reduced to printable ASCII without spaces
//! and cut at 64 characters, so nobody can forge a second line or a field. Codes and secrets are
//! never part of a [`Decision`], so they cannot reach a log.
#![forbid(unsafe_code)]

use std::fmt::{self, Write};

use crate::decision::{Decision, Outcome, Reason};

mod json;
pub mod read;

/// `audit_format`: how each audit line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `key=value` fields (the default; what fail2ban's filter and `mfa-enroll report` read).
    #[default]
    KeyValue,
    /// One JSON object per line, Elastic Common Schema fields (see [`json`]).
    Json,
}

impl Decision {
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
    /// `audit_format` (key=value until the config was read).
    pub format: Format,
}

/// Longest value of a client-supplied field.
const MAX_FIELD: usize = 64;
/// Longest detail text.
const MAX_DETAIL: usize = 300;

/// Formats the audit line for `decision` in `ctx.format`.
pub fn line(ctx: &Context, decision: &Decision) -> String {
    match ctx.format {
        Format::KeyValue => key_value_line(ctx, decision),
        Format::Json => json::line(ctx, decision),
    }
}

/// The `key=value` line.
fn key_value_line(ctx: &Context, decision: &Decision) -> String {
    let mut out = String::with_capacity(160);
    let _ = write!(
        out,
        "user={}{}{}{} rhost={} service={} result={} reason={}",
        Field(ctx.user.as_deref()),
        match decision.account() {
            Some(account) => format!(" account={}", Field(Some(account))),
            None => String::new(),
        },
        match decision.person() {
            Some(person) => format!(" person={}", Field(Some(person))),
            None => String::new(),
        },
        match decision.key() {
            Some(key) => format!(" key={}", Field(Some(key))),
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
        let _ = write!(out, " detail=\"{}\"", clean_detail(detail));
    }
    out
}

/// The detail text as both formats write it: bounded, no control characters, no `"`.
fn clean_detail(detail: &str) -> String {
    detail
        .chars()
        .take(MAX_DETAIL)
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// A client-supplied value as both formats write it (see [`Field`]); `None` when absent.
fn clean_field(value: Option<&str>) -> Option<String> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| Field(Some(v)).to_string())
}

/// A client-supplied value: printable ASCII, no spaces or quotes, bounded; `-` when absent.
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
            format: Format::KeyValue,
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
