//! Tier 3: a real OpenSSH `sshd` using the shipped `pam-config/` files and the built module, in
//! a throwaway namespace container (`scripts/container`), with the real `ssh` client logging in
//! by key and answering the keyboard-interactive prompt.
//!
//! Each test runs twice: outside, it starts a container that re-runs this test binary (only
//! this test) inside; inside (`ECS_MFA_E2E=<test name>`), it runs the scenario. Outside, it
//! then checks that the host is unchanged: `/etc/passwd`, `/etc/group`, `/etc/shadow`,
//! `/etc/pam.d`, `/etc/ssh` byte-identical, no new listening socket, and no process left in the
//! container's pid namespace.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pam_ecs_mfa::totp::{SecretKey, TotpParams, code_at};

const INNER: &str = "ECS_MFA_E2E";

/// Runs `scenario` inside a fresh container (see the module docs).
fn in_container(name: &str, nullok: bool, scenario: impl FnOnce()) {
    if std::env::var(INNER).as_deref() == Ok(name) {
        assert_eq!(
            std::env::var("ECS_MFA_CONTAINER").as_deref(),
            Ok("1"),
            "inner part must run inside scripts/container"
        );
        scenario();
        return;
    }
    common::require_real_parts();
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/deps does this)"
    );
    // ECS_MFA_TEST_MODULE lets a person check once that these tests fail with another module
    // (e.g. pam_permit.so) in place of ours.
    let module = std::env::var_os("ECS_MFA_TEST_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(common::module_path);
    let before = HostSnapshot::take();
    let out_dir =
        std::env::temp_dir().join(format!("ecs-mfa-e2e-out-{name}-{}", std::process::id()));
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container"));
    cmd.arg("--module")
        .arg(&module)
        .arg("--enroll")
        .arg(common::enroll_bin())
        .arg("--out")
        .arg(&out_dir);
    if nullok {
        cmd.arg("--nullok");
    }
    cmd.arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, name)
        .stdin(Stdio::null());
    let out = common::wait_with_timeout(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(300),
    );
    let pidns = std::fs::read_to_string(out_dir.join("pidns")).unwrap_or_default();
    let logs = ["sshd.log", "syslog-capture"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(out_dir.join(f)).unwrap_or_default();
            format!("--- {f}:\n{text}")
        })
        .collect::<String>();
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(
        out.status.success(),
        "scenario {name} failed inside the container:\n{}\n{}\n{logs}",
        common::text(&out.stdout),
        common::text(&out.stderr)
    );
    // The inner run must really have run this test (not filtered everything out).
    assert!(
        common::text(&out.stdout).contains("1 passed"),
        "{}",
        common::text(&out.stdout)
    );
    HostSnapshot::take().assert_same_as(&before);
    assert!(
        pidns.starts_with("pid:["),
        "the container reported its pid namespace"
    );
    let survivors = processes_in_namespace(pidns.trim());
    assert!(survivors.is_empty(), "processes left behind: {survivors:?}");
}

/// Host pids of processes still in the pid namespace `ns` (e.g. `pid:[4026532290]`).
fn processes_in_namespace(ns: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path().join("ns/pid"))
                .map(|link| link.to_string_lossy() == ns)
                .unwrap_or(false)
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
        let mut listening = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in std::fs::read_to_string(table)
                .unwrap_or_default()
                .lines()
                .skip(1)
            {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.get(3) == Some(&"0A") {
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
            "listening sockets changed"
        );
    }
}

// ---------------------------------------------------------------- inside the container ----

const KEYS: &str = "/run/ecs-mfa-test/keys";

