//! The fleet backend against a real 3-node etcd cluster with mutual TLS on loopback (Debian's
//! etcd-server), with two (or three) "hosts": independent sandboxes, each with its own config,
//! local store and state directory, running the real `.so` under real Linux-PAM (pamtester) and
//! the real `mfa-enroll`. Nothing here reaches an address outside 127.0.0.1.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use common::fleet::{PREFIX, client, fleet_findings, host};
use common::{Sandbox, cli, oathtool_code, text, wait_for_fresh_step, wrong_code};
use common::{enroll_json, login, reason};
use pam_ecs_mfa::fleet::etcd::Op;

#[test]
fn one_enrollment_serves_every_host_and_each_code_works_once_in_the_fleet() {
    let cluster = Cluster::start("shared");
    let a = host(&cluster, "fleet-a", "max_failures = 4", "");
    let b = host(&cluster, "fleet-b", "max_failures = 4", "");

    // Enrolled once, from host A; host B never saw a local record.
    let alice = enroll_json(&a, "alice", &[]);
    let secret = alice["secret"].as_str().unwrap().to_string();
    assert!(
        !b.store.join("alice.toml").exists() && !a.store.join("alice.toml").exists(),
        "with on_unavailable=deny no host keeps a copy of the record"
    );
    let status = cli(&b, &["status", "--user", "alice", "--json"], b"");
    common::assert_ok(&status, "status on B");

    // A code accepted on A is a replay on B (and on A).
    wait_for_fresh_step(8);
    let code = oathtool_code(&secret, &[]);
    let (ok, line) = login(&a, "alice", &code);
    assert!(ok, "host A accepts the code: {line}");
    let (ok, line) = login(&b, "alice", &code);
    assert!(
        !ok && reason(&line) == "replay",
        "host B refuses it as a replay: {line}"
    );

    // The same fresh code on both hosts at once: exactly one success.
    let next_step = format!("@{}", common::container::now() + 30);
    let code = oathtool_code(&secret, &["-N", &next_step]);
    let input = format!("{code}\n");
    let runs = [
        a.auth_spawn("alice", input.as_bytes(), &[]),
        b.auth_spawn("alice", input.as_bytes(), &[]),
    ];
    let results: Vec<_> = runs.into_iter().map(|r| r.finish()).collect();
    let wins = results.iter().filter(|r| r.success).count();
    assert_eq!(
        wins,
        1,
        "exactly one host accepts one code: {:?}",
        results.iter().map(|r| r.audit()).collect::<Vec<_>>()
    );
    let loser = results.iter().find(|r| !r.success).unwrap().audit();
    common::assert_reason(&loser, "replay");

    // Failures on A and on B add up to one lockout (max_failures = 4).
    let bob = enroll_json(&b, "bob", &[]);
    let bob_secret = bob["secret"].as_str().unwrap().to_string();
    wait_for_fresh_step(10);
    let right = oathtool_code(&bob_secret, &[]);
    let wrong = wrong_code(&right);
    for (i, sb) in [&a, &b, &a, &b].into_iter().enumerate() {
        let (ok, line) = login(sb, "bob", &wrong);
        assert!(!ok, "{line}");
        assert!(
            line.contains(&format!("failures={}", i + 1)),
            "failures counted fleet-wide: {line}"
        );
    }
    let (ok, line) = login(&a, "bob", &right);
    assert!(
        !ok && reason(&line) == "throttled",
        "locked out everywhere: {line}"
    );
    let unlock = cli(&a, &["unlock", "--user", "bob"], b"");
    common::assert_ok(&unlock, "mfa-enroll unlock");
    let (ok, line) = login(&b, "bob", &right);
    assert!(ok, "unlock on A frees bob on B: {line}");

    // A recovery code works once in the whole fleet.
    let code = alice["recovery_codes"][0].as_str().unwrap().to_string();
    let (ok, line) = login(&b, "alice", &code);
    common::assert_accepted(ok, &line, "recovery_code");
    assert!(line.contains("remaining=9"), "{line}");
    let (ok, line) = login(&a, "alice", &code);
    assert!(
        !ok && reason(&line) == "bad_code",
        "used up on every host: {line}"
    );
    let shown = cli(&a, &["status", "--user", "alice", "--json"], b"");
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["recovery_codes_left"], 9,
        "status counts what the fleet used: {shown}"
    );

    // A reset on A stops the old secret on B at once.
    let carol = enroll_json(&a, "carol", &[]);
    let old = carol["secret"].as_str().unwrap().to_string();
    let reset = a.enroll_cmd("carol", &[]);
    common::assert_failed(
        &reset,
        "enroll does not replace a fleet record without --force",
    );
    let out = cli(
        &a,
        &["reset", "--user", "carol", "--no-confirm", "--json"],
        b"",
    );
    common::assert_ok(&out, "reset");
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = new["secret"].as_str().unwrap().to_string();
    wait_for_fresh_step(8);
    let (ok, line) = login(&b, "carol", &oathtool_code(&old, &[]));
    assert!(
        !ok && reason(&line) == "bad_code",
        "old secret refused on B: {line}"
    );
    let (ok, line) = login(&b, "carol", &oathtool_code(&new, &[]));
    assert!(ok, "new secret works on B: {line}");

    // status --all from B lists the fleet's enrollments.
    let all = cli(&b, &["status", "--all", "--json"], b"");
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    for user in ["alice", "bob", "carol"] {
        assert!(
            all["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["user"] == user && u["enrolled"] == true),
            "{user} in {all}"
        );
    }

    // A sealed record copied to another user's key does not open: bad_file, not a login.
    let etcd = client(&a);
    let sealed = etcd
        .get(&format!("{PREFIX}records/alice"))
        .unwrap()
        .expect("alice's record");
    assert!(
        !contains(&sealed.value, secret.as_bytes()),
        "etcd holds no secret in clear"
    );
    etcd.txn(
        &[],
        &[Op::Put(
            format!("{PREFIX}records/mallory"),
            sealed.value.to_vec(),
        )],
        &[],
    )
    .unwrap();
    let (ok, line) = login(&a, "mallory", &oathtool_code(&secret, &[]));
    assert!(
        !ok && reason(&line) == "bad_file",
        "a moved record is refused: {line}"
    );

    // An etcd snapshot (what backups hold) contains no secret in clear.
    let snapshot = cluster.snapshot(None);
    for s in [&secret, &bob_secret, &old, &new] {
        assert!(
            !contains(&snapshot, s.as_bytes()),
            "snapshot holds a base32 secret"
        );
        let bytes = pam_ecs_mfa::totp::SecretKey::from_base32(s).unwrap();
        assert!(
            !contains(&snapshot, bytes.as_bytes()),
            "snapshot holds raw secret bytes"
        );
    }
    assert!(
        contains(&snapshot, b"records/alice"),
        "the snapshot is a real one"
    );
}

