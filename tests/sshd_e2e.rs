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

use std::process::Command;
use std::time::Duration;

use common::container::{
    Login, audit_lines, code, enroll, in_container, new_audit_lines, set_config, ssh, ssh_with,
};

// --------------------------------------------------------------------------- scenarios ----

#[test]
fn key_and_correct_code_log_in_and_run_the_command_as_the_user() {
    in_container(
        "key_and_correct_code_log_in_and_run_the_command_as_the_user",
        &[],
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
    in_container("wrong_empty_and_huge_codes_are_denied", &[], || {
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
    in_container("a_code_cannot_be_used_for_a_second_login", &[], || {
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
        &[],
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
    in_container("an_unenrolled_user_is_prompted_and_denied", &[], || {
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
        &["--nullok"],
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
        &[],
        || {
            set_config("lockout_seconds = 8\n");
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
            std::thread::sleep(Duration::from_secs(9));
            let ok = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(ok.success, "{ok:#?}");
        },
    );
}

#[test]
fn ten_parallel_logins_with_one_code_give_exactly_one_success() {
    in_container(
        "ten_parallel_logins_with_one_code_give_exactly_one_success",
        &[],
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
        &[],
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
    in_container("enrollment_output_is_enough_to_log_in", &[], || {
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

#[test]
fn password_and_code_stack_asks_the_password_first_then_the_code() {
    in_container(
        "password_and_code_stack_asks_the_password_first_then_the_code",
        &["--password"],
        || {
            let mut chpasswd = Command::new("chpasswd")
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            chpasswd
                .stdin
                .take()
                .unwrap()
                .write_all(b"alice:Correct-Horse-9\n")
                .unwrap();
            assert!(chpasswd.wait().unwrap().success());
            let secret = enroll("alice");
            let both = |password: &str, code: &str| {
                ssh_with(
                    "alice",
                    None,
                    &[("assword", password), ("Verification code", code)],
                    "id -un",
                )
            };
            let c = code(&secret);
            let wrong = common::wrong_code(&c);

            let bad_password = both("wrong-password", &c);
            assert!(!bad_password.success, "{bad_password:#?}");
            assert!(
                bad_password
                    .prompts
                    .iter()
                    .all(|p| !p.contains("Verification code")),
                "no code is asked after a wrong password: {bad_password:#?}"
            );

            let seen = audit_lines().len();
            let bad_code = both("Correct-Horse-9", &wrong);
            assert!(!bad_code.success, "{bad_code:#?}");
            assert!(new_audit_lines(seen)[0].contains("reason=bad_code"));

            let ok = both("Correct-Horse-9", &c);
            assert!(ok.success, "{ok:#?}");
            assert_eq!(ok.stdout.trim(), "alice");
            assert_eq!(ok.prompts.len(), 2, "{ok:#?}");
            assert!(
                ok.prompts[0].contains("assword") && ok.prompts[1].contains("Verification code")
            );

            // The password alone is not enough.
            let password_only =
                ssh_with("alice", None, &[("assword", "Correct-Horse-9")], "id -un");
            assert!(!password_only.success, "{password_only:#?}");
        },
    );
}
