//! Attacks on what a login trusts around it (the classes of the first security review), tier 2:
//! the real `.so` under real Linux-PAM, with the real `mfa-enroll`: a directory above the store
//! that others can change, every spelling of an account name, `nullok` with a missing store, an
//! administrator's change while a client sits at the prompt, and a secret removed and enrolled
//! again. Each test would fail with the module as it was before the fix.

mod common;

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

use common::{Sandbox, cli, oathtool_code, text};

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A reset, re-enrollment or removal while a client sits at `Verification code:` takes effect
/// for that very login: the old secret stops working at once.
#[test]
fn an_admin_change_during_the_prompt_applies_to_the_login_in_flight() {
    let sb = Sandbox::new("in-flight");
    let old = sb.enroll("alice", &[]);
    let code = oathtool_code(&old, &[]);
    let r = sb.auth_at_prompt(
        "alice",
        || {
            let out = cli(
                &sb,
                &["reset", "--user", "alice", "--no-confirm", "--json"],
                b"",
            );
            common::assert_ok(&out, "mfa-enroll reset");
        },
        format!("{code}\n").as_bytes(),
    );
    assert!(
        !r.success,
        "the old secret still worked after reset: {r:#?}"
    );
    assert!(r.audit().contains("reason=bad_code"), "{}", r.audit());

    let new = sb.enroll("alice", &["--force"]);
    let code = oathtool_code(&new, &[]);
    let r = sb.auth_at_prompt(
        "alice",
        || {
            let out = cli(&sb, &["remove", "--user", "alice", "--yes"], b"");
            common::assert_ok(&out, "mfa-enroll remove");
        },
        format!("{code}\n").as_bytes(),
    );
    assert!(!r.success, "a removed enrollment still worked: {r:#?}");
    assert!(r.audit().contains("reason=not_enrolled"), "{}", r.audit());
}

/// No admin action makes a used code valid again: remove and import the same secret, and the
/// code already used is still a replay.
#[test]
fn removing_and_enrolling_the_same_secret_again_keeps_used_codes_used() {
    let sb = Sandbox::new("replay-kept");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    assert!(sb.auth("alice", format!("{code}\n").as_bytes()).success);
    let out = cli(&sb, &["remove", "--user", "alice", "--yes"], b"");
    common::assert_ok(&out, "mfa-enroll remove");
    // The same secret again, through pam_oath's users-file format.
    sb.import_oath("alice", &secret);
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(
        !r.success,
        "a used code worked again after remove + import: {r:#?}"
    );
    assert!(r.audit().contains("reason=replay"), "{}", r.audit());
}

/// A store or state below a directory a non-root user can change is refused, by the module
/// and by mfa-enroll (the directory right above was checked before; this one is two levels up);
/// sticky world-writable directories (like /tmp) are fine.
#[test]
fn a_directory_above_the_store_that_others_can_change_denies_every_login() {
    let sb = Sandbox::new("path");
    let top = sb.root.join("top");
    std::fs::create_dir(&top).unwrap();
    set_mode(&top, 0o755);
    let store = top.join("lib/users");
    let state = top.join("run/ecs-mfa");
    std::fs::create_dir_all(top.join("lib")).unwrap();
    std::fs::create_dir_all(top.join("run")).unwrap();
    sb.set_stack(&format!(
        "auth required {{module}} store={} state={} config={}",
        store.display(),
        state.display(),
        sb.config.display()
    ));
    let enroll = |extra: &[&str]| {
        std::process::Command::new(common::enroll_bin())
            .args([
                "--store",
                store.to_str().unwrap(),
                "--state",
                state.to_str().unwrap(),
            ])
            .args(["--config", sb.config.to_str().unwrap()])
            .args(extra)
            .env_remove("SUDO_USER")
            .output()
            .unwrap()
    };
    let out = enroll(&["enroll", "--user", "alice", "--no-confirm", "--json"]);
    common::assert_ok(&out, "enroll");
    let secret = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let login = || {
        let code = oathtool_code(&secret, &[]);
        std::fs::remove_file(state.join("alice.state")).ok();
        sb.auth("alice", format!("{code}\n").as_bytes())
    };
    assert!(login().success);
    for (dir, mode, uid) in [(&top, 0o777, 0), (&top, 0o775, 0), (&top, 0o755, 1000)] {
        set_mode(dir, mode);
        chown(dir, Some(uid), None).unwrap();
        let r = login();
        assert!(!r.success, "{} {mode:o} uid {uid}: {r:#?}", dir.display());
        let audit = r.audit();
        assert!(audit.contains("reason=bad_file"), "{audit}");
        assert!(audit.contains("a directory on the way"), "{audit}");
        let out = enroll(&["status", "--user", "alice"]);
        common::assert_failed(&out, "mfa-enroll accepted it too");
        assert!(
            text(&out.stdout).contains("a directory on the way"),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let out = enroll(&["enroll", "--user", "bob", "--no-confirm"]);
        common::assert_exit(&out, 6, "enroll");
        chown(dir, Some(0), None).unwrap();
        set_mode(dir, 0o755);
    }
    set_mode(&top, 0o1777);
    assert!(login().success, "sticky like /tmp: accepted");
    set_mode(&top, 0o755);
    assert!(login().success);
}

/// With nullok, a store that does not exist (a typo, a volume not mounted) denies everyone
/// after a prompt instead of letting everyone in as "not enrolled".
#[test]
fn nullok_with_a_missing_store_denies_everyone() {
    let sb = Sandbox::new("no-store");
    sb.set_stack(
        "auth [success=done ignore=ignore default=die] {module} {args} nullok\n\
         auth required pam_permit.so",
    );
    assert!(!sb.store.exists());
    let r = sb.auth("bob", b"123456\n");
    assert!(!r.success, "{r:#?}");
    assert_eq!(r.prompts(), 1);
    assert!(
        r.audit().contains("reason=bad_file") && r.audit().contains("does not exist"),
        "{}",
        r.audit()
    );
    // Once the store exists, an unenrolled user passes under nullok as documented.
    sb.enroll("alice", &[]);
    let r = sb.auth("bob", b"");
    assert!(r.success && r.prompts() == 0, "{r:#?}");
}

/// A case-insensitive, aliasing directory (as SSSD, AD or LDAP can be), made with a tiny NSS
/// module: `ALICE`, `Alice` and `alice@corp.example` all resolve to the account `alice`.
const ALIAS_NSS_MODULE: &str = r#"
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <string.h>
#include <strings.h>
enum nss_status _nss_ecsalias_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                          size_t len, int *errnop) {
    if (strcasecmp(name, "alice") != 0 && strcasecmp(name, "alice@corp.example") != 0)
        return NSS_STATUS_NOTFOUND;
    if (len < 32) { *errnop = ERANGE; return NSS_STATUS_TRYAGAIN; }
    memcpy(buf, "alice\0x\0\0/\0/bin/sh", 19);
    pw->pw_name = buf; pw->pw_passwd = buf + 6; pw->pw_gecos = buf + 8; pw->pw_dir = buf + 9;
    pw->pw_shell = buf + 11; pw->pw_uid = 61000; pw->pw_gid = 61000;
    return NSS_STATUS_SUCCESS;
}
"#;

