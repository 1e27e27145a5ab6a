//! etcd's space quota and compaction with the fleet backend (docs/fleet.md, "Space and
//! compaction"), against a real 3-node etcd cluster with mutual TLS on loopback, real hosts
//! (the `.so` under Linux-PAM via pamtester, the real `mfa-enroll`):
//! - with the documented compaction settings, a long run of logins keeps the history bounded;
//! - a database filled by a hostile host denies logins with a clear detail (on every host,
//!   `on_unavailable = "local"` too), `fleet status` and `doctor` report it, and the recovery
//!   commands of docs/fleet.md, run as written, bring logins back;
//! - a state value larger than ecs-mfa ever writes is refused (`bad_file`).
//!
//! Nothing here reaches an address outside 127.0.0.1.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use common::fleet::{PREFIX, client, fleet_findings};
use common::{Sandbox, cli, oathtool_code, text};
use common::{login, reason};
use pam_ecs_mfa::fleet::etcd::{DATABASE_FULL, Op};

/// What docs/fleet.md gives for every node, besides the tiny quotas of these tests.
const COMPACTION: [&str; 2] = [
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=1h",
];
const MAX_REQUEST: &str = "--max-request-bytes=65536";

#[test]
fn with_auto_compaction_a_long_run_of_logins_keeps_the_history_bounded() {
    // The documented mode with a retention suited to a test (docs: 1h).
    let cluster = Cluster::start_with(
        "space-run",
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=2s",
            "--quota-backend-bytes=67108864",
            MAX_REQUEST,
        ],
    );
    let a = host(&cluster, "space-run-a", "quota_backend_bytes = 67108864");
    let secret = enroll_hotp(&a, "alice");
    let before = space(&a);
    let start_revision = before["revision"].as_i64().unwrap();

    // Every accepted HOTP code writes alice's state: one revision per login. Bounded: 300
    // logins or 120 s, whichever comes first.
    let started = Instant::now();
    let mut logins = 0u64;
    while logins < 300 && started.elapsed() < Duration::from_secs(120) {
        let (ok, line) = login(&a, "alice", &hotp(&secret, logins));
        assert!(ok, "login {logins}: {line}");
        logins += 1;
    }
    let took = started.elapsed();
    assert!(logins >= 50, "only {logins} logins in {took:?}");

    // Compaction runs every 2 s here: wait (bounded) until it has passed the run's start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let s = space(&a);
        if s["oldest_revision"].as_i64().unwrap_or(0) > start_revision || Instant::now() > deadline
        {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let number = |key: &str| {
        after[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} in {after}"))
    };
    let (revision, oldest) = (number("revision"), number("oldest_revision"));
    let (in_use, size) = (number("db_size_in_use"), number("db_size"));
    println!(
        "{logins} logins in {:.1} s; revision {start_revision} -> {revision}, oldest readable {oldest}; \
         dbSize {} -> {size}, dbSizeInUse {} -> {in_use}",
        took.as_secs_f64(),
        before["db_size"],
        before["db_size_in_use"],
    );
    assert!(
        revision >= start_revision + logins as i64,
        "each login wrote a revision: {after}"
    );
    assert!(
        oldest > start_revision,
        "compaction advanced past the run's first revision: {after}"
    );
    assert!(
        revision - oldest < logins as i64,
        "the history kept is shorter than what the run wrote: {after}"
    );
    assert!(
        in_use < 8 << 20 && size < 16 << 20,
        "the database stays small: {after}"
    );
    assert_eq!(after["compacted"], true, "{after}");
    assert!(after["alarms"].as_array().unwrap().is_empty(), "{after}");
    let findings = fleet_findings(&a);
    assert!(
        findings.iter().any(|f| f["level"] == "ok"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("etcd history compacted")),
        "doctor sees the compaction: {findings:?}"
    );
    assert!(
        !findings.iter().any(|f| f["level"] == "problem"),
        "{findings:?}"
    );
}

