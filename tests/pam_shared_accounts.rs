//! Tier 2: shared-account records through real Linux-PAM (pamtester, the real `.so`) and the
//! real `mfa-enroll`: records written by the release before shared accounts keep working bit
//! for bit; hostile format-2 records (hundreds of tokens, one key bound to two people, control
//! characters in a person's name) are read or refused without harm; grace and HOTP counters
//! belong to one person; a person's google-authenticator file is imported as their token, and
//! a replacing import keeps their keys. The SSH key sshd would
//! report comes from `pam_env.so` (`SSH_AUTH_INFO_0`), as in `tests/pam_admin_during_login.rs`.

mod common;

use std::path::Path;

use common::{Sandbox, cli, oathtool_code};
use pam_ecs_mfa::ssh_auth_info::AcceptedKey;
use pam_ecs_mfa::store::AccountRecord;
use pam_ecs_mfa::store::record::UserRecord;
use pam_ecs_mfa::totp::SecretKey;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-v1");
/// The key "sshd accepted" for the login (pam_env), and its fingerprint.
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";

fn fixture_secret(user: &str) -> String {
    let json = std::fs::read(format!("{FIXTURES}/{user}.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["secret"].as_str().unwrap().to_string()
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
        sb.install_record(user, &bytes);
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
    common::records::token("alice", person, keys, secret)
}

/// A sandbox whose logins come with `KEY` as the accepted SSH key.
fn with_key(tag: &str) -> Sandbox {
    let sb = Sandbox::new(tag);
    sb.set_accepted_key(KEY);
    sb
}

fn login_with_key(sb: &Sandbox, code: &str) -> (bool, String) {
    common::keyed_login(sb, "alice", code)
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
    sb.install_record("alice", account.to_toml().unwrap().as_bytes());
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
        sb.install_record("alice", bad.as_bytes());
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
    // A person the account does not have: a usage error before any code is asked for (it
    // said unbound_key, exit 8, as if a code had been checked).
    let out = cli(
        &sb,
        &["verify", "--user", "alice", "--person", "zed"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_exit(&out, 2, "no person zed");
    assert!(
        common::text(&out.stderr).contains("no person named zed")
            && !common::text(&out.stdout).contains("Verification code"),
        "{out:?}"
    );
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
    // A cut-off fingerprint or key (a bad paste) is no key: a clear error, nothing bound.
    for (bad, says) in [
        (
            "SHA256:+DiY3wvvV6TuJJhbpZisF",
            "not a whole SHA256: fingerprint",
        ),
        (
            "ssh-ed25519 AAAA",
            "not a SHA256: fingerprint, a public key line",
        ),
    ] {
        let out = cli(
            &sb,
            &["bind", "--user", "alice", "--person", "ben", "--key", bad],
            b"",
        );
        common::assert_exit(&out, 2, bad);
        assert!(common::text(&out.stderr).contains(says), "{out:?}");
    }
    // A FIFO given as --key (nobody writes to it): refused at once, never waited on.
    let fifo = sb.root.join("key.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.to_str().unwrap();
    let out = cli(
        &sb,
        &["bind", "--user", "alice", "--person", "ben", "--key", fifo],
        b"",
    );
    common::assert_exit(&out, 2, "a FIFO as --key");
    assert!(
        common::text(&out.stderr).contains("not a regular file"),
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
    // ann's last key is gone: the command says what her token is used for now.
    assert!(
        common::text(&out.stderr).contains(
            "note: ann on alice is now bound to no key: no login uses it while another token \
             of the account is bound to a key"
        ),
        "{out:?}"
    );
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
    common::read_until(&mut stderr, "Verification code:");
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

/// Grace (`grace_seconds`) belongs to the token and the key that earned it: ann's grace never
/// spares ben's key a code, it does not follow ann's key to ben when an administrator moves the
/// key, nor come back when the key is moved back (a move ends the grace periods of the token
/// the key leaves), and a reset of ann ends it.
#[test]
fn grace_belongs_to_the_person_and_the_key_that_earned_it() {
    const BEN_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let sb = Sandbox::new("shared-grace");
    sb.set_config("grace_seconds = 300\n");
    let enroll = |person: &str, key: &str| {
        let args = ["--person", person, "--key", key];
        sb.enroll("alice", &args)
    };
    let ann = enroll("ann", KEY);
    let ben = enroll("ben", BEN_KEY);
    let admin = |args: &[&str]| common::assert_ok(&cli(&sb, args, b""), &format!("{args:?}"));
    let login = |key: &str, answer: &str| {
        let r = sb.login_with_key("alice", key, answer);
        (r.success, r.prompts(), r.audit())
    };
    common::wait_for_fresh_step(10);
    let (ok, _, line) = login(KEY, &format!("{}\n", oathtool_code(&ann, &[])));
    common::assert_accepted(ok, &line, "ok");
    let (ok, prompts, line) = login(KEY, "");
    assert!(
        ok && prompts == 0 && line.contains("reason=grace"),
        "{line}"
    );
    assert!(line.contains("person=ann"), "{line}");

    // ben's key, from the same client: asked for ben's code.
    let (ok, prompts, line) = login(BEN_KEY, "\n");
    assert!(!ok && prompts == 1 && line.contains("person=ben"), "{line}");

    // ann's key moved to ben: ben's token, asked (ann's grace stays with ann's token).
    let ann_key = AcceptedKey::parse(KEY).unwrap().fingerprint;
    let whom = ["--user", "alice", "--key", &ann_key];
    admin(&[&["bind", "--person", "ben", "--move"], &whom[..]].concat());
    let (ok, prompts, line) = login(KEY, "\n");
    assert!(!ok && prompts == 1 && line.contains("person=ben"), "{line}");
    let next = format!("@{}", common::container::now() + 30);
    let (ok, _, line) = login(KEY, &format!("{}\n", oathtool_code(&ben, &["-N", &next])));
    common::assert_accepted(ok, &line, "ok");

    // Back to ann: the move ended the grace periods of the token it left (ben's, just earned
    // with this key) and ann's own ended when the key left her: asked, as ann.
    admin(&[&["bind", "--person", "ann", "--move"], &whom[..]].concat());
    let (ok, prompts, line) = login(KEY, "\n");
    assert!(!ok && prompts == 1 && line.contains("person=ann"), "{line}");
    // ann earns grace again; a reset of ann ends it.
    let (ok, _, line) = login(KEY, &format!("{}\n", oathtool_code(&ann, &["-N", &next])));
    common::assert_accepted(ok, &line, "ok");
    admin(&[
        "reset",
        "--user",
        "alice",
        "--person",
        "ann",
        "--no-confirm",
        "--json",
    ]);
    let (ok, prompts, line) = login(KEY, "\n");
    assert!(!ok && prompts == 1 && line.contains("person=ann"), "{line}");
}

/// HOTP tokens per person: each person's counter moves only with their own logins, a used
/// counter of one person is refused as a replay while the other person's same counter works.
#[test]
fn hotp_counters_are_per_person() {
    const BEN_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let sb = Sandbox::new("shared-hotp");
    let enroll = |person: &str, key: &str| {
        let args = ["--person", person, "--key", key, "--hotp"];
        sb.enroll("alice", &args)
    };
    let (ann, ben) = (enroll("ann", KEY), enroll("ben", BEN_KEY));
    let code = |secret: &str, counter: u64| {
        let c = counter.to_string();
        format!("{}\n", oathtool_code(secret, &["--hotp", "-c", &c]))
    };
    let login = |key: &str, answer: &str| {
        let r = sb.login_with_key("alice", key, answer);
        (r.success, r.audit())
    };
    for counter in [0, 1] {
        let (ok, line) = login(KEY, &code(&ann, counter));
        common::assert_accepted(ok, &line, "ok");
        assert!(line.contains("person=ann"), "{line}");
    }
    let (ok, line) = login(KEY, &code(&ann, 1));
    assert!(!ok, "ann's used counter again: {line}");
    // ben's counter 0 works: ann's logins did not move it.
    let (ok, line) = login(BEN_KEY, &code(&ben, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=ben"), "{line}");
    // ann's next counter still works; ben's first code is used.
    let (ok, line) = login(KEY, &code(&ann, 2));
    common::assert_accepted(ok, &line, "ok");
    let (ok, line) = login(BEN_KEY, &code(&ben, 0));
    assert!(!ok, "ben's used counter again: {line}");
}

/// `import google-authenticator --person`: a person's own `~/.google_authenticator` becomes
/// their token on the shared account (bound with `--key`; without one it would be a second
/// token bound to no key: refused), and a replacing import (`--force`) keeps the keys bound to
/// the token it replaces, as `reset` and `enroll --force` do (it dropped them: the person's
/// token was left bound to no key, refused here because another token already is).
#[test]
fn a_persons_google_authenticator_file_becomes_their_token_and_a_replacing_import_keeps_keys() {
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const GA_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let sb = with_key("shared-import");
    let file = sb.root.join("google_authenticator");
    std::fs::write(&file, format!("{GA_SECRET}\n\" TOTP_AUTH\n12345678\n")).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = file.to_str().unwrap();
    let import = |person: &str, extra: &[&str]| {
        let mut args = vec![
            "import",
            "google-authenticator",
            "--user",
            "alice",
            "--person",
            person,
            "--file",
            file,
        ];
        args.extend(extra);
        cli(&sb, &args, b"")
    };
    for (person, keys) in [("ann", vec!["--key", KEY]), ("ben", vec![])] {
        let mut args = vec!["enroll", "--user", "alice", "--person", person];
        args.extend(keys);
        args.extend(["--no-confirm", "--json"]);
        common::assert_ok(&cli(&sb, &args, b""), person);
    }

    // cat without a key: a second token bound to no key (ben's is one): refused, nothing saved.
    let out = import("cat", &[]);
    common::assert_exit(&out, 10, "a second unbound token");
    assert!(
        common::text(&out.stdout).contains("bound to no key"),
        "{out:?}"
    );
    // With her key: imported, and her key chooses her token.
    common::assert_ok(&import("cat", &["--key", OTHER]), "import cat");
    sb.set_accepted_key(OTHER);
    common::wait_for_fresh_step(5);
    let (ok, line) = login_with_key(&sb, &oathtool_code(GA_SECRET, &[]));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=cat"), "{line}");

    // ann's phone replaced by her old google-authenticator secret: her key stays bound.
    common::assert_exit(&import("ann", &[]), 10, "ann exists: needs --force");
    common::assert_ok(&import("ann", &["--force"]), "import ann --force");
    let status = cli(&sb, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let ann = AcceptedKey::parse(KEY).unwrap().fingerprint;
    let of = |name: &str| {
        row["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["person"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(of("ann")["keys"][0], ann.as_str(), "{row}");
    sb.set_accepted_key(KEY);
    let next = format!("@{}", common::container::now() + 30);
    let (ok, line) = login_with_key(&sb, &oathtool_code(GA_SECRET, &["-N", &next]));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=ann"), "{line}");
}
