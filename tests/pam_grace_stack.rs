//! `grace_seconds` against the rest of the PAM stack (issue 24), through real Linux-PAM and
//! the real `.so`, played by `tests/harness/pam_login.c` (which calls `pam_setcred` after a
//! successful authentication, as sshd, login and su do):
//! - with `forward_pass` the password is checked after the module: a grace period starts only
//!   when the whole stack succeeded (setcred), a wrong password with the right code starts
//!   none, and a wrong password during a grace period ends it;
//! - grace is per PAM service and per requesting user (`PAM_RUSER`), not only per address.

mod common;

use common::{PASSWORD, Sandbox, forward_pass_sandbox, oathtool_code, wait_for_fresh_step};

const RHOST: (&str, &str) = ("PAM_LOGIN_RHOST", "198.51.100.7");

fn grace_config(sb: &Sandbox) {
    sb.set_config("grace_seconds = 600\n");
}

#[test]
fn forward_pass_grace_starts_only_when_the_password_was_right_too() {
    let (sb, secret) = forward_pass_sandbox("grace-fwd");
    grace_config(&sb);
    wait_for_fresh_step(10);
    let code = oathtool_code(&secret, &[]);
    // Right code, wrong password: refused by pam_unix; no grace may come of it.
    let r = sb.login("alice", format!("wrong{code}\n").as_bytes(), &[RHOST], true);
    assert!(!r.success, "{r:#?}");
    // The right password alone now: refused (before the fix: success, reason=grace).
    let r = sb.login("alice", format!("{PASSWORD}\n").as_bytes(), &[RHOST], true);
    assert!(!r.success, "{r:#?}");
    assert!(!r.audit().contains("reason=grace"), "{}", r.audit());
}

#[test]
fn forward_pass_grace_needs_setcred_and_a_wrong_password_ends_it() {
    let (sb, secret) = forward_pass_sandbox("grace-fwd2");
    grace_config(&sb);
    wait_for_fresh_step(10);
    let code = oathtool_code(&secret, &[]);
    // Both right, but the application never establishes credentials (sshd's
    // keyboard-interactive child process): no grace.
    let r = sb.login(
        "alice",
        format!("{PASSWORD}{code}\n").as_bytes(),
        &[RHOST],
        false,
    );
    assert!(r.success, "{r:#?}");
    let r = sb.login("alice", format!("{PASSWORD}\n").as_bytes(), &[RHOST], true);
    assert!(!r.success, "no setcred, no grace: {r:#?}");
    // Both right and setcred: the next login from there needs only the password.
    let next = oathtool_code(
        &secret,
        &["-N", &format!("@{}", common::container::now() + 30)],
    );
    let r = sb.login(
        "alice",
        format!("{PASSWORD}{next}\n").as_bytes(),
        &[RHOST],
        true,
    );
    assert!(r.success, "{r:#?}");
    let r = sb.login("alice", format!("{PASSWORD}\n").as_bytes(), &[RHOST], true);
    assert!(r.success, "{r:#?}");
    assert!(r.audit().contains("reason=grace"), "{}", r.audit());
    assert!(
        r.audit()
            .contains("no SSH key: a password login is keyed on the address alone"),
        "the audit line says what the grace was keyed on: {}",
        r.audit()
    );
    // A wrong password during the grace period ends it: the right one alone no longer does.
    let r = sb.login("alice", b"guess\n", &[RHOST], true);
    assert!(!r.success, "{r:#?}");
    let r = sb.login("alice", format!("{PASSWORD}\n").as_bytes(), &[RHOST], true);
    assert!(!r.success, "grace ended by the wrong password: {r:#?}");
}

#[test]
fn grace_does_not_cross_services_or_requesting_users() {
    let sb = Sandbox::new("grace-svc");
    grace_config(&sb);
    let secret = sb.enroll("alice", &[]);
    std::fs::copy(
        sb.pam_dir.join("ecs-mfa-test"),
        sb.pam_dir.join("ecs-mfa-other"),
    )
    .unwrap();
    wait_for_fresh_step(10);
    let su_by_bob = [RHOST, ("PAM_LOGIN_RUSER", "bob")];
    let code = oathtool_code(&secret, &[]);
    let r = sb.login("alice", format!("{code}\n").as_bytes(), &su_by_bob, true);
    assert!(r.success, "{r:#?}");
    // Same service, address and requesting user: in without a code.
    let r = sb.login("alice", b"", &su_by_bob, true);
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
    // Another service from the same address: asked (the client gives no answer, which is not
    // counted as a failure and so leaves the grace period alone).
    let other = [
        RHOST,
        ("PAM_LOGIN_RUSER", "bob"),
        ("PAM_LOGIN_SERVICE", "ecs-mfa-other"),
    ];
    let r = sb.login("alice", b"", &other, true);
    assert!(!r.success, "{r:#?}");
    assert_eq!(r.prompts(), 1, "{r:#?}");
    // Another requesting user (su run by carol): asked too.
    let r = sb.login("alice", b"", &[RHOST, ("PAM_LOGIN_RUSER", "carol")], true);
    assert!(!r.success, "{r:#?}");
    assert_eq!(r.prompts(), 1, "{r:#?}");
    // The grace period of the first login is still there for its own service and user.
    let r = sb.login("alice", b"", &su_by_bob, true);
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
}
