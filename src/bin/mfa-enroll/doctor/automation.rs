//! `doctor`'s "automation" check: each `automation_keys` entry logs in without a code, so it
//! must be the key of a job, not of a person, and restricted to where the job runs from.

use pam_ecs_mfa::authorized_keys::{self, KeyLine};
use pam_ecs_mfa::policy::Policy;

use super::Findings;
use super::sshd::Settings;
use super::users::key_file_paths;

/// Where each automation key is authorized, and whether with `from=`.
pub(super) fn check_automation_keys(
    findings: &mut Findings,
    policy: &Policy,
    settings: Option<&Settings>,
) {
    if policy.automation_keys.is_empty() {
        return;
    }
    let key_files = settings
        .map(|s| s.get("authorizedkeysfile").to_string())
        .unwrap_or_else(|| ".ssh/authorized_keys .ssh/authorized_keys2".into());
    let accounts = pam_ecs_mfa::accounts::system_login_accounts().unwrap_or_default();
    for entry in &policy.automation_keys {
        let key = &entry.fingerprint;
        let mut found: Vec<(String, KeyLine)> = Vec::new();
        for account in &accounts {
            if entry.account.as_ref().is_some_and(|a| *a != account.name) {
                continue;
            }
            let user = account.name.as_str();
            for path in key_file_paths(user, &account.home, &key_files) {
                if let Some(line) = authorized_keys::find_in_file(&path, key) {
                    found.push((user.to_string(), line));
                }
            }
        }
        let scope = entry
            .account
            .as_ref()
            .map_or_else(|| "any account".to_string(), |a| format!("account {a}"));
        if found.is_empty() {
            findings.warning(
                "automation",
                format!(
                    "automation key {key} ({scope}) is in no authorized_keys file read here: \
                     unused, or authorized elsewhere (AuthorizedKeysCommand)"
                ),
                "remove it from automation_keys if no job uses it",
            );
            continue;
        }
        for (user, line) in found {
            let comment = super::printable(&line.comment);
            if line.has_from() {
                findings.ok(
                    "automation",
                    format!(
                        "automation key {key} of {user} ({comment}) logs in without a code, from \
                         the addresses its from= allows"
                    ),
                );
            } else {
                findings.warning(
                    "automation",
                    format!(
                        "automation key {key} of {user} ({comment}) logs in without a code from \
                         anywhere: its authorized_keys line has no from= restriction"
                    ),
                    "add from=\"JOB-ADDRESS\" (and restrict, command=) to that authorized_keys line",
                );
            }
        }
    }
}
