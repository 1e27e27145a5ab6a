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
    Login, audit_lines, code, code_at_offset, enroll, first_login, give_root_a_key, in_container,
    new_audit_lines, restart_sshd, set_config, set_password, sh, ssh, ssh_opts, ssh_with,
    sshd_settings, status,
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
            // The fifth failure's line may reach the log after `seen` was counted (syslog is
            // read asynchronously): look for the lockout among the new lines.
            let lines = new_audit_lines(seen);
            assert!(
                lines.iter().any(|l| l.contains("reason=throttled")),
                "{lines:#?}"
            );
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
        common::assert_ok(&out, "mfa-enroll enroll");
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
        password_stack_scenario,
    );
}

#[test]
fn rhel_password_and_code_stack_stops_at_a_wrong_password() {
    in_container(
        "rhel_password_and_code_stack_stops_at_a_wrong_password",
        &["--password", "--rhel"],
        password_stack_scenario,
    );
}

#[test]
fn forward_pass_takes_password_and_code_in_one_password_answer() {
    in_container(
        "forward_pass_takes_password_and_code_in_one_password_answer",
        &["--forward-pass"],
        forward_pass_scenario,
    );
}

#[test]
fn rhel_forward_pass_takes_password_and_code_in_one_password_answer() {
    in_container(
        "rhel_forward_pass_takes_password_and_code_in_one_password_answer",
        &["--forward-pass", "--rhel"],
        forward_pass_scenario,
    );
}

/// forward_pass + grace_seconds through the real sshd (password method, the shipped files):
/// sshd establishes credentials on the handle that authenticated, so a grace period starts
/// only after the password was right too; a wrong password with the right code starts none,
/// and a wrong password during a grace period ends it (issue 24).
#[test]
fn forward_pass_grace_starts_only_after_the_whole_login_succeeded() {
    in_container(
        "forward_pass_grace_starts_only_after_the_whole_login_succeeded",
        &["--forward-pass"],
        || {
            set_config("grace_seconds = 300\n");
            set_password("alice", "Correct-Horse-9");
            let secret = enroll("alice");
            common::wait_for_fresh_step(20);
            let one = |answer: &str| ssh_with("alice", None, &[("assword", answer)], "id -un");
            let wrong_password = one(&format!("Wrong-Horse-9{}", code(&secret)));
            assert!(!wrong_password.success, "{wrong_password:#?}");
            let password_only = one("Correct-Horse-9");
            assert!(
                !password_only.success,
                "a wrong password with the right code started no grace: {password_only:#?}"
            );
            let next = code_at_offset(&secret, 30);
            let both = one(&format!("Correct-Horse-9{next}"));
            assert!(both.success, "{both:#?}");
            let seen = audit_lines().len();
            let password_only = one("Correct-Horse-9");
            assert!(
                password_only.success,
                "grace after a whole success: {password_only:#?}"
            );
            assert!(
                new_audit_lines(seen)
                    .iter()
                    .any(|l| l.contains("reason=grace")),
                "{:?}",
                audit_lines()
            );
            let guess = one("Guess-1");
            assert!(!guess.success);
            let password_only = one("Correct-Horse-9");
            assert!(
                !password_only.success,
                "the wrong password ended the grace period: {password_only:#?}"
            );
        },
    );
}

#[test]
fn grace_spares_the_code_for_the_same_key_and_address_but_not_for_another_key() {
    in_container(
        "grace_spares_the_code_for_the_same_key_and_address_but_not_for_another_key",
        &[],
        || {
            set_config("grace_seconds = 300\n");
            let secret = enroll("alice");
            // A second key for alice: the same address, another key.
            sh(
                "ssh-keygen -q -t ed25519 -N '' -C alice2 -f /run/ecs-mfa-test/keys/alice2 && \
                cat /run/ecs-mfa-test/keys/alice2.pub >> /home/alice/.ssh/authorized_keys",
            );
            let first = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(first.success, "{first:#?}");
            let again = ssh("alice", Some("alice"), None, "id -un");
            assert!(
                again.success,
                "same key, same address, within grace: {again:#?}"
            );
            assert!(again.prompts.is_empty(), "no code asked: {again:#?}");
            assert!(
                audit_lines().last().unwrap().contains("reason=grace"),
                "{:?}",
                audit_lines()
            );
            let other_key = ssh("alice", Some("alice2"), None, "id -un");
            assert!(
                !other_key.success,
                "another key is asked for a code: {other_key:#?}"
            );
            assert!(
                other_key
                    .prompts
                    .iter()
                    .any(|p| p.contains("Verification code")),
                "{other_key:#?}"
            );
        },
    );
}

