//! Tier 2: shared-account records through real Linux-PAM (pamtester, the real `.so`) and the
//! real `mfa-enroll`: records written by the release before shared accounts keep working bit
//! for bit; hostile format-2 records (hundreds of tokens, one key bound to two people, control
//! characters in a person's name) are read or refused without harm. The SSH key sshd would
//! report comes from `pam_env.so` (`SSH_AUTH_INFO_0`), as in `tests/pam_admin_during_login.rs`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Sandbox, cli, oathtool_code};
use pam_ecs_mfa::ssh_auth_info::AcceptedKey;
use pam_ecs_mfa::store::AccountRecord;
use pam_ecs_mfa::store::record::{Origin, UserRecord};
use pam_ecs_mfa::totp::{SecretKey, TotpParams};
use pam_ecs_mfa::user_name::{Person, UserName};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-v1");
/// The key "sshd accepted" for the login (pam_env), and its fingerprint.
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";

fn fixture_secret(user: &str) -> String {
    let json = std::fs::read(format!("{FIXTURES}/{user}.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

fn install_record(sb: &Sandbox, user: &str, bytes: &[u8]) {
    std::fs::create_dir_all(&sb.store).unwrap();
    std::fs::set_permissions(&sb.store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = sb.store.join(format!("{user}.toml"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn record_bytes(sb: &Sandbox, user: &str) -> String {
    std::fs::read_to_string(sb.store.join(format!("{user}.toml"))).unwrap()
}

#[test]
fn records_written_by_the_release_before_shared_accounts_keep_working_bit_for_bit() {
    let sb = Sandbox::new("release-v1");
    // Written by mfa-enroll of commit cd3b92a (TOTP alice, HOTP bob), copied as they are.
    for user in ["alice", "bob"] {
        let bytes = std::fs::read(Path::new(FIXTURES).join(format!("{user}.toml"))).unwrap();
        install_record(&sb, user, &bytes);
    }
    let alice_before = record_bytes(&sb, "alice");
    let bob_before = record_bytes(&sb, "bob");
    assert!(alice_before.contains("version = 1\n") && bob_before.contains("type = \"hotp\""));

    // A TOTP login reads the record and never writes it.
    common::wait_for_fresh_step(5);
    let (ok, line) = common::login(&sb, "alice", &oathtool_code(&fixture_secret("alice"), &[]));
    common::assert_accepted(ok, &line, "ok");
    assert!(
        !line.contains("person=") && !line.contains("key="),
        "{line}"
    );
    assert_eq!(record_bytes(&sb, "alice"), alice_before, "not rewritten");
    let status = cli(&sb, &["status", "--user", "alice", "--json"], b"");
    common::assert_ok(&status, "status");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        row.get("people").is_none() && row.get("keys").is_none(),
        "{row}"
    );
    assert_eq!(row["recovery_codes_left"], 10, "{row}");
    assert_eq!(
        record_bytes(&sb, "alice"),
        alice_before,
        "status does not write"
    );

    // A recovery code: the record loses exactly that hash and stays format 1.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/alice.json")).unwrap()).unwrap();
    let recovery = json["recovery_codes"][0].as_str().unwrap();
    let (ok, line) = common::login(&sb, "alice", recovery);
    common::assert_accepted(ok, &line, "recovery_code");
    let after = record_bytes(&sb, "alice");
    let removed: Vec<&str> = alice_before
        .lines()
        .filter(|l| !after.lines().any(|a| a == *l))
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "one hash removed, nothing else: {removed:?}"
    );
    assert!(removed[0].contains("$argon2id$"), "{removed:?}");
    assert!(after.starts_with("# ecs-mfa enrollment record.") && after.contains("version = 1\n"));

    // HOTP: the counter moves in the record, which stays format 1, otherwise identical.
    let code = oathtool_code(&fixture_secret("bob"), &["--hotp", "-c", "0"]);
    let (ok, line) = common::login(&sb, "bob", &code);
    common::assert_accepted(ok, &line, "ok");
    let after = record_bytes(&sb, "bob");
    assert_eq!(
        after,
        bob_before.replace("counter = 0\n", "counter = 1\n"),
        "only the counter changed"
    );
}

fn token(person: &str, keys: Vec<String>, secret: &SecretKey) -> UserRecord {
    UserRecord {
        user: UserName::parse("alice").unwrap(),
        person: Some(Person::parse(person).unwrap()),
        keys,
        secret: secret.clone(),
        params: TotpParams::default(),
        created: 1,
        issuer: "t".into(),
        recovery_codes: vec![],
        origin: Origin::Admin,
        hotp: None,
        generation: 1,
    }
}

/// A sandbox whose logins come with `KEY` as the accepted SSH key.
fn with_key(tag: &str) -> Sandbox {
    let sb = Sandbox::new(tag);
    sb.set_accepted_key(KEY);
    sb
}

fn login_with_key(sb: &Sandbox, code: &str) -> (bool, String) {
    let r = sb
        .pamtester(
            "alice",
            format!("{code}\n").as_bytes(),
            &[],
            &["setcred", "authenticate"],
        )
        .finish();
    (r.success, r.audit())
}

#[test]
fn hostile_shared_records_are_read_or_refused_without_harm() {
    let sb = with_key("shared-hostile");
    let key = AcceptedKey::parse(KEY).unwrap().fingerprint;
    let theirs = SecretKey::from_bytes(vec![9; 20]).unwrap();
    let mine = SecretKey::from_bytes(vec![7; 20]).unwrap();
    let mine_b32 = mine.to_base32().to_string();

    // 400 people; the key is bound to the last one, whose code alone works.
    let mut account = AccountRecord::single(token("p0", vec!["SHA256:k0".into()], &theirs));
    for i in 1..399 {
        account
            .put(token(
                &format!("p{i}"),
                vec![format!("SHA256:k{i}")],
                &theirs,
            ))
            .unwrap();
    }
    account
        .put(token("p399", vec![key.clone()], &mine))
        .unwrap();
    account.set_generation(1);
    install_record(&sb, "alice", account.to_toml().unwrap().as_bytes());
    common::wait_for_fresh_step(5);
    let (ok, line) = login_with_key(&sb, &oathtool_code(&oathtool_secret(&theirs), &[]));
    common::assert_denied(ok, &line, "bad_code");
    assert!(
        line.contains("person=p399") && line.contains(&format!("key={key}")),
        "{line}"
    );
    let (ok, line) = login_with_key(&sb, &oathtool_code(&mine_b32, &[]));
    common::assert_accepted(ok, &line, "ok");

    // One key bound to two people, and a person's name with terminal escapes and a forged
    // field: the record is refused (bad_file), nothing unescaped reaches the log.
    let good = account.to_toml().unwrap().to_string();
    let two_people = good.replacen("\"SHA256:k0\"", &format!("\"{key}\""), 1);
    let escape = good.replacen(
        "person = \"p0\"",
        "person = \"p0\\u001b[2J user=root result=success\"",
        1,
    );
    for bad in [two_people, escape] {
        install_record(&sb, "alice", bad.as_bytes());
        let r = sb
            .pamtester("alice", b"123456\n", &[], &["setcred", "authenticate"])
            .finish();
        let line = r.audit();
        common::assert_denied(r.success, &line, "bad_file");
        assert!(
            !line.contains('\u{1b}') && !line.contains("result=success"),
            "{line}"
        );
        assert!(!line.contains(&mine_b32[..8]), "no secret in {line}");
    }
}

fn oathtool_secret(secret: &SecretKey) -> String {
    secret.to_base32().to_string()
}

#[test]
fn every_admin_command_takes_a_person_and_says_when_one_is_needed() {
    let sb = Sandbox::new("shared-admin");
    let enroll = |person: &str, extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "enroll",
            "--user",
            "alice",
            "--person",
            person,
            "--no-confirm",
            "--json",
        ];
        args.extend(extra);
        let out = cli(&sb, &args, b"");
        common::assert_ok(&out, person);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let ann = enroll("ann", &["--key", KEY]);
    let ben = enroll("ben", &[]);
    assert_eq!(ann["person"], "ann");
    assert!(
        ann["otpauth_uri"]
            .as_str()
            .unwrap()
            .contains("ann%20%28alice"),
        "{ann}"
    );
    let ann_secret = ann["secret"].as_str().unwrap();
    let ben_secret = ben["secret"].as_str().unwrap();

    // Without --person on a shared account: a usage error that lists the people.
    for args in [
        &["verify", "--user", "alice"][..],
        &["unlock", "--user", "alice"],
        &["recovery", "--user", "alice"],
        &["show", "--user", "alice"],
        &["reset", "--user", "alice", "--no-confirm"],
        &["remove", "--user", "alice", "--yes"],
    ] {
        let out = cli(&sb, args, b"123456\n");
        common::assert_exit(&out, 2, &format!("{args:?}"));
        let err = common::text(&out.stderr);
        assert!(
            err.contains("ann") && err.contains("ben"),
            "{args:?}: {err}"
        );
    }
    // With it: verify checks that person's code only, recovery and unlock act on that person.
    common::wait_for_fresh_step(5);
    let code = oathtool_code(ben_secret, &[]);
    let out = cli(
        &sb,
        &["verify", "--user", "alice", "--person", "ann"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_exit(&out, 8, "ben's code is not ann's");
    let out = cli(
        &sb,
        &["verify", "--user", "alice", "--person", "ben"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_ok(&out, "ben's code for ben");
    let out = cli(
        &sb,
        &["recovery", "--user", "alice", "--person", "ann", "--json"],
        b"",
    );
    common::assert_ok(&out, "recovery ann");
    let out = cli(
        &sb,
        &["unlock", "--user", "alice", "--person", "ann", "--json"],
        b"",
    );
    common::assert_ok(&out, "unlock ann");
    let shown = cli(
        &sb,
        &["show", "--user", "alice", "--person", "ann", "--json"],
        b"",
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["secret"], ann_secret);
    let status = cli(&sb, &["status", "--user", "alice"], b"");
    let text = common::text(&status.stdout);
    assert!(
        text.contains("alice: shared by 2 people")
            && text.contains("\n  ann: enrolled")
            && text.contains("keys SHA256:"),
        "{text}"
    );
    // A second person bound to no key is refused (ben already is), clearly.
    let out = cli(
        &sb,
        &[
            "enroll",
            "--user",
            "alice",
            "--person",
            "cat",
            "--no-confirm",
        ],
        b"",
    );
    common::assert_exit(&out, 2, "second unbound token");
    assert!(
        common::text(&out.stderr).contains("bound to no key"),
        "{out:?}"
    );
    // bind --move takes ann's key for ben; unbind drops it.
    let out = cli(
        &sb,
        &["bind", "--user", "alice", "--person", "ben", "--key", KEY],
        b"",
    );
    common::assert_exit(&out, 2, "bound to ann without --move");
    let out = cli(
        &sb,
        &[
            "bind", "--user", "alice", "--person", "ben", "--key", KEY, "--move",
        ],
        b"",
    );
    common::assert_ok(&out, "bind --move");
    let status = cli(&sb, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let key = AcceptedKey::parse(KEY).unwrap().fingerprint;
    assert_eq!(row["people"][1]["keys"][0], key.as_str(), "{row}");
    assert!(row["people"][0].get("keys").is_none(), "{row}");
}

#[test]
fn a_key_moved_to_another_person_at_the_prompt_denies_that_login() {
    use std::io::{Read, Write};
    let sb = with_key("shared-prompt");
    let enroll = |person: &str, extra: &[&str]| -> String {
        let mut args = vec![
            "enroll",
            "--user",
            "alice",
            "--person",
            person,
            "--no-confirm",
            "--json",
        ];
        args.extend(extra);
        let out = cli(&sb, &args, b"");
        common::assert_ok(&out, person);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["secret"].as_str().unwrap().to_string()
    };
    let ann = enroll("ann", &["--key", KEY]);
    enroll("ben", &[]);
    common::wait_for_fresh_step(10);
    let mut run = sb.pamtester_open("alice", &[], &["setcred", "authenticate"]);
    let mut stderr = run.child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !common::text(&seen).contains("Verification code:") {
        match stderr.read(&mut byte) {
            Ok(1) => seen.push(byte[0]),
            _ => panic!("no prompt: {}", common::text(&seen)),
        }
    }
    // While ann types her code, the administrator moves her key to ben.
    let moved = cli(
        &sb,
        &[
            "bind", "--user", "alice", "--person", "ben", "--key", KEY, "--move",
        ],
        b"",
    );
    common::assert_ok(&moved, "bind --move");
    let mut stdin = run.child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", oathtool_code(&ann, &[])).as_bytes())
        .unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    let _ = stderr.read_to_end(&mut rest);
    let r = run.finish();
    let line = r.audit();
    common::assert_denied(r.success, &line, "not_enrolled");
    assert!(
        line.contains("changed while the code was being typed"),
        "{line}"
    );
}