/// Enrolls `user` with the installed `/usr/sbin/mfa-enroll`, returns the secret (JSON output).
fn enroll(user: &str) -> String {
    let out = Command::new("/usr/sbin/mfa-enroll")
        .args(["enroll", "--user", user, "--no-confirm", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current code for `secret` (the library is cross-checked against oathtool elsewhere).
fn code(secret: &str) -> String {
    let key = SecretKey::from_base32(secret).unwrap();
    code_at(&key, TotpParams::default(), now()).to_string()
}

/// What one `ssh` run showed.
#[derive(Debug)]
struct Login {
    success: bool,
    stdout: String,
    stderr: String,
    /// Keyboard-interactive prompts the client was asked to answer.
    prompts: Vec<String>,
}

/// Logs in as `user` with `key` (a key file name in KEYS, or none), answering every prompt with
/// `answer` (or refusing to answer), and runs `command`.
fn ssh(user: &str, key: Option<&str>, answer: Option<&str>, command: &str) -> Login {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(format!(
        "/run/ecs-mfa-test/ssh-{}",
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let askpass = dir.join("askpass");
    let prompts = dir.join("prompts");
    let answer_file = dir.join("answer");
    let script = match answer {
        Some(a) => {
            std::fs::write(&answer_file, a).unwrap();
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {p}\ncat {a}\necho\n",
                p = prompts.display(),
                a = answer_file.display()
            )
        }
        None => format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\nexit 1\n",
            prompts.display()
        ),
    };
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
    cmd.arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = common::wait_with_timeout(cmd.spawn().unwrap(), Duration::from_secs(60));
    let prompts = std::fs::read_to_string(&prompts)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    Login {
        success: out.status.success(),
        stdout: common::text(&out.stdout),
        stderr: common::text(&out.stderr),
        prompts,
    }
}

/// The module's audit lines so far.
fn audit_lines() -> Vec<String> {
    std::fs::read_to_string("/var/log/syslog-capture")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("pam_ecs_mfa(sshd:auth): "))
        .map(str::to_string)
        .collect()
}

/// The audit lines added since `before` lines were seen (waits briefly for the listener).
fn new_audit_lines(before: usize) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(100));
    audit_lines().split_off(before)
}

fn set_config(text: &str) {
    std::fs::create_dir_all("/etc/ecs-mfa").unwrap();
    std::fs::write("/etc/ecs-mfa/config.toml", text).unwrap();
    std::fs::set_permissions(
        "/etc/ecs-mfa/config.toml",
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
}

// --------------------------------------------------------------------------- scenarios ----

#[test]
fn key_and_correct_code_log_in_and_run_the_command_as_the_user() {
    in_container(
        "key_and_correct_code_log_in_and_run_the_command_as_the_user",
        false,
        || {
            let secret = enroll("alice");
            let seen = audit_lines().len();
            let login = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(login.success, "{login:#?}");
            assert_eq!(login.stdout.trim(), "alice");
            assert_eq!(login.prompts.len(), 1, "{login:#?}");
            assert!(login.prompts[0].contains("Verification code:"));
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 1, "{lines:#?}");
            assert!(
                lines[0]
                    .contains("user=alice rhost=127.0.0.1 service=sshd result=success reason=ok")
            );
        },
    );
}

#[test]
fn wrong_empty_and_huge_codes_are_denied() {
    in_container("wrong_empty_and_huge_codes_are_denied", false, || {
        let secret = enroll("alice");
        let huge = "7".repeat(10_000);
        for answer in [common::wrong_code(&code(&secret)), String::new(), huge] {
            let seen = audit_lines().len();
            let login = ssh("alice", Some("alice"), Some(&answer), "id -un");
            assert!(!login.success, "{login:#?}");
            assert!(login.stdout.is_empty());
            assert_eq!(login.prompts.len(), 1, "{login:#?}");
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 1, "{lines:#?}");
            assert!(
                lines[0].contains("result=deny reason=bad_code"),
                "{}",
                lines[0]
            );
        }
        // Declining to answer is a denial too.
        let login = ssh("alice", Some("alice"), None, "id -un");
        assert!(!login.success);
    });
}