/// The shipped forward_pass files: sshd does password authentication only (no
/// keyboard-interactive); the password and the code arrive as one answer; a wrong password or a
/// wrong code is refused the same way; both right logs in.
fn forward_pass_scenario() {
    set_password("alice", "Correct-Horse-9");
    let secret = enroll("alice");
    common::wait_for_fresh_step(20);
    let c = code(&secret);
    let one = |answer: &str| ssh_with("alice", None, &[("assword", answer)], "id -un");
    let wrong_password = one(&format!("Wrong-Horse-9{c}"));
    assert!(!wrong_password.success, "{wrong_password:#?}");
    assert_eq!(wrong_password.prompts.len(), 1, "{wrong_password:#?}");
    assert!(
        wrong_password.prompts[0].contains("password"),
        "ssh's own password prompt: {wrong_password:#?}"
    );
    let next = code_at_offset(&secret, 30);
    let wrong = one(&format!("Correct-Horse-9{}", common::wrong_code(&next)));
    assert!(!wrong.success, "{wrong:#?}");
    assert_eq!(
        wrong_password.stderr.replace(&c, "C"),
        wrong.stderr.replace(&common::wrong_code(&next), "C"),
        "the client sees the same refusal"
    );
    let password_only = one("Correct-Horse-9");
    assert!(!password_only.success, "the password alone never logs in");
    let both = one(&format!("Correct-Horse-9{next}"));
    assert!(both.success, "{both:#?}");
    assert_eq!(both.stdout.trim(), "alice");
    for line in audit_lines() {
        assert!(!line.contains("Horse"), "no password in the log: {line}");
    }
}

/// The password + code stack of either family: the password is asked first; a wrong password
/// ends the stack before the code prompt, so nothing is counted and no code is used up; the
/// right password and code log in; the password alone does not.
fn password_stack_scenario() {
    set_password("alice", "Correct-Horse-9");
    let secret = enroll("alice");
    common::wait_for_fresh_step(20);
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

    let seen = audit_lines().len();
    for _ in 0..6 {
        let bad_password = both("wrong-password", &c);
        assert!(!bad_password.success, "{bad_password:#?}");
        assert!(
            bad_password.prompts.iter().any(|p| p.contains("assword")),
            "{bad_password:#?}"
        );
        assert!(
            bad_password
                .prompts
                .iter()
                .all(|p| !p.contains("Verification code")),
            "no code is asked after a wrong password: {bad_password:#?}"
        );
    }
    assert!(new_audit_lines(seen).is_empty(), "the module never ran");
    let st = status("alice");
    assert_eq!(st["failures"], 0, "wrong passwords are not counted: {st}");

    // The code typed after the wrong passwords was not used up: it still logs in.
    let ok = both("Correct-Horse-9", &c);
    assert!(ok.success, "{ok:#?}");
    assert_eq!(ok.stdout.trim(), "alice");
    assert_eq!(ok.prompts.len(), 2, "{ok:#?}");
    assert!(ok.prompts[0].contains("assword") && ok.prompts[1].contains("Verification code"));

    let seen = audit_lines().len();
    let bad_code = both("Correct-Horse-9", &wrong);
    assert!(!bad_code.success, "{bad_code:#?}");
    assert!(new_audit_lines(seen)[0].contains("reason=bad_code"));

    // The password alone is not enough.
    let password_only = ssh_with("alice", None, &[("assword", "Correct-Horse-9")], "id -un");
    assert!(!password_only.success, "{password_only:#?}");
}

#[test]
fn rhel_key_stack_logs_in_with_key_and_code_only() {
    in_container(
        "rhel_key_stack_logs_in_with_key_and_code_only",
        &["--rhel"],
        || {
            let secret = enroll("alice");
            let login = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(login.success && login.prompts.len() == 1, "{login:#?}");
            let wrong = ssh(
                "alice",
                Some("alice"),
                Some(&common::wrong_code(&code(&secret))),
                "id -un",
            );
            assert!(!wrong.success, "{wrong:#?}");
        },
    );
}

