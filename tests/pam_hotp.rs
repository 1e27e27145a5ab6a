//! Counter-based (HOTP, RFC 4226) tokens through real Linux-PAM (pamtester, the real `.so`)
//! and the real `mfa-enroll`, with codes from oathtool (`--hotp -c N`), an independent
//! implementation: enrollment, look-ahead, single use under concurrency, wrong codes that never
//! move the counter, resynchronisation, and migration of google-authenticator and pam_oath
//! HOTP entries.

mod common;

use common::{Sandbox, cli};

fn hotp(secret: &str, counter: u64) -> String {
    common::oathtool_code(secret, &["--hotp", "-c", &counter.to_string()])
}

fn login(sb: &Sandbox, user: &str, code: &str) -> (bool, String) {
    let r = sb.auth(user, format!("{code}\n").as_bytes());
    let audit = r.audit();
    (r.success, audit)
}

fn counter(sb: &Sandbox, user: &str) -> u64 {
    let out = cli(sb, &["status", "--user", user, "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["type"], "hotp", "{json}");
    json["counter"].as_u64().unwrap()
}

#[test]
fn an_enrolled_hotp_token_works_once_per_code_and_only_moves_forward() {
    let sb = Sandbox::new("hotp");
    let out = sb.enroll_cmd("alice", &["--hotp"]);
    common::assert_ok(&out, "mfa-enroll enroll");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = json["secret"].as_str().unwrap().to_string();
    assert_eq!(
        (json["type"].as_str(), json["counter"].as_u64()),
        (Some("hotp"), Some(0))
    );
    let uri = json["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://hotp/") && uri.contains("&counter=0"),
        "{uri}"
    );

    let (ok, line) = login(&sb, "alice", &hotp(&secret, 0));
    assert!(ok, "{line}");
    let (ok, line) = login(&sb, "alice", &hotp(&secret, 0));
    assert!(!ok && line.contains("reason=replay"), "{line}");
    // Wrong codes do not move the counter (an attacker cannot desynchronise the token).
    for _ in 0..3 {
        let (ok, _) = login(&sb, "alice", "000000");
        assert!(!ok);
    }
    assert_eq!(counter(&sb, "alice"), 1);
    let unlock = cli(&sb, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&unlock, "mfa-enroll unlock");
    // A few presses ahead (inside hotp_window = 3): accepted, the skipped codes are dead.
    let (ok, line) = login(&sb, "alice", &hotp(&secret, 3));
    assert!(ok && line.contains("skew=2"), "{line}");
    assert_eq!(counter(&sb, "alice"), 4);
    let (ok, _) = login(&sb, "alice", &hotp(&secret, 2));
    assert!(!ok);

    // Far ahead: two consecutive codes resynchronise.
    let (ok, line) = login(&sb, "alice", &hotp(&secret, 300));
    assert!(!ok && line.contains("resynchronises"), "{line}");
    let (ok, line) = login(&sb, "alice", &hotp(&secret, 301));
    assert!(ok && line.contains("resynchronised"), "{line}");
    assert_eq!(counter(&sb, "alice"), 302);

    // One code, many logins at once: exactly one success.
    let code = hotp(&secret, 302);
    let runs: Vec<_> = (0..8)
        .map(|_| sb.auth_spawn("alice", format!("{code}\n").as_bytes(), &[]))
        .collect();
    let wins = runs
        .into_iter()
        .map(|r| r.finish())
        .filter(|r| r.success)
        .count();
    assert_eq!(wins, 1);
    assert_eq!(counter(&sb, "alice"), 303);
}

#[test]
fn hotp_entries_of_google_authenticator_and_pam_oath_are_migrated_with_their_counter() {
    let sb = Sandbox::new("hotp-import");
    // pam_oath: "HOTP user - hexsecret counter": the next code is for that counter.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let hex = "3132333435363738393031323334353637383930";
    let file = sb.root.join("users.oath");
    std::fs::write(
        &file,
        format!("HOTP bob - {hex} 17\nHOTP/8 carol - {hex}\n"),
    )
    .unwrap();
    let out = cli(
        &sb,
        &["import", "oath", "--file", file.to_str().unwrap()],
        b"",
    );
    common::assert_ok(&out, "mfa-enroll import oath");
    let (ok, line) = login(&sb, "bob", &hotp(secret, 16));
    assert!(!ok, "before the imported counter: {line}");
    let (ok, line) = login(&sb, "bob", &hotp(secret, 17));
    assert!(ok, "{line}");
    let carol = common::oathtool_code(secret, &["--hotp", "-c", "0", "-d", "8"]);
    let (ok, line) = login(&sb, "carol", &carol);
    assert!(ok, "8-digit HOTP: {line}");

    // google-authenticator: "\" HOTP_COUNTER n" in ~/.google_authenticator.
    let home = sb.root.join("home-dave");
    std::fs::create_dir_all(&home).unwrap();
    let ga = home.join(".google_authenticator");
    std::fs::write(
        &ga,
        format!("{secret}\n\" HOTP_COUNTER 5\n\" DISALLOW_REUSE\n"),
    )
    .unwrap();
    let uid = 61003; // dave in the test accounts
    std::os::unix::fs::chown(&ga, Some(uid), Some(uid)).unwrap();
    let out = cli(
        &sb,
        &[
            "import",
            "google-authenticator",
            "--user",
            "dave",
            "--file",
            ga.to_str().unwrap(),
        ],
        b"",
    );
    common::assert_ok(&out, "mfa-enroll import google-authenticator");
    let (ok, line) = login(&sb, "dave", &hotp(secret, 5));
    assert!(ok, "{line}");
    assert_eq!(counter(&sb, "dave"), 6);
}
