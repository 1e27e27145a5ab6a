//! Shared harness for the tests that use real parts: the built `pam_ecs_mfa.so` under the
//! system's real Linux-PAM (`pamtester` in a private mount namespace whose `/etc/pam.d` is the
//! test's own), the real `mfa-enroll` binary and `oathtool` as an independent TOTP
//! implementation.
//!
//! These tests need root (store files must be root-owned; mount namespaces) and the Debian
//! packages `pamtester`, `libpam-wrapper` (for its `pam_set_items.so`) and `oathtool`. When
//! something is missing they fail with a message saying what to install; they never skip.
#![allow(dead_code)]

pub mod container;
pub mod etcd;
pub mod fleet;
pub mod gateway;
pub mod records;
pub mod shared;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fails the test (never skips) unless running as root with the needed tools installed.
pub fn require_real_parts() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (root-owned store files); run the suite as root"
    );
    for (path, package) in [
        ("/usr/bin/pamtester", "pamtester"),
        ("/usr/bin/oathtool", "oathtool"),
        ("/usr/bin/unshare", "util-linux"),
        (PAM_SET_ITEMS, "libpam-wrapper"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: apt-get install {package} (scripts/test does this under CI)"
        );
    }
}

/// A syslog datagram of the module (as `AuthResult::syslog` holds it) as it appears in
/// /var/log/auth.log: `<PRI>` dropped, the host name after the time stamp, the program named
/// sshd (as in production).
pub fn auth_log_line(datagram: &str) -> String {
    let text = datagram.trim_start_matches(|c: char| c == '<' || c.is_ascii_digit() || c == '>');
    let (stamp, rest) = text.split_at(15);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("pamtester").map_or_else(
        || rest.to_string(),
        |after| {
            format!(
                "sshd[4242]{}",
                after.trim_start_matches(|c: char| c == '[' || c == ']' || c.is_ascii_digit())
            )
        },
    );
    format!("{stamp} web-01 {rest}")
}

/// One login of `user` from `rhost` answering `answer` (in a [`sandbox_with_rhost`]): its one
/// audit line, in either format, as it appears in auth.log ([`auth_log_line`]).
pub fn login_from(sb: &Sandbox, user: &str, rhost: &str, answer: &str) -> String {
    let r = sb.auth_env(
        user,
        format!("{answer}\n").as_bytes(),
        &[("PAM_RHOST", rhost)],
    );
    let lines: Vec<String> = r
        .syslog
        .iter()
        .filter(|l| {
            l.contains("pam_ecs_mfa(") && (l.contains("result=") || l.contains("\"result\""))
        })
        .map(|l| auth_log_line(l))
        .collect();
    assert_eq!(lines.len(), 1, "one audit line: {r:#?}");
    lines[0].clone()
}

/// A sandbox whose logins get `PAM_RHOST` (and other items) from the environment
/// (pam_wrapper's pam_set_items before the module).
pub fn sandbox_with_rhost(tag: &str) -> Sandbox {
    let sb = Sandbox::new(tag);
    sb.set_stack(&format!(
        "auth required {PAM_SET_ITEMS} \nauth required {{module}} {{args}}"
    ));
    sb
}

/// pam_wrapper's helper module that sets PAM items (PAM_RHOST, ...) from the environment.
pub const PAM_SET_ITEMS: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_set_items.so";

/// Directory of the build artefacts (`target/debug`), found from the test binary's path.
pub fn artefact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_owned()
}

/// The built PAM module, rebuilt once per test process: `cargo test` links the rlib into the
/// tests but does not refresh the cdylib, and a stale `.so` would test old code.
pub fn module_path() -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let dir = artefact_dir();
    BUILD.call_once(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--lib", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.file_name() == Some(std::ffi::OsStr::new("release")) {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("cargo runs");
        assert!(status.success(), "cargo build --lib failed");
    });
    let path = dir.join("libpam_ecs_mfa.so");
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// This system's PAM module directory (where pam_unix.so is).
pub fn pam_module_dir() -> PathBuf {
    [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|d| d.join("pam_unix.so").exists())
    .expect("a PAM module directory with pam_unix.so")
}

