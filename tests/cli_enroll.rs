//! `mfa-enroll enroll` end to end against a private store: output formats, refusal to
//! overwrite, confirmation, permissions, and errors with distinct exit statuses.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::{Sandbox, enroll_bin, oathtool_code, text};

#[test]
fn json_output_is_one_object_with_every_field() {
    let sb = Sandbox::new("cli-json");
    let out = sb.enroll_cmd("alice", &["--issuer", "Corp:Prod"]);
    common::assert_ok(&out, "mfa-enroll enroll");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "nothing but the JSON object: {stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let secret = v["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160-bit secret in unpadded base32");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["algorithm"], "SHA1");
    assert_eq!(v["digits"], 6);
    assert_eq!(v["period"], 30);
    let codes = v["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    for c in codes {
        let c = c.as_str().unwrap();
        assert_eq!(c.len(), 11, "{c}");
        assert_eq!(&c[5..6], "-");
    }
    let uri = v["otpauth_uri"].as_str().unwrap();
    // An issuer of its own names a fleet: the label is issuer:user (no host), so one app
    // entry serves every server (with the default issuer, the host name, it is user@host).
    assert!(uri.starts_with("otpauth://totp/Corp-Prod:alice?"), "{uri}");
    for part in [
        format!("secret={secret}"),
        "issuer=Corp-Prod".into(),
        "algorithm=SHA1".into(),
        "digits=6".into(),
        "period=30".into(),
    ] {
        assert!(uri.contains(&part), "{uri} lacks {part}");
    }
}

#[test]
fn secrets_are_new_each_time_and_files_are_private() {
    let sb = Sandbox::new("cli-files");
    let a = sb.enroll("alice", &[]);
    let b = sb.enroll("bob", &["--algorithm", "SHA512"]);
    assert_ne!(a, b);
    assert_eq!(b.len(), 103, "512-bit secret for SHA512");
    let dir_mode = std::fs::metadata(&sb.store).unwrap().permissions().mode() & 0o7777;
    let file_mode = std::fs::metadata(sb.store.join("alice.toml"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!((dir_mode, file_mode), (0o700, 0o600));
}

#[test]
fn an_existing_enrollment_is_kept_unless_forced() {
    let sb = Sandbox::new("cli-force");
    let first = sb.enroll("alice", &[]);
    let before = std::fs::read(sb.store.join("alice.toml")).unwrap();
    let out = sb.enroll_cmd("alice", &[]);
    common::assert_exit(&out, 4, "mfa-enroll enroll");
    assert!(text(&out.stderr).contains("already enrolled; use --force"));
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read(sb.store.join("alice.toml")).unwrap(), before);
    let second = sb.enroll("alice", &["--force"]);
    assert_ne!(first, second);
    // The old secret is dead at once, the new one works.
    let old = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&first, &[])).as_bytes(),
    );
    assert!(!old.success);
    let new = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&second, &[])).as_bytes(),
    );
    assert!(new.success, "{new:#?}");
}

fn enroll_with_confirmation(sb: &Sandbox, answers: impl Fn(&str) -> Vec<String>) -> (i32, String) {
    enroll_with_confirmation_args(sb, &[], answers)
}

fn enroll_with_confirmation_args(
    sb: &Sandbox,
    extra: &[&str],
    answers: impl Fn(&str) -> Vec<String>,
) -> (i32, String) {
    let mut child = Command::new(enroll_bin())
        .args(["enroll", "--user", "alice", "--json"])
        .args(extra)
        .arg("--store")
        .arg(&sb.store)
        .arg("--state")
        .arg(&sb.state)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let secret = v["secret"].as_str().unwrap().to_string();
    let mut stdin = child.stdin.take().unwrap();
    for answer in answers(&secret) {
        let _ = writeln!(stdin, "{answer}");
    }
    drop(stdin);
    let out = common::wait_with_timeout(child, std::time::Duration::from_secs(30));
    (out.status.code().unwrap_or(-1), secret)
}

#[test]
fn an_hotp_token_is_confirmed_by_its_first_code_and_starts_after_it() {
    let sb = Sandbox::new("cli-confirm-hotp");
    let hotp = |s: &str, c: &str| oathtool_code(s, &["--hotp", "-c", c]);
    let (status, secret) =
        enroll_with_confirmation_args(&sb, &["--hotp"], |s| vec!["000000".into(), hotp(s, "2")]);
    assert_eq!(status, 0);
    let record = std::fs::read_to_string(sb.store.join("alice.toml")).unwrap();
    assert!(
        record.contains("type = \"hotp\"\ncounter = 3\n"),
        "the token's third press confirmed it"
    );
    let r = sb.auth("alice", format!("{}\n", hotp(&secret, "2")).as_bytes());
    assert!(
        !r.success && r.audit().contains("reason=replay"),
        "{}",
        r.audit()
    );
    let r = sb.auth("alice", format!("{}\n", hotp(&secret, "3")).as_bytes());
    assert!(r.success, "{}", r.audit());
}