#[test]
fn a_code_cannot_be_used_for_a_second_login() {
    in_container("a_code_cannot_be_used_for_a_second_login", false, || {
        let secret = enroll("alice");
        let c = code(&secret);
        assert!(ssh("alice", Some("alice"), Some(&c), "true").success);
        let seen = audit_lines().len();
        let again = ssh("alice", Some("alice"), Some(&c), "true");
        assert!(!again.success, "{again:#?}");
        assert_eq!(again.prompts.len(), 1);
        let lines = new_audit_lines(seen);
        assert!(lines[0].contains("reason=replay"), "{lines:#?}");
    });
}

#[test]
fn no_key_or_an_unknown_key_is_denied_before_any_prompt() {
    in_container(
        "no_key_or_an_unknown_key_is_denied_before_any_prompt",
        false,
        || {
            let secret = enroll("alice");
            let seen = audit_lines().len();
            for key in [None, Some("carol")] {
                let login = ssh("alice", key, Some(&code(&secret)), "id -un");
                assert!(!login.success, "{login:#?}");
                assert!(login.prompts.is_empty(), "{key:?}: {login:#?}");
                assert!(login.stderr.contains("Permission denied"), "{login:#?}");
            }
            assert!(new_audit_lines(seen).is_empty(), "PAM never ran");
            // With the right key, the code is asked for.
            let login = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(login.success && login.prompts.len() == 1, "{login:#?}");
        },
    );
}

#[test]
fn an_unenrolled_user_is_prompted_and_denied() {
    in_container("an_unenrolled_user_is_prompted_and_denied", false, || {
        enroll("alice");
        let seen = audit_lines().len();
        let login = ssh("bob", Some("bob"), Some("123456"), "id -un");
        assert!(!login.success, "{login:#?}");
        assert_eq!(login.prompts.len(), 1, "prompted like an enrolled user");
        let lines = new_audit_lines(seen);
        assert!(lines[0].contains("user=bob") && lines[0].contains("reason=not_enrolled"));
    });
}

#[test]
fn with_nullok_an_unenrolled_user_needs_only_the_key() {
    in_container(
        "with_nullok_an_unenrolled_user_needs_only_the_key",
        true,
        || {
            let secret = enroll("alice");
            let bob = ssh("bob", Some("bob"), None, "id -un");
            assert!(bob.success, "{bob:#?}");
            assert_eq!(bob.stdout.trim(), "bob");
            assert!(bob.prompts.is_empty(), "{bob:#?}");
            // The enrolled user still needs the code.
            let alice = ssh(
                "alice",
                Some("alice"),
                Some(&common::wrong_code(&code(&secret))),
                "id -un",
            );
            assert!(!alice.success);
            assert_eq!(alice.prompts.len(), 1);
            let ok = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(ok.success, "{ok:#?}");
            let lines = audit_lines();
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("user=bob") && l.contains("result=ignore"))
            );
        },
    );
}

#[test]
fn lockout_refuses_the_right_code_until_the_delay_has_passed() {
    in_container(
        "lockout_refuses_the_right_code_until_the_delay_has_passed",
        false,
        || {
            set_config("lockout_seconds = 3\n");
            let secret = enroll("alice");
            common::wait_for_fresh_step(15);
            for _ in 0..5 {
                assert!(
                    !ssh(
                        "alice",
                        Some("alice"),
                        Some(&common::wrong_code(&code(&secret))),
                        "true"
                    )
                    .success
                );
            }
            let seen = audit_lines().len();
            let locked = ssh("alice", Some("alice"), Some(&code(&secret)), "true");
            assert!(!locked.success, "{locked:#?}");
            assert_eq!(
                locked.prompts.len(),
                1,
                "the client cannot tell a lockout from a wrong code"
            );
            let lines = new_audit_lines(seen);
            assert!(lines[0].contains("reason=throttled"), "{lines:#?}");
            std::thread::sleep(Duration::from_secs(4));
            let ok = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(ok.success, "{ok:#?}");
        },
    );
}

