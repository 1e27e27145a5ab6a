//! google-authenticator's `forward_pass`, `use_first_pass` and `try_first_pass`, through real
//! Linux-PAM: the real `.so` stacked with the real `pam_unix.so` (a test account with a known
//! password in a private /etc/shadow) or with pam_wrapper's `pam_set_items.so` (which sets
//! `PAM_AUTHTOK` as an earlier module would).

mod common;

use common::{
    PASSWORD, Sandbox, forward_pass_sandbox, oathtool_code, wait_for_fresh_step, wrong_code,
};

#[test]
fn forward_pass_checks_password_and_code_from_one_answer() {
    let (sb, secret) = forward_pass_sandbox("fwd");
    wait_for_fresh_step(15);
    let code = oathtool_code(&secret, &[]);
    let next = format!("@{}", common::container::now() + 30);
    let next_code = oathtool_code(&secret, &["-N", &next]);

    // Wrong password, right code: refused (pam_unix), although the code was right.
    let r = sb.auth("alice", format!("wrong password{code}\n").as_bytes());
    assert!(!r.success, "{r:#?}");
    assert_eq!(r.prompts(), 0, "one prompt only, and it is ours");
    assert!(
        r.stderr.contains("Password & verification code:"),
        "{}",
        r.stderr
    );
    let wrong_password = r.stdout.clone() + &r.stderr;
    // Right password, wrong code: refused too, and the client sees the same thing.
    let r = sb.auth(
        "alice",
        format!("{PASSWORD}{}\n", wrong_code(&next_code)).as_bytes(),
    );
    assert!(!r.success);
    assert!(r.audit().contains("reason=bad_code"), "{}", r.audit());
    let wrong_code_out = r.stdout.clone() + &r.stderr;
    assert_eq!(
        wrong_password.replace(&code, "CODE"),
        wrong_code_out.replace(&wrong_code(&next_code), "CODE"),
        "the client cannot tell which part was wrong"
    );
    // Both right: one answer, both factors checked, in.
    let r = sb.auth("alice", format!("{PASSWORD}{next_code}\n").as_bytes());
    assert!(r.success, "{r:#?}");
    for line in r.syslog() {
        assert!(
            !line.contains(PASSWORD) && !line.contains(&next_code),
            "{line}"
        );
    }
}

#[test]
fn use_first_pass_and_try_first_pass_read_the_code_from_authtok() {
    let sb = Sandbox::new("first");
    let secret = sb.enroll("alice", &[]);
    wait_for_fresh_step(10);
    let code = oathtool_code(&secret, &[]);
    sb.set_stack(&format!(
        "auth required {}\nauth required {{module}} {{args}} use_first_pass",
        common::PAM_SET_ITEMS
    ));
    let r = sb.auth_env("alice", b"", &[("PAM_AUTHTOK", code.as_str())]);
    assert!(r.success, "{r:#?}");
    assert_eq!(r.prompts(), 0, "never asks");
    let r = sb.auth_env("alice", b"", &[("PAM_AUTHTOK", code.as_str())]);
    assert!(
        !r.success && r.audit().contains("reason=replay"),
        "{}",
        r.audit()
    );
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(
        !r.success && r.audit().contains("no PAM_AUTHTOK"),
        "{}",
        r.audit()
    );

    sb.set_stack(&format!(
        "auth required {}\nauth required {{module}} {{args}} try_first_pass",
        common::PAM_SET_ITEMS
    ));
    let next = format!("@{}", common::container::now() + 30);
    let next_code = oathtool_code(&secret, &["-N", &next]);
    let r = sb.auth_env(
        "alice",
        format!("{next_code}\n").as_bytes(),
        &[("PAM_AUTHTOK", "not a code")],
    );
    assert!(
        r.success,
        "not code-shaped: asked, and the typed code works: {r:#?}"
    );
    assert_eq!(r.prompts(), 1);
}

/// try_first_pass with a password that merely looks like a code (six digits) or a recovery
/// code: it is not taken as the code, not counted, and the code is asked for (issue 24: such a
/// user could never log in and locked themselves out). A password that *is* the current code
/// is still taken without a prompt.
#[test]
fn try_first_pass_asks_when_a_code_shaped_password_is_not_the_code() {
    let sb = Sandbox::new("tryfirst");
    let secret = sb.enroll("alice", &[]);
    sb.set_stack(&format!(
        "auth required {}\nauth required {{module}} {{args}} try_first_pass",
        common::PAM_SET_ITEMS
    ));
    wait_for_fresh_step(15);
    let code = oathtool_code(&secret, &[]);
    // More logins than max_failures (5), each with a code-shaped password that is not the
    // code and no answer to the prompt: asked each time, never counted, never locked out.
    for password in ["123456", "98765432", "abcde-fghij", &wrong_code(&code)] {
        for _ in 0..2 {
            let r = sb.auth_env("alice", b"", &[("PAM_AUTHTOK", password)]);
            assert!(!r.success, "{r:#?}");
            assert_eq!(
                r.prompts(),
                1,
                "asked, since {password:?} is not the code: {r:#?}"
            );
        }
    }
    let out = common::cli(&sb, &["status", "--user", "alice", "--json"], b"");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["failures"], 0, "nothing counted: {st}");
    // The code typed at the prompt works.
    let r = sb.auth_env(
        "alice",
        format!("{code}\n").as_bytes(),
        &[("PAM_AUTHTOK", "123456")],
    );
    assert!(r.success, "{r:#?}");
    // And a password that is the code is taken as it (the next step's code, no prompt).
    let next = oathtool_code(
        &secret,
        &["-N", &format!("@{}", common::container::now() + 30)],
    );
    let r = sb.auth_env("alice", b"", &[("PAM_AUTHTOK", next.as_str())]);
    assert!(r.success, "{r:#?}");
    assert_eq!(r.prompts(), 0);
}
