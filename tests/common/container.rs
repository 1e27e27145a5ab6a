//! Tier 3 plumbing: run a test scenario inside `scripts/container` (a real sshd in namespaces)
//! and drive the real `ssh` client there. Used by `tests/sshd_e2e.rs` and `tests/package_install.rs`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use pam_ecs_mfa::totp::{SecretKey, TotpParams, code_at};

const INNER: &str = "ECS_MFA_E2E";

/// Runs `scenario` inside a fresh container: outside, starts `scripts/container OPTIONS` that
/// re-runs this test binary (only the test `name`) inside, then checks the host is unchanged;
/// inside (`ECS_MFA_E2E=<name>`), runs the scenario.
pub fn in_container(name: &str, options: &[&str], scenario: impl FnOnce()) {
    if std::env::var(INNER).as_deref() == Ok(name) {
        assert_eq!(
            std::env::var("ECS_MFA_CONTAINER").as_deref(),
            Ok("1"),
            "inner part must run inside scripts/container"
        );
        scenario();
        return;
    }
    super::require_real_parts();
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/deps does this)"
    );
    // ECS_MFA_TEST_MODULE lets a person check once that these tests fail with another module
    // (e.g. pam_permit.so) in place of ours.
    let module = std::env::var_os("ECS_MFA_TEST_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(super::module_path);
    let before = HostSnapshot::take();
    let out_dir =
        std::env::temp_dir().join(format!("ecs-mfa-e2e-out-{name}-{}", std::process::id()));
    let hold = NamespaceHold::start(out_dir.join("pidns"));
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container"));
    cmd.arg("--module")
        .arg(&module)
        .arg("--enroll")
        .arg(super::enroll_bin())
        .arg("--out")
        .arg(&out_dir);
    cmd.args(options);
    cmd.arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, name)
        .stdin(Stdio::null());
    let out = super::wait_with_timeout(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(300),
    );
    let held = hold.finish();
    let pidns = std::fs::read_to_string(out_dir.join("pidns")).unwrap_or_default();
    let logs = ["sshd.log", "syslog-capture"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(out_dir.join(f)).unwrap_or_default();
            format!("--- {f}:\n{text}")
        })
        .collect::<String>();
    let _ = std::fs::remove_dir_all(&out_dir);
    super::assert_ok(
        &out,
        &format!("scenario {name} inside the container ({logs})"),
    );
    // The inner run must really have run this test (not filtered everything out).
    assert!(
        super::text(&out.stdout).contains("1 passed"),
        "{}",
        super::text(&out.stdout)
    );
    HostSnapshot::take().assert_same_as(&before);
    assert!(
        pidns.starts_with("pid:["),
        "the container reported its pid namespace"
    );
    // Only a namespace held open while it ran is surely this container's: once freed, its id is
    // given to the next new namespace, and parallel tests start containers all the time (a
    // CI run once counted another container's sshd as "left behind").
    let held = held.unwrap_or_else(|| {
        panic!("never held the container's pid namespace ({pidns:?}) while it ran")
    });
    assert_eq!(
        held.0,
        pidns.trim(),
        "the namespace held is the one reported"
    );
    // The kernel kills the namespace's processes when its init exits; give stragglers (still
    // being torn down on a busy machine, many container tests at once on 2 cores) up to 30 s
    // before calling them survivors. A survivor is a live process, not a zombie awaiting its
    // reaper: those can run nothing.
    let mut survivors = processes_in_namespace(pidns.trim());
    for _ in 0..300 {
        if survivors.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        survivors = processes_in_namespace(pidns.trim());
    }
    assert!(survivors.is_empty(), "processes left behind: {survivors:?}");
    drop(held);
}

/// Keeps a container's pid namespace allocated (an open `/proc/PID/ns/pid`) from the moment
/// the container reports it in `pidns` until the survivors check is done, so that its id
/// names no other namespace meanwhile.
struct NamespaceHold {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    finder: std::thread::JoinHandle<Option<(String, std::fs::File)>>,
}