#[test]
fn ten_parallel_logins_with_one_code_give_exactly_one_success() {
    in_container(
        "ten_parallel_logins_with_one_code_give_exactly_one_success",
        false,
        || {
            let secret = enroll("alice");
            common::wait_for_fresh_step(20);
            let c = code(&secret);
            let seen = audit_lines().len();
            let logins: Vec<Login> = (0..10)
                .map(|_| {
                    let c = c.clone();
                    std::thread::spawn(move || ssh("alice", Some("alice"), Some(&c), "id -un"))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            let ok = logins.iter().filter(|l| l.success).count();
            assert_eq!(ok, 1, "{logins:#?}");
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 10, "one audit line per attempt: {lines:#?}");
            assert_eq!(
                lines
                    .iter()
                    .filter(|l| l.contains("result=success"))
                    .count(),
                1
            );
        },
    );
}

#[test]
fn every_decision_leaves_one_audit_line_without_code_or_secret() {
    in_container(
        "every_decision_leaves_one_audit_line_without_code_or_secret",
        false,
        || {
            let secret = enroll("alice");
            let c = code(&secret);
            let w = common::wrong_code(&c);
            let seen = audit_lines().len();
            let attempts = [
                ("alice", Some(w.as_str()), "reason=bad_code"),
                ("alice", Some(c.as_str()), "reason=ok"),
                ("alice", Some(c.as_str()), "reason=replay"),
                ("bob", Some(c.as_str()), "reason=not_enrolled"),
            ];
            for (user, answer, _) in attempts {
                ssh(user, Some(user), answer, "true");
            }
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), attempts.len(), "{lines:#?}");
            for (line, (user, _, reason)) in lines.iter().zip(attempts) {
                assert!(
                    line.contains(&format!("user={user} rhost=127.0.0.1 ")),
                    "{line}"
                );
                assert!(line.contains(reason), "{line}");
            }
            let everything = std::fs::read_to_string("/var/log/syslog-capture").unwrap()
                + &std::fs::read_to_string("/var/log/sshd.log").unwrap();
            for needle in [&c, &w, &secret] {
                assert!(
                    !everything.contains(needle.as_str()),
                    "{needle} leaked into the logs"
                );
            }
        },
    );
}

#[test]
fn enrollment_output_is_enough_to_log_in() {
    in_container("enrollment_output_is_enough_to_log_in", false, || {
        // The human-readable output, as an administrator sees it: QR code, URI, secret.
        let out = Command::new("/usr/sbin/mfa-enroll")
            .args(["enroll", "--user", "alice", "--no-confirm", "--qr", "utf8"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
        let text = common::text(&out.stdout);
        assert!(text.contains('\u{2588}'), "a QR code was drawn");
        let secret: String = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Secret:"))
            .expect("a Secret: line")
            .split_whitespace()
            .collect();
        let oath = Command::new("oathtool")
            .args(["--totp", "-b", &secret])
            .output()
            .unwrap();
        let c = common::text(&oath.stdout).trim().to_string();
        let seen = audit_lines().len();
        let login = ssh("alice", Some("alice"), Some(&c), "id -un");
        assert!(login.success, "{login:#?}");
        assert_eq!(login.stdout.trim(), "alice");
        assert_eq!(login.prompts.len(), 1);
        assert!(
            new_audit_lines(seen)[0]
                .contains("user=alice rhost=127.0.0.1 service=sshd result=success")
        );
        // mfa-enroll left its own trail in syslog (authpriv), without the secret.
        let log = std::fs::read_to_string("/var/log/syslog-capture").unwrap();
        let trail: Vec<&str> = log.lines().filter(|l| l.contains("mfa-enroll[")).collect();
        assert!(
            trail
                .iter()
                .any(|l| l.contains("action=enroll user=alice by=root")),
            "{trail:#?}"
        );
        assert!(
            trail.iter().all(|l| l.starts_with("<85>")),
            "authpriv.notice: {trail:#?}"
        );
        assert!(!log.contains(&secret), "secret in syslog");
    });
}
