//! Tier 2: the real `pam_ecs_mfa.so` loaded by the system's Linux-PAM through `pamtester`, in a
//! private mount namespace per run (own `/etc/pam.d`, own `/dev/log`), with records written by
//! the real `mfa-enroll` and codes computed by `oathtool`.

mod common;

use common::{Sandbox, oathtool_code, wrong_code};

#[test]
fn correct_code_succeeds_and_the_same_code_is_then_refused() {
    let sb = Sandbox::new("replay");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let first = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(first.success, "{first:#?}");
    assert_eq!(first.prompts(), 1);
    assert!(
        first
            .audit()
            .contains("user=alice rhost=- service=ecs-mfa-test result=success reason=ok")
    );

    let again = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(!again.success);
    assert!(
        again.audit().contains("result=deny reason=replay"),
        "{again:#?}"
    );
}

#[test]
fn wrong_code_is_refused() {
    let sb = Sandbox::new("wrong");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    for input in [
        wrong_code(&code),
        String::new(),
        "12345".into(),
        "x".repeat(100_000),
    ] {
        let r = sb.auth("alice", format!("{input}\n").as_bytes());
        assert!(!r.success);
        assert_eq!(r.prompts(), 1);
        assert!(r.audit().contains("reason=bad_code"), "{r:#?}");
    }
    // The right code still works afterwards (4 failures is below the lockout threshold).
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(r.success, "{r:#?}");
}

#[test]
fn codes_with_spaces_and_other_algorithms_work() {
    let sb = Sandbox::new("algs");
    for (user, args, oath) in [
        ("alice", vec![], vec![]),
        (
            "bob",
            vec!["--algorithm", "SHA256", "--digits", "8"],
            vec!["--totp=sha256", "--digits=8"],
        ),
        (
            "carol",
            vec!["--algorithm", "SHA512", "--period", "60"],
            vec!["--totp=sha512", "--time-step-size=60s"],
        ),
    ] {
        let secret = sb.enroll(user, &args);
        let code = oathtool_code(&secret, &oath);
        let spaced = format!(" {} {} \n", &code[..3], &code[3..]);
        let r = sb.auth(user, spaced.as_bytes());
        assert!(r.success, "{user}: {r:#?}");
    }
}

#[test]
fn unenrolled_user_is_prompted_then_denied_and_ignored_with_nullok() {
    let sb = Sandbox::new("unenrolled");
    sb.enroll("alice", &[]);
    let r = sb.auth("bob", b"123456\n");
    assert!(!r.success);
    assert_eq!(
        r.prompts(),
        1,
        "no enumeration: prompted like an enrolled user"
    );
    assert!(r.audit().contains("user=bob") && r.audit().contains("reason=not_enrolled"));

    // PAM_IGNORE is observable with a stack where ignore continues to pam_permit, while a
    // denial stops: success with zero prompts can only be PAM_IGNORE.
    sb.set_stack(
        "auth [success=done ignore=ignore default=die] {module} {args} nullok\n\
         auth required pam_permit.so",
    );
    let r = sb.auth("bob", b"");
    assert!(r.success, "{r:#?}");
    assert_eq!(r.prompts(), 0);
    assert!(r.audit().contains("result=ignore reason=not_enrolled"));
    // nullok does not excuse an enrolled user.
    let r = sb.auth("alice", b"000000\n");
    assert!(!r.success);
    assert_eq!(r.prompts(), 1);
}

#[test]
fn path_like_user_names_are_denied() {
    let sb = Sandbox::new("names");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    for user in ["../../etc/passwd", "../users/alice", "alice/."] {
        let r = sb.auth(user, format!("{code}\n").as_bytes());
        assert!(!r.success, "{user}");
        assert!(r.audit().contains("reason=bad_user"), "{}", r.audit());
    }
}

#[test]
fn twenty_concurrent_logins_with_one_code_give_exactly_one_success() {
    let sb = Sandbox::new("race");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let input = format!("{code}\n");
    let children: Vec<_> = (0..20)
        .map(|_| sb.auth_spawn("alice", input.as_bytes(), &[]))
        .collect();
    let results: Vec<common::AuthResult> = children.into_iter().map(|c| c.finish()).collect();
    let successes = results.iter().filter(|r| r.success).count();
    assert_eq!(successes, 1, "{results:#?}");
    // The losers saw a replay (which counts as a failure) or, once five failures had
    // accumulated, the lockout.
    for r in results.iter().filter(|r| !r.success) {
        let audit = r.audit();
        assert!(
            audit.contains("reason=replay") || audit.contains("reason=throttled"),
            "{audit}"
        );
    }
}