/// The fleet backend's etcd client, installed next to the module (`pam::etcd_helper`).
pub const HELPER_FILE: &str = "libecs_mfa_etcd.so";

/// The built CLI.
pub fn enroll_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mfa-enroll"))
}

/// A private root-owned scratch area with a store, a state dir and a PAM service dir.
pub struct Sandbox {
    /// Shell commands run inside each PAM namespace before pamtester (see `set_ns_setup`).
    ns_setup: std::cell::RefCell<String>,
    pub root: PathBuf,
    pub store: PathBuf,
    pub state: PathBuf,
    pub pam_dir: PathBuf,
    pub config: PathBuf,
}

impl Sandbox {
    pub fn new(tag: &str) -> Self {
        require_real_parts();
        static N: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "ecs-mfa-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let pam_dir = root.join("pam.d");
        std::fs::create_dir(&pam_dir).unwrap();
        write_test_accounts(&root.join("nss"));
        let sandbox = Self {
            ns_setup: Default::default(),
            store: root.join("users"),
            state: root.join("run"),
            config: root.join("config.toml"),
            pam_dir,
            root,
        };
        sandbox.set_stack("auth required {module} {args}");
        sandbox
    }

    /// The module arguments that point at this sandbox.
    pub fn args(&self) -> String {
        format!(
            "store={} state={} config={}",
            self.store.display(),
            self.state.display(),
            self.config.display()
        )
    }

    /// Writes the `ecs-mfa-test` service (and `other`, which pam_wrapper requires).
    /// `{module}` and `{args}` in `stack` are replaced with the module path and the sandbox
    /// arguments.
    pub fn set_stack(&self, stack: &str) {
        // Installed under its real name: pam_syslog prefixes lines with the file name.
        let installed = self.root.join("pam_ecs_mfa.so");
        if !installed.exists() {
            // ECS_MFA_TEST_MODULE: the same tests against another build of the module (the
            // portable one that the packages ship: scripts/test runs them once that way).
            let built = std::env::var_os("ECS_MFA_TEST_MODULE")
                .map(PathBuf::from)
                .unwrap_or_else(module_path);
            std::fs::hard_link(&built, &installed)
                .or_else(|_| std::fs::copy(&built, &installed).map(|_| ()))
                .unwrap();
            // The fleet backend's etcd client, which the module loads from its own directory
            // (absent next to a foreign module: fleet logins then fail, as they should).
            let helper = built.with_file_name(HELPER_FILE);
            if helper.exists() {
                std::fs::copy(&helper, self.root.join(HELPER_FILE)).unwrap();
            }
        }
        let text = stack
            .replace("{module}", &installed.display().to_string())
            .replace("{args}", &self.args());
        let text = format!("{text}\naccount required pam_permit.so\n");
        std::fs::write(self.pam_dir.join("ecs-mfa-test"), &text).unwrap();
        std::fs::write(
            self.pam_dir.join("other"),
            "auth required pam_deny.so\naccount required pam_deny.so\n",
        )
        .unwrap();
    }

    /// Shell commands to run inside every later PAM namespace before pamtester starts; mounts
    /// made there (a tiny full tmpfs, a read-only mount) and the host name (a private UTS
    /// namespace: `hostname server-b`) vanish with the namespace.
    pub fn set_ns_setup(&self, script: &str) {
        *self.ns_setup.borrow_mut() = script.to_string();
    }

