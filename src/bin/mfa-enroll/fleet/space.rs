//! The database's space, history and alarms as the members report them, judged for
//! `fleet status` and `doctor` (docs/fleet.md, Space and compaction).

use pam_ecs_mfa::fleet::FleetConfig;
use pam_ecs_mfa::fleet::etcd::MemberStatus;
use pam_ecs_mfa::fleet::login::Fleet;
use serde_json::json;

/// A database at or above this share of the quota is a warning ...
pub(crate) const WARN_PERCENT: u64 = 60;
/// ... and at or above this one a problem (etcd refuses writes at 100%: every login denied).
pub(crate) const PROBLEM_PERCENT: u64 = 85;
/// A history never compacted is a warning once it is this long (revision numbers; each login
/// writes one): auto-compaction would have run by then (docs/fleet.md, Space and compaction).
const NEVER_COMPACTED_AFTER: i64 = 10_000;
/// Revisions of history kept (current minus oldest readable) above which compaction is judged
/// not to keep up.
const HISTORY_WARN: i64 = 100_000;

/// How a space finding is judged (doctor's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    Ok,
    Warning,
    Problem,
}

/// One judgement about space, compaction or alarms, with what to do.
pub(crate) struct SpaceFinding {
    pub level: Judged,
    pub message: String,
    pub fix: &'static str,
}

/// The database as the members report it (docs/fleet.md, Space and compaction).
pub(crate) struct Space {
    /// `[fleet] quota_backend_bytes` (etcd 3.4 does not report its quota).
    quota: u64,
    /// Largest `dbSize` of a member (the quota applies to each member's file) and its endpoint.
    largest: Option<(String, u64, u64)>,
    /// The current revision (highest seen).
    revision: i64,
    /// The oldest revision still readable (1: never compacted), or why it is unknown.
    oldest: Result<i64, String>,
    /// Active alarms ("NOSPACE (member 8e9e…)").
    alarms: Vec<String>,
    /// Whether no member answered (nothing to judge).
    unknown: bool,
}

/// Reads space, history and alarms from the members that answered `status`.
pub(crate) fn space(
    fleet: &Fleet,
    config: &FleetConfig,
    members: &[(String, MemberStatus)],
) -> Space {
    let largest = members
        .iter()
        .max_by_key(|(_, s)| s.db_size)
        .map(|(e, s)| (e.clone(), s.db_size, s.space.db_size_in_use));
    let revision = members
        .iter()
        .map(|(_, s)| s.space.revision)
        .max()
        .unwrap_or(0);
    let oldest = match members.first() {
        // Records are what every host may read, so this works with host credentials.
        Some((endpoint, _)) => fleet
            .oldest_revision(endpoint, revision)
            .map_err(|e| e.to_string()),
        None => Err("no member answered".into()),
    };
    // The alarm list is cluster-wide; if it cannot be read, what each member's status lists.
    let alarms = match fleet.alarms() {
        Ok(list) => list
            .into_iter()
            .filter(|a| a.alarm != "NONE")
            .map(|a| format!("{} (member {})", a.alarm, a.member))
            .collect(),
        Err(_) => {
            let mut all: Vec<String> = members
                .iter()
                .flat_map(|(_, s)| s.space.alarms.iter().cloned())
                .collect();
            all.sort();
            all.dedup();
            all
        }
    };
    Space {
        quota: config.quota_backend_bytes,
        largest,
        revision,
        oldest,
        alarms,
        unknown: members.is_empty(),
    }
}

impl Space {
    fn percent(&self) -> Option<u64> {
        self.largest
            .as_ref()
            .map(|(_, size, _)| size.saturating_mul(100) / self.quota.max(1))
    }

    /// What `fleet status` prints and `doctor` reports: size against the quota, history
    /// compaction, alarms.
    pub(crate) fn findings(&self) -> Vec<SpaceFinding> {
        if self.unknown {
            return Vec::new();
        }
        let mut out: Vec<SpaceFinding> = self.size_finding().into_iter().collect();
        out.push(self.compaction_finding());
        out.push(self.alarm_finding());
        out
    }

