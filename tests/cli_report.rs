//! `mfa-enroll report` on a log produced by a scripted day of real logins (the real `.so`
//! through pamtester, codes from oathtool): the numbers it gives are the ones the test made
//! happen (successes, failures by reason, a lockout that is still on, a replay, a recovery
//! code, an exempt login, a phone that drifts, an enrollment never used, the addresses with
//! most failures), in JSON and on the terminal.

mod common;

use common::{cli, oathtool_code};

fn code_at(secret: &str, offset: i64) -> String {
    let at = common::container::now() as i64 + offset;
    oathtool_code(secret, &["-N", &format!("@{at}")])
}

#[test]
fn a_scripted_day_of_logins_gives_the_numbers_that_happened() {
    let sb = common::sandbox_with_rhost("report");
    sb.set_config(
        "window = 3\nmax_failures = 4\nlockout_seconds = 600\nexempt_networks = [\"198.51.100.0/24\"]\n",
    );
    let alice = common::enroll_json(&sb, "alice", &[]);
    let alice_secret = alice["secret"].as_str().unwrap().to_string();
    let bob = sb.enroll("bob", &[]);
    let eve = sb.enroll("eve", &[]);
    sb.enroll("carol", &[]);
    common::wait_for_fresh_step(20);

    let mut log = String::from("Dec  5 04:00:00 web-01 sshd[1]: Accepted publickey for alice\n");
    let mut add = |line: String| {
        log.push_str(&line);
        log.push('\n');
    };
    // alice: a success, two wrong codes, a replay of her code, a recovery code, an exempt login.
    let code = code_at(&alice_secret, 0);
    add(common::login_from(&sb, "alice", "192.0.2.30", &code));
    add(common::login_from(&sb, "alice", "192.0.2.10", "000000"));
    add(common::login_from(&sb, "alice", "192.0.2.10", "111111"));
    add(common::login_from(&sb, "alice", "192.0.2.11", &code));
    let recovery = alice["recovery_codes"][0].as_str().unwrap();
    add(common::login_from(&sb, "alice", "192.0.2.30", recovery));
    add(common::login_from(&sb, "alice", "198.51.100.7", "whatever"));
    // bob: four wrong codes lock him out; the next attempt is throttled.
    for _ in 0..4 {
        add(common::login_from(&sb, "bob", "192.0.2.10", "000000"));
    }
    add(common::login_from(
        &sb,
        "bob",
        "192.0.2.10",
        &code_at(&bob, 0),
    ));
    // eve's phone is behind: three accepted codes, each a step or more late.
    for offset in [-90, -60, -30] {
        add(common::login_from(
            &sb,
            "eve",
            "192.0.2.40",
            &code_at(&eve, offset),
        ));
    }
    // Someone who is not an account.
    add(common::login_from(
        &sb,
        "nosuchuser",
        "203.0.113.5",
        "000000",
    ));
    let file = sb.root.join("auth.log");
    std::fs::write(&file, &log).unwrap();

    let out = cli(
        &sb,
        &["report", "--log", file.to_str().unwrap(), "--json"],
        b"",
    );
    common::assert_ok(&out, "report --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |user: &str| {
        v["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user)
            .unwrap_or_else(|| panic!("{user} in {v}"))
            .clone()
    };
    assert_eq!(v["decisions"], 15, "{v}");
    let a = row("alice");
    assert_eq!(
        (a["successes"].clone(), a["failures"]["bad_code"].clone()),
        (2.into(), 2.into()),
        "{a}"
    );
    assert_eq!(
        (a["replays"].clone(), a["recovery_codes_used"].clone()),
        (1.into(), 1.into()),
        "{a}"
    );
    assert_eq!(
        (a["exempt_logins"].clone(), a["recovery_codes_left"].clone()),
        (1.into(), 9.into()),
        "{a}"
    );
    let b = row("bob");
    assert_eq!(b["failures"]["bad_code"], 4, "{b}");
    assert_eq!(b["failures"]["throttled"], 1, "{b}");
    assert_eq!(
        (b["lockouts"].clone(), b["locked_now"].clone()),
        (1.into(), true.into()),
        "{b}"
    );
    assert_eq!(row("eve")["successes"], 3);
    assert_eq!(v["skew"]["drifting"], serde_json::json!(["eve"]), "{v}");
    assert_eq!(v["skew"]["histogram"]["-1"], 1, "{v}");
    assert_eq!(v["never_used"], serde_json::json!(["bob", "carol"]), "{v}");
    assert_eq!(
        v["top_sources"][0],
        serde_json::json!({"address": "192.0.2.10", "failures": 7}),
        "{v}"
    );
    let hours: u64 = v["failures_per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["failures"].as_u64().unwrap())
        .sum();
    assert_eq!(hours, 9, "every failure in the chart: {v}");

    // The terminal report says the same, with the chart.
    let out = cli(&sb, &["report", "--log", file.to_str().unwrap()], b"");
    common::assert_ok(&out, "report");
    let text = common::text(&out.stdout);
    for part in [
        "15 decisions",
        "LOCKED",
        "9 recovery codes left",
        "phones whose clock drifts",
        "eve",
        "never logged in with a code: bob, carol",
        "192.0.2.10",
        "Failures per hour",
        "#",
    ] {
        assert!(text.contains(part), "{part:?} missing:\n{text}");
    }
    // No secret, code or recovery code in either output.
    for secret in [&alice_secret, &bob, &eve] {
        assert!(!text.contains(&secret[..8]));
    }
    assert!(!text.contains(recovery) && !common::text(&out.stderr).contains(recovery));
}