/// The shipped key stack with sshd as many servers have it (stock Debian: PasswordAuthentication
/// yes, no AuthenticationMethods) and keyboard-interactive on: the module's own first-factor
/// check refuses every login that did not start with a key, before any prompt and without
/// counting or consuming anything.
#[test]
fn key_stack_refuses_code_as_password_and_code_without_key_whatever_sshd_allows() {
    in_container(
        "key_stack_refuses_code_as_password_and_code_without_key_whatever_sshd_allows",
        &["--nullok"],
        || {
            sh(
                "cp /etc/ssh/sshd_config.d/50-ecs-mfa.conf /run/ecs-mfa-test/ && \
                sed -i '/^AuthenticationMethods/d' /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
            );
            sshd_settings("PasswordAuthentication yes\n");
            let secret = enroll("alice");
            common::wait_for_fresh_step(20);
            let c = code(&secret);
            let password = ["PreferredAuthentications=password"];
            let kbdint = ["PreferredAuthentications=keyboard-interactive"];
            let seen = audit_lines().len();
            // The code typed as alice's password.
            let as_password = ssh_opts("alice", None, &[("", &c)], "id -un", &password);
            assert!(!as_password.success, "{as_password:#?}");
            // Any password for bob, who is not enrolled (nullok).
            let any_password = ssh_opts("bob", None, &[("", "anything")], "id -un", &password);
            assert!(!any_password.success, "{any_password:#?}");
            // Keyboard-interactive without a key: no prompt at all.
            let no_key = ssh_opts("alice", None, &[("", &c)], "id -un", &kbdint);
            assert!(!no_key.success, "{no_key:#?}");
            assert!(
                no_key.prompts.iter().all(|p| !p.contains("Verification")),
                "{no_key:#?}"
            );
            let bob_no_key = ssh_opts("bob", None, &[("", "x")], "id -un", &kbdint);
            assert!(!bob_no_key.success, "{bob_no_key:#?}");
            let lines = new_audit_lines(seen);
            assert!(lines.len() >= 4, "{lines:#?}");
            assert!(
                lines.iter().all(|l| l.contains("reason=no_first_factor")),
                "{lines:#?}"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("SSH_AUTH_INFO_0 is absent"))
            );
            assert_eq!(status("alice")["failures"], 0, "nothing was counted");

            // With the shipped AuthenticationMethods back, key + the same code logs in: the
            // code was not used up by the refused attempts.
            sh("cp /run/ecs-mfa-test/50-ecs-mfa.conf /etc/ssh/sshd_config.d/");
            restart_sshd();
            let ok = ssh("alice", Some("alice"), Some(&c), "id -un");
            assert!(ok.success, "{ok:#?}");
            assert_eq!(ok.stdout.trim(), "alice");
            // And bob (nullok) still gets in with his key alone, as nullok promises.
            let bob = ssh("bob", Some("bob"), None, "id -un");
            assert!(bob.success && bob.prompts.is_empty(), "{bob:#?}");
        },
    );
}

/// A `Match` block that drops the key for some users: the module refuses them; `doctor` names
/// the block's effect for that user.
#[test]
fn a_match_block_without_publickey_is_refused_and_reported() {
    in_container(
        "a_match_block_without_publickey_is_refused_and_reported",
        &[],
        || {
            sh(
                "printf 'Match User bob\\n    AuthenticationMethods keyboard-interactive\\n' \
                >> /etc/ssh/sshd_config",
            );
            restart_sshd();
            let secret = enroll("bob");
            let seen = audit_lines().len();
            let bob = ssh("bob", None, Some(&code(&secret)), "id -un");
            assert!(!bob.success, "{bob:#?}");
            let lines = new_audit_lines(seen);
            assert!(lines[0].contains("user=bob") && lines[0].contains("reason=no_first_factor"));
            let out = Command::new("/usr/sbin/mfa-enroll")
                .arg("doctor")
                .output()
                .unwrap();
            let report = common::text(&out.stdout);
            common::assert_exit(&out, 11, "mfa-enroll doctor");
            assert!(
                report.contains("user=bob") && report.contains("keyboard-interactive"),
                "{report}"
            );
        },
    );
}