#[test]
fn hosts_read_records_and_write_state_only_with_rbac() {
    let cluster = Cluster::start("rbac");
    cluster.enable_rbac(PREFIX);
    let secrets = cluster.dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let password = |name: &str, pw: &str| -> PathBuf {
        let p = secrets.join(name);
        std::fs::write(&p, format!("{pw}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let host_pw = password("host.pw", "hostpw");
    let admin_pw = password("admin.pw", "adminpw");
    let fleet = format!(
        "user = \"host\"\npassword_file = \"{}\"\n",
        host_pw.display()
    );
    let a = host(&cluster, "rbac-a", "", &fleet);
    let b = host(&cluster, "rbac-b", "", &fleet);

    // Host credentials cannot write a record (the CLI says what to do)...
    let denied = a.enroll_cmd("alice", &[]);
    common::assert_exit(&denied, 12, "mfa-enroll enroll");
    assert!(
        text(&denied.stderr).contains("permission denied"),
        "{}",
        text(&denied.stderr)
    );
    let put = cluster.etcdctl(
        Some("host:hostpw"),
        &["put", &format!("{PREFIX}records/alice"), "forged"],
    );
    common::assert_failed(&put, "etcdctl as host: a record cannot be forged");
    // ... an administrator's can.
    let admin = [
        "--etcd-user",
        "admin",
        "--etcd-password-file",
        admin_pw.to_str().unwrap(),
    ];
    let alice = enroll_json(&a, "alice", &admin);
    let secret = alice["secret"].as_str().unwrap();

    // Hosts read the record and write the state with their own credentials.
    wait_for_fresh_step(8);
    let code = oathtool_code(secret, &[]);
    let (ok, line) = login(&b, "alice", &code);
    assert!(ok, "{line}");
    assert!(
        b.state.join("etcd-token.cache").exists(),
        "the RBAC token is cached for the next login"
    );
    let (ok, line) = login(&b, "alice", &code);
    assert!(
        !ok && reason(&line) == "replay",
        "second login with the cached token: {line}"
    );
    let (ok, line) = login(&a, "alice", &code);
    common::assert_denied(ok, &line, "replay");
    // A stale or forged cached token: the host authenticates again.
    std::fs::write(
        b.state.join("etcd-token.cache"),
        format!("{} host bogus.token\n", common::container::now()),
    )
    .unwrap();
    let (ok, line) = login(&b, "alice", &wrong_code(&code));
    assert!(
        !ok && reason(&line) == "bad_code",
        "a refused token is renewed: {line}"
    );
}

#[test]
fn losing_nodes_keeps_logins_working_then_denies_or_uses_the_local_copy() {
    let mut cluster = Cluster::start("failover");
    let deny = host(&cluster, "fo-deny", "", "timeout_ms = 400");
    let local = host(
        &cluster,
        "fo-local",
        "",
        "timeout_ms = 400\non_unavailable = \"local\"",
    );
    let alice = enroll_json(&deny, "alice", &[]);
    let secret = alice["secret"].as_str().unwrap().to_string();
    let recovery = alice["recovery_codes"][0].as_str().unwrap().to_string();
    let bob = enroll_json(&deny, "bob", &[]);
    let bob = bob["secret"].as_str().unwrap().to_string();
    let dave = enroll_json(&deny, "dave", &["--hotp"]);
    let dave = dave["secret"].as_str().unwrap().to_string();

    // An online login refreshes the local copy on the "local" host (and only there).
    wait_for_fresh_step(20);
    let (ok, line) = login(&local, "alice", &oathtool_code(&secret, &[]));
    assert!(ok, "{line}");
    assert!(
        local.store.join("alice.toml").exists(),
        "local copy written"
    );
    assert!(!deny.store.join("alice.toml").exists());
    let sync = cli(&local, &["fleet", "sync", "--json"], b"");
    common::assert_ok(&sync, "mfa-enroll fleet sync");
    assert!(
        local.store.join("bob.toml").exists(),
        "fleet sync copies every record"
    );

    // nullok applies online (an unenrolled user is ignored) ...
    let nullok = host(&cluster, "fo-nullok", "nullok = true", "timeout_ms = 400");
    let nullok_local = host(
        &cluster,
        "fo-nullok-local",
        "nullok = true",
        "timeout_ms = 400\non_unavailable = \"local\"",
    );
    let (_, line) = login(&nullok, "carol", "123456");
    assert!(line.contains("result=ignore reason=not_enrolled"), "{line}");

    // One node down: logins still work.
    cluster.kill(0);
    // If it was the leader, the other two elect a new one within about a second; a login in
    // that second can be denied (fail closed) when timeout_ms is this short.
    cluster.wait_healthy(&[1, 2]);
    let (ok, line) = login(&deny, "bob", &oathtool_code(&bob, &[]));
    assert!(ok, "two of three nodes serve logins: {line}");
    let doctor = fleet_findings(&deny);
    assert!(
        !doctor.iter().any(|f| f["level"] == "problem"),
        "one node down is not a problem yet: {doctor:?}"
    );
    assert!(
        doctor
            .iter()
            .any(|f| f["level"] == "warning"
                && f["message"].as_str().unwrap().contains("no etcd user")),
        "{doctor:?}"
    );
    let status = cli(&deny, &["fleet", "status", "--json"], b"");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["reachable"], 2, "{status}");

    // Two down: quorum lost. "deny" denies within its budget (never etcd's own 7 s).
    cluster.kill(1);
    wait_for_fresh_step(20);
    let code = oathtool_code(&secret, &[]);
    let started = Instant::now();
    let (ok, line) = login(&deny, "alice", &code);
    let took = started.elapsed();
    common::assert_denied(ok, &line, "backend_unavailable");
    // Not a speed test: etcd answers a minority read only after 7 s; two budgets of 400 ms
    // plus process start-up are far below that, so this only proves the budget is enforced.
    assert!(
        took < Duration::from_secs(6),
        "denied after {took:?}, not within the budget"
    );

    // "local" lets an enrolled user in with a code, says so, and refuses recovery codes.
    let (ok, line) = login(&local, "alice", &code);
    assert!(ok && line.contains("local copy used"), "{line}");
    let (ok, line) = login(&local, "alice", &code);
    assert!(
        !ok && reason(&line) == "replay",
        "local replay protection still holds: {line}"
    );
    let (ok, line) = login(&local, "alice", &recovery);
    common::assert_denied(ok, &line, "backend_unavailable");
    // HOTP tokens too: only the fleet can move a counter for every server (the local copy has
    // dave's record from fleet sync; his next code would be valid).
    assert!(
        local.store.join("dave.toml").exists(),
        "fleet sync copied dave"
    );
    let (ok, line) = login(
        &local,
        "dave",
        &oathtool_code(&dave, &["--hotp", "-c", "0"]),
    );
    assert!(
        !ok && reason(&line) == "backend_unavailable" && line.contains("HOTP"),
        "{line}"
    );
    let (ok, line) = login(&local, "carol", "123456");
    assert!(!ok, "unknown to the local copy: denied: {line}");
    // ... but never while the fleet cannot say who is enrolled, with either on_unavailable.
    for sb in [&nullok, &nullok_local] {
        let (ok, line) = login(sb, "carol", "123456");
        assert!(
            !ok && reason(&line) == "backend_unavailable" && line.contains("result=deny"),
            "nullok during an outage: {line}"
        );
    }
    let doctor = fleet_findings(&local);
    assert!(
        doctor.iter().any(|f| f["level"] == "problem"
            && f["message"]
                .as_str()
                .unwrap()
                .contains("only 1 of 3 endpoints")),
        "doctor reports the lost quorum: {doctor:?}"
    );

    // Back to quorum: logins work again, state is fleet-wide again.
    cluster.restart(1);
    // A step after the one used while etcd was down.
    let next = format!("@{}", common::container::now() + 30);
    let code = oathtool_code(&secret, &["-N", &next]);
    let (ok, line) = login(&deny, "alice", &code);
    assert!(ok, "{line}");
    let (ok, line) = login(&local, "alice", &code);
    common::assert_denied(ok, &line, "replay");
}

#[test]
fn plain_http_a_wrong_ca_and_a_foreign_client_certificate_are_refused() {
    let cluster = Cluster::start("tls");
    let good = host(&cluster, "tls-good", "", "");
    let alice = enroll_json(&good, "alice", &[]);
    let secret = alice["secret"].as_str().unwrap().to_string();

    // Plain http: the config is invalid, every login denied (bad_config), the CLI refuses.
    let http = host(&cluster, "tls-http", "", "");
    let text_cfg = std::fs::read_to_string(&http.config)
        .unwrap()
        .replace("https://", "http://");
    http.set_config(&text_cfg);
    let (ok, line) = login(&http, "alice", &oathtool_code(&secret, &[]));
    assert!(
        !ok && reason(&line) == "bad_config" && line.contains("plain http"),
        "{line}"
    );
    let out = cli(&http, &["status", "--user", "alice"], b"");
    common::assert_exit(&out, 9, "mfa-enroll status");

    // A CA that did not sign the servers: refused, and never the local copy.
    let other = cluster.dir.join("other-ca");
    common::etcd::make_ca(&other, "some other CA");
    let wrong_ca = host(&cluster, "tls-ca", "", "on_unavailable = \"local\"");
    let cfg = std::fs::read_to_string(&wrong_ca.config).unwrap().replace(
        &cluster.host_files().ca.display().to_string(),
        &other.join("ca.pem").display().to_string(),
    );
    wrong_ca.set_config(&cfg);
    copy_record_locally(&good, &wrong_ca, "alice");
    let (ok, line) = login(&wrong_ca, "alice", &oathtool_code(&secret, &[]));
    common::assert_denied(ok, &line, "backend_error");
    assert!(line.contains("TLS"), "{line}");

    // A client certificate from another CA: the servers refuse it; no fallback either.
    let foreign = host(&cluster, "tls-cert", "", "on_unavailable = \"local\"");
    let dir = other.clone();
    common::etcd::issue(&dir, "c", "/O=ecs-mfa", "extendedKeyUsage=clientAuth\n");
    let files = cluster.host_files();
    let cfg = std::fs::read_to_string(&foreign.config)
        .unwrap()
        .replace(
            &files.cert.display().to_string(),
            &dir.join("c.pem").display().to_string(),
        )
        .replace(
            &files.key.display().to_string(),
            &dir.join("c.key").display().to_string(),
        );
    foreign.set_config(&cfg);
    copy_record_locally(&good, &foreign, "alice");
    let (ok, line) = login(&foreign, "alice", &oathtool_code(&secret, &[]));
    common::assert_denied(ok, &line, "backend_error");

    // A missing fleet key: denied, with the file named.
    let nokey = host(&cluster, "tls-nokey", "", "");
    let cfg = std::fs::read_to_string(&nokey.config)
        .unwrap()
        .replace("fleet.key", "absent.key");
    nokey.set_config(&cfg);
    let (ok, line) = login(&nokey, "alice", "123456");
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains("absent.key"),
        "{line}"
    );

    // The module's etcd client, libecs_mfa_etcd.so next to the module: writable by others, not
    // ours, or missing -> denied with the file named, never the local copy; back in place ->
    // the login works (so the denials were about the file).
    let lib = host(&cluster, "tls-lib", "", "on_unavailable = \"local\"");
    copy_record_locally(&good, &lib, "alice");
    let helper = lib.root.join(common::HELPER_FILE);
    let shipped = std::fs::read(&helper).expect("the sandbox installs the helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (ok, line) = login(&lib, "alice", &oathtool_code(&secret, &[]));
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains(common::HELPER_FILE),
        "group-writable helper: {line}"
    );
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(common::pam_module_dir().join("pam_permit.so"), &helper).unwrap();
    let (ok, line) = login(&lib, "alice", &oathtool_code(&secret, &[]));
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains("not the ecs-mfa etcd helper"),
        "a foreign object under the helper's name: {line}"
    );
    std::fs::remove_file(&helper).unwrap();
    let (ok, line) = login(&lib, "alice", &oathtool_code(&secret, &[]));
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains("is missing"),
        "missing helper: {line}"
    );
    // nullok does not turn a missing helper into a pass for an unenrolled user.
    let lib_nullok = host(&cluster, "tls-lib-nullok", "nullok = true", "");
    std::fs::remove_file(lib_nullok.root.join(common::HELPER_FILE)).unwrap();
    let (ok, line) = login(&lib_nullok, "carol", "123456");
    assert!(
        !ok && reason(&line) == "backend_error" && line.contains("is missing"),
        "missing helper under nullok: {line}"
    );
    std::fs::write(&helper, &shipped).unwrap();
    let (ok, line) = login(&lib, "alice", &oathtool_code(&secret, &[]));
    assert!(ok, "the helper back in place: {line}");
}