#[test]
fn confirmation_writes_only_after_a_valid_code() {
    let sb = Sandbox::new("cli-confirm");
    let (status, _) = enroll_with_confirmation(&sb, |_| vec!["000000".into(); 3]);
    // 000000 could be right by chance once in a million runs; then this fails loudly.
    assert_eq!(status, 7);
    assert!(!sb.store.join("alice.toml").exists(), "nothing written");
    let (status, _) = enroll_with_confirmation(&sb, |_| vec![]);
    assert_eq!(status, 7, "end of input is not a confirmation");
    assert!(!sb.store.join("alice.toml").exists());

    let (status, secret) =
        enroll_with_confirmation(&sb, |s| vec!["12".into(), oathtool_code(s, &[])]);
    assert_eq!(status, 0);
    assert!(sb.store.join("alice.toml").exists());
    // The code used to confirm cannot be replayed for a login.
    let code = oathtool_code(&secret, &[]);
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(!r.success);
    assert!(r.audit().contains("reason=replay"), "{}", r.audit());
}

#[test]
fn usage_errors_have_their_own_exit_status() {
    let sb = Sandbox::new("cli-usage");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(enroll_bin())
            .args(args)
            .arg("--store")
            .arg(&sb.store)
            .env_remove("SUDO_USER")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);
    let cases: [Case; 6] = [
        (&["enroll", "--no-confirm"], &[], 2, "--user"),
        (
            &["enroll", "--no-confirm"],
            &[("SUDO_USER", "root")],
            2,
            "root is never",
        ),
        (
            &["enroll", "--user", "../etc", "--no-confirm"],
            &[],
            2,
            "user name",
        ),
        (
            &["enroll", "--user", "a", "--digits", "7"],
            &[],
            2,
            "6 or 8",
        ),
        (
            &["enroll", "--user", "a", "--algorithm", "MD5"],
            &[],
            2,
            "SHA1",
        ),
        (
            &["enroll", "--user", "a", "--period", "45"],
            &[],
            2,
            "30 or 60",
        ),
    ];
    for (args, env, status, message) in cases {
        let out = run(args, env);
        common::assert_exit(&out, status, &format!("{args:?}"));
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!sb.store.exists(), "no error path created the store");

    // Through sudo, SUDO_USER is the default user.
    let out = run(
        &[
            "enroll",
            "--no-confirm",
            "--json",
            "--state",
            sb.state.to_str().unwrap(),
        ],
        &[("SUDO_USER", "carol")],
    );
    common::assert_ok(&out, "enroll");
    assert!(sb.store.join("carol.toml").exists());
}

#[test]
fn non_root_callers_are_refused() {
    let sb = Sandbox::new("cli-root");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(enroll_bin())
        .args(["enroll", "--user", "alice", "--no-confirm", "--store"])
        .arg(&sb.store)
        .output()
        .unwrap();
    common::assert_exit(&out, 3, "mfa-enroll enroll as an unprivileged user");
    assert!(text(&out.stderr).contains("must run as root"));
}

#[test]
fn a_store_directory_with_unsafe_permissions_is_refused_not_fixed() {
    let sb = Sandbox::new("cli-store");
    std::fs::create_dir(&sb.store).unwrap();
    std::fs::set_permissions(&sb.store, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = sb.enroll_cmd("alice", &[]);
    common::assert_exit(&out, 6, "mfa-enroll enroll");
    assert!(text(&out.stderr).contains("writable by group/other"));
    let mode = std::fs::metadata(&sb.store).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o777, "left as found");
}

#[test]
fn recovery_codes_are_stored_hashed_and_can_be_regenerated() {
    let sb = Sandbox::new("cli-recovery");
    let out = sb.enroll_cmd("alice", &[]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let record = std::fs::read_to_string(sb.store.join("alice.toml")).unwrap();
    assert_eq!(record.matches("$argon2id$").count(), 10);
    for code in &first {
        assert!(!record.contains(code.as_str()) && !record.contains(&code.replace('-', "")));
    }
    // A code works once at the login prompt.
    let r = sb.auth("alice", format!("{}\n", first[0]).as_bytes());
    assert!(r.success, "{r:#?}");
    assert!(
        r.audit().contains("reason=recovery_code remaining=9"),
        "{}",
        r.audit()
    );

    let regen = |args: &[&str]| {
        Command::new(enroll_bin())
            .arg("recovery")
            .args(args)
            .arg("--store")
            .arg(&sb.store)
            .output()
            .unwrap()
    };
    let out = regen(&["--user", "alice", "--json"]);
    common::assert_ok(&out, "mfa-enroll recovery");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = v["recovery_codes"].as_array().unwrap();
    assert_eq!(second.len(), 10);
    // The old set is dead at once, the new one works.
    let r = sb.auth("alice", format!("{}\n", first[1]).as_bytes());
    assert!(!r.success);
    let r = sb.auth(
        "alice",
        format!("{}\n", second[0].as_str().unwrap()).as_bytes(),
    );
    assert!(r.success, "{r:#?}");
    // Regenerating for someone not enrolled is a distinct error.
    let out = regen(&["--user", "nobody"]);
    common::assert_exit(&out, 5, "mfa-enroll recovery");
    assert!(text(&out.stderr).contains("not enrolled"));
}