/// root: with `PermitRootLogin yes` (and the shipped AuthenticationMethods) root needs key and
/// code like everyone; under `prohibit-password` sshd replaces root's answer, which the module
/// recognises: denied with the fix in the log, not counted, the code not used up.
#[test]
fn root_needs_key_and_code_and_prohibit_password_is_explained_not_counted() {
    in_container(
        "root_needs_key_and_code_and_prohibit_password_is_explained_not_counted",
        &[],
        || {
            give_root_a_key();
            let secret = enroll("root");
            common::wait_for_fresh_step(25);
            sshd_settings("PermitRootLogin yes\n");
            let c = code(&secret);
            let no_code = ssh("root", Some("root"), None, "id -un");
            assert!(!no_code.success, "{no_code:#?}");
            let ok = ssh("root", Some("root"), Some(&c), "id -un");
            assert!(ok.success, "{ok:#?}");
            assert_eq!(ok.stdout.trim(), "root");

            // The next step's code (the first one is used up).
            std::thread::sleep(Duration::from_millis(
                200 + 1000 * (30 - common::container::now() % 30),
            ));
            let c = code(&secret);
            sshd_settings("PermitRootLogin prohibit-password\n");
            let seen = audit_lines().len();
            for _ in 0..6 {
                let refused = ssh("root", Some("root"), Some(&c), "id -un");
                assert!(!refused.success, "{refused:#?}");
            }
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 6, "{lines:#?}");
            assert!(
                lines
                    .iter()
                    .all(|l| l.contains("reason=sshd_replaced_answer")
                        && l.contains("PermitRootLogin yes")),
                "{lines:#?}"
            );
            let st = status("root");
            assert_eq!(
                (&st["failures"], &st["locked"]),
                (&serde_json::json!(0), &serde_json::json!(false)),
                "{st}"
            );

            sshd_settings("PermitRootLogin yes\n");
            let ok = ssh("root", Some("root"), Some(&c), "id -un");
            assert!(ok.success, "the code was not used up: {ok:#?}");
        },
    );
}

