//! `mfa-enroll fleet status`: every member's status, which key sealed each record, and the
//! database's space (judged in [`super::space`]).

use pam_ecs_mfa::fleet::etcd::MemberStatus;
use pam_ecs_mfa::fleet::login::Fleet;
use pam_ecs_mfa::fleet::seal::{FleetKey, sealed_with};
use pam_ecs_mfa::fleet::{FleetConfig, FleetError};
use serde_json::json;

use super::fleet_config;
use super::space::{Judged, Space, space};
use crate::{Exit, Failure, Global, backend_failure};

pub(super) fn status(g: &Global) -> Result<(), Failure> {
    let (policy, config) = fleet_config(g)?;
    let records = g.enrollments(&policy)?;
    let Some(fleet) = records.fleet() else {
        unreachable!("fleet_config checked the backend");
    };
    let members = Members::ask(fleet, &config);
    let space = space(fleet, &config, &members.answered);
    let sealing = Sealing::count(fleet);
    if g.json {
        outln!(
            "{}",
            json!({
                "prefix": config.prefix, "members": members.json, "reachable": members.reachable,
                "records": sealing.count, "records_by_key": sealing.by_key,
                "this_host_keys": sealing.own,
                "records_this_host_cannot_open": sealing.unknown,
                "error": sealing.error.as_ref().map(ToString::to_string),
                "space": space.to_json(),
            })
        );
    } else {
        outln!("etcd prefix {}", config.prefix);
        members.print();
        sealing.print();
        for f in space.findings() {
            match f.level {
                Judged::Ok => outln!("{}", f.message),
                Judged::Warning => outln!("WARNING: {} ({})", f.message, f.fix),
                Judged::Problem => outln!("PROBLEM: {} ({})", f.message, f.fix),
            }
        }
    }
    status_verdict(&config, &members, &sealing, &space)
}

/// What each endpoint answered to `status`.
struct Members {
    /// One JSON object per endpoint (`fleet status --json`'s `members`).
    json: Vec<serde_json::Value>,
    /// The endpoints that answered, with what they said.
    answered: Vec<(String, MemberStatus)>,
    reachable: usize,
}

impl Members {
    fn ask(fleet: &Fleet, config: &FleetConfig) -> Self {
        let mut members = Self {
            json: Vec::new(),
            answered: Vec::new(),
            reachable: 0,
        };
        for endpoint in &config.endpoints {
            match fleet.member_status(endpoint) {
                Ok((s, took)) => {
                    members.reachable += 1;
                    members.json.push(json!({
                        "endpoint": endpoint, "ok": true, "version": s.version, "member": s.member,
                        "leader": s.leader, "is_leader": s.member == s.leader,
                        "db_size": s.db_size, "latency_ms": took.as_secs_f64() * 1000.0,
                        "db_size_in_use": s.space.db_size_in_use, "revision": s.space.revision,
                        "alarms": s.space.alarms,
                    }));
                    members.answered.push((endpoint.clone(), s));
                }
                Err(e) => members
                    .json
                    .push(json!({ "endpoint": endpoint, "ok": false, "error": e.to_string() })),
            }
        }
        members
    }

    fn print(&self) {
        for m in &self.json {
            if m["ok"] == true {
                outln!(
                    "  {}  ok  etcd {}  member {}{}  {:.1} ms",
                    m["endpoint"].as_str().unwrap_or(""),
                    m["version"].as_str().unwrap_or(""),
                    m["member"].as_str().unwrap_or(""),
                    if m["is_leader"] == true {
                        " (leader)"
                    } else {
                        ""
                    },
                    m["latency_ms"].as_f64().unwrap_or(0.0)
                );
            } else {
                outln!(
                    "  {}  DOWN  {}",
                    m["endpoint"].as_str().unwrap_or(""),
                    m["error"].as_str().unwrap_or("")
                );
            }
        }
    }
}

/// Which fleet key sealed each record, against the keys this host has.
struct Sealing {
    /// Number of records (`None` when they could not be read: `error`).
    count: Option<usize>,
    by_key: std::collections::BTreeMap<String, usize>,
    /// This host's key ids.
    own: Vec<String>,
    /// Records sealed with a key this host does not have.
    unknown: usize,
    error: Option<FleetError>,
}

impl Sealing {
    fn count(fleet: &Fleet) -> Self {
        let own = fleet
            .keys
            .all()
            .iter()
            .map(FleetKey::id_hex)
            .collect::<Vec<_>>();
        let values = match fleet.record_values() {
            Ok(values) => values,
            Err(e) => {
                return Self {
                    count: None,
                    by_key: Default::default(),
                    own,
                    unknown: 0,
                    error: Some(e),
                };
            }
        };
        let mut by_key: std::collections::BTreeMap<String, usize> = Default::default();
        for kv in &values {
            *by_key
                .entry(sealed_with(&kv.value).unwrap_or_else(|| "?".into()))
                .or_default() += 1;
        }
        let unknown: usize = by_key
            .iter()
            .filter(|(id, _)| !own.contains(id))
            .map(|(_, n)| n)
            .sum();
        Self {
            count: Some(values.len()),
            by_key,
            own,
            unknown,
            error: None,
        }
    }

    fn print(&self) {
        if let Some(e) = &self.error {
            outln!("records: {e}");
            return;
        }
        let Some(n) = self.count else {
            return;
        };
        outln!(
            "{n} record(s); sealed with: {}",
            self.by_key
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        outln!("This host's fleet key(s): {}", self.own.join(", "));
        if self.unknown > 0 {
            outln!(
                "PROBLEM: {} record(s) are sealed with a key this host does not have: copy the fleet's current key file here",
                self.unknown
            );
        }
    }
}

/// The exit status of `fleet status`: the first space problem, unreadable records, records
/// this host cannot open, or no majority of endpoints reachable.
fn status_verdict(
    config: &FleetConfig,
    members: &Members,
    sealing: &Sealing,
    space: &Space,
) -> Result<(), Failure> {
    if let Some(f) = space
        .findings()
        .into_iter()
        .find(|f| f.level == Judged::Problem)
    {
        return Err(Failure::new(Exit::Backend, f.message));
    }
    let reachable = members.reachable;
    match (&sealing.error, sealing.unknown) {
        (Some(e), _) => Err(backend_failure(e.clone())),
        (None, n) if n > 0 => Err(Failure::new(
            Exit::Backend,
            "records sealed with an unknown key",
        )),
        _ if reachable * 2 <= config.endpoints.len() => Err(Failure::new(
            Exit::Backend,
            format!(
                "only {reachable} of {} endpoints reachable",
                config.endpoints.len()
            ),
        )),
        _ => Ok(()),
    }
}