/// Puts a local copy of `user`'s record on `to` (as an earlier online login would have), so
/// that a fallback, if it wrongly happened, would let the user in.
fn copy_record_locally(from: &Sandbox, to: &Sandbox, user: &str) {
    let out = cli(from, &["show", "--user", user, "--json"], b"");
    common::assert_ok(&out, "mfa-enroll show");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = shown["secret"].as_str().unwrap();
    let local = Sandbox::new("copy");
    local.import_oath(user, secret);
    std::fs::create_dir_all(&to.store).unwrap();
    std::fs::set_permissions(&to.store, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(
        local.store.join(format!("{user}.toml")),
        to.store.join(format!("{user}.toml")),
    )
    .unwrap();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_admin_command_works_against_the_fleet_from_any_host() {
    let cluster = Cluster::start("admin");
    let a = host(&cluster, "adm-a", "", "");
    let b = host(&cluster, "adm-b", "", "");

    // fleet push: a record enrolled locally (before the fleet) moves into etcd, once.
    let fleet_config = std::fs::read_to_string(&a.config).unwrap();
    a.set_config("");
    let dave = enroll_json(&a, "dave", &[]);
    let dave_secret = dave["secret"].as_str().unwrap().to_string();
    a.set_config(&fleet_config);
    let out = cli(&a, &["fleet", "push", "--json"], b"");
    common::assert_ok(&out, "mfa-enroll fleet push");
    let pushed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["pushed"], serde_json::json!(["dave"]), "{pushed}");
    let again: serde_json::Value =
        serde_json::from_slice(&cli(&a, &["fleet", "push", "--json"], b"").stdout).unwrap();
    assert_eq!(
        again["kept"],
        serde_json::json!(["dave"]),
        "the fleet's record wins: {again}"
    );

    // verify: counted like a login, fleet-wide.
    wait_for_fresh_step(10);
    let code = oathtool_code(&dave_secret, &[]);
    let out = cli(
        &b,
        &["verify", "--user", "dave"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_ok(&out, "verify on B");
    let out = cli(
        &a,
        &["verify", "--user", "dave"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_exit(&out, 8, "the same code on A is a replay");

    // recovery: new codes from B work on A; the old ones stop everywhere.
    let old = dave["recovery_codes"][0].as_str().unwrap().to_string();
    let out = cli(&b, &["recovery", "--user", "dave", "--json"], b"");
    common::assert_ok(&out, "mfa-enroll recovery");
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ok, line) = login(&a, "dave", &old);
    common::assert_denied(ok, &line, "bad_code");
    let (ok, line) = login(&a, "dave", new["recovery_codes"][3].as_str().unwrap());
    assert!(ok && line.contains("remaining=9"), "{line}");

    // import (pam_oath users file) on B: the user logs in on A.
    let eve = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    b.import_oath("eve", eve);
    let (ok, line) = login(&a, "eve", &oathtool_code(eve, &[]));
    assert!(ok, "{line}");

    // show on A gives the same secret; remove on A ends dave's logins on B.
    let shown: serde_json::Value =
        serde_json::from_slice(&cli(&a, &["show", "--user", "dave", "--json"], b"").stdout)
            .unwrap();
    assert_eq!(shown["secret"], dave_secret.as_str());
    let out = cli(&a, &["remove", "--user", "dave", "--yes"], b"");
    common::assert_ok(&out, "mfa-enroll remove");
    let (ok, line) = login(&b, "dave", &oathtool_code(&dave_secret, &[]));
    common::assert_denied(ok, &line, "not_enrolled");
    let out = cli(&b, &["status", "--user", "dave"], b"");
    common::assert_exit(&out, 5, "mfa-enroll status");
    let out = cli(&b, &["remove", "--user", "dave", "--yes"], b"");
    common::assert_exit(&out, 5, "mfa-enroll remove");

    // A state value that is not ecs-mfa's (hosts can write state): denied, and unlock repairs it.
    client(&a)
        .txn(
            &[],
            &[Op::Put(format!("{PREFIX}state/eve"), b"garbage =".to_vec())],
            &[],
        )
        .unwrap();
    let next = format!("@{}", common::container::now() + 30);
    let code = oathtool_code(eve, &["-N", &next]);
    let (ok, line) = login(&b, "eve", &code);
    common::assert_denied(ok, &line, "bad_file");
    let out = cli(&b, &["unlock", "--user", "eve"], b"");
    common::assert_ok(&out, "mfa-enroll unlock");
    assert!(
        text(&out.stderr).contains("mfa-enroll recovery"),
        "{}",
        text(&out.stderr)
    );
    let (ok, line) = login(&a, "eve", &code);
    assert!(ok, "{line}");
}

#[test]
fn grace_is_per_server_unless_grace_scope_is_fleet() {
    let cluster = Cluster::start("grace");
    let stack = format!(
        "auth required {}\nauth required {{module}} {{args}}",
        common::PAM_SET_ITEMS
    );
    let rhost = [("PAM_RHOST", "192.0.2.1")];
    for (scope, b_spared) in [("host", false), ("fleet", true)] {
        let top = format!("grace_seconds = 300\ngrace_scope = \"{scope}\"");
        let a = host(&cluster, &format!("grace-a-{scope}"), &top, "");
        let b = host(&cluster, &format!("grace-b-{scope}"), &top, "");
        a.set_stack(&stack);
        b.set_stack(&stack);
        // Two servers have two host names (each PAM run has its own UTS namespace).
        a.set_ns_setup("hostname ecs-mfa-server-a");
        b.set_ns_setup("hostname ecs-mfa-server-b");
        let user = if scope == "host" { "alice" } else { "bob" };
        let secret = enroll_json(&a, user, &[])["secret"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for_fresh_step(8);
        let r = a.auth_env(
            user,
            format!("{}\n", oathtool_code(&secret, &[])).as_bytes(),
            &rhost,
        );
        assert!(r.success, "{}", r.audit());
        let r = a.auth_env(user, b"", &rhost);
        assert!(
            r.success && r.audit().contains("reason=grace"),
            "{scope}: {}",
            r.audit()
        );
        let r = b.auth_env(user, b"", &rhost);
        assert_eq!(
            r.success,
            b_spared,
            "grace_scope={scope} on the other server: {}",
            r.audit()
        );
    }
}

#[test]
fn an_hotp_code_works_once_in_the_fleet_and_the_counter_moves_for_every_server() {
    let cluster = Cluster::start("hotp");
    let a = host(&cluster, "hotp-a", "", "");
    let b = host(&cluster, "hotp-b", "", "");
    let json = enroll_json(&a, "alice", &["--hotp"]);
    let secret = json["secret"].as_str().unwrap().to_string();
    let hotp = |c: u64| oathtool_code(&secret, &["--hotp", "-c", &c.to_string()]);
    let (ok, line) = login(&a, "alice", &hotp(0));
    assert!(ok, "{line}");
    let (ok, line) = login(&b, "alice", &hotp(0));
    assert!(
        !ok && reason(&line) == "replay",
        "used on A, refused on B: {line}"
    );
    let (ok, line) = login(&b, "alice", &hotp(3));
    assert!(ok, "{line}");
    let (ok, line) = login(&a, "alice", &hotp(2));
    assert!(!ok, "the counter moved for A too: {line}");
    let status: serde_json::Value =
        serde_json::from_slice(&cli(&a, &["status", "--user", "alice", "--json"], b"").stdout)
            .unwrap();
    assert_eq!(status["counter"], 4, "{status}");
    // A reset to a new token starts its own counter (the old one is stale).
    let out = cli(
        &a,
        &[
            "reset",
            "--user",
            "alice",
            "--hotp",
            "--no-confirm",
            "--json",
        ],
        b"",
    );
    common::assert_ok(&out, "mfa-enroll reset");
    let new: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = new["secret"].as_str().unwrap().to_string();
    let (ok, line) = login(&b, "alice", &oathtool_code(&new, &["--hotp", "-c", "0"]));
    assert!(ok, "{line}");
}

/// forward_pass + grace on the fleet backend: the grant waits for `pam_setcred` (written to the
/// fleet state by a compare-and-swap then), a wrong password with the right code starts none,
/// and a wrong password during a grace period ends it fleet-wide (issue 24).
#[test]
fn forward_pass_grace_is_written_to_the_fleet_only_after_the_whole_stack_succeeded() {
    let cluster = Cluster::start("grace-fwd");
    let a = host(&cluster, "grace-fwd-a", "grace_seconds = 300", "");
    a.use_forward_pass_stack();
    let secret = enroll_json(&a, "alice", &[])["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let rhost = [("PAM_LOGIN_RHOST", "192.0.2.9")];
    let password = common::PASSWORD;
    wait_for_fresh_step(10);
    let code = oathtool_code(&secret, &[]);
    let r = a.login("alice", format!("wrong{code}\n").as_bytes(), &rhost, true);
    assert!(!r.success, "{r:#?}");
    let r = a.login("alice", format!("{password}\n").as_bytes(), &rhost, true);
    assert!(!r.success, "no grace from a wrong password: {}", r.audit());
    let next = oathtool_code(
        &secret,
        &["-N", &format!("@{}", common::container::now() + 30)],
    );
    let r = a.login(
        "alice",
        format!("{password}{next}\n").as_bytes(),
        &rhost,
        true,
    );
    assert!(r.success, "{r:#?}");
    let r = a.login("alice", format!("{password}\n").as_bytes(), &rhost, true);
    assert!(
        r.success && r.audit().contains("reason=grace"),
        "{}",
        r.audit()
    );
    let r = a.login("alice", b"guess\n", &rhost, true);
    assert!(!r.success);
    let r = a.login("alice", format!("{password}\n").as_bytes(), &rhost, true);
    assert!(
        !r.success,
        "the wrong password ended the grace: {}",
        r.audit()
    );
}