/// The QR code lines of `text` (only block characters and spaces, at least one block).
fn qr_lines(text: &str) -> String {
    text.lines()
        .filter(|l| {
            l.chars()
                .any(|c| matches!(c, '\u{2588}' | '\u{2580}' | '\u{2584}'))
                && l.chars()
                    .all(|c| matches!(c, ' ' | '\u{2588}' | '\u{2580}' | '\u{2584}'))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The confirmation code of an enrollment at login is checked when it arrives: a person who
/// takes half a minute to set up the app types the code the phone shows then (issue 24: it was
/// checked against the moment the QR code appeared). `window = 0` makes one step decisive.
#[test]
fn the_enrollment_confirmation_is_checked_when_the_code_is_typed() {
    in_container(
        "the_enrollment_confirmation_is_checked_when_the_code_is_typed",
        &[],
        || {
            set_config("enroll_at_login = true\nwindow = 0\n");
            common::wait_for_fresh_step(20);
            let dir = "/run/ecs-mfa-test/first-bob-slow";
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(format!("{dir}/delay"), "32").unwrap();
            let (ok, _, stderr, prompts) = first_login("bob", "bob", None, "bob-slow");
            assert!(ok, "{stderr}\n{prompts:?}");
            assert_eq!(prompts.len(), 1, "one confirmation, no retry: {prompts:?}");
            assert!(stderr.contains("Recovery codes"), "{stderr}");
        },
    );
}

#[test]
fn a_user_with_a_key_enrolls_at_the_first_login_and_then_needs_a_code() {
    in_container(
        "a_user_with_a_key_enrolls_at_the_first_login_and_then_needs_a_code",
        &[],
        || {
            set_config("enroll_at_login = true\nissuer = \"Acme ECS\"\n");
            common::wait_for_fresh_step(20);
            let seen = audit_lines().len();
            let (ok, stdout, stderr, prompts) = first_login("alice", "alice", None, "alice-1");
            assert!(ok, "{stderr}\n{prompts:?}");
            assert_eq!(stdout.trim(), "alice");
            assert_eq!(prompts.len(), 1, "{prompts:?}");
            assert!(prompts[0].contains("Enter the code from the app to confirm"));
            // The QR code that reached the client decodes to the URI shown below it.
            let uri_line = stderr
                .lines()
                .find_map(|l| l.strip_prefix("URI:    "))
                .expect("URI line")
                .to_string();
            assert!(
                uri_line.starts_with("otpauth://totp/Acme%20ECS:alice"),
                "{uri_line}"
            );
            let qr = qr_lines(&stderr);
            assert!(
                qr.lines().count() <= 24,
                "fits 80x24: {} lines",
                qr.lines().count()
            );
            assert!(qr.lines().all(|l| l.chars().count() <= 80));
            assert_eq!(common::decode_terminal_qr(&qr, false), uri_line);
            assert!(stderr.contains("Recovery codes"), "{stderr}");
            let lines = new_audit_lines(seen);
            assert_eq!(lines.len(), 1, "{lines:#?}");
            assert!(
                lines[0].contains("user=alice rhost=127.0.0.1")
                    && lines[0].contains("result=success reason=enrolled_at_login")
                    && lines[0].contains("key SHA256:"),
                "{lines:#?}"
            );
            let st = Command::new("/usr/sbin/mfa-enroll")
                .args(["status", "--user", "alice"])
                .output()
                .unwrap();
            assert!(
                common::text(&st.stdout).contains("at login with key SHA256:"),
                "{}",
                common::text(&st.stdout)
            );

            // The next login is an ordinary one: key, then a code.
            let secret = uri_line
                .split("secret=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .to_string();
            std::thread::sleep(Duration::from_millis(
                200 + 1000 * (30 - common::container::now() % 30),
            ));
            let next = ssh("alice", Some("alice"), Some(&code(&secret)), "id -un");
            assert!(next.success, "{next:#?}");
            assert_eq!(next.prompts.len(), 1);
            assert!(next.prompts[0].contains("Verification code"));

            // After the deadline an unenrolled user is denied as before, without a QR code.
            set_config("enroll_at_login = true\nenroll_until = \"2020-01-01\"\n");
            let (ok, _, stderr, prompts) = first_login("bob", "bob", None, "bob-late");
            assert!(!ok);
            assert!(!stderr.contains("URI:"), "{stderr}");
            assert!(
                prompts.iter().all(|p| p.contains("Verification code")),
                "{prompts:?}"
            );
            assert!(!std::path::Path::new("/var/lib/ecs-mfa/users/bob.toml").exists());
        },
    );
}

#[test]
fn password_first_or_concurrent_first_logins_never_enroll_twice_or_without_a_key() {
    in_container(
        "password_first_or_concurrent_first_logins_never_enroll_twice_or_without_a_key",
        &[],
        || {
            set_config("enroll_at_login = true\n");
            // Password first (sshd allows it here): no enrollment, denied.
            sh(
                "sed -i '/^AuthenticationMethods/d; s/^PasswordAuthentication no/PasswordAuthentication yes/' \
                /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
            );
            restart_sshd();
            set_password("bob", "Bob-Pass-123");
            let pw = ssh_opts(
                "bob",
                None,
                &[("", "Bob-Pass-123")],
                "id -un",
                &["PreferredAuthentications=password"],
            );
            assert!(!pw.success, "{pw:#?}");
            let kbd = ssh_opts(
                "bob",
                None,
                &[("", "123456")],
                "id -un",
                &["PreferredAuthentications=keyboard-interactive"],
            );
            assert!(!kbd.success, "{kbd:#?}");
            assert!(!std::path::Path::new("/var/lib/ecs-mfa/users/bob.toml").exists());
            sh(
                "echo 'AuthenticationMethods publickey,keyboard-interactive' >> /etc/ssh/sshd_config.d/50-ecs-mfa.conf",
            );
            restart_sshd();

            // Two first logins of bob at once: one enrolls; the other either started after the
            // save and is asked for a code, or showed its own QR code (no lock is held while a
            // person types) and is refused at its save: that enrollment stands.
            common::wait_for_fresh_step(20);
            let runs: Vec<_> = (0..2)
                .map(|i| {
                    std::thread::spawn(move || first_login("bob", "bob", None, &format!("bob-{i}")))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            let enrolled: Vec<_> = runs.iter().filter(|r| r.0).collect();
            assert_eq!(enrolled.len(), 1, "{runs:#?}");
            let other = runs.iter().find(|r| !r.0).unwrap();
            if other.2.contains("URI:") {
                assert!(
                    audit_lines()
                        .iter()
                        .any(|l| l.contains("reason=not_enrolled")
                            && l.contains("enrolled meanwhile")),
                    "{other:#?} {:#?}",
                    audit_lines()
                );
            } else {
                assert!(
                    other.3.iter().all(|p| p.contains("Verification code")),
                    "{other:#?}"
                );
            }
        },
    );
}