#[test]
fn a_full_database_denies_logins_clearly_and_the_documented_recovery_brings_them_back() {
    const QUOTA: &str = "4194304";
    let quota = format!("--quota-backend-bytes={QUOTA}");
    let cluster = Cluster::start_with(
        "space-full",
        &[COMPACTION[0], COMPACTION[1], &quota, MAX_REQUEST],
    );
    let config = format!("quota_backend_bytes = {QUOTA}");
    let deny = host(&cluster, "space-full-deny", &config);
    let local = host(
        &cluster,
        "space-full-local",
        &format!("{config}\non_unavailable = \"local\""),
    );
    let secret = enroll_hotp(&deny, "alice");
    let (ok, line) = login(&deny, "alice", &hotp(&secret, 0));
    assert!(ok, "{line}");
    let sync = cli(&local, &["fleet", "sync", "--json"], b"");
    common::assert_ok(&sync, "mfa-enroll fleet sync");
    assert!(local.store.join("alice.toml").exists(), "local copy");
    let healthy = status_json(&deny);
    assert!(healthy.0, "fleet status before: {}", healthy.1);

    // A compromised host writes what its role allows: values under state/. etcd's request
    // limit (--max-request-bytes, as documented) caps each one...
    let hostile = client(&deny);
    let big = hostile
        .txn(
            &[],
            &[Op::Put(format!("{PREFIX}state/zz-big"), vec![b'x'; 70_000])],
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(
        big.replace('?', " ").contains("request is too large"),
        "{big}"
    );
    // ... but not how many: it fills the quota.
    let started = Instant::now();
    let mut full = None;
    for i in 0..1000 {
        let key = format!("{PREFIX}state/zz-fill-{i}");
        if let Err(e) = hostile.txn(&[], &[Op::Put(key, vec![b'x'; 60_000])], &[]) {
            full = Some((i, e.to_string()));
            break;
        }
    }
    let (writes, error) = full.expect("the quota was reached within 1000 writes");
    println!(
        "quota of {QUOTA} bytes reached after {writes} writes of 60000 bytes in {:?}",
        started.elapsed()
    );
    assert!(error.contains(DATABASE_FULL), "{error}");

    // Every login is denied, with the reason, on every host: a full database is never an
    // outage that the local copy may bridge (a host can cause it).
    let (ok, line) = login(&deny, "alice", &hotp(&secret, 1));
    println!("denied: {line}");
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains(DATABASE_FULL),
        "{line}"
    );
    let (ok, line) = login(&local, "alice", &hotp(&secret, 1));
    assert!(
        !ok && reason(&line) == "backend_error"
            && line.contains(DATABASE_FULL)
            && !line.contains("local copy used"),
        "{line}"
    );

    // fleet status and doctor say so.
    let (ok, status) = status_json(&deny);
    assert!(!ok, "fleet status fails on a full database: {status}");
    let space = &status["space"];
    assert!(
        space["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().contains("NOSPACE")),
        "{space}"
    );
    assert!(
        space["percent_of_quota"].as_u64().unwrap() >= 85,
        "size against the quota: {space}"
    );
    assert!(
        space["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["level"] == "problem"
                && f["message"].as_str().unwrap().contains(DATABASE_FULL)),
        "{space}"
    );
    let shown = cli(&deny, &["fleet", "status"], b"");
    println!("fleet status:\n{}", text(&shown.stdout));
    assert!(
        text(&shown.stdout).contains("PROBLEM: etcd database full (NOSPACE alarm)"),
        "{}",
        text(&shown.stdout)
    );
    let findings = fleet_findings(&deny);
    assert!(
        findings
            .iter()
            .any(|f| f["level"] == "problem" && f["message"].as_str().unwrap().contains("NOSPACE")),
        "doctor reports the alarm: {findings:?}"
    );

    // The recovery commands of docs/fleet.md, run as written.
    let recovery = doc_block("### Recovering from a full database");
    let out = Command::new("sh")
        .args(["-ec", &recovery])
        .envs(cluster.etcdctl_env())
        .output()
        .unwrap();
    println!("recovery:\n{}{}", text(&out.stdout), text(&out.stderr));
    common::assert_ok(&out, "the documented recovery fails");
    let (ok, status) = status_json(&deny);
    assert!(ok, "fleet status after the recovery: {status}");
    assert!(
        status["space"]["alarms"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let (ok, line) = login(&deny, "alice", &hotp(&secret, 1));
    assert!(ok, "logins work again: {line}");
    let (ok, line) = login(&local, "alice", &hotp(&secret, 2));
    assert!(ok && !line.contains("local copy used"), "{line}");
}

#[test]
fn a_state_value_larger_than_ecs_mfa_writes_is_refused() {
    let cluster = Cluster::start("space-big");
    let a = host(&cluster, "space-big-a", "");
    let secret = enroll_hotp(&a, "alice");
    // Valid state text, padded (with a TOML comment) past the 4096-byte cap.
    let value = format!(
        "version = 1\nlast_accepted = 0\nfailures = 0\nlocked_until = 0\n#{}\n",
        "x".repeat(5000)
    );
    client(&a)
        .txn(
            &[],
            &[Op::Put(format!("{PREFIX}state/alice"), value.into_bytes())],
            &[],
        )
        .unwrap();
    let (ok, line) = login(&a, "alice", &hotp(&secret, 0));
    assert!(
        !ok && reason(&line) == "bad_file" && line.contains("more than the 4096"),
        "{line}"
    );
    let out = cli(&a, &["unlock", "--user", "alice"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    let (ok, line) = login(&a, "alice", &hotp(&secret, 0));
    assert!(ok, "unlock replaced the value: {line}");

    // Sizing (docs/fleet.md): what one state write costs in the database without compaction
    // (this cluster has none), with a value of the size a login writes.
    let etcd = client(&a);
    let state = etcd
        .get(&format!("{PREFIX}state/alice"))
        .unwrap()
        .expect("alice's state");
    let before = space(&a);
    for _ in 0..1000 {
        etcd.txn(
            &[],
            &[Op::Put(
                format!("{PREFIX}state/zz-sizing"),
                state.value.to_vec(),
            )],
            &[],
        )
        .unwrap();
    }
    let after = space(&a);
    let grown =
        after["db_size_in_use"].as_i64().unwrap() - before["db_size_in_use"].as_i64().unwrap();
    println!(
        "1000 writes of a {}-byte state value: dbSizeInUse +{grown} bytes ({} per write), dbSize {} -> {}",
        state.value.len(),
        grown / 1000,
        before["db_size"],
        after["db_size"]
    );
    assert!(
        grown > 0 && grown < 1000 * 1024,
        "under 1 KiB of database per login write, as documented: {grown}"
    );
}

#[test]
fn with_rbac_a_host_sees_space_and_alarms_and_root_recovers_as_documented() {
    const QUOTA: &str = "2097152";
    let quota = format!("--quota-backend-bytes={QUOTA}");
    let cluster = Cluster::start_with(
        "space-rbac",
        &[COMPACTION[0], COMPACTION[1], &quota, MAX_REQUEST],
    );
    cluster.enable_rbac(PREFIX);
    let pw = cluster.dir.join("host.pw");
    std::fs::write(&pw, "hostpw\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let a = host(
        &cluster,
        "space-rbac-a",
        &format!(
            "quota_backend_bytes = {QUOTA}\nuser = \"host\"\npassword_file = \"{}\"",
            pw.display()
        ),
    );
    // The host role reads status, the alarm list and old revisions of records/.
    let before = space(&a);
    assert!(before["oldest_revision"].is_i64(), "{before}");
    assert!(before["alarms"].as_array().unwrap().is_empty(), "{before}");

    // The host's own credentials fill it (its role may write state/).
    let hostile = client(&a);
    let mut full = None;
    for i in 0..1000 {
        let key = format!("{PREFIX}state/zz-fill-{i}");
        if let Err(e) = hostile.txn(&[], &[Op::Put(key, vec![b'x'; 60_000])], &[]) {
            full = Some(e.to_string());
            break;
        }
    }
    let error = full.expect("the quota was reached within 1000 writes");
    assert!(error.contains(DATABASE_FULL), "{error}");
    let (ok, status) = status_json(&a);
    assert!(
        !ok && status["space"]["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("NOSPACE")),
        "the alarm list, read with host credentials: {status}"
    );

    // The documented recovery, as root (ETCDCTL_USER is etcdctl's --user).
    let out = Command::new("sh")
        .args(["-ec", &doc_block("### Recovering from a full database")])
        .envs(cluster.etcdctl_env())
        .env("ETCDCTL_USER", "root:rootpw")
        .output()
        .unwrap();
    common::assert_ok(&out, "recovery as root");
    let after = space(&a);
    assert!(after["alarms"].as_array().unwrap().is_empty(), "{after}");
    assert_eq!(after["compacted"], true, "step 2 compacted: {after}");
}

/// The first `sh` block after `heading` in docs/fleet.md.
fn doc_block(heading: &str) -> String {
    let doc = include_str!("../docs/fleet.md");
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in docs/fleet.md"));
    let rest = &doc[at..];
    let start = rest.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("its end");
    rest[start..start + end].to_string()
}

/// `fleet status --json`: whether it succeeded, and its answer.
fn status_json(sb: &Sandbox) -> (bool, serde_json::Value) {
    let out = cli(sb, &["fleet", "status", "--json"], b"");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "fleet status --json: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.success(), json)
}

/// The `space` object of `fleet status --json` (which must succeed).
fn space(sb: &Sandbox) -> serde_json::Value {
    let (ok, json) = status_json(sb);
    assert!(ok, "fleet status: {json}");
    json["space"].clone()
}

fn hotp(secret: &str, counter: u64) -> String {
    oathtool_code(secret, &["--hotp", "-c", &counter.to_string()])
}

fn enroll_hotp(sb: &Sandbox, user: &str) -> String {
    let out = sb.enroll_cmd(user, &["--hotp"]);
    common::assert_ok(&out, &format!("enroll {user}"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["secret"].as_str().unwrap().to_string()
}

/// A host of the cluster with extra `[fleet]` keys.
fn host(cluster: &Cluster, tag: &str, fleet: &str) -> Sandbox {
    common::fleet::host(cluster, tag, "", fleet)
}
