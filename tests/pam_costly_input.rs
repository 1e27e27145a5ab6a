//! What an unauthenticated attempt can cost the server (issue 24): recovery-shaped input
//! makes the module run Argon2 only for an enrolled user who is not locked out (at most one
//! run per stored code, and the throttle limits those attempts); every other attempt (unknown
//! account, not enrolled, locked out) only *waits* the same wall time. Measured as the CPU
//! time of the real pamtester process running the real `.so`.

mod common;

use common::{Sandbox, wrong_code};
use std::os::unix::fs::PermissionsExt;

/// One login of `user` answering `answer`; (refused?, CPU seconds of pamtester, wall time).
fn attempt(sb: &Sandbox, user: &str, answer: &str) -> (bool, f64, std::time::Duration) {
    let wrapper = sb.root.join("timed-pamtester");
    if !wrapper.exists() {
        // POSIX `times`: the second line is the CPU time of the shell's children.
        std::fs::write(
            &wrapper,
            "#!/bin/sh\npamtester -v \"$@\"\nrc=$?\ntimes >&2\nexit $rc\n",
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let started = std::time::Instant::now();
    let r = sb
        .pamtester(
            user,
            format!("{answer}\n").as_bytes(),
            &[("ECS_MFA_PAM_CLIENT", wrapper.to_str().unwrap())],
            &["authenticate"],
        )
        .finish();
    let took = started.elapsed();
    let children = r.stderr.lines().last().unwrap_or_default().to_string();
    let seconds: f64 = children
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum();
    (!r.success, seconds, took)
}

#[test]
fn recovery_shaped_input_burns_argon2_only_for_enrolled_users_who_are_not_locked_out() {
    let sb = Sandbox::new("costly");
    let secret = sb.enroll("alice", &[]);
    let guess = "zzzzz-zzzzz";
    // Enrolled and not locked out: the check runs (the measurement can see Argon2).
    let (refused, cpu, took) = attempt(&sb, "alice", guess);
    assert!(refused);
    println!("enrolled: {cpu:.3} s CPU, {took:?}");
    assert!(cpu >= 0.05, "ten Argon2 runs show up as CPU time: {cpu}");
    // Unknown account, an account that is not enrolled: the same wait, no Argon2.
    for user in ["nosuchuser", "bob"] {
        let (refused, cpu, took) = attempt(&sb, user, guess);
        println!("{user}: {cpu:.3} s CPU, {took:?}");
        assert!(refused);
        assert!(
            cpu < 0.05,
            "{user}: {cpu} s of CPU for an attempt that cannot match"
        );
        assert!(
            took >= pam_ecs_mfa::recovery::CHECK_WALL,
            "{user}: {took:?}"
        );
    }
    // Locked out (max_failures wrong codes): the same wait, no Argon2.
    let code = common::oathtool_code(&secret, &[]);
    for _ in 0..5 {
        attempt(&sb, "alice", &wrong_code(&code));
    }
    let (refused, cpu, took) = attempt(&sb, "alice", guess);
    println!("locked out: {cpu:.3} s CPU, {took:?}");
    assert!(refused);
    assert!(cpu < 0.05, "locked out: {cpu} s of CPU");
    assert!(took >= pam_ecs_mfa::recovery::CHECK_WALL);
}