    /// The largest member's database against the quota.
    fn size_finding(&self) -> Option<SpaceFinding> {
        let (Some((endpoint, size, in_use)), Some(percent)) = (&self.largest, self.percent())
        else {
            return None;
        };
        let message = format!(
            "etcd database {} of the {} quota ({percent}%, largest member {endpoint}), {} in use; revision {}",
            human(*size),
            human(self.quota),
            human(*in_use),
            self.revision
        );
        let fix = "compact, defragment each member and disarm the alarm as docs/fleet.md (Space and compaction) shows; check that auto-compaction is on and that quota_backend_bytes matches etcd's --quota-backend-bytes";
        Some(if percent >= 100 {
            finding(
                Judged::Problem,
                format!("{message}: at the quota, etcd refuses writes"),
                fix,
            )
        } else if percent >= PROBLEM_PERCENT {
            finding(
                Judged::Problem,
                format!("{message}: nearly full; at 100% every login is denied"),
                fix,
            )
        } else if percent >= WARN_PERCENT {
            finding(
                Judged::Warning,
                format!("{message}: above {WARN_PERCENT}%"),
                fix,
            )
        } else {
            finding(Judged::Ok, message, "")
        })
    }

    /// How much history is kept (whether compaction runs and keeps up).
    fn compaction_finding(&self) -> SpaceFinding {
        let compaction_fix = "start etcd with --auto-compaction-mode and --auto-compaction-retention (docs/fleet.md, Space and compaction)";
        match &self.oldest {
            Ok(1) if self.revision > NEVER_COMPACTED_AFTER => finding(
                Judged::Warning,
                format!(
                    "etcd history never compacted: revision 1 is still readable at revision {}; every login adds one until the quota is reached",
                    self.revision
                ),
                compaction_fix,
            ),
            Ok(1) => finding(
                Judged::Ok,
                format!(
                    "etcd history not compacted yet ({} revisions; judged after {NEVER_COMPACTED_AFTER})",
                    self.revision
                ),
                "",
            ),
            Ok(oldest) if self.revision - oldest > HISTORY_WARN => finding(
                Judged::Warning,
                format!(
                    "etcd keeps {} revisions of history (from {oldest}): compaction does not keep up",
                    self.revision - oldest
                ),
                compaction_fix,
            ),
            Ok(oldest) => finding(
                Judged::Ok,
                format!(
                    "etcd history compacted: oldest readable revision {oldest}, {} kept",
                    self.revision - oldest
                ),
                "",
            ),
            Err(why) => finding(
                Judged::Warning,
                format!("etcd compaction unknown: {why}"),
                "check this host's read permission on <prefix>records/",
            ),
        }
    }

    /// The cluster's alarms (NOSPACE: every login is denied).
    fn alarm_finding(&self) -> SpaceFinding {
        if self.alarms.iter().any(|a| a.contains("NOSPACE")) {
            finding(
                Judged::Problem,
                format!(
                    "{}: every login is denied (reason=backend_error); alarms: {}",
                    pam_ecs_mfa::fleet::etcd::DATABASE_FULL,
                    self.alarms.join(", ")
                ),
                "delete what filled it, compact, defragment each member, then etcdctl alarm disarm (docs/fleet.md, Space and compaction)",
            )
        } else if !self.alarms.is_empty() {
            finding(
                Judged::Problem,
                format!("etcd alarms: {}", self.alarms.join(", ")),
                "see etcd's documentation for the alarm; etcdctl alarm list",
            )
        } else {
            finding(Judged::Ok, "no etcd alarm".into(), "")
        }
    }

    /// The `space` object of `fleet status --json`.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let level = |l: Judged| match l {
            Judged::Ok => "ok",
            Judged::Warning => "warning",
            Judged::Problem => "problem",
        };
        json!({
            "quota_backend_bytes": self.quota,
            "db_size": self.largest.as_ref().map(|l| l.1),
            "db_size_in_use": self.largest.as_ref().map(|l| l.2),
            "largest_member": self.largest.as_ref().map(|l| l.0.clone()),
            "percent_of_quota": self.percent(),
            "revision": self.revision,
            "oldest_revision": self.oldest.as_ref().ok(),
            "compacted": self.oldest.as_ref().ok().map(|&o| o > 1),
            "alarms": self.alarms,
            "findings": self.findings().iter().map(|f| json!({
                "level": level(f.level), "message": f.message, "fix": f.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

fn finding(level: Judged, message: String, fix: &'static str) -> SpaceFinding {
    SpaceFinding {
        level,
        message,
        fix,
    }
}

/// Bytes for people: "1.1 MiB".
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