    /// Names, modes, owners and contents of everything in the store, to prove it unchanged.
    pub fn store_snapshot(&self) -> Vec<(String, u32, u32, u64, Vec<u8>)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        if let Ok(meta) = std::fs::symlink_metadata(&self.store) {
            out.push((".".into(), meta.mode(), meta.uid(), meta.nlink(), vec![]));
        }
        if let Ok(entries) = std::fs::read_dir(&self.store) {
            for e in entries.flatten() {
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                // Only small regular files are read (a 1 GiB sparse file is compared by size).
                let contents = if meta.is_file() && meta.len() < 1 << 20 {
                    std::fs::read(e.path()).unwrap()
                } else {
                    meta.len().to_le_bytes().to_vec()
                };
                out.push((
                    e.file_name().to_string_lossy().into_owned(),
                    meta.mode(),
                    meta.uid(),
                    meta.nlink(),
                    contents,
                ));
            }
        }
        out.sort();
        out
    }

    /// Every login of this sandbox comes with `key` (`type base64`) as the SSH key sshd
    /// accepted: `pam_env.so` sets `SSH_AUTH_INFO_0` in the stack (run `setcred` before
    /// `authenticate` with [`Sandbox::pamtester`]).
    pub fn set_accepted_key(&self, key: &str) {
        let env = self.root.join("pam_env.conf");
        std::fs::write(
            &env,
            format!("SSH_AUTH_INFO_0 DEFAULT=\"publickey {key}\"\n"),
        )
        .unwrap();
        self.set_stack(&format!(
            "auth optional pam_env.so readenv=0 user_readenv=0 conffile={}\n\
             auth required {{module}} {{args}}",
            env.display()
        ));
    }

    /// One login of `user` answering `answer` with `key` accepted by "sshd"
    /// ([`Sandbox::set_accepted_key`]; pam_env sets `SSH_AUTH_INFO_0` at setcred, so setcred
    /// runs first).
    pub fn login_with_key(&self, user: &str, key: &str, answer: &str) -> AuthResult {
        self.set_accepted_key(key);
        self.pamtester(user, answer.as_bytes(), &[], &["setcred", "authenticate"])
            .finish()
    }

    /// Writes `user`'s record file as given (hostile records, fixtures): the store directory
    /// 0700, the file 0600, as `mfa-enroll` makes them.
    pub fn install_record(&self, user: &str, bytes: &[u8]) {
        std::fs::create_dir_all(&self.store).unwrap();
        std::fs::set_permissions(&self.store, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = self.store.join(format!("{user}.toml"));
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Writes the config file (root-owned, 0644).
    pub fn set_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
        std::fs::set_permissions(&self.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Enrolls `user` with the real CLI and returns its base32 secret.
    pub fn enroll(&self, user: &str, extra: &[&str]) -> String {
        let out = self.enroll_cmd(user, extra);
        assert_ok(&out, "mfa-enroll enroll");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        json["secret"].as_str().unwrap().to_string()
    }

    /// Runs `mfa-enroll enroll --user USER --no-confirm --json` against this sandbox.
    pub fn enroll_cmd(&self, user: &str, extra: &[&str]) -> Output {
        Command::new(enroll_bin())
            .args([
                "enroll",
                "--user",
                user,
                "--no-confirm",
                // Tests choose SHA256/8 digits/60 s on purpose (oathtool honours them).
                "--force-params",
                "--json",
                "--store",
            ])
            .arg(&self.store)
            .arg("--state")
            .arg(&self.state)
            // The sandbox's config, never the host's /etc/ecs-mfa/config.toml.
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Imports `user` with the base32 `secret` through `mfa-enroll import oath` (a pam_oath
    /// users-file line); the import must succeed.
    pub fn import_oath(&self, user: &str, secret: &str) {
        self.import_oath_with(user, secret, &[]);
    }

    /// [`Sandbox::import_oath`] with extra arguments (`--force`).
    pub fn import_oath_with(&self, user: &str, secret: &str, extra: &[&str]) {
        let key = pam_ecs_mfa::totp::SecretKey::from_base32(secret).unwrap();
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let file = self.root.join(format!("{user}.oath"));
        std::fs::write(&file, format!("HOTP/T30 {user} - {hex}\n")).unwrap();
        let out = cli(
            self,
            &[&["import", "oath", "--file", file.to_str().unwrap()], extra].concat(),
            b"",
        );
        assert_ok(&out, "mfa-enroll import oath");
    }

    /// Runs `pamtester ecs-mfa-test USER authenticate` with `input` on stdin.
    pub fn auth(&self, user: &str, input: &[u8]) -> AuthResult {
        self.auth_spawn(user, input, &[]).finish()
    }

    /// Like [`Sandbox::auth`] with extra environment (for `pam_set_items.so`).
    pub fn auth_env(&self, user: &str, input: &[u8], env: &[(&str, &str)]) -> AuthResult {
        self.auth_spawn(user, input, env).finish()
    }

    /// Starts `pamtester` in a private mount namespace where `/etc/pam.d` is this sandbox's
    /// service directory and `/dev` is a small tmpfs whose `/dev/log` is a socket this test
    /// reads: the real libpam reads the real stack, and nothing on the host changes.
    pub fn auth_spawn(&self, user: &str, input: &[u8], env: &[(&str, &str)]) -> PamRun {
        self.pamtester(user, input, env, &["authenticate"])
    }

    /// Like [`Sandbox::auth_env`], but played by `tests/harness/pam_login.c` instead of
    /// pamtester: `pam_setcred(PAM_ESTABLISH_CRED)` follows a successful authentication when
    /// `setcred` (as sshd, login and su do), and `PAM_LOGIN_SERVICE` / `PAM_LOGIN_RHOST` /
    /// `PAM_LOGIN_RUSER` in `env` set the service and items.
    pub fn login(
        &self,
        user: &str,
        input: &[u8],
        env: &[(&str, &str)],
        setcred: bool,
    ) -> AuthResult {
        let client = pam_login_bin();
        let mut env = env.to_vec();
        env.push(("ECS_MFA_PAM_CLIENT", client.to_str().unwrap()));
        let ops: &[&str] = if setcred { &["setcred"] } else { &[] };
        self.pamtester(user, input, &env, ops).finish()
    }

    /// [`Sandbox::auth`] for a user name that need not be UTF-8.
    pub fn auth_os(&self, user: &std::ffi::OsStr, input: &[u8]) -> AuthResult {
        self.pamtester(user, input, &[], &["authenticate"]).finish()
    }

    /// Like [`Sandbox::auth`], but holds the answer back until the module's prompt has appeared
    /// (pamtester writes it to stderr), runs `meanwhile` (an administrator acting while the
    /// client sits at the prompt), then answers `input`.
    pub fn auth_at_prompt(&self, user: &str, meanwhile: impl FnOnce(), input: &[u8]) -> AuthResult {
        self.auth_when_prompted(user, || {
            meanwhile();
            input.to_vec()
        })
    }

    /// Like [`Sandbox::auth`], but the answer is made by `answer` once the module's prompt has
    /// appeared (a person reading the code off the phone at that moment, or later).
    pub fn auth_when_prompted(&self, user: &str, answer: impl FnOnce() -> Vec<u8>) -> AuthResult {
        use std::io::Read;
        let mut run = self.pamtester_open(user, &[], &["authenticate"]);
        let mut stderr = run.child.stderr.take().unwrap();
        let seen = read_until(&mut stderr, "Verification code:");
        let input = answer();
        let mut stdin = run.child.stdin.take().unwrap();
        let _ = stdin.write_all(&input);
        drop(stdin);
        let mut rest = Vec::new();
        let _ = stderr.read_to_end(&mut rest);
        let mut result = run.finish();
        result.stderr = text(&seen) + &text(&rest) + &result.stderr;
        result
    }

    /// Runs `pamtester ecs-mfa-test USER OPS...` in the namespace (see [`Sandbox::auth_spawn`]).
    pub fn pamtester(
        &self,
        user: impl AsRef<std::ffi::OsStr>,
        input: &[u8],
        env: &[(&str, &str)],
        ops: &[&str],
    ) -> PamRun {
        let mut run = self.pamtester_open(user, env, ops);
        let mut stdin = run.child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
        drop(stdin);
        run
    }

    /// Starts pamtester with its stdin still open (a client sitting at a prompt).
    pub fn pamtester_open(
        &self,
        user: impl AsRef<std::ffi::OsStr>,
        env: &[(&str, &str)],
        ops: &[&str],
    ) -> PamRun {
        static N: AtomicU64 = AtomicU64::new(0);
        let socket = self
            .root
            .join(format!("log-{}.sock", N.fetch_add(1, Ordering::Relaxed)));
        let log = LogCapture::bind(&socket);
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
            ])
            .arg(NAMESPACE_SCRIPT)
            .arg("sh")
            .arg(&self.pam_dir)
            .arg(&socket)
            .arg(user.as_ref())
            .args(ops)
            .env("ECS_MFA_NS_SETUP", self.ns_setup.borrow().as_str())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        PamRun { child, log }
    }
}

/// `tests/harness/pam_login.c`, compiled once per test binary (see [`c_harness`]).
pub fn pam_login_bin() -> PathBuf {
    c_harness("pam_login")
}

/// `tests/harness/NAME.c`, a small PAM application, compiled once per test binary (gcc and
/// libpam0g-dev are build dependencies: scripts/deps installs them).
pub fn c_harness(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|n| n == name) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/harness/{name}.c"));
        let cc = Command::new("gcc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-lpam")
            .output()
            .expect("gcc runs (apt-get install gcc libpam0g-dev)");
        assert_ok(&cc, "cc (C harness)");
        built.push(name.to_string());
    }
    out
}

