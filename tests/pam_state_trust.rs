//! What the login state may be trusted with, through real Linux-PAM (pamtester, the real `.so`)
//! and the real `mfa-enroll`, files backend (issues 23.5-23.7, 24.5):
//! - recovery-code and HOTP logins decide on the state only: with the store on a full file
//!   system they work, and each code still works once (also under concurrency);
//! - `unlock` never makes a code used with a phone a little ahead valid again;
//! - an older record written back (a restored backup) is refused after a reset;
//! - grace marks longer than `grace_seconds` (forged, or a clock set back) spare nobody the
//!   code, and an import replacing the secret ends every grace period.

mod common;

use common::{Sandbox, cli, oathtool_code, wait_for_fresh_step};
use common::{enroll_json, login, reason};

/// Inside each PAM namespace: the store is replaced by a copy on a tiny tmpfs that is then
/// filled up (the host's store is never touched; the mount vanishes with the namespace).
fn full_store_setup(sb: &Sandbox) -> String {
    let orig = sb.root.join("store-orig");
    std::fs::create_dir_all(&orig).unwrap();
    let (store, orig) = (sb.store.display(), orig.display());
    format!(
        "mount --bind {store} {orig}\n\
         mount -t tmpfs -o size=64k,mode=0700 ecs-mfa-full-store {store}\n\
         cp -a {orig}/. {store}/\n\
         dd if=/dev/zero of={store}/.fill bs=4k count=64 2>/dev/null || true\n\
         if echo x > {store}/.probe 2>/dev/null; then echo 'store not full' >&2; exit 99; fi"
    )
}