/// Record, state, groups and exemptions are keyed on the canonical account name from NSS, not
/// on the client's spelling; both names are logged when they differ.
#[test]
fn every_spelling_of_an_account_gets_that_accounts_record_state_and_groups() {
    let sb = Sandbox::new("alias");
    let dir = sb.root.join("nss-alias");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alias.c"), ALIAS_NSS_MODULE).unwrap();
    let gcc = std::process::Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("libnss_ecsalias.so.2"))
        .arg(dir.join("alias.c"))
        .output()
        .expect("gcc (scripts/deps installs it)");
    common::assert_ok(&gcc, "gcc");
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap();
    let nsswitch: String = nsswitch
        .lines()
        .map(|l| {
            if l.starts_with("passwd:") {
                "passwd: files ecsalias\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.join("nsswitch.conf"), nsswitch).unwrap();
    // Without the alias module, the test accounts already hold `alice` (files); the alias
    // module answers the other spellings, as a case-insensitive directory would.
    sb.set_ns_setup(&format!(
        "mount --bind {}/nsswitch.conf /etc/nsswitch.conf",
        dir.display()
    ));
    let env = [("LD_LIBRARY_PATH", dir.to_str().unwrap())];
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let r = sb.auth_env("ALICE", format!("{code}\n").as_bytes(), &env);
    assert!(r.success, "{r:#?}");
    assert!(
        r.audit().contains("user=ALICE account=alice ") && r.audit().contains("reason=ok"),
        "{}",
        r.audit()
    );
    // Another spelling is the same account: the same replay mark.
    let r = sb.auth_env("alice@corp.example", format!("{code}\n").as_bytes(), &env);
    assert!(!r.success);
    assert!(r.audit().contains("account=alice") && r.audit().contains("reason=replay"));
    // nullok never skips MFA for an enrolled account through another spelling.
    sb.set_stack(
        "auth [success=done ignore=ignore default=die] {module} {args} nullok\n\
         auth required pam_permit.so",
    );
    let r = sb.auth_env("Alice", b"000000\n", &env);
    assert!(!r.success && r.prompts() == 1, "{r:#?}");
    // Groups are the account's: exempting alice's group exempts every spelling.
    sb.set_config("exempt_groups = [\"alice\"]\n");
    let r = sb.auth_env("ALICE", b"", &env);
    assert!(r.success && r.prompts() == 0, "{r:#?}");
    assert!(r.audit().contains("exempt group alice"), "{}", r.audit());
    // mfa-enroll acts on the same account, whatever the spelling.
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(format!(
            "mount --bind {0}/nsswitch.conf /etc/nsswitch.conf && \
             mount --bind {1}/passwd /etc/passwd && exec \"$@\"",
            dir.display(),
            sb.root.join("nss").display()
        ))
        .arg("sh")
        .arg(common::enroll_bin())
        .args([
            "status",
            "--user",
            "ALICE",
            "--store",
            sb.store.to_str().unwrap(),
        ])
        .args(["--state", sb.state.to_str().unwrap()])
        .env("LD_LIBRARY_PATH", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success() && text(&out.stdout).starts_with("alice: enrolled"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("is the account 'alice'"));
    // An account nobody knows: prompted and denied, even with nullok.
    sb.set_config("");
    let r = sb.auth_env("nosuchaccount", b"123456\n", &env);
    assert!(!r.success && r.prompts() == 1, "{r:#?}");
    assert!(
        r.audit().contains("reason=unknown_account"),
        "{}",
        r.audit()
    );
}