pub const PASSWORD: &str = "correct horse 7";

/// A sandbox where alice's Unix password is [`PASSWORD`] (a private /etc/shadow in the PAM
/// namespace) and the stack is: ecs-mfa with `forward_pass`, then pam_unix with
/// `use_first_pass` (success skips pam_deny), as in pam-config/debian/sshd-forward-pass.
pub fn forward_pass_sandbox(tag: &str) -> (Sandbox, String) {
    let sb = Sandbox::new(tag);
    let secret = sb.enroll("alice", &[]);
    sb.use_forward_pass_stack();
    (sb, secret)
}

impl Sandbox {
    /// Gives `users` the Unix password [`PASSWORD`] and every other account none, in a private
    /// /etc/shadow that the PAM namespace mounts.
    pub fn set_password_of(&self, users: &[&str]) {
        let hash = Command::new("openssl")
            .args(["passwd", "-6", PASSWORD])
            .output()
            .unwrap();
        let hash = text(&hash.stdout).trim().to_string();
        let passwd = std::fs::read_to_string(self.root.join("nss/passwd")).unwrap();
        let shadow: String = passwd
            .lines()
            .map(|l| l.split(':').next().unwrap())
            .map(|u| {
                let h = if users.contains(&u) {
                    hash.as_str()
                } else {
                    "!"
                };
                format!("{u}:{h}:19000:0:99999:7:::\n")
            })
            .collect();
        std::fs::write(self.root.join("nss/shadow"), shadow).unwrap();
        self.set_ns_setup(&format!(
            "mount --bind {} /etc/shadow",
            self.root.join("nss/shadow").display()
        ));
    }