#[test]
fn recovery_and_hotp_logins_work_with_the_store_on_a_full_disk_and_stay_single_use() {
    let sb = Sandbox::new("full-store");
    // Refused codes count as failures; this test refuses many on purpose.
    sb.set_config("max_failures = 100\n");
    let alice = enroll_json(&sb, "alice", &[]);
    let codes: Vec<String> = alice["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let bob = enroll_json(&sb, "bob", &["--hotp"]);
    let bob_secret = bob["secret"].as_str().unwrap().to_string();
    let hotp = |n: u64| oathtool_code(&bob_secret, &["--hotp", "-c", &n.to_string()]);
    let before = sb.store_snapshot();

    sb.set_ns_setup(&full_store_setup(&sb));
    // A recovery code: accepted, recorded in the state; the record could not be written.
    let (ok, line) = login(&sb, "alice", &codes[0]);
    assert!(ok, "a recovery login with the store full: {line}");
    common::assert_reason(&line, "recovery_code");
    assert!(
        line.contains("recorded in the login state only") && line.contains("No space left"),
        "the audit line names the record write that failed: {line}"
    );
    // Used once: refused the second time, still with the store full.
    let (ok, line) = login(&sb, "alice", &codes[0]);
    common::assert_denied(ok, &line, "bad_code");
    // One unused code, many logins at once on the full store: exactly one success.
    let runs: Vec<_> = (0..6)
        .map(|_| sb.auth_spawn("alice", format!("{}\n", codes[1]).as_bytes(), &[]))
        .collect();
    let results: Vec<_> = runs.into_iter().map(|r| r.finish()).collect();
    let wins = results.iter().filter(|r| r.success).count();
    assert_eq!(
        wins,
        1,
        "{:?}",
        results.iter().map(|r| r.audit()).collect::<Vec<_>>()
    );
    // HOTP: the counter moves in the state.
    let (ok, line) = login(&sb, "bob", &hotp(0));
    assert!(ok, "an HOTP login with the store full: {line}");
    let (ok, line) = login(&sb, "bob", &hotp(0));
    common::assert_denied(ok, &line, "replay");
    let (ok, line) = login(&sb, "bob", &hotp(3));
    assert!(ok && line.contains("skew=2"), "{line}");
    let (ok, line) = login(&sb, "bob", &hotp(2));
    assert!(
        !ok && reason(&line) == "replay",
        "skipped codes are dead: {line}"
    );
    assert_eq!(
        sb.store_snapshot(),
        before,
        "the host's store was never written"
    );

    // The disk has room again: the used codes stay used (the state), and the next recovery
    // or HOTP login folds everything into the record.
    sb.set_ns_setup("");
    for code in &codes[..2] {
        let (ok, line) = login(&sb, "alice", code);
        common::assert_denied(ok, &line, "bad_code");
    }
    let (ok, line) = login(&sb, "bob", &hotp(3));
    common::assert_denied(ok, &line, "replay");
    let (ok, line) = login(&sb, "alice", &codes[2]);
    assert!(ok && !line.contains("login state only"), "{line}");
    let (ok, line) = login(&sb, "bob", &hotp(4));
    assert!(ok && !line.contains("login state only"), "{line}");
    let status = cli(&sb, &["status", "--user", "bob", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["counter"], 5, "the record's counter was moved: {json}");
    let record = std::fs::read_to_string(sb.store.join("alice.toml")).unwrap();
    assert_eq!(
        record.matches("$argon2id$").count(),
        codes.len() - 1,
        "only the last code used could be removed from the record by its login"
    );
    // An administrator's write folds the rest: mfa-enroll unlock (any command that writes).
    let out = cli(&sb, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let record = std::fs::read_to_string(sb.store.join("alice.toml")).unwrap();
    assert_eq!(record.matches("$argon2id$").count(), codes.len() - 3);
    assert!(record.contains("generation = "), "an admin write: {record}");
    let status = cli(&sb, &["status", "--user", "alice", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["recovery_codes_left"], codes.len() - 3, "{json}");
    for code in &codes[..3] {
        let (ok, line) = login(&sb, "alice", code);
        common::assert_denied(ok, &line, "bad_code");
    }
}

#[test]
fn unlock_after_a_code_from_a_phone_ahead_keeps_that_code_used() {
    let sb = Sandbox::new("unlock-ahead");
    let secret = sb.enroll("alice", &[]);
    wait_for_fresh_step(20);
    // The phone is one step ahead: its code is for the next step (inside window = 1).
    let ahead = format!("@{}", common::container::now() + 30);
    let code = oathtool_code(&secret, &["-N", &ahead]);
    let (ok, line) = login(&sb, "alice", &code);
    assert!(ok && line.contains("skew=1"), "{line}");
    let out = cli(&sb, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let (ok, line) = login(&sb, "alice", &code);
    assert!(
        !ok && reason(&line) == "replay",
        "unlock must not make the code just used valid again: {line}"
    );
}

#[test]
fn an_older_record_written_back_after_a_reset_is_refused_until_an_admin_writes_it() {
    let sb = Sandbox::new("rollback");
    let old_secret = sb.enroll("alice", &[]);
    let path = sb.store.join("alice.toml");
    let backup = std::fs::read(&path).unwrap();
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("generation = 1\n"), "{first}");
    // reset: a new secret, generation 2; the state remembers it at once.
    let out = sb.enroll_cmd("alice", &["--force"]);
    common::assert_ok(&out, "mfa-enroll enroll");
    let new_secret: String =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();
    // The backup comes back (same owner and mode: a restore).
    std::fs::write(&path, &backup).unwrap();
    wait_for_fresh_step(8);
    let (ok, line) = login(&sb, "alice", &oathtool_code(&old_secret, &[]));
    common::assert_denied(ok, &line, "bad_file");
    assert!(
        line.contains("record generation 1 is older than 2 seen before: rolled back?"),
        "{line}"
    );
    // Records without a generation (written before it existed) count as 0: refused too.
    let legacy: String = first
        .lines()
        .filter(|l| !l.starts_with("generation"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, legacy).unwrap();
    let (ok, line) = login(&sb, "alice", &oathtool_code(&old_secret, &[]));
    assert!(
        !ok && line.contains("record generation 0 is older than 2"),
        "{line}"
    );
    // An administrator's write moves it forward (here a reset to a fresh secret).
    let out = sb.enroll_cmd("alice", &["--force"]);
    common::assert_ok(&out, "mfa-enroll enroll");
    let latest: String =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["secret"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("generation = 3\n")
    );
    wait_for_fresh_step(8);
    let (ok, line) = login(&sb, "alice", &oathtool_code(&latest, &[]));
    assert!(ok, "{line}");
    drop(new_secret);
}

#[test]
fn a_grace_mark_beyond_grace_seconds_and_one_from_before_an_import_spare_nobody_the_code() {
    let sb = Sandbox::new("grace-trust");
    sb.set_config("grace_seconds = 300\n");
    let secret = sb.enroll("alice", &[]);
    wait_for_fresh_step(10);
    let (ok, line) = login(&sb, "alice", &oathtool_code(&secret, &[]));
    assert!(ok, "{line}");
    let r = sb.auth("alice", b"");
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");

    // The mark rewritten to end in 2100: covers nothing.
    let state = sb.state.join("alice.state");
    let text_before = std::fs::read_to_string(&state).unwrap();
    let forged: String = text_before
        .lines()
        .map(|l| match l.strip_prefix("grace = [\"") {
            Some(rest) => format!("grace = [\"{}:4102444800\"]\n", &rest[..16]),
            None => format!("{l}\n"),
        })
        .collect();
    assert_ne!(forged, text_before);
    std::fs::write(&state, &forged).unwrap();
    let r = sb.auth("alice", b"");
    assert!(!r.success && r.prompts() == 1, "{}", r.audit());

    // A fresh grace period, then an import that replaces the secret: the grace ends.
    std::fs::write(&state, &text_before).unwrap();
    let r = sb.auth("alice", b"");
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
    sb.import_oath_with("alice", &secret, &["--force"]);
    let r = sb.auth("alice", b"");
    assert!(
        !r.success && r.prompts() == 1,
        "the import ended the grace period: {}",
        r.audit()
    );
    // The same secret imported again: the code used before stays used (replay mark kept).
    let (ok, line) = login(&sb, "alice", &oathtool_code(&secret, &[]));
    common::assert_denied(ok, &line, "replay");
}
