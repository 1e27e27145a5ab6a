//! `grace_seconds` through real Linux-PAM (pamtester, the real `.so`, `PAM_RHOST` set by
//! pam_wrapper's `pam_set_items.so`) and the real `mfa-enroll unlock --all-grace`. The SSH key
//! part of the grace digest is tested against a real sshd in `sshd_e2e.rs`.

mod common;

use common::{Sandbox, cli, oathtool_code, wait_for_fresh_step, wrong_code};

#[test]
fn a_grace_period_spares_the_code_for_the_same_client_until_a_failure_or_unlock_all_grace() {
    let sb = Sandbox::new("grace");
    sb.set_config("grace_seconds = 300\n");
    let secret = sb.enroll("alice", &[]);
    sb.set_stack(&format!(
        "auth required {}\nauth required {{module}} {{args}}",
        common::PAM_SET_ITEMS
    ));
    let from = |rhost: &'static str| [("PAM_RHOST", rhost)];
    wait_for_fresh_step(15);
    let code = oathtool_code(&secret, &[]);

    let r = sb.auth_env("alice", format!("{code}\n").as_bytes(), &from("192.0.2.1"));
    assert!(
        r.success && r.audit().contains("reason=ok"),
        "{}",
        r.audit()
    );
    // Same client: in, without a prompt.
    let r = sb.auth_env("alice", b"", &from("192.0.2.1"));
    assert!(r.success, "{r:#?}");
    assert_eq!(r.prompts(), 0);
    assert!(r.audit().contains("reason=grace"), "{}", r.audit());
    // Another client: asked.
    let r = sb.auth_env("alice", b"", &from("192.0.2.2"));
    assert!(!r.success && r.prompts() == 1, "{r:#?}");
    // unlock --all-grace ends it; a plain unlock does not.
    let out = cli(&sb, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let r = sb.auth_env("alice", b"", &from("192.0.2.1"));
    assert!(r.success, "plain unlock keeps grace: {}", r.audit());
    let out = cli(&sb, &["unlock", "--user", "alice", "--all-grace"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let r = sb.auth_env("alice", b"", &from("192.0.2.1"));
    assert!(!r.success && r.prompts() == 1, "{}", r.audit());
    // A new code starts it again; a wrong code from anywhere ends it.
    let next = format!("@{}", common::container::now() + 30);
    let next = oathtool_code(&secret, &["-N", &next]);
    let r = sb.auth_env("alice", format!("{next}\n").as_bytes(), &from("192.0.2.1"));
    assert!(r.success, "{}", r.audit());
    let r = sb.auth_env(
        "alice",
        format!("{}\n", wrong_code(&next)).as_bytes(),
        &from("198.51.100.7"),
    );
    assert!(
        !r.success && r.audit().contains("reason=bad_code"),
        "{}",
        r.audit()
    );
    let r = sb.auth_env("alice", b"", &from("192.0.2.1"));
    assert!(
        !r.success && r.prompts() == 1,
        "a failure ends every grace: {}",
        r.audit()
    );
    // The state holds digests, never the address.
    let state = std::fs::read_to_string(sb.state.join("alice.state")).unwrap();
    assert!(!state.contains("192.0.2"), "{state}");
}

#[test]
fn grace_settings_out_of_range_deny_every_login() {
    let sb = Sandbox::new("grace-bad");
    let secret = sb.enroll("alice", &[]);
    for bad in [
        "grace_seconds = 43201\n",
        "grace_scope = \"fleet\"\n",
        "grace_scope = \"planet\"\n",
    ] {
        sb.set_config(bad);
        let r = sb.auth(
            "alice",
            format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
        );
        assert!(
            !r.success && r.audit().contains("reason=bad_config"),
            "{bad}: {}",
            r.audit()
        );
        assert!(r.audit().contains("grace_"), "{}", r.audit());
    }
}
