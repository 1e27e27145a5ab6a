//! `doctor`'s "users" check: which accounts need MFA and can log in by SSH at all, and
//! whether each is enrolled (and not stuck behind a replay mark ahead of the clock).

use std::path::{Path, PathBuf};

use pam_ecs_mfa::backend::{self, Enrollments};
use pam_ecs_mfa::exemption::nss_groups;
use pam_ecs_mfa::policy::Policy;
use pam_ecs_mfa::secure_fs;
use pam_ecs_mfa::store::StoreError;
use pam_ecs_mfa::user_name::UserName;

use super::Findings;
use super::pam_file::StackKind;
use super::sshd::Settings;

/// Local accounts with a login shell, and which of them need MFA and can log in by SSH at all.
pub(super) struct Accounts {
    /// Accounts that need MFA (not exempt) and have a way in (a key, or a password on
    /// password stacks): the ones whose logins matter.
    pub(super) need_mfa: Vec<UserName>,
}

impl Accounts {
    pub(super) fn read(policy: &Policy, kind: StackKind, settings: Option<&Settings>) -> Self {
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let key_files = settings
            .map(|s| s.get("authorizedkeysfile").to_string())
            .unwrap_or_else(|| ".ssh/authorized_keys .ssh/authorized_keys2".into());
        let key_command = settings
            .map(|s| !matches!(s.get("authorizedkeyscommand"), "" | "none"))
            .unwrap_or(false);
        let mut need_mfa = Vec::new();
        for account in pam_ecs_mfa::accounts::system_login_accounts().unwrap_or_default() {
            let user = account.name;
            if policy
                .exemptions
                .check(&user, None, nss_groups, |_| false)
                .exempt
                .is_some()
            {
                continue;
            }
            let can_log_in = match kind {
                StackKind::Key => {
                    key_command || has_authorized_keys(user.as_str(), &account.home, &key_files)
                }
                StackKind::Password => has_usable_password(&shadow, user.as_str()),
            };
            if can_log_in {
                need_mfa.push(user);
            }
        }
        Self { need_mfa }
    }
}

/// Whether one of sshd's `AuthorizedKeysFile` entries exists and is not empty for the user.
fn has_authorized_keys(user: &str, home: &Path, files: &str) -> bool {
    key_file_paths(user, home, files).into_iter().any(|path| {
        std::fs::metadata(path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    })
}

/// sshd's `AuthorizedKeysFile` entries (`%h`, `%u`, `%%` expanded) for the user.
pub(super) fn key_file_paths(user: &str, home: &Path, files: &str) -> Vec<PathBuf> {
    files
        .split_whitespace()
        .filter(|f| *f != "none")
        .map(|pattern| {
            let expanded = pattern
                .replace("%%", "\u{0}")
                .replace("%h", &home.to_string_lossy())
                .replace("%u", user)
                .replace('\u{0}', "%");
            if expanded.starts_with('/') {
                PathBuf::from(expanded)
            } else {
                home.join(expanded)
            }
        })
        .collect()
}

/// Whether `/etc/shadow` holds a password hash (not locked, not empty) for the user.
fn has_usable_password(shadow: &str, user: &str) -> bool {
    shadow.lines().any(|l| {
        let mut f = l.split(':');
        f.next() == Some(user)
            && f.next()
                .is_some_and(|h| !h.is_empty() && !h.starts_with('!') && !h.starts_with('*'))
    })
}

/// Whether every account that needs MFA is enrolled and can log in.
pub(super) fn check_users(
    findings: &mut Findings,
    policy: &Policy,
    store: &Enrollments,
    accounts: &Accounts,
    root_may_log_in: bool,
) {
    // Files: only a state directory that exists (doctor creates nothing).
    let state = match store.fleet() {
        None => secure_fs::open_dir(&policy.state_dir)
            .ok()
            .flatten()
            .map(|_| store.states(policy)),
        Some(_) => Some(store.states(policy)),
    };
    let now = crate::unix_now().unwrap_or(0);
    let mut missing = Vec::new();
    for user in &accounts.need_mfa {
        if user.as_str() == "root" && !root_may_log_in {
            continue;
        }
        match store.load_account(user) {
            Ok(account) => {
                for record in &account.tokens {
                    let tolerance = record.params.period() * (u64::from(policy.window) + 1);
                    let ahead = state
                        .as_ref()
                        .and_then(|s| s.transact(&record.owner(), |st| *st).ok())
                        .and_then(|st| st.mark_ahead(now, tolerance));
                    let (who, person) = match &record.person {
                        Some(p) => (format!("{p} on {user}"), format!(" --person {p}")),
                        None => (user.to_string(), String::new()),
                    };
                    if let Some(ahead) = ahead {
                        findings.problem(
                            "users",
                            format!(
                                "{who}: the last accepted code is {ahead} s ahead of this \
                                 server's clock (the clock was ahead, or was set back): no code \
                                 works for {who} until then"
                            ),
                            format!(
                                "check the server's clock (the clock line above), then \
                                 mfa-enroll unlock --user {user}{person}"
                            ),
                        );
                    }
                }
            }
            Err(backend::Error::Store(StoreError::NotEnrolled)) => missing.push(user.to_string()),
            // Reported once by the store check.
            Err(backend::Error::Store(StoreError::NoStore(_))) => return,
            Err(e) => findings.problem(
                "users",
                format!("{user}: {e}"),
                format!("mfa-enroll reset --user {user}"),
            ),
        }
    }
    if missing.is_empty() {
        findings.ok(
            "users",
            "every account that can log in by SSH and needs MFA is enrolled",
        );
    } else if policy.nullok {
        findings.warning(
            "users",
            format!(
                "not enrolled, so with nullok they log in WITHOUT a code: {}",
                missing.join(", ")
            ),
            "mfa-enroll enroll --user NAME (or exempt_groups / require_groups in the config)",
        );
    } else {
        findings.problem(
            "users",
            format!(
                "not enrolled, so they cannot log in by SSH: {}",
                missing.join(", ")
            ),
            "mfa-enroll enroll --user NAME (or exempt_groups / require_groups in the config)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_passwords_and_key_files_are_recognised() {
        let shadow = "a:$y$j9T$x:1::::::\nb:!$y$x:1::::::\nc:*:1::::::\nd::1::::::\n";
        assert!(has_usable_password(shadow, "a"));
        for u in ["b", "c", "d", "e"] {
            assert!(!has_usable_password(shadow, u), "{u}");
        }
        let dir = std::env::temp_dir().join(format!("ecs-mfa-doctor-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".ssh")).unwrap();
        assert!(!has_authorized_keys("a", &dir, ".ssh/authorized_keys"));
        std::fs::write(dir.join(".ssh/authorized_keys"), "ssh-ed25519 AAAA\n").unwrap();
        assert!(has_authorized_keys(
            "a",
            &dir,
            ".ssh/authorized_keys .ssh/authorized_keys2"
        ));
        assert!(has_authorized_keys("a", &dir, "%h/.ssh/authorized_keys"));
        assert!(!has_authorized_keys("a", &dir, "none"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
