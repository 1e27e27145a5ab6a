//! Tier 2: sshd's fixed bad string ("\b\n\r\x7fINCORRECT", cut to the typed length) typed by
//! the client itself, through real Linux-PAM (pamtester) and the real `.so`. sshd puts it in
//! place of an answer only for root (PermitRootLogin not yes) or an account it refuses; for an
//! ordinary account it can only come from the client: a wrong code, counted. pamtester ends an
//! answer at the newline, so the client's answer here is "\b", the string cut to one byte.

mod common;

use common::{Sandbox, oathtool_code};

#[test]
fn the_sshd_sentinel_typed_for_an_ordinary_account_is_a_counted_wrong_code() {
    let sb = Sandbox::new("sentinel");
    let secret = sb.enroll("alice", &[]);
    for (answer, failures) in [(&b"\x08\n"[..], 1), (b"\x08\n\r\x7fINCORRECT\n", 2)] {
        let r = sb.auth("alice", answer);
        assert!(!r.success);
        assert_eq!(r.prompts(), 1);
        let audit = r.audit();
        assert!(
            audit.contains("result=deny reason=bad_code")
                && audit.contains(&format!("failures={failures}")),
            "{audit}"
        );
    }
    // Counted like any failure: the right code still works (2 is below the lockout).
    let r = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
    );
    assert!(r.success, "{}", r.audit());
}

#[test]
fn the_sshd_sentinel_for_root_is_not_counted_and_the_line_says_the_client_may_have_typed_it() {
    let sb = Sandbox::new("sentinel-root");
    let secret = sb.enroll("root", &[]);
    for _ in 0..6 {
        let r = sb.auth("root", b"\x08\n");
        assert!(!r.success);
        let audit = r.audit();
        assert!(
            audit.contains("result=deny reason=sshd_replaced_answer")
                && !audit.contains("failures=")
                && audit.contains("or the client typed that string itself"),
            "{audit}"
        );
    }
    // Six of them and no lockout: a wrong code now is the first failure.
    let r = sb.auth(
        "root",
        format!("{}\n", common::wrong_code(&oathtool_code(&secret, &[]))).as_bytes(),
    );
    assert!(r.audit().contains("failures=1"), "{}", r.audit());
}

/// Tier 3: through a real sshd, a client that types the string for an ordinary account with a
/// key reaches the module unchanged (sshd replaces nothing for a valid non-root account): a
/// counted wrong code.
#[test]
fn through_sshd_the_sentinel_typed_by_a_client_is_a_counted_wrong_code() {
    use common::container::{audit_lines, enroll, in_container, new_audit_lines, ssh};
    in_container(
        "through_sshd_the_sentinel_typed_by_a_client_is_a_counted_wrong_code",
        &[],
        || {
            enroll("alice");
            let seen = audit_lines().len();
            // ssh's askpass answer ends at the newline: "\x08" is the string cut to one byte.
            let typed = ssh("alice", Some("alice"), Some("\x08"), "id -un");
            assert!(!typed.success, "{typed:#?}");
            let lines = new_audit_lines(seen);
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains("result=deny reason=bad_code") && l.contains("failures=1")),
                "{lines:#?}"
            );
        },
    );
}
