//! Outside attack on issue 23's fleet changes (deadlines, endpoint hint, forged state), against
//! a real 3-node etcd cluster with mutual TLS on loopback, the real `.so` under Linux-PAM
//! (pamtester) and the real `mfa-enroll`. `finding_*`: an attack that worked (fails until
//! fixed); `held_*`: an attack that did not.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use common::etcd::Cluster;
use common::fleet::{PREFIX, client, host};
use common::{Sandbox, cli, enroll_json, login, oathtool_code, reason, text, wait_for_fresh_step};
use pam_ecs_mfa::fleet::etcd::Op;

fn get(sb: &Sandbox, key: &str) -> Vec<u8> {
    client(sb)
        .get(&format!("{PREFIX}{key}"))
        .unwrap()
        .expect("key exists")
        .value
        .to_vec()
}

fn put(sb: &Sandbox, key: &str, value: Vec<u8>) {
    client(sb)
        .txn(&[], &[Op::Put(format!("{PREFIX}{key}"), value)], &[])
        .unwrap();
}

fn reset(sb: &Sandbox, user: &str) -> String {
    let out = cli(
        sb,
        &["reset", "--user", user, "--no-confirm", "--json"],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["secret"].as_str().unwrap().to_string()
}

/// Sleeps into the next 30-second step (the last accepted step is a replay there).
fn next_step() {
    let secs = common::container::now();
    std::thread::sleep(std::time::Duration::from_millis(
        (30 - secs % 30) * 1000 + 300,
    ));
}

/// A compromised host (host credentials: it may write `state/`) writes `generation =
/// u64::MAX` into a user's state once. The user's logins stop (`bad_file`, "rolled back?"),
/// and the message tells the administrator to reset. Every later record the administrators
/// write then gets generation `u64::MAX` (`saturating_add(1)` on `u64::MAX`), so an older
/// sealed record value written back (a restored backup, an etcd administrator: issue 23.6)
/// is no longer noticed: rollback detection is gone for this user for good, long after the
/// host is cleaned up. (Lowering the generation would only last until the next login.)
#[test]
fn finding_a_forged_generation_of_u64_max_disables_rollback_detection_for_good() {
    let cluster = Cluster::start("a23gen");
    let a = host(&cluster, "a23gen-a", "", "");
    let b = host(&cluster, "a23gen-b", "", "");
    enroll_json(&a, "alice", &[]);

    // The compromised host's one write.
    let state = String::from_utf8(get(&b, "state/alice")).unwrap();
    let mut forged: String = state
        .lines()
        .filter(|l| !l.starts_with("generation = "))
        .map(|l| format!("{l}\n"))
        .collect();
    forged.push_str(&format!("generation = {}\n", u64::MAX));
    put(&b, "state/alice", forged.into_bytes());

    // The administrator follows the advice: reset (twice over time: two new phones).
    let s2 = reset(&a, "alice");
    let sealed_2 = get(&a, "records/alice");
    let s3 = reset(&a, "alice");
    wait_for_fresh_step(10);
    let (ok, line) = login(&a, "alice", &oathtool_code(&s3, &[]));
    assert!(ok, "the current secret works: {line}");

    // Record 2 written back over record 3: its (replaced) secret must be refused.
    put(&a, "records/alice", sealed_2);
    next_step();
    let (ok, line) = login(&b, "alice", &oathtool_code(&s2, &[]));
    println!("rollback after the forged generation: ok={ok} {line}");
    assert!(
        !ok && reason(&line) == "bad_file",
        "a replaced secret works again after a rollback: {line}"
    );
}

/// Plants `etcd-endpoint.hint` naming a hung node in forms the module must ignore (owned by
/// another user, a symlink to a file naming it, group/world-writable): a login must start
/// with the first endpoint (healthy) and not pay the hung node's share. `timeout_ms = 6000`:
/// the share of the first of three is 2000 ms, a healthy login under 200 ms; the bound asserted
/// (1500 ms) is far from both.
#[test]
fn held_a_planted_or_symlinked_endpoint_hint_is_ignored() {
    let cluster = Cluster::start("a23hint");
    let sb = host(&cluster, "a23hint", "", "timeout_ms = 6000");
    let users = ["alice", "bob", "carol", "dave"];
    let secrets: Vec<String> = users
        .iter()
        .map(|u| {
            enroll_json(&sb, u, &[])["secret"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let hung = cluster.endpoints()[2].clone();
    cluster.pause(2);
    let hint = sb.state.join("etcd-endpoint.hint");
    let elsewhere = sb.root.join("hint-target");
    let mut figures = Vec::new();
    for (case, plant) in [
        ("owned by uid 65534", 0usize),
        ("mode 0666", 1),
        ("symlink to a root file", 2),
    ] {
        std::fs::create_dir_all(&sb.state).unwrap();
        let _ = std::fs::remove_file(&hint);
        match plant {
            0 => {
                std::fs::write(&hint, format!("{hung}\n")).unwrap();
                std::fs::set_permissions(&hint, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(&hint, Some(65534), Some(65534)).unwrap();
            }
            1 => {
                std::fs::write(&hint, format!("{hung}\n")).unwrap();
                std::fs::set_permissions(&hint, std::fs::Permissions::from_mode(0o666)).unwrap();
            }
            _ => {
                std::fs::write(&elsewhere, format!("{hung}\n")).unwrap();
                std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::os::unix::fs::symlink(&elsewhere, &hint).unwrap();
            }
        }
        wait_for_fresh_step(8);
        let started = Instant::now();
        let (ok, line) = login(&sb, users[plant], &oathtool_code(&secrets[plant], &[]));
        let took = started.elapsed();
        figures.push(format!("{case}: {} ms", took.as_millis()));
        assert!(ok, "{case}: {line}");
        assert!(
            took.as_millis() < 1500,
            "{case}: the planted hint was followed to the hung node ({took:?})"
        );
    }
    // Control: the module's own kind of hint (root, 0600) naming the hung node is followed
    // and costs the share, so the bound above tells the cases apart.
    let _ = std::fs::remove_file(&hint);
    std::fs::write(&hint, format!("{hung}\n")).unwrap();
    std::fs::set_permissions(&hint, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_for_fresh_step(8);
    let started = Instant::now();
    let (ok, line) = login(&sb, users[3], &oathtool_code(&secrets[3], &[]));
    let took = started.elapsed();
    figures.push(format!("control, root 0600: {} ms", took.as_millis()));
    println!("logins with a planted hint naming a hung node: {figures:?}");
    assert!(ok, "control: {line}");
    assert!(took.as_millis() >= 1500, "control: {took:?}");
    cluster.resume(2);
}