impl NamespaceHold {
    fn start(report: PathBuf) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let finder = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                if let Some(held) = Self::open(&report) {
                    return Some(held);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        });
        NamespaceHold { stop, finder }
    }

    /// Opens the namespace named in `report` through one of its processes, if it is running.
    /// The opened file's inode is checked, so a process that left meanwhile cannot make us
    /// hold another namespace.
    fn open(report: &Path) -> Option<(String, std::fs::File)> {
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::read_to_string(report).ok()?;
        let ns = ns.trim().to_string();
        let inode: u64 = ns.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()?;
        for pid in processes_in_namespace(&ns) {
            if let Ok(file) = std::fs::File::open(format!("/proc/{pid}/ns/pid"))
                && file.metadata().map(|m| m.ino()).ok() == Some(inode)
            {
                return Some((ns, file));
            }
        }
        None
    }

    /// Stops looking (the container has ended: its id may already be reused) and returns the
    /// namespace if it was held while the container ran.
    fn finish(self) -> Option<(String, std::fs::File)> {
        self.stop.store(true, Ordering::SeqCst);
        self.finder.join().unwrap()
    }
}

/// Host pids of processes still in the pid namespace `ns` (e.g. `pid:[4026532290]`).
pub fn processes_in_namespace(ns: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/pid"))
                .map(|link| link.to_string_lossy() == ns)
                .unwrap_or(false)
        })
        .filter(|e| {
            // Field 3 of /proc/PID/stat (after the parenthesised command) is the state.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What must be identical on the host before and after a container run.
#[derive(Debug, PartialEq)]
struct HostSnapshot {
    files: BTreeMap<PathBuf, Vec<u8>>,
    listening: Vec<String>,
}

impl HostSnapshot {
    fn take() -> Self {
        let mut files = BTreeMap::new();
        for path in ["/etc/passwd", "/etc/group", "/etc/shadow"] {
            files.insert(PathBuf::from(path), std::fs::read(path).unwrap_or_default());
        }
        for dir in ["/etc/pam.d", "/etc/ssh", "/etc/ssh/sshd_config.d"] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                        files.insert(e.path(), std::fs::read(e.path()).unwrap_or_default());
                    }
                }
            }
        }
        // Only what the container could leak onto the host: a listener on sshd's port 22.
        // Other processes on the machine may open and close sockets at any time.
        let mut listening = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
            {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.get(3) == Some(&"0A") && cols[1].ends_with(":0016") {
                    listening.push(format!("{table} {}", cols[1]));
                }
            }
        }
        listening.sort();
        Self { files, listening }
    }

    fn assert_same_as(&self, before: &Self) {
        for (path, contents) in &before.files {
            assert!(
                self.files.get(path) == Some(contents),
                "host file {} changed",
                path.display()
            );
        }
        assert_eq!(
            self.files.len(),
            before.files.len(),
            "files appeared on the host"
        );
        assert_eq!(
            self.listening, before.listening,
            "a listener on port 22 appeared on the host"
        );
    }
}

// ---------------------------------------------------------------- inside the container ----

const KEYS: &str = "/run/ecs-mfa-test/keys";

