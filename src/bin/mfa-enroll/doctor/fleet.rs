//! `doctor` checks of the fleet backend: this host's TLS files and fleet key, every endpoint,
//! quorum, database size against the quota, compaction and alarms, records this host cannot
//! open, RBAC, and the local copy.

use std::path::Path;

use pam_ecs_mfa::backend::Enrollments;
use pam_ecs_mfa::fleet::etcd::MemberStatus;
use pam_ecs_mfa::fleet::login::Fleet;
use pam_ecs_mfa::fleet::seal::{FleetKey, sealed_with};
use pam_ecs_mfa::fleet::{FleetConfig, OnUnavailable};
use pam_ecs_mfa::pam::etcd_helper::{HELPER_FILE, open_checked_helper};
use pam_ecs_mfa::policy::Policy;
use pam_ecs_mfa::secure_fs;

use super::Findings;
use crate::fleet::Judged;

/// The etcd client the module loads for fleet logins, checked as the module checks it before
/// loading it (`pam::etcd_helper`; its interface version is checked only when it is loaded).
pub(super) fn check_helper(findings: &mut Findings, module: Option<&Path>) {
    let Some(module) = module else {
        return;
    };
    let helper = module.with_file_name(HELPER_FILE);
    let fix =
        "install the module and libecs_mfa_etcd.so from the same package (or scripts/install)";
    match open_checked_helper(&helper) {
        Ok(_) => findings.ok("fleet", format!("etcd client {} present", helper.display())),
        Err(why) => findings.problem(
            "fleet",
            format!(
                "etcd client {}: {why}: every fleet login is denied (reason=backend_error)",
                helper.display()
            ),
            fix,
        ),
    }
}

/// Runs the checks; returns the records backend when it could be opened.
pub(super) fn check_fleet(
    findings: &mut Findings,
    policy: &Policy,
    config: &FleetConfig,
) -> Option<Enrollments> {
    let records = match Enrollments::for_policy(policy, None) {
        Ok(records) => records,
        Err(e) => {
            findings.problem(
                "fleet",
                format!("{e}: every login is denied (reason=backend_error)"),
                "install the CA, this host's certificate and key, and the fleet key as docs/fleet.md shows (root-owned; keys 0600)",
            );
            return None;
        }
    };
    let fleet = records.fleet()?;
    findings.ok(
        "fleet",
        format!(
            "TLS files and fleet key {} readable and root-only",
            fleet.keys.current().id_hex()
        ),
    );
    let answered = check_members(findings, fleet, config);
    check_quorum(findings, config, answered.len());
    // Space, compaction, alarms: judged as `fleet status` judges them.
    for f in crate::fleet::space(fleet, config, &answered).findings() {
        match f.level {
            Judged::Ok => findings.ok("fleet", f.message),
            Judged::Warning => findings.warning("fleet", f.message, f.fix),
            Judged::Problem => findings.problem("fleet", f.message, f.fix),
        }
    }
    check_sealing(findings, fleet);
    check_rbac_and_local_copy(findings, policy, config);
    Some(records)
}

/// Asks every endpoint for its status (and how long it took); returns those that answered.
fn check_members(
    findings: &mut Findings,
    fleet: &Fleet,
    config: &FleetConfig,
) -> Vec<(String, MemberStatus)> {
    let mut answered = Vec::new();
    for endpoint in &config.endpoints {
        match fleet.member_status(endpoint) {
            Ok((status, took)) => {
                findings.ok(
                    "fleet",
                    format!(
                        "{endpoint}: etcd {}{}, {:.1} ms",
                        status.version,
                        if status.member == status.leader {
                            " (leader)"
                        } else {
                            ""
                        },
                        took.as_secs_f64() * 1000.0
                    ),
                );
                // A login gives the first endpoint it tries an equal share of timeout_ms
                // (docs/fleet.md, "Deadlines and memory").
                let share = config.timeout / config.endpoints.len().max(1) as u32;
                if took > share {
                    findings.warning(
                        "fleet",
                        format!(
                            "{endpoint} took {} ms, more than its share of timeout_ms ({} ms: a login gives each endpoint it tries an equal share)",
                            took.as_millis(),
                            share.as_millis()
                        ),
                        "raise timeout_ms, or use closer endpoints",
                    );
                }
                answered.push((endpoint.clone(), status));
            }
            Err(e) => findings.warning(
                "fleet",
                format!("{endpoint}: {e}"),
                "check the node, the network path and the certificates (mfa-enroll fleet status)",
            ),
        }
    }
    answered
}

