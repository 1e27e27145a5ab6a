//! Every `mfa-enroll` administration subcommand end to end against a private store, checked
//! through the real module where it matters.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, cli, decode_png_qr, decode_terminal_qr, oathtool_code, text, wrong_code};

fn json(out: &std::process::Output) -> serde_json::Value {
    common::assert_ok(out, "mfa-enroll --json");
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn every_qr_rendering_decodes_to_the_json_uri() {
    let sb = Sandbox::new("qr");
    let png = sb.root.join("alice.png");
    let enrolled = json(&cli(
        &sb,
        &[
            "enroll",
            "--user",
            "alice",
            "--no-confirm",
            "--json",
            "--qr-png",
            png.to_str().unwrap(),
        ],
        b"",
    ));
    let uri = enrolled["otpauth_uri"].as_str().unwrap().to_string();
    assert_eq!(decode_png_qr(&png), uri);
    for (style, ansi) in [("utf8", false), ("ansi", true)] {
        let out = cli(&sb, &["show", "--user", "alice", "--qr", style], b"");
        common::assert_ok(&out, "mfa-enroll show");
        assert_eq!(decode_terminal_qr(&text(&out.stdout), ansi), uri, "{style}");
        // show changes nothing, and does not say it is enrolling.
        assert!(
            text(&out.stdout).starts_with("Enrollment of alice for "),
            "{}",
            text(&out.stdout)
        );
        assert!(!text(&out.stdout).contains("Enrolling"));
    }
    let shown = json(&cli(&sb, &["show", "--user", "alice", "--json"], b""));
    assert_eq!(shown["otpauth_uri"], enrolled["otpauth_uri"]);
    assert_eq!(shown["secret"], enrolled["secret"]);
}

#[test]
fn status_reports_enrollment_recovery_codes_and_lockout() {
    let sb = Sandbox::new("status");
    let secret = sb.enroll("alice", &[]);
    let s = json(&cli(&sb, &["status", "--user", "alice", "--json"], b""));
    assert_eq!(s["enrolled"], true);
    assert_eq!(
        (
            s["algorithm"].as_str(),
            s["digits"].as_u64(),
            s["period"].as_u64()
        ),
        (Some("SHA1"), Some(6), Some(30))
    );
    assert_eq!(s["recovery_codes_left"], 10);
    assert_eq!(s["locked"], false);
    assert!(s["created"].as_str().unwrap().starts_with("20"));
    for _ in 0..5 {
        sb.auth(
            "alice",
            format!("{}\n", wrong_code(&oathtool_code(&secret, &[]))).as_bytes(),
        );
    }
    let s = json(&cli(&sb, &["status", "--user", "alice", "--json"], b""));
    assert_eq!(
        (s["locked"].as_bool(), s["failures"].as_u64()),
        (Some(true), Some(5))
    );
    let human = cli(&sb, &["status", "--user", "alice"], b"");
    assert!(
        text(&human.stdout).contains("LOCKED"),
        "{}",
        text(&human.stdout)
    );

    let out = cli(&sb, &["status", "--user", "bob"], b"");
    common::assert_exit(&out, 5, "mfa-enroll status");
    assert!(text(&out.stdout).contains("bob: NOT ENROLLED"));
    // A record that exists but is malformed is a store problem (6), not "not enrolled" (5).
    let broken = sb.store.join("carol.toml");
    std::fs::write(&broken, "version = 1\nsecret = \"not base32!\"\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = cli(&sb, &["status", "--user", "carol"], b"");
    common::assert_exit(&out, 6, "mfa-enroll status");
    std::fs::remove_file(&broken).unwrap();
    // --all lists local accounts with a login shell (root has one) and orphan records.
    sb.enroll("ghost-user", &[]);
    let all = json(&cli(&sb, &["status", "--all", "--json"], b""));
    let users = all["users"].as_array().unwrap();
    let root = users
        .iter()
        .find(|u| u["user"] == "root")
        .expect("root listed");
    assert_eq!(root["enrolled"], false);
    let ghost = users
        .iter()
        .find(|u| u["user"] == "ghost-user")
        .expect("orphan listed");
    assert_eq!(ghost["local_account"], false);
    assert!(
        !users.iter().any(|u| u["user"] == "daemon"),
        "no nologin accounts"
    );
}

#[test]
fn unlock_clears_the_lockout_but_not_the_replay_mark() {
    let sb = Sandbox::new("unlock");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    assert!(sb.auth("alice", format!("{code}\n").as_bytes()).success);
    for _ in 0..5 {
        sb.auth("alice", format!("{}\n", wrong_code(&code)).as_bytes());
    }
    assert!(
        sb.auth("alice", format!("{code}\n").as_bytes())
            .audit()
            .contains("reason=throttled")
    );
    let out = json(&cli(&sb, &["unlock", "--user", "alice", "--json"], b""));
    assert_eq!(out["failures_before"], 5);
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(
        r.audit().contains("reason=replay"),
        "the used code stays used: {}",
        r.audit()
    );
    common::assert_exit(
        &cli(&sb, &["unlock", "--user", "nobody"], b""),
        5,
        "mfa-enroll unlock --user nobody",
    );
}

/// State left by a server clock that was a day ahead (bad RTC, VM restore).
fn write_state(sb: &Sandbox, user: &str, last_accepted: u64, failures: u32, locked_until: u64) {
    std::fs::create_dir_all(&sb.state).unwrap();
    std::fs::set_permissions(&sb.state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = sb.state.join(format!("{user}.state"));
    std::fs::write(
        &path,
        format!(
            "version = 1\nlast_accepted = {last_accepted}\nfailures = {failures}\nlocked_until = {locked_until}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn a_clock_that_was_ahead_is_shown_bounded_and_cleared_by_unlock() {
    let sb = Sandbox::new("clock");
    let secret = sb.enroll("alice", &[]);
    let now = pam_ecs_mfa::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = now + 86_400;
    // A lockout started a day ahead is shown (and enforced) as at most lockout_max_seconds.
    write_state(&sb, "alice", 0, 12, day);
    let s = json(&cli(&sb, &["status", "--user", "alice", "--json"], b""));
    assert!(s["locked_for_seconds"].as_u64().unwrap() <= 900, "{s}");
    // A replay mark a day ahead: a clock problem, shown by status, refused with its own reason
    // and not counted, cleared by unlock.
    write_state(&sb, "alice", day - day % 30, 0, 0);
    let s = json(&cli(&sb, &["status", "--user", "alice", "--json"], b""));
    assert!(
        s["replay_mark_ahead_seconds"].as_u64().unwrap() > 86_000,
        "{s}"
    );
    let human = text(&cli(&sb, &["status", "--user", "alice"], b"").stdout);
    assert!(human.contains("CLOCK PROBLEM"), "{human}");
    let code = oathtool_code(&secret, &[]);
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(!r.success);
    assert!(
        r.audit().contains("reason=state_in_future"),
        "{}",
        r.audit()
    );
    let out = cli(&sb, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let s = json(&cli(&sb, &["status", "--user", "alice", "--json"], b""));
    assert!(s.get("replay_mark_ahead_seconds").is_none(), "{s}");
    assert_eq!(s["failures"], 0, "the refusal was not counted");
}

#[test]
fn verify_checks_a_code_like_a_login() {
    let sb = Sandbox::new("verify");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let ok = cli(
        &sb,
        &["verify", "--user", "alice", "--json"],
        format!("{code}\n").as_bytes(),
    );
    assert_eq!(json(&ok)["valid"], true);
    let again = cli(
        &sb,
        &["verify", "--user", "alice"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_exit(&again, 8, "mfa-enroll verify");
    assert!(text(&again.stdout).contains("NOT valid for alice: replay"));
    // It says why, and what to do (right after an enrollment the confirmation used the code).
    assert!(
        text(&again.stdout).contains("Wait for the next code"),
        "{}",
        text(&again.stdout)
    );
    // It was counted like a login: the module refuses the code now.
    assert!(!sb.auth("alice", format!("{code}\n").as_bytes()).success);
    // first_factor=publickey in the config is about SSH connections; verify has none and still
    // checks the code.
    sb.set_config("first_factor = \"publickey\"\n");
    // (Forget the replay mark, so the same code can be checked again.)
    std::fs::remove_file(sb.state.join("alice.state")).unwrap();
    let ok = cli(
        &sb,
        &["verify", "--user", "alice", "--json"],
        format!("{code}\n").as_bytes(),
    );
    assert_eq!(json(&ok)["valid"], true, "{}", text(&ok.stdout));
}

#[test]
fn reset_replaces_the_secret_and_remove_deletes_the_enrollment() {
    let sb = Sandbox::new("reset");
    assert_eq!(
        cli(&sb, &["reset", "--user", "alice", "--no-confirm"], b"")
            .status
            .code(),
        Some(5)
    );
    let old = sb.enroll("alice", &[]);
    let new = json(&cli(
        &sb,
        &["reset", "--user", "alice", "--no-confirm", "--json"],
        b"",
    ));
    let new = new["secret"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(
        !sb.auth(
            "alice",
            format!("{}\n", oathtool_code(&old, &[])).as_bytes()
        )
        .success
    );
    assert!(
        sb.auth("alice", format!("{}\n", oathtool_code(new, &[])).as_bytes())
            .success
    );

    let refused = cli(&sb, &["remove", "--user", "alice"], b"y\n");
    common::assert_exit(&refused, 2, "no terminal, no --yes: refuse");
    assert!(sb.store.join("alice.toml").exists());
    let removed = json(&cli(
        &sb,
        &["remove", "--user", "alice", "--yes", "--json"],
        b"",
    ));
    assert_eq!(removed["removed"], true);
    assert!(!sb.store.join("alice.toml").exists());
    // Failures are forgotten, the replay mark is kept (a used code never works again).
    let st = std::fs::read_to_string(sb.state.join("alice.state")).unwrap_or_default();
    assert!(st.is_empty() || st.contains("failures = 0\n"), "{st}");
    let r = sb.auth("alice", format!("{}\n", oathtool_code(new, &[])).as_bytes());
    assert!(r.audit().contains("reason=not_enrolled"));
    assert_eq!(
        cli(&sb, &["remove", "--user", "alice", "--yes"], b"")
            .status
            .code(),
        Some(5)
    );
}

#[test]
fn google_authenticator_files_import_with_scratch_codes() {
    let sb = Sandbox::new("import-ga");
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let file = sb.root.join("ga");
    std::fs::write(&file, format!("{secret}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n11223344\n55667788\n")).unwrap();
    let path = file.to_str().unwrap();
    let dry = json(&cli(
        &sb,
        &[
            "import",
            "google-authenticator",
            "--user",
            "alice",
            "--file",
            path,
            "--dry-run",
            "--json",
        ],
        b"",
    ));
    assert_eq!(dry["imported"][0]["user"], "alice");
    assert!(
        !sb.store.join("alice.toml").exists(),
        "dry run writes nothing"
    );
    let out = json(&cli(
        &sb,
        &[
            "import",
            "google-authenticator",
            "--user",
            "alice",
            "--file",
            path,
            "--json",
        ],
        b"",
    ));
    assert!(out["skipped"].as_array().unwrap().is_empty());
    // The original secret works (code from oathtool), and so does a scratch code, once.
    assert!(
        sb.auth(
            "alice",
            format!("{}\n", oathtool_code(secret, &[])).as_bytes()
        )
        .success
    );
    let r = sb.auth("alice", b"5566 7788\n");
    assert!(
        r.audit().contains("reason=recovery_code remaining=1"),
        "{}",
        r.audit()
    );
    assert!(!sb.auth("alice", b"55667788\n").success);
    // An HOTP file is imported as a counter-based token starting at its counter; a file that
    // cannot be read right is reported, not imported (exit status 10).
    std::fs::write(&file, format!("{secret}\n\" HOTP_COUNTER 1\n")).unwrap();
    let out = cli(
        &sb,
        &[
            "import",
            "google-authenticator",
            "--user",
            "bob",
            "--file",
            path,
        ],
        b"",
    );
    common::assert_exit(&out, 0, "mfa-enroll import google-authenticator");
    let hotp = oathtool_code(secret, &["--hotp", "-c", "1"]);
    assert!(sb.auth("bob", format!("{hotp}\n").as_bytes()).success);
    std::fs::write(&file, format!("{secret}\n\" HOTP_COUNTER one\n")).unwrap();
    let out = cli(
        &sb,
        &[
            "import",
            "google-authenticator",
            "--user",
            "carol",
            "--file",
            path,
        ],
        b"",
    );
    common::assert_exit(&out, 10, "mfa-enroll import google-authenticator");
    assert!(text(&out.stdout).contains("carol: NOT imported: HOTP_COUNTER"));
}

#[test]
fn oath_usersfiles_import_totp_lines() {
    let sb = Sandbox::new("import-oath");
    let hex = "3132333435363738393031323334353637383930";
    let file = sb.root.join("users.oath");
    std::fs::write(
        &file,
        format!("HOTP/T30/6 alice - {hex}\nHOTP/T60/8 bob - {hex}\nHOTP carol - {hex}\n"),
    )
    .unwrap();
    let out = cli(
        &sb,
        &["import", "oath", "--file", file.to_str().unwrap(), "--json"],
        b"",
    );
    common::assert_exit(&out, 0, "carol's HOTP line is imported too");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imported"].as_array().unwrap().len(), 3);
    let carol = oathtool_code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", &["--hotp", "-c", "0"]);
    assert!(sb.auth("carol", format!("{carol}\n").as_bytes()).success);
    let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert!(
        sb.auth("alice", format!("{}\n", oathtool_code(b32, &[])).as_bytes())
            .success
    );
    let bob = oathtool_code(b32, &["--totp", "--digits=8", "--time-step-size=60s"]);
    assert!(sb.auth("bob", format!("{bob}\n").as_bytes()).success);
    // Existing enrollments are kept without --force.
    let again = cli(
        &sb,
        &["import", "oath", "--file", file.to_str().unwrap()],
        b"",
    );
    assert!(text(&again.stdout).contains("alice: NOT imported: already enrolled"));
}

/// A pam_oath users file holds every user of a server: one of 4 MiB is read whole (it was cut
/// at 1 MiB, the users after the cut silently missing), and one over the 64 MiB limit is
/// refused before anything is imported. (Comment lines make up the size: importing tens of
/// thousands of users takes minutes in a debug build.)
#[test]
fn a_large_oath_usersfile_is_imported_whole_and_a_huge_one_is_refused_whole() {
    let sb = Sandbox::new("import-oath-large");
    let hex = "3132333435363738393031323334353637383930";
    let file = sb.root.join("users.oath");
    let mut lines = format!("HOTP/T30/6 bob - {hex}\n");
    while lines.len() < 4 << 20 {
        lines.push_str("# a site's comment line, as long as a user's line is (60 bytes)\n");
    }
    // alice comes after the first 4 MiB.
    lines.push_str(&format!("HOTP/T30/6 alice - {hex}\n"));
    std::fs::write(&file, &lines).unwrap();
    let out = cli(
        &sb,
        &["import", "oath", "--file", file.to_str().unwrap()],
        b"",
    );
    common::assert_ok(&out, "a 4 MiB users file");
    assert!(
        text(&out.stdout).contains("2 imported, 0 not imported"),
        "{}",
        text(&out.stdout)
    );
    let code = oathtool_code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", &[]);
    assert!(sb.auth("alice", format!("{code}\n").as_bytes()).success);
    // Over the limit: refused whole, nothing written.
    let huge = sb.root.join("huge.oath");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len((64 << 20) + 1).unwrap();
    let other = Sandbox::new("import-oath-huge");
    let out = cli(
        &other,
        &["import", "oath", "--file", huge.to_str().unwrap()],
        b"",
    );
    assert!(!out.status.success(), "{}", common::describe(&out));
    assert!(
        text(&out.stderr).contains("larger than 64 MiB: refused, nothing imported"),
        "{}",
        common::describe(&out)
    );
    assert_eq!(std::fs::read_dir(&other.store).map_or(0, |d| d.count()), 0);
}

#[test]
fn completions_and_man_pages_are_generated() {
    let sb = Sandbox::new("docs");
    let out = cli(&sb, &["completions", "bash"], b"");
    common::assert_ok(&out, "mfa-enroll completions bash");
    assert!(text(&out.stdout).contains("mfa-enroll") && text(&out.stdout).contains("unlock"));
    let dir = sb.root.join("man");
    let out = cli(&sb, &["man", "--out", dir.to_str().unwrap()], b"");
    common::assert_ok(&out, "mfa-enroll man");
    let page = std::fs::read_to_string(dir.join("man1/mfa-enroll.1")).unwrap();
    for needle in [
        "EXIT STATUS",
        "MFA-ENROLL IMPORT",
        "--qr-png",
        "not root",
        "SUBCOMMANDS",
    ] {
        assert!(page.contains(needle), "mfa-enroll.1 lacks {needle}");
    }
    // Every page it refers to exists: no mfa-enroll-SUBCOMMAND(1) pages are cited.
    assert!(
        !page.contains("mfa-enroll-"),
        "cites pages that do not exist"
    );
    assert!(!dir.join("man1/pam_ecs_mfa.8").exists() && !dir.join("pam_ecs_mfa.8").exists());
    let module = std::fs::read_to_string(dir.join("man8/pam_ecs_mfa.8")).unwrap();
    for needle in [
        "nullok",
        "store=DIR",
        "lockout_max_seconds",
        "PAM_IGNORE",
        "first_factor=publickey",
        "no_first_factor",
    ] {
        assert!(module.contains(needle), "pam_ecs_mfa.8 lacks {needle}");
    }
}
