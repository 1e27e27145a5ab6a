//! Local accounts that can log in interactively (a login shell in `/etc/passwd`): who
//! `mfa-enroll status --all`, `import google-authenticator` and `doctor` look at. Logins
//! themselves use NSS (`user_name::nss_account`), not this file.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use crate::user_name::UserName;

/// One `/etc/passwd` entry with a login shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAccount {
    pub name: UserName,
    pub uid: u32,
    pub home: PathBuf,
}

/// The accounts in `passwd` (the text of `/etc/passwd`) that have a login shell and a valid
/// name, in file order.
pub fn login_accounts(passwd: &str) -> Vec<LocalAccount> {
    passwd
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 || !has_login_shell(f[6]) {
                return None;
            }
            Some(LocalAccount {
                name: UserName::parse(f[0]).ok()?,
                uid: f[2].parse().ok()?,
                home: PathBuf::from(f[5]),
            })
        })
        .collect()
}

/// [`login_accounts`] of the system's `/etc/passwd`.
pub fn system_login_accounts() -> std::io::Result<Vec<LocalAccount>> {
    Ok(login_accounts(&std::fs::read_to_string("/etc/passwd")?))
}

/// Whether `shell` lets the account log in (not nologin, false, sync, shutdown, halt, empty).
pub fn has_login_shell(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or("");
    !shell.is_empty() && !matches!(base, "nologin" | "false" | "sync" | "shutdown" | "halt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_accounts_have_no_login_shell() {
        assert!(has_login_shell("/bin/bash"));
        assert!(has_login_shell("/bin/sh"));
        for shell in ["/usr/sbin/nologin", "/bin/false", "/bin/sync", ""] {
            assert!(!has_login_shell(shell), "{shell}");
        }
    }

    #[test]
    fn only_valid_names_with_a_login_shell_are_listed() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                      bad/name:x:5:5::/x:/bin/sh\n\
                      alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
                      short:x\n";
        let names: Vec<String> = login_accounts(passwd)
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        assert_eq!(names, vec!["root", "alice"]);
        assert_eq!(login_accounts(passwd)[1].home, PathBuf::from("/home/alice"));
    }
}
