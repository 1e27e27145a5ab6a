//! Per-member maintenance reads for `fleet status` and `doctor`: status (version, leader,
//! database size), alarms, the oldest readable revision. Never used by a login.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::wire::{b64, clean, prefix_end};
use super::{AttemptError, Etcd};
use crate::fleet::{Cause, EndpointFailure, Failures, FleetError};

/// What one endpoint said.
#[derive(Debug)]
pub struct MemberStatus {
    /// etcd's version.
    pub version: String,
    /// This member's id and the leader's (hex).
    pub member: String,
    pub leader: String,
    /// Size of the database in bytes.
    pub db_size: u64,
    /// Space, history and alarms as this member sees them ([`MemberSpace`]).
    pub space: MemberSpace,
}

impl Etcd {
    /// `POST /v3/maintenance/status` on one endpoint (for `fleet status`), and how long it took.
    pub fn member_status(&self, endpoint: &str) -> Result<(MemberStatus, Duration), FleetError> {
        let start = Instant::now();
        let answer = self.post_one(endpoint, "/v3/maintenance/status", &json!({}))?;
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let id = |v: Option<&Value>| {
            text(v)
                .parse::<u64>()
                .map(|n| format!("{n:x}"))
                .unwrap_or_default()
        };
        Ok((
            MemberStatus {
                version: text(answer.get("version")),
                member: id(answer.get("header").and_then(|h| h.get("member_id"))),
                leader: id(answer.get("leader")),
                db_size: text(answer.get("dbSize")).parse().unwrap_or(0),
                space: MemberSpace::from_status(&answer),
            },
            start.elapsed(),
        ))
    }
}

/// The start of what a login's audit line (`reason=backend_error`), `fleet status` and
/// `doctor` say when etcd refuses writes because its database reached its space quota.
pub use crate::fleet::error::DATABASE_FULL;

/// Database size, history and alarms of one member, from `POST /v3/maintenance/status`
/// (etcd 3.4 answers these to any authenticated user; the quota itself is not in the answer:
/// `[fleet] quota_backend_bytes` says it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpace {
    /// Bytes in use inside the database file (`dbSizeInUse`): what compaction frees.
    pub db_size_in_use: u64,
    /// The cluster's current revision as this member has applied it.
    pub revision: i64,
    /// Active alarms as etcd lists them (`errors`, e.g. "memberID:… alarm:NOSPACE").
    pub alarms: Vec<String>,
}

impl MemberSpace {
    pub(super) fn from_status(answer: &Value) -> Self {
        let number = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        Self {
            db_size_in_use: number(answer.get("dbSizeInUse"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            revision: number(answer.get("header").and_then(|h| h.get("revision"))).unwrap_or(0),
            alarms: answer
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .take(16)
                        .map(clean)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One active alarm (`POST /v3/maintenance/alarm {"action":"GET"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The member that raised it (hex).
    pub member: String,
    /// `NOSPACE` (the database reached its quota: writes refused) or `CORRUPT`.
    pub alarm: String,
}

/// Space and history (docs/fleet.md, "Space and compaction"): what `fleet status` and
/// `doctor` need to tell a cluster that compacts from one that will fill up.
impl Etcd {
    /// The cluster's active alarms (any authenticated user may list them in etcd 3.4).
    pub fn alarms(&self) -> Result<Vec<Alarm>, FleetError> {
        let answer = self.call("/v3/maintenance/alarm", &json!({ "action": "GET" }))?;
        let list = answer
            .get("alarms")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .take(64)
            .map(|a| Alarm {
                member: match a.get("memberID") {
                    Some(Value::String(s)) => s
                        .parse::<u64>()
                        .map(|n| format!("{n:x}"))
                        .unwrap_or_else(|_| clean(s)),
                    _ => String::new(),
                },
                // proto3 omits the zero value (NONE).
                alarm: a
                    .get("alarm")
                    .and_then(Value::as_str)
                    .map(clean)
                    .unwrap_or_else(|| "NONE".into()),
            })
            .collect())
    }

    /// The oldest revision `endpoint` can still read under `prefix` (a key range the caller
    /// may read), found by bisection between 1 and `current` with count-only ranges: 1 means
    /// the history was never compacted. etcd 3.4 does not report the compacted revision
    /// itself; a range below it is refused ("required revision has been compacted"). The
    /// reads are serializable (this member's own view: a display, never a login decision) and
    /// the whole search gets four budgets.
    pub fn oldest_revision(
        &self,
        endpoint: &str,
        prefix: &str,
        current: i64,
    ) -> Result<i64, FleetError> {
        let give_up = Instant::now() + self.budget * 4;
        let readable = |revision: i64| -> Result<bool, FleetError> {
            if Instant::now() >= give_up {
                return Err(FleetError::Unavailable(Failures(vec![EndpointFailure {
                    endpoint: Some(endpoint.to_string()),
                    cause: Cause::HistorySearchTooLong,
                }])));
            }
            let body = json!({
                "key": b64(prefix.as_bytes()),
                "range_end": b64(&prefix_end(prefix)),
                "count_only": true,
                "serializable": true,
                "revision": revision.to_string(),
            });
            match self.post_one(endpoint, "/v3/kv/range", &body) {
                Ok(_) => Ok(true),
                Err(FleetError::Refused(Failures(why)))
                    if why.iter().any(|f| f.cause.is_compacted()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        };
        if current <= 1 || readable(1)? {
            return Ok(1);
        }
        // Invariant: `low` is compacted, `high` is readable (the current revision always is).
        let (mut low, mut high) = (1, current);
        for _ in 0..64 {
            if high - low <= 1 {
                break;
            }
            let mid = low + (high - low) / 2;
            if readable(mid)? {
                high = mid;
            } else {
                low = mid;
            }
        }
        Ok(high)
    }

    /// One POST to one endpoint within the budget (RBAC token renewed once), for the
    /// per-member maintenance calls.
    fn post_one(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value, FleetError> {
        let deadline = Instant::now() + self.budget;
        let mut result = self.attempt(endpoint, path, body, deadline);
        if matches!(result, Err(AttemptError::Token)) {
            result = self
                .refresh_token(endpoint, deadline)
                .and_then(|()| self.attempt(endpoint, path, body, deadline));
        }
        result.map_err(AttemptError::into_fleet)
    }
}
