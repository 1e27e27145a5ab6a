//! What fleet hosts and etcd administrators can do to a user's state and record (issues
//! 23.5-23.7), against a real 3-node etcd cluster with mutual TLS on loopback, with hosts
//! running the real `.so` under real Linux-PAM (pamtester) and the real `mfa-enroll`:
//! - an old sealed record value written back after a reset is refused (rollback);
//! - `unlock` never makes a code used from a phone a step ahead valid again;
//! - a host that erases `used_recovery` revives only codes used since the last fold
//!   (`mfa-enroll fleet fold`, or any command that writes the record);
//! - a grace mark rewritten by a host to end far in the future spares nobody the code.

mod common;

use common::etcd::Cluster;
use common::fleet::{get, put};
use common::{Sandbox, cli, oathtool_code, wait_for_fresh_step};
use common::{enroll_json, login, reason};

/// Rewrites `field` in `user`'s state value as a compromised host can.
fn edit_state(sb: &Sandbox, user: &str, field: &str, edit: impl Fn(&str) -> String) {
    common::fleet::edit_state(sb, &format!("state/{user}"), field, edit);
}

#[test]
fn fleet_state_a_host_or_an_etcd_administrator_can_write_does_not_revive_codes_or_secrets() {
    let cluster = Cluster::start("trust");
    let a = host(&cluster, "trust-a", "");
    let b = host(&cluster, "trust-b", "");

    // 23.6: rollback. alice is enrolled (generation 1), reset (2); the old sealed value is put
    // back: her old secret's codes are refused with the reason, on every host.
    let first = enroll_json(&a, "alice", &[]);
    let old_secret = first["secret"].as_str().unwrap().to_string();
    let sealed_v1 = get(&a, "records/alice");
    let reset = cli(
        &b,
        &["reset", "--user", "alice", "--no-confirm", "--json"],
        b"",
    );
    common::assert_ok(&reset, "mfa-enroll reset");
    let reset: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    let new_secret = reset["secret"].as_str().unwrap().to_string();
    put(&a, "records/alice", sealed_v1);
    wait_for_fresh_step(10);
    for sb in [&a, &b] {
        let (ok, line) = login(sb, "alice", &oathtool_code(&old_secret, &[]));
        common::assert_denied(ok, &line, "bad_file");
        assert!(
            line.contains("record generation 1 is older than 2 seen before: rolled back?"),
            "{line}"
        );
    }
    // An administrator's write moves it forward (a reset again).
    let reset = cli(
        &a,
        &["reset", "--user", "alice", "--no-confirm", "--json"],
        b"",
    );
    common::assert_ok(&reset, "mfa-enroll reset");
    let reset: serde_json::Value = serde_json::from_slice(&reset.stdout).unwrap();
    let alice_secret = reset["secret"].as_str().unwrap().to_string();
    assert_ne!(alice_secret, new_secret);
    let (ok, line) = login(&b, "alice", &oathtool_code(&alice_secret, &[]));
    assert!(ok, "{line}");

    // 23.7: a phone one step ahead; unlock (on the other host) keeps that code used.
    let ahead = format!("@{}", common::container::now() + 30);
    let code = oathtool_code(&alice_secret, &["-N", &ahead]);
    let (ok, line) = login(&a, "alice", &code);
    assert!(ok && line.contains("skew=1"), "{line}");
    let out = cli(&b, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    for sb in [&a, &b] {
        let (ok, line) = login(sb, "alice", &code);
        common::assert_denied(ok, &line, "replay");
    }
    let out = cli(&b, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");

    // 23.5 (c): recovery codes. Used on A; a host empties used_recovery: the code comes back
    // until a fold, never after one.
    let bob = enroll_json(&a, "bob", &[]);
    let codes: Vec<String> = bob["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let (ok, line) = login(&a, "bob", &codes[0]);
    assert!(ok, "{line}");
    let out = cli(&b, &["fleet", "fold", "--json"], b"");
    common::assert_ok(&out, "mfa-enroll fleet fold");
    let folded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        folded["folded"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("bob")),
        "{folded}"
    );
    let (ok, line) = login(&a, "bob", &codes[1]);
    assert!(ok, "{line}");
    edit_state(&a, "bob", "used_recovery", |_| "[]".into());
    let (ok, line) = login(&b, "bob", &codes[0]);
    assert!(
        !ok && reason(&line) == "bad_code",
        "a folded code stays used whatever a host writes: {line}"
    );
    // The documented window: a code used since the last fold comes back when a host erases
    // the state, until the next fold.
    let (ok, line) = login(&b, "bob", &codes[1]);
    assert!(
        ok,
        "used since the last fold, then erased by a host: {line}"
    );
    let out = cli(&a, &["fleet", "fold"], b"");
    common::assert_ok(&out, "mfa-enroll fleet fold");
    // Folded: the state no longer needs to name it (the fold's write pruned the list).
    let state = String::from_utf8(get(&a, "state/bob")).unwrap();
    assert!(state.contains("used_recovery = []\n"), "{state}");
    let (ok, line) = login(&b, "bob", &codes[1]);
    common::assert_denied(ok, &line, "bad_code");
    let status = cli(&a, &["status", "--user", "bob", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["recovery_codes_left"], codes.len() - 2, "{json}");

    // 23.5 (a): a grace mark a host rewrote to end in 2100 spares nobody the code.
    let g = host(&cluster, "trust-g", "grace_seconds = 300");
    let carol = enroll_json(&a, "carol", &[]);
    let carol_secret = carol["secret"].as_str().unwrap().to_string();
    wait_for_fresh_step(10);
    let (ok, line) = login(&g, "carol", &oathtool_code(&carol_secret, &[]));
    assert!(ok, "{line}");
    let r = g.auth("carol", b"");
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
    edit_state(&a, "carol", "grace", |v| {
        let id = &v[2..18];
        format!("[\"{id}:4102444800\"]")
    });
    let r = g.auth("carol", b"");
    assert!(!r.success && r.prompts() == 1, "{}", r.audit());

    // 23.5 (b): a grace mark from before an import of the user ends with it.
    edit_state(&a, "carol", "grace", |v| {
        let id = &v[2..18];
        format!("[\"{id}:{}\"]", common::container::now() + 200)
    });
    let r = g.auth("carol", b"");
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
    b.import_oath_with("carol", &carol_secret, &["--force"]);
    let r = g.auth("carol", b"");
    assert!(
        !r.success && r.prompts() == 1,
        "the import ended the grace period: {}",
        r.audit()
    );
}

/// A host of the cluster with extra top-level config keys.
fn host(cluster: &Cluster, tag: &str, top: &str) -> Sandbox {
    common::fleet::host(cluster, tag, top, "")
}