#[test]
fn audit_line_has_rhost_and_never_the_code() {
    let sb = Sandbox::new("audit");
    let secret = sb.enroll("alice", &[]);
    sb.set_stack(&format!(
        "auth required {} \nauth required {{module}} {{args}}",
        common::PAM_SET_ITEMS
    ));
    let code = oathtool_code(&secret, &[]);
    let wrong = wrong_code(&code);
    let env = [("PAM_RHOST", "192.0.2.7")];
    for input in [&wrong, &code, &code] {
        let r = sb.auth_env("alice", format!("{input}\n").as_bytes(), &env);
        let audit = r.audit();
        assert!(
            audit.contains("user=alice rhost=192.0.2.7 service=ecs-mfa-test"),
            "{audit}"
        );
        for line in r.syslog() {
            assert!(!line.contains(&code) && !line.contains(&wrong), "{line}");
            assert!(!line.contains(&secret), "{line}");
        }
    }
}

#[test]
fn unknown_module_argument_denies_and_says_why() {
    let sb = Sandbox::new("args");
    let secret = sb.enroll("alice", &[]);
    sb.set_stack("auth required {module} {args} nulok");
    let r = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
    );
    assert!(!r.success);
    assert_eq!(r.prompts(), 0);
    assert!(r.audit().contains("reason=bad_config"));
    assert!(r.audit().contains("unknown module argument 'nulok'"));
}

/// The build under test (the cargo build, and in scripts/test also the packaged portable build,
/// which links zig's unwinder instead of GCC's) really unwinds a panic to the guard at the PAM
/// boundary: the application gets a plain denial and lives on, one audit line says why, and
/// the panic message stays off its stderr.
#[test]
fn a_panic_in_the_real_module_is_caught_and_denies() {
    let sb = Sandbox::new("panic");
    let secret = sb.enroll("alice", &[]);
    sb.set_stack("auth required {module} {args} test_panic");
    let r = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
    );
    assert!(!r.success, "{r:#?}");
    // pamtester itself reports the result: it was not killed by an abort or a signal.
    assert!(r.stderr.contains("Authentication failure"), "{r:#?}");
    assert!(!r.stderr.contains("panic on purpose"), "{r:#?}");
    let audit = r.audit();
    assert!(
        audit.contains("reason=internal") && audit.contains("caught panic"),
        "{audit}"
    );
}

#[test]
fn config_file_errors_deny_and_config_values_apply() {
    let sb = Sandbox::new("config");
    let secret = sb.enroll("alice", &[]);
    sb.set_config("window = 1\nmax_fails = 3\n");
    let r = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
    );
    assert!(!r.success);
    assert!(r.audit().contains("reason=bad_config") && r.audit().contains("config.toml:2"));

    sb.set_config("prompt = \"OTP: \"\nmax_failures = 2\n");
    for _ in 0..2 {
        let r = sb.auth("alice", b"000000\n");
        assert!(r.stderr.contains("OTP: "), "{r:#?}");
    }
    let r = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
    );
    assert!(!r.success, "locked out after max_failures = 2");
    assert!(r.audit().contains("reason=throttled"), "{}", r.audit());
}

#[test]
fn setcred_succeeds() {
    let sb = Sandbox::new("setcred");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let r = sb
        .pamtester(
            "alice",
            format!("{code}\n").as_bytes(),
            &[],
            &["authenticate", "setcred"],
        )
        .finish();
    assert!(r.success, "{r:#?}");
    assert!(
        r.stdout
            .contains("credential info has successfully been set"),
        "{r:#?}"
    );
}