    /// Gives alice the Unix password [`PASSWORD`] (a private /etc/shadow in the PAM namespace)
    /// and sets the stack of [`forward_pass_sandbox`].
    pub fn use_forward_pass_stack(&self) {
        self.set_password_of(&["alice"]);
        self.set_stack(
            "auth required {module} {args} forward_pass\n\
             auth [success=1 default=ignore] pam_unix.so use_first_pass\n\
             auth requisite pam_deny.so\n\
             auth required pam_permit.so",
        );
    }
}

/// The accounts the tier-2 tests log in as (the module denies names NSS does not know):
/// alice, bob, carol, dave, eve, mallory and user0..user49, uid/gid 61000 and up, added to copies
/// of the host's /etc/passwd and /etc/group that only the PAM namespaces see.
pub const TEST_ACCOUNTS: [&str; 6] = ["alice", "bob", "carol", "dave", "eve", "mallory"];

fn write_test_accounts(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let mut group = std::fs::read_to_string("/etc/group").unwrap();
    let names = TEST_ACCOUNTS
        .iter()
        .map(|s| s.to_string())
        .chain((0..50).map(|i| format!("user{i}")));
    for (i, name) in names.enumerate() {
        let id = 61000 + i;
        if !passwd.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            passwd.push_str(&format!("{name}:x:{id}:{id}::/nonexistent:/bin/sh\n"));
            group.push_str(&format!("{name}:x:{id}:\n"));
        }
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    std::fs::write(dir.join("group"), group).unwrap();
}