/// A majority of the endpoints must answer, else logins fail or fall back.
fn check_quorum(findings: &mut Findings, config: &FleetConfig, reachable: usize) {
    if reachable * 2 > config.endpoints.len() {
        return;
    }
    let what = match config.on_unavailable {
        OnUnavailable::Deny => "every login is denied (on_unavailable = \"deny\")",
        OnUnavailable::Local => {
            "logins use the local copy, without fleet-wide replay protection (on_unavailable = \"local\")"
        }
    };
    findings.problem(
        "fleet",
        format!(
            "only {reachable} of {} endpoints answer: {what}",
            config.endpoints.len()
        ),
        "bring etcd members back (a majority is needed) or correct endpoints",
    );
}

/// Every record must open with one of this host's fleet keys.
fn check_sealing(findings: &mut Findings, fleet: &Fleet) {
    match fleet.record_values() {
        Ok(values) => {
            let own: Vec<String> = fleet.keys.all().iter().map(FleetKey::id_hex).collect();
            let foreign = values
                .iter()
                .filter(|kv| !sealed_with(&kv.value).is_some_and(|id| own.contains(&id)))
                .count();
            if foreign > 0 {
                findings.problem(
                    "fleet",
                    format!("{foreign} of {} records are sealed with a fleet key this host does not have: those users cannot log in here", values.len()),
                    "copy the fleet's current key file to this host (fleet_key_file)",
                );
            } else {
                findings.ok(
                    "fleet",
                    format!(
                        "{} records, all open with this host's fleet key",
                        values.len()
                    ),
                );
            }
        }
        Err(e) => findings.problem(
            "fleet",
            format!("cannot read the records: {e}"),
            "check this host's etcd role (read on <prefix>records/, docs/fleet.md)",
        ),
    }
}

/// etcd RBAC (else a host can write records), and the local copy `on_unavailable = "local"`
/// needs.
fn check_rbac_and_local_copy(findings: &mut Findings, policy: &Policy, config: &FleetConfig) {
    if config.user.is_none() {
        findings.warning(
            "fleet",
            "no etcd user: unless etcd RBAC is on, this host's certificate can also WRITE records (forge an enrollment for any user)",
            "turn on etcd RBAC with the roles in docs/fleet.md and set user/password_file",
        );
    }
    if config.on_unavailable == OnUnavailable::Local
        && !matches!(secure_fs::open_dir(&policy.store_dir), Ok(Some(_)))
    {
        findings.warning(
            "fleet",
            format!(
                "no local copy in {} yet: during an outage nobody can log in",
                policy.store_dir.display()
            ),
            "mfa-enroll fleet sync (and regularly, e.g. from a timer)",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::doctor::Level;

    /// The helper check reports what the module would refuse: missing, writable by others;
    /// and passes a root-owned 0644 file (run as root, like the rest of the suite).
    #[test]
    fn the_helper_next_to_the_module_is_checked_like_the_module_checks_it() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "run as root (scripts/test)"
        );
        let dir =
            std::env::temp_dir().join(format!("ecs-mfa-doctor-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let module = dir.join("pam_ecs_mfa.so");
        std::fs::write(&module, b"").unwrap();
        let helper = dir.join(HELPER_FILE);
        let last = |helper_mode: Option<u32>| {
            let _ = std::fs::remove_file(&helper);
            if let Some(mode) = helper_mode {
                std::fs::write(&helper, b"\x7fELF").unwrap();
                std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            let mut findings = Findings::default();
            check_helper(&mut findings, Some(&module));
            let f = findings.0.pop().unwrap();
            (f.level, f.message)
        };
        let (level, message) = last(None);
        assert!(
            level == Level::Problem && message.contains("missing"),
            "{message}"
        );
        let (level, message) = last(Some(0o664));
        assert!(
            level == Level::Problem && message.contains("backend_error"),
            "{message}"
        );
        let (level, message) = last(Some(0o644));
        assert!(level == Level::Ok, "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