#[test]
fn two_parallel_logins_with_one_recovery_code_give_exactly_one_success() {
    let sb = Sandbox::new("recovery-race");
    let out = sb.enroll_cmd("alice", &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = v["recovery_codes"][0].as_str().unwrap().to_string();
    let input = format!("{code}\n");
    let runs: Vec<_> = (0..2)
        .map(|_| sb.auth_spawn("alice", input.as_bytes(), &[]))
        .collect();
    let results: Vec<common::AuthResult> = runs.into_iter().map(|r| r.finish()).collect();
    assert_eq!(
        results.iter().filter(|r| r.success).count(),
        1,
        "{results:#?}"
    );
    let lines: Vec<String> = results.iter().map(|r| r.audit()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reason=recovery_code remaining=9")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains(&code)));
}

/// The shipped stacks' auth lines: `ignore` continues to pam_permit, anything else but
/// success dies.
const SHIPPED_STACK: &str = "auth [success=done ignore=ignore default=die] {module} {args}\n\
                             auth required pam_permit.so";

#[test]
fn exempt_networks_skip_the_prompt_only_for_literal_addresses_inside_them() {
    let sb = Sandbox::new("exempt-net");
    sb.enroll("alice", &[]);
    sb.set_config("exempt_networks = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n");
    sb.set_stack(&format!(
        "auth required {}\n{SHIPPED_STACK}",
        common::PAM_SET_ITEMS
    ));
    for rhost in ["192.0.2.7", "2001:db8::1"] {
        let r = sb.auth_env("alice", b"", &[("PAM_RHOST", rhost)]);
        assert!(r.success, "{rhost}: {r:#?}");
        assert_eq!(r.prompts(), 0);
        assert!(
            r.audit().contains("result=ignore reason=exempt"),
            "{}",
            r.audit()
        );
    }
    for rhost in ["198.51.100.1", "gw.192.0.2.7.example", "192.0.2.7.example"] {
        let r = sb.auth_env("alice", b"000000\n", &[("PAM_RHOST", rhost)]);
        assert!(!r.success, "{rhost}");
        assert_eq!(r.prompts(), 1, "{rhost}: MFA required");
    }
}

#[test]
fn exempt_and_required_groups_follow_real_group_membership() {
    let sb = Sandbox::new("exempt-groups");
    sb.enroll("alice", &[]);
    sb.set_stack(SHIPPED_STACK);
    // root exists and is in group root; zed has a record but no account.
    sb.enroll("zed", &[]);
    sb.set_config("exempt_groups = [\"root\"]\n");
    let r = sb.auth("root", b"");
    assert!(r.success && r.prompts() == 0, "{r:#?}");
    assert!(r.audit().contains("reason=exempt") && r.audit().contains("exempt group root"));
    let r = sb.auth("zed", b"000000\n");
    assert!(
        !r.success && r.prompts() == 1,
        "no account, never exempt: {r:#?}"
    );
    assert!(
        r.audit().contains("reason=unknown_account"),
        "{}",
        r.audit()
    );

    sb.set_config("require_groups = [\"ecs-mfa-no-such-group\"]\n");
    let r = sb.auth("root", b"");
    assert!(r.success && r.prompts() == 0, "{r:#?}");
    assert!(r.audit().contains("not in require_groups"));
    let r = sb.auth("zed", b"000000\n");
    assert!(!r.success && r.prompts() == 1, "{r:#?}");
    // alice is an account (in the test accounts) and not a member: not required either.
    let r = sb.auth("alice", b"");
    assert!(r.success && r.prompts() == 0, "{r:#?}");

    sb.set_config("require_groups = [\"root\"]\n");
    let r = sb.auth("root", b"000000\n");
    assert!(
        !r.success && r.prompts() == 1,
        "a member must use MFA: {r:#?}"
    );
}

#[test]
fn ignore_results_cannot_bypass_the_stacks_but_required_alone_denies_them() {
    let sb = Sandbox::new("stacks");
    let secret = sb.enroll("alice", &[]);
    sb.set_config("exempt_groups = [\"root\"]\n");
    let code = || format!("{}\n", oathtool_code(&secret, &[]));
    // `required` (or `requisite`) alone: PAM_IGNORE leaves nothing that succeeded, so libpam
    // denies. This is why the shipped files add `ignore=ignore` and a pam_permit line.
    for control in ["required", "requisite"] {
        sb.set_stack(&format!("auth {control} {{module}} {{args}}"));
        assert!(
            !sb.auth("root", b"").success,
            "{control}: ignore alone is not a success"
        );
        assert!(!sb.auth("alice", b"000000\n").success, "{control}");
    }
    // The shipped stack: exempt passes, a wrong code dies before pam_permit, the right code
    // is done.
    sb.set_stack(SHIPPED_STACK);
    assert!(sb.auth("root", b"").success);
    assert!(!sb.auth("alice", b"000000\n").success);
    assert!(
        !sb.auth("bob", b"000000\n").success,
        "unknown user: not_enrolled dies"
    );
    assert!(sb.auth("alice", code().as_bytes()).success);
    // A broken config denies even exempt users (default=die).
    sb.set_config("exempt_groups = [\"root\"]\nbogus = 1\n");
    assert!(!sb.auth("root", b"").success);
}