/// Inside the namespace: private /etc/pam.d, /etc/passwd and /etc/group (with the test
/// accounts) and /dev (with /dev/log = the test's socket), after the sandbox's extra setup
/// commands (e.g. a full or read-only state directory).
const NAMESPACE_SCRIPT: &str = r#"set -e
mount --bind "$1" /etc/pam.d
mount --bind "$1/../nss/passwd" /etc/passwd
mount --bind "$1/../nss/group" /etc/group
eval "$ECS_MFA_NS_SETUP"
mount -t tmpfs -o mode=755,size=64k ecs-mfa-test-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/random c 1 8
mknod -m 666 /dev/urandom c 1 9
touch /dev/log
mount --bind "$2" /dev/log
user=$3
shift 3
exec ${ECS_MFA_PAM_CLIENT:-pamtester -v} ecs-mfa-test "$user" "$@"
"#;

/// A running `pamtester` and the syslog socket it writes to.
pub struct PamRun {
    pub child: std::process::Child,
    log: LogCapture,
}

impl PamRun {
    /// Waits (failing the test after 60 s: a hang is a failure) and collects everything.
    pub fn finish(self) -> AuthResult {
        let out = wait_with_timeout(self.child, Duration::from_secs(60));
        let syslog = self.log.stop();
        AuthResult {
            success: out.status.success(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            syslog,
        }
    }
}

/// A datagram socket standing in for `/dev/log`, drained by a thread so that `syslog(3)` in
/// the module never blocks on a full queue.
struct LogCapture {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

impl LogCapture {
    fn bind(path: &Path) -> Self {
        let socket = std::os::unix::net::UnixDatagram::bind(path).expect("bind log socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, d) = (lines.clone(), done.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => l.lock().unwrap().push(text(&buf[..n])),
                    Err(_) if d.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
        });
        Self {
            lines,
            done,
            reader,
        }
    }