/// Enrolls `user` with the installed `/usr/sbin/mfa-enroll`, returns the secret (JSON output).
pub fn enroll(user: &str) -> String {
    let out = Command::new("/usr/sbin/mfa-enroll")
        .args(["enroll", "--user", user, "--no-confirm", "--json"])
        .output()
        .unwrap();
    super::assert_ok(&out, "mfa-enroll enroll");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

pub fn now() -> u64 {
    pam_ecs_mfa::clock::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current code for `secret` (the library is cross-checked against oathtool elsewhere).
pub fn code(secret: &str) -> String {
    let key = SecretKey::from_base32(secret).unwrap();
    code_at(&key, TotpParams::default(), now()).to_string()
}

/// The code for `secret` `offset` seconds from now (e.g. the next step's, which window=1 accepts).
pub fn code_at_offset(secret: &str, offset: u64) -> String {
    let key = SecretKey::from_base32(secret).unwrap();
    code_at(&key, TotpParams::default(), now() + offset).to_string()
}

/// What one `ssh` run showed.
#[derive(Debug)]
pub struct Login {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    /// Keyboard-interactive prompts the client was asked to answer.
    pub prompts: Vec<String>,
}

/// Logs in as `user` with `key` (a key file name in KEYS, or none), answering every prompt with
/// `answer` (or refusing to answer), and runs `command`.
pub fn ssh(user: &str, key: Option<&str>, answer: Option<&str>, command: &str) -> Login {
    match answer {
        Some(a) => ssh_with(user, key, &[("", a)], command),
        None => ssh_with(user, key, &[], command),
    }
}

/// Like [`ssh`], answering each prompt with the answer of the first `(substring, answer)` pair
/// whose substring the prompt contains; a prompt matching none is refused.
pub fn ssh_with(user: &str, key: Option<&str>, answers: &[(&str, &str)], command: &str) -> Login {
    ssh_opts(user, key, answers, command, &[])
}

/// Like [`ssh_with`], with extra `ssh -o` options (e.g. `PreferredAuthentications=password`).
pub fn ssh_opts(
    user: &str,
    key: Option<&str>,
    answers: &[(&str, &str)],
    command: &str,
    options: &[&str],
) -> Login {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(format!(
        "/run/ecs-mfa-test/ssh-{}",
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let askpass = dir.join("askpass");
    let prompts = dir.join("prompts");
    let mut script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\n",
        prompts.display()
    );
    for (i, (pattern, answer)) in answers.iter().enumerate() {
        let file = dir.join(format!("answer{i}"));
        std::fs::write(&file, answer).unwrap();
        script.push_str(&format!(
            "case \"$1\" in *'{pattern}'*) cat {}; echo; exit 0;; esac\n",
            file.display()
        ));
    }
    script.push_str("exit 1\n");
    std::fs::write(&askpass, script).unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null", "-T"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=20"])
        .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]);
    match key {
        Some(k) => cmd.args(["-i", &format!("{KEYS}/{k}")]),
        None => cmd.args(["-o", "PubkeyAuthentication=no"]),
    };
    for option in options {
        cmd.args(["-o", option]);
    }
    cmd.arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = super::wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(60));
    let prompts = std::fs::read_to_string(&prompts)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Login {
        success: out.status.success(),
        stdout: super::text(&out.stdout),
        stderr: super::text(&out.stderr),
        prompts,
    }
}

/// The module's audit lines so far.
pub fn audit_lines() -> Vec<String> {
    std::fs::read_to_string("/var/log/syslog-capture")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("pam_ecs_mfa(sshd:auth): "))
        .map(str::to_string)
        .collect()
}

/// The audit lines added since `before` lines were seen. The log listener is a separate
/// process, so wait until new lines have arrived and stopped arriving (up to 5 s; when none
/// come, after 2 s of silence).
pub fn new_audit_lines(before: usize) -> Vec<String> {
    let mut last = usize::MAX;
    for i in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = audit_lines().len();
        if (now > before && now == last) || (now == before && i >= 20) {
            break;
        }
        last = now;
    }
    audit_lines().split_off(before)
}

