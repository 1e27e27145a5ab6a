//! The shared-account attack harness (`tests/attack_shared_accounts.rs`,
//! `tests/attack_shared_admin.rs`): a sandbox whose logins come with an SSH key chosen per
//! login, keys made by `ssh-keygen`, and the admin commands.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{Sandbox, cli, oathtool_code};
use pam_ecs_mfa::store::account::AccountRecord;
use pam_ecs_mfa::user_name::UserName;

/// A shared-account sandbox: the `ecs-mfa-test` service reads `SSH_AUTH_INFO_0` from a
/// pam_env file that [`Shared::use_key`] rewrites.
pub struct Shared {
    pub sb: Sandbox,
    pub env: PathBuf,
}

/// An SSH key made by `ssh-keygen`: its `.pub` line and fingerprint.
pub struct Key {
    pub line: String,
    pub fp: String,
    /// The `.pub` file.
    pub path: PathBuf,
}

impl Shared {
    pub fn new(tag: &str, config: &str) -> Self {
        Self::with_args(tag, config, "")
    }

    /// [`Shared::new`] with extra module arguments (`nullok`).
    pub fn with_args(tag: &str, config: &str, args: &str) -> Self {
        let sb = Sandbox::new(tag);
        sb.set_config(config);
        let env = sb.root.join("pam_env.conf");
        std::fs::write(&env, "").unwrap();
        sb.set_stack(&format!(
            "auth optional pam_env.so readenv=0 user_readenv=0 conffile={}\n\
             auth required {{module}} {{args}} {args}",
            env.display()
        ));
        Self { sb, env }
    }

    /// A new ed25519 key with `comment`.
    pub fn key(&self, name: &str, comment: &str) -> Key {
        let dir = self.sb.root.join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&path)
            .output()
            .unwrap();
        super::assert_ok(&out, "ssh-keygen");
        let pubpath = path.with_extension("pub");
        let line = std::fs::read_to_string(&pubpath)
            .unwrap()
            .trim()
            .to_string();
        let fp = pam_ecs_mfa::authorized_keys::parse_line(&line)
            .unwrap()
            .fingerprint;
        Key {
            line,
            fp,
            path: pubpath,
        }
    }

    /// The next logins come with `key` accepted by "sshd" (`None`: no key, a password login).
    pub fn use_key(&self, key: Option<&Key>) {
        let text = match key {
            Some(key) => {
                let mut parts = key.line.split_whitespace();
                let (kind, blob) = (parts.next().unwrap(), parts.next().unwrap());
                format!("SSH_AUTH_INFO_0 DEFAULT=\"publickey {kind} {blob}\"\n")
            }
            None => String::new(),
        };
        std::fs::write(&self.env, text).unwrap();
    }

    /// One login of `user` answering `code`: success and the audit line.
    pub fn login(&self, user: &str, code: &str) -> (bool, String) {
        super::keyed_login(&self.sb, user, code)
    }

    /// `mfa-enroll ARGS`, whatever it does.
    pub fn run(&self, args: &[&str]) -> Output {
        cli(&self.sb, args, b"")
    }

    /// `mfa-enroll ARGS` against the sandbox; must succeed.
    pub fn admin(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        super::assert_ok(&out, &format!("mfa-enroll {args:?}"));
        out
    }

    /// Writes a `~/.google_authenticator` file named `name` holding `secret` (TOTP, 30 s):
    /// what `import google-authenticator --person` reads. Returns its path.
    pub fn ga_file(&self, name: &str, secret: &str) -> String {
        let path = self.sb.root.join(name);
        std::fs::write(&path, format!("{secret}\n\" TOTP_AUTH\n")).unwrap();
        path.display().to_string()
    }

    /// `import google-authenticator --user USER --person PERSON --file FILE EXTRA...`,
    /// whatever it does.
    pub fn import_ga(&self, user: &str, person: &str, file: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "import",
            "google-authenticator",
            "--user",
            user,
            "--person",
            person,
            "--file",
            file,
        ];
        args.extend(extra);
        self.run(&args)
    }

    /// `enroll --user USER --person PERSON --key FP --no-confirm --json`: the secret.
    pub fn enroll_person(&self, user: &str, person: &str, key: &Key) -> String {
        self.sb
            .enroll(user, &["--person", person, "--key", key.fp.as_str()])
    }

    pub fn record(&self, user: &str) -> String {
        std::fs::read_to_string(self.sb.store.join(format!("{user}.toml"))).unwrap()
    }

    /// The record as the module reads it (panics on a record the module would refuse).
    pub fn account(&self, user: &str) -> AccountRecord {
        let bytes = std::fs::read(self.sb.store.join(format!("{user}.toml"))).unwrap();
        AccountRecord::parse(&bytes, &UserName::parse(user).unwrap())
            .unwrap_or_else(|e| panic!("the module would refuse the record: {e}"))
    }

    /// The keys bound to `person` (the account's own name: its own token).
    pub fn keys_of(&self, user: &str, person: &str) -> Vec<String> {
        let account = self.account(user);
        let token = account
            .tokens
            .iter()
            .find(|t| t.person_name() == person)
            .unwrap_or_else(|| panic!("no token of {person}: {}", self.record(user)));
        token.keys.clone()
    }
}

/// The TOTP code of `secret` `offset` seconds from now (oathtool).
pub fn code_at(secret: &str, offset: i64) -> String {
    let now = pam_ecs_mfa::clock::unix_now() as i64 + offset;
    oathtool_code(secret, &["--totp", "--now", &format!("@{now}")])
}