    fn stop(self) -> Vec<String> {
        self.done.store(true, Ordering::SeqCst);
        self.reader.join().unwrap();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What one `pamtester` run showed.
#[derive(Debug)]
pub struct AuthResult {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// Every datagram the process sent to /dev/log.
    pub syslog: Vec<String>,
}

impl AuthResult {
    /// How many times the module prompted.
    pub fn prompts(&self) -> usize {
        self.stderr.matches("Verification code:").count()
            + self.stdout.matches("Verification code:").count()
    }

    /// The lines the module logged through pam_syslog (`pam_ecs_mfa(service:auth): ...`).
    pub fn syslog(&self) -> Vec<String> {
        self.syslog
            .iter()
            .filter(|l| l.contains(" pam_ecs_mfa(ecs-mfa-test:auth): "))
            .cloned()
            .collect()
    }

    /// The one audit line (asserts there is exactly one).
    pub fn audit(&self) -> String {
        let lines: Vec<_> = self
            .syslog()
            .into_iter()
            .filter(|l| l.contains(" result="))
            .collect();
        assert_eq!(lines.len(), 1, "exactly one audit line: {self:#?}");
        lines[0].clone()
    }
}

/// Waits for `child`, killing it and failing the test after `limit` (a hang is a failure).
pub fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> Output {
    // The pipes are drained while the process runs: output beyond the pipe buffer (64 KiB)
    // would otherwise block the process and look like a hang.
    let stdout = Drain::start(child.stdout.take());
    let stderr = Drain::start(child.stderr.take());
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: stdout.finish(),
                stderr: stderr.finish(),
            };
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process hung for {limit:?}; output: {}",
                text(&stdout.finish())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A pipe read to its end by a thread, into a buffer that can be taken at any time.
struct Drain {
    buffer: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drain {
    fn start(pipe: Option<impl std::io::Read + Send + 'static>) -> Self {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let reader = pipe.map(|mut pipe| {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        Self { buffer, reader }
    }

    /// What was read, once the pipe's end came (or after 10 s: a process the child left
    /// behind may hold it open).
    fn finish(&self) -> Vec<u8> {
        let start = Instant::now();
        while self.reader.as_ref().is_some_and(|r| !r.is_finished())
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.buffer.lock().unwrap().clone()
    }
}

/// The current code for `secret`, computed by oathtool (an independent implementation).
pub fn oathtool_code(secret: &str, extra: &[&str]) -> String {
    let mode: &[&str] = if extra
        .iter()
        .any(|a| a.starts_with("--totp") || *a == "--hotp")
    {
        &[]
    } else {
        &["--totp"]
    };
    let out = Command::new("oathtool")
        .args(mode)
        .args(extra)
        .arg("-b")
        .arg(secret)
        .output()
        .expect("oathtool runs");
    assert_ok(&out, "oathtool");
    text(&out.stdout).trim().to_string()
}

/// Makes sure the next code will be usable for at least `margin` seconds (no step change
/// between computing a code and using it in several logins).
pub fn wait_for_fresh_step(margin: u64) {
    let now = pam_ecs_mfa::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into_step = now.as_secs() % 30;
    if into_step + margin >= 30 {
        std::thread::sleep(Duration::from_secs(30 - into_step) + Duration::from_millis(200));
    }
}

/// Reads `stream` byte by byte (nothing past what is needed) until what was read contains
/// `wanted` (a prompt); panics with what came when the stream ends first.
pub fn read_until(stream: &mut impl std::io::Read, wanted: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !text(&seen).contains(wanted) {
        match stream.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!("{wanted:?} never came: {}", text(&seen)),
        }
    }
    seen
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a finished command printed, for an assertion message: its exit status, stdout and
/// stderr (the tests' sandboxes hold no real secret, so all of it may be shown).
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout).trim_end(),
        text(&out.stderr).trim_end()
    )
}

/// Asserts that a command (`what`, e.g. "mfa-enroll reset") exited 0; on failure the message
/// shows its status, stdout and stderr.
#[track_caller]
pub fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
}

/// Asserts that a command exited with exactly `code` (one of `mfa-enroll`'s documented exit
/// statuses, say); on failure the message shows its status, stdout and stderr.
#[track_caller]
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit status {code}, got {}",
        describe(out)
    );
}

/// Asserts that a command did not succeed (any non-zero status or a signal).
#[track_caller]
pub fn assert_failed(out: &Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what} should have failed: {}",
        describe(out)
    );
}

/// Asserts that an audit line says `reason=<want>`, showing the whole line otherwise.
#[track_caller]
pub fn assert_reason(line: &str, want: &str) {
    assert_eq!(reason(line), want, "audit line: {line}");
}

/// Asserts that a login (see [`login`]) was denied with `reason=<want>`.
#[track_caller]
pub fn assert_denied(ok: bool, line: &str, want: &str) {
    assert!(
        !ok && reason(line) == want,
        "expected a denial with reason={want}: {line}"
    );
}

/// Asserts that a login (see [`login`]) succeeded with `reason=<want>`.
#[track_caller]
pub fn assert_accepted(ok: bool, line: &str, want: &str) {
    assert!(
        ok && reason(line) == want,
        "expected a success with reason={want}: {line}"
    );
}

/// A code that differs from `right` in every digit (so it is wrong whatever the step).
pub fn wrong_code(right: &str) -> String {
    right
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 5) % 10))
        .collect()
}

