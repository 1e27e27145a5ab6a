//! The code is checked against the time it was typed, not the time the prompt appeared
//! (sshd keeps a prompt open for `LoginGraceTime`, 120 s by default): the real `.so` under real
//! Linux-PAM, with `window = 0` so that one step of waiting shows the difference.

mod common;

use common::{Sandbox, oathtool_code, wait_for_fresh_step};
use std::time::Duration;

/// Sleeps until 2 s into the step after the current one.
fn sleep_into_next_step() {
    let now = common::container::now();
    std::thread::sleep(Duration::from_secs(30 - now % 30 + 2));
}

#[test]
fn a_code_typed_a_step_after_the_prompt_is_checked_at_the_time_it_was_typed() {
    let sandbox = |user: &str| {
        let sb = Sandbox::new("typed");
        sb.set_config("window = 0\n");
        let secret = sb.enroll(user, &[]);
        (sb, secret)
    };
    wait_for_fresh_step(12);
    std::thread::scope(|s| {
        // alice reads her phone when she finally types: the code of that moment works.
        let late = s.spawn(|| {
            let (sb, alice) = sandbox("alice");
            sb.auth_when_prompted("alice", || {
                sleep_into_next_step();
                format!("{}\n", oathtool_code(&alice, &[])).into_bytes()
            })
        });
        // bob read his phone when the prompt appeared and typed a step later: with window = 0
        // that code is no longer valid when it arrives.
        let stale = s.spawn(|| {
            let (sb, bob) = sandbox("bob");
            sb.auth_when_prompted("bob", || {
                let then = oathtool_code(&bob, &[]);
                sleep_into_next_step();
                format!("{then}\n").into_bytes()
            })
        });
        let late = late.join().unwrap();
        let stale = stale.join().unwrap();
        assert!(late.success, "{late:#?}");
        assert!(late.audit().contains("reason=ok"), "{}", late.audit());
        assert!(!stale.success, "{stale:#?}");
        assert!(
            stale.audit().contains("reason=bad_code"),
            "{}",
            stale.audit()
        );
    });
}
