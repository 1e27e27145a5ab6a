//! Reading the sshd PAM service file the way libpam does, as far as `doctor` needs it: which
//! `auth` line runs pam_ecs_mfa.so, with which control, module path and arguments, and what
//! comes before it (which decides whether this is a key + code or a password + code stack).

use std::path::{Path, PathBuf};

/// The `auth` stack around our module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamStack {
    /// Our line, as written (comments removed).
    pub line: String,
    /// The control: `required`, `[success=done ...]`, ...
    pub control: String,
    /// The module path as written (`pam_ecs_mfa.so` or an absolute path).
    pub module: String,
    /// The module arguments.
    pub args: Vec<String>,
    /// The `auth` lines before ours (including `@include common-auth`).
    pub earlier: Vec<String>,
    /// What proves the first factor.
    pub kind: StackKind,
}

/// Which first factor the stack relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// No password module before ours: the SSH key is the first factor (sshd must check it).
    Key,
    /// A password module (pam_unix, SSSD, an included password stack) comes first.
    Password,
}

/// Modules and included files that check a password.
const PASSWORD_MODULES: [&str; 8] = [
    "pam_unix",
    "pam_sss",
    "pam_ldap",
    "pam_krb5",
    "pam_winbind",
    "common-auth",
    "password-auth",
    "system-auth",
];

impl PamStack {
    /// Finds our line in the text of a PAM service file; `None` when no `auth` line uses
    /// pam_ecs_mfa.so.
    pub fn parse(text: &str) -> Option<Self> {
        let mut earlier = Vec::new();
        for raw in text.lines() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.starts_with("@include") {
                earlier.push(line.to_string());
                continue;
            }
            let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            if kind.trim_start_matches('-') != "auth" {
                continue;
            }
            let rest = rest.trim_start();
            let (control, rest) = if rest.starts_with('[') {
                match rest.find(']') {
                    Some(end) => (&rest[..=end], &rest[end + 1..]),
                    None => (rest, ""),
                }
            } else {
                rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
            };
            let mut words = rest.split_whitespace();
            let module = words.next().unwrap_or("");
            if !module.ends_with("pam_ecs_mfa.so") {
                earlier.push(line.to_string());
                continue;
            }
            let kind = if earlier
                .iter()
                .any(|l| PASSWORD_MODULES.iter().any(|m| l.contains(m)))
            {
                StackKind::Password
            } else {
                StackKind::Key
            };
            return Some(Self {
                line: line.to_string(),
                control: control.to_string(),
                module: module.to_string(),
                args: words.map(str::to_string).collect(),
                earlier,
                kind,
            });
        }
        None
    }

    /// Where libpam looks for the module: the path itself when absolute, else in `dir`.
    pub fn module_path(&self, dir: &Path) -> PathBuf {
        if self.module.starts_with('/') {
            PathBuf::from(&self.module)
        } else {
            dir.join(&self.module)
        }
    }

    /// Earlier lines that can end the stack with success before the code is asked, or let it
    /// go on after a wrong password; each with why.
    pub fn dangerous_earlier_lines(&self) -> Vec<(String, &'static str)> {
        let mut found = Vec::new();
        for line in &self.earlier {
            let words: Vec<&str> = line.split_whitespace().collect();
            let control = words.get(1).copied().unwrap_or("");
            if control == "include" || control == "sufficient" || line.contains("success=done") {
                found.push((
                    line.clone(),
                    "can end the stack with success before the code is asked: MFA bypassed",
                ));
            } else if control == "substack" {
                found.push((
                    line.clone(),
                    "a wrong password does not stop a substack: the code is still asked, failures \
                     are counted against the user and a typed code is used up",
                ));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_parse_as_what_they_are() {
        for (text, kind, args) in [
            (
                include_str!("../../../../pam-config/debian/sshd"),
                StackKind::Key,
                vec!["first_factor=publickey"],
            ),
            (
                include_str!("../../../../pam-config/rhel/sshd"),
                StackKind::Key,
                vec!["first_factor=publickey"],
            ),
            (
                include_str!("../../../../pam-config/debian/sshd-password"),
                StackKind::Password,
                vec![],
            ),
            (
                include_str!("../../../../pam-config/rhel/sshd-password"),
                StackKind::Password,
                vec![],
            ),
        ] {
            let stack = PamStack::parse(text).unwrap();
            assert_eq!(stack.kind, kind, "{text}");
            assert_eq!(stack.args, args);
            assert_eq!(stack.control, "[success=done ignore=ignore default=die]");
            assert_eq!(stack.module, "pam_ecs_mfa.so");
            assert!(stack.dangerous_earlier_lines().is_empty(), "{text}");
        }
    }

    #[test]
    fn controls_paths_arguments_and_dangerous_lines_are_found() {
        let text = "# comment pam_ecs_mfa.so\nauth substack password-auth\n-auth   sufficient  \
                    /opt/pam_ecs_mfa.so nulok debug # trailing\n";
        let stack = PamStack::parse(text).unwrap();
        assert_eq!(stack.control, "sufficient");
        assert_eq!(stack.module, "/opt/pam_ecs_mfa.so");
        assert_eq!(stack.args, vec!["nulok", "debug"]);
        assert_eq!(stack.kind, StackKind::Password);
        assert_eq!(
            stack.module_path(Path::new("/lib/security")),
            Path::new("/opt/pam_ecs_mfa.so")
        );
        assert_eq!(stack.dangerous_earlier_lines().len(), 1);
        assert!(PamStack::parse("auth required pam_unix.so\n").is_none());
    }
}