pub fn set_config(text: &str) {
    std::fs::create_dir_all("/etc/ecs-mfa").unwrap();
    std::fs::write("/etc/ecs-mfa/config.toml", text).unwrap();
    std::fs::set_permissions(
        "/etc/ecs-mfa/config.toml",
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

/// sshd settings for this scenario: `text` goes to `/etc/ssh/sshd_config.d/00-a-test.conf`,
/// read before every other drop-in (sshd keeps the first value of a keyword, so these win),
/// then sshd is restarted and waited for.
pub fn sshd_settings(text: &str) {
    std::fs::write("/etc/ssh/sshd_config.d/00-a-test.conf", text).unwrap();
    restart_sshd();
}

/// Restarts the container's sshd so that it reads its configuration again.
pub fn restart_sshd() {
    let check = Command::new("/usr/sbin/sshd").arg("-t").output().unwrap();
    super::assert_ok(&check, "sshd -t");
    let pid = std::fs::read_to_string("/run/sshd.pid").unwrap_or_default();
    let pid = pid.trim();
    if !pid.is_empty() {
        let _ = Command::new("kill").arg(pid).status();
        for _ in 0..250 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_file("/run/sshd.pid");
    let status = Command::new("/usr/sbin/sshd")
        .args(["-E", "/var/log/sshd.log"])
        .status()
        .unwrap();
    assert!(status.success(), "sshd did not start");
    for _ in 0..250 {
        if std::fs::metadata("/run/sshd.pid")
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sshd did not write its pid file");
}

/// Runs a shell command inside the container; it must succeed.
pub fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    super::assert_ok(&out, script);
}

/// One `ssh` run of a first login (enrollment at login) as `user` with `key` (a key file name in
/// KEYS; a certificate `KEY-cert.pub` next to it is offered too): prompts that contain "confirm"
/// are answered with the code for the secret the server has just shown (read back from ssh's
/// own stderr, as a person would read it off the screen; after the seconds in
/// `/run/ecs-mfa-test/first-TAG/delay` if that file exists); "Verification code" prompts with
/// `code`, if given. Returns whether it logged in, its stdout, what the user saw (stderr and
/// the prompts) and the prompts one by one.
pub fn first_login(
    user: &str,
    key: &str,
    code: Option<&str>,
    tag: &str,
) -> (bool, String, String, Vec<String>) {
    let dir = std::path::PathBuf::from(format!("/run/ecs-mfa-test/first-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(code) = code {
        std::fs::write(dir.join("code"), code).unwrap();
    }
    // Each prompt goes to `prompts`, followed by a line holding only \x1e (record separator).
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n\\036\\n' \"$1\" >> {d}/prompts\ncase \"$1\" in\n\
         *confirm*) [ -f {d}/delay ] && sleep \"$(cat {d}/delay)\"; \
         s=$( (printf '%s\\n' \"$1\"; cat {d}/stderr) | sed -n 's/^Secret: //p' \
         | tail -n 1 | tr -d ' '); [ -n \"$s\" ] || exit 1; oathtool --totp -b \"$s\"; exit 0;;\n\
         *'Verification code'*) [ -f {d}/code ] || exit 1; cat {d}/code; echo; exit 0;;\n\
         esac\nexit 1\n",
        d = dir.display()
    );
    std::fs::write(dir.join("askpass"), script).unwrap();
    std::fs::set_permissions(dir.join("askpass"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-T", "-o", "StrictHostKeyChecking=no"])
        .args([
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .arg("-i")
        .arg(format!("{KEYS}/{key}"))
        .arg(format!("{user}@127.0.0.1"))
        .arg("id -un")
        .env("SSH_ASKPASS", dir.join("askpass"))
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("LANG", "C.UTF-8")
        .env_remove("DISPLAY")
        .stdin(std::process::Stdio::null())
        .stderr(stderr)
        .output()
        .unwrap();
    // What the user saw: OpenSSH 9.2 puts the server's text into the prompt itself (askpass
    // gets it as its argument), newer versions print it on stderr as the instruction.
    let asked = std::fs::read_to_string(dir.join("prompts")).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default() + &asked;
    let prompts = asked
        .split("\n\u{1e}\n")
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    (out.status.success(), super::text(&out.stdout), err, prompts)
}

/// The `SHA256:` fingerprint `ssh-keygen -l -f FILE` prints.
pub fn keygen_fingerprint(file: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-l", "-f", file])
        .output()
        .unwrap();
    super::assert_ok(&out, "ssh-keygen -l");
    super::text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// Sets the account password of `user`.
pub fn set_password(user: &str, password: &str) {
    use std::io::Write;
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{user}:{password}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success());
}

/// `mfa-enroll status --user USER --json`: the user's row.
pub fn status(user: &str) -> serde_json::Value {
    let out = Command::new("/usr/sbin/mfa-enroll")
        .args(["status", "--user", user, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("status: {}", super::text(&out.stderr)));
    v
}

/// Gives root an SSH key (`/run/ecs-mfa-test/keys/root`) on a private tmpfs over `/root`, so
/// the host's `/root` is never touched.
pub fn give_root_a_key() {
    sh(&format!(
        "mount -t tmpfs -o mode=700 ecs-mfa-root /root && install -d -m 700 /root/.ssh && \
         ssh-keygen -q -t ed25519 -N '' -C root -f {KEYS}/root && \
         install -m 600 {KEYS}/root.pub /root/.ssh/authorized_keys"
    ));
}