/// Decodes a QR code printed by `mfa-enroll --qr utf8|ansi` (the terminal text) to its text.
pub fn decode_terminal_qr(printed: &str, ansi: bool) -> String {
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for line in printed.lines() {
        let (mut top, mut bottom) = (Vec::new(), Vec::new());
        if ansi {
            // Each cell: ESC[<fg>;<bg>m followed by an upper half block.
            for cell in line.split("\x1b[").filter(|c| c.ends_with('\u{2580}')) {
                top.push(cell.starts_with("30;"));
                bottom.push(cell.contains(";40m"));
            }
        } else {
            for c in line.chars() {
                let (t, b) = match c {
                    ' ' => (true, true),
                    '\u{2584}' => (true, false),
                    '\u{2580}' => (false, true),
                    '\u{2588}' => (false, false),
                    _ => continue,
                };
                top.push(t);
                bottom.push(b);
            }
        }
        if !top.is_empty() {
            rows.push(top);
            rows.push(bottom);
        }
    }
    let scale = 4;
    let (h, w) = (rows.len(), rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * scale, |x, y| {
        let dark = rows[y / scale].get(x / scale).copied().unwrap_or(false);
        if dark { 0 } else { 255 }
    });
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the output");
    grids[0].decode().expect("QR decodes").1
}

/// Decodes a PNG QR code file to its text.
pub fn decode_png_qr(path: &Path) -> String {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().expect("QR decodes").1
}

/// [`cli`] started, not waited for: stdin, stdout and stderr piped (for a command that waits
/// at its confirmation prompt).
pub fn spawn_cli(sb: &Sandbox, args: &[&str]) -> std::process::Child {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(
            "set -e; mount --bind \"$1/passwd\" /etc/passwd; mount --bind \"$1/group\" /etc/group; \
             shift; exec \"$@\"",
        )
        .arg("sh")
        .arg(sb.root.join("nss"))
        .arg(enroll_bin())
        .args(args)
        .arg("--store")
        .arg(&sb.store)
        .arg("--state")
        .arg(&sb.state)
        .arg("--config")
        .arg(&sb.config)
        .env_remove("SUDO_USER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `mfa-enroll ARGS... --store S --state T --config C` with `input` on stdin.
/// Runs `mfa-enroll ARGS --store/--state/--config` of the sandbox, in a mount namespace that
/// sees the same test accounts as the PAM runs (see [`TEST_ACCOUNTS`]).
pub fn cli(sb: &Sandbox, args: &[&str], input: &[u8]) -> Output {
    let mut child = spawn_cli(sb, args);
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    wait_with_timeout(child, Duration::from_secs(60))
}

/// The `reason=` of an audit line.
pub fn reason(line: &str) -> &str {
    line.split(" reason=")
        .nth(1)
        .unwrap_or("")
        .split(' ')
        .next()
        .unwrap_or("")
}

/// One login answering `code`: success and the audit line.
pub fn login(sb: &Sandbox, user: &str, code: &str) -> (bool, String) {
    let r = sb.auth(user, format!("{code}\n").as_bytes());
    let audit = r.audit();
    (r.success, audit)
}

/// One login of `user` answering `code` through a stack that sets `SSH_AUTH_INFO_0` with
/// pam_env ([`Sandbox::set_accepted_key`]: setcred first, as pam_env sets it there).
pub fn keyed_login(sb: &Sandbox, user: &str, code: &str) -> (bool, String) {
    let r = sb
        .pamtester(
            user,
            format!("{code}\n").as_bytes(),
            &[],
            &["setcred", "authenticate"],
        )
        .finish();
    (r.success, r.audit())
}

/// `enroll --json` with the real CLI (asserting it worked): the printed object.
pub fn enroll_json(sb: &Sandbox, user: &str, extra: &[&str]) -> serde_json::Value {
    let out = sb.enroll_cmd(user, extra);
    assert_ok(&out, &format!("enroll {user}"));
    serde_json::from_slice(&out.stdout).unwrap()
}
