//! Tier 4: a shared account on the etcd fleet backend, against a real 3-node TLS cluster
//! (tests/common/etcd.rs): the multi-token record is sealed like any record, each person's
//! state is its own key (`state/<user>~<person>`), a person's code works once in the whole
//! fleet, and one person's lockout (counted fleet-wide) leaves the others alone; a write whose
//! generation was computed before other administrators wrote never lowers it. Each sandbox
//! is a server whose logins come with one person's SSH key (`pam_env.so` sets
//! `SSH_AUTH_INFO_0`, as sshd would).

mod common;

use common::etcd::Cluster;
use common::fleet::{PREFIX, client, host};
use common::{Sandbox, cli, oathtool_code, wait_for_fresh_step};
use pam_ecs_mfa::ssh_auth_info::AcceptedKey;

const ANN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";
const BEN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

use common::fleet::keyed_host as server;

fn login(sb: &Sandbox, code: &str) -> (bool, String) {
    common::keyed_login(sb, "alice", code)
}

fn enroll_person(sb: &Sandbox, person: &str, key: &str) -> String {
    let out = cli(
        sb,
        &[
            "enroll",
            "--user",
            "alice",
            "--person",
            person,
            "--key",
            key,
            "--no-confirm",
            "--json",
        ],
        b"",
    );
    common::assert_ok(&out, &format!("enroll {person}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

#[test]
fn each_person_of_a_shared_account_has_fleet_wide_state_of_their_own() {
    let cluster = Cluster::start("shared-people");
    let ann_a = server(&cluster, "people-ann-a", ANN);
    let ann_b = server(&cluster, "people-ann-b", ANN);
    let ben_c = server(&cluster, "people-ben-c", BEN);
    let ann_key = AcceptedKey::parse(ANN).unwrap().fingerprint;
    let ben_key = AcceptedKey::parse(BEN).unwrap().fingerprint;

    // Both people enrolled on the shared account "alice", from two different servers.
    let ann = enroll_person(&ann_a, "ann", ANN);
    let ben = enroll_person(&ben_c, "ben", &ben_key);
    let record = common::fleet::get(&ann_a, "records/alice");
    assert!(
        !String::from_utf8_lossy(&record).contains("person"),
        "the multi-token record is sealed like any other"
    );

    // ann's code works once in the fleet; ben's code of the same step works for ben.
    wait_for_fresh_step(10);
    let code = oathtool_code(&ann, &[]);
    let (ok, line) = login(&ann_a, &code);
    common::assert_accepted(ok, &line, "ok");
    assert!(
        line.contains("person=ann") && line.contains(&format!("key={ann_key}")),
        "{line}"
    );
    let (ok, line) = login(&ann_b, &code);
    common::assert_denied(ok, &line, "replay");
    let (ok, line) = login(&ben_c, &oathtool_code(&ben, &[]));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=ben"), "{line}");
    // ben's key with ann's code: only ben's token is tried.
    let (ok, line) = login(
        &ben_c,
        &oathtool_code(
            &ann,
            &["-N", &format!("@{}", common::container::now() + 30)],
        ),
    );
    common::assert_denied(ok, &line, "bad_code");
    assert!(
        line.contains("person=ben") && line.contains("failures=1"),
        "{line}"
    );

    // Each person's state is its own etcd key.
    let etcd = client(&ann_a);
    for person in ["ann", "ben"] {
        let key = format!("{PREFIX}state/alice~{person}");
        assert!(etcd.get(&key).unwrap().is_some(), "{key}");
    }

    // ann locked out by failures on two servers; ben still gets in.
    let next = format!("@{}", common::container::now() + 30);
    for sb in [&ann_a, &ann_b, &ann_a] {
        let (ok, _) = login(sb, "000000");
        assert!(!ok);
    }
    let (ok, line) = login(&ann_b, &oathtool_code(&ann, &["-N", &next]));
    common::assert_denied(ok, &line, "throttled");
    let (ok, line) = login(&ben_c, &oathtool_code(&ben, &["-N", &next]));
    common::assert_accepted(ok, &line, "ok");
    let status = cli(&ann_b, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let people = row["people"].as_array().expect("people");
    let of = |name: &str| people.iter().find(|p| p["person"] == name).unwrap();
    assert_eq!(
        (of("ann")["locked"].clone(), of("ben")["locked"].clone()),
        (true.into(), false.into()),
        "{row}"
    );
    // report reads the fleet-wide state: ann locked out, seen from a third server's CLI.
    let empty = ben_c.root.join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let report = cli(
        &ben_c,
        &["report", "--log", empty.to_str().unwrap(), "--json"],
        b"",
    );
    common::assert_ok(&report, "report");
    let v: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let ann_row = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["person"] == "ann")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ann_row["locked_now"], true, "{v}");
    let unlock = cli(
        &ann_b,
        &["unlock", "--user", "alice", "--person", "ann"],
        b"",
    );
    common::assert_ok(&unlock, "unlock ann");

    // fleet sync copies the whole shared record; fleet push brings every person back.
    let sync = cli(&ann_b, &["fleet", "sync"], b"");
    common::assert_ok(&sync, "fleet sync");
    let copy = std::fs::read_to_string(ann_b.store.join("alice.toml")).unwrap();
    assert!(copy.contains("person = \"ann\"") && copy.contains("person = \"ben\""));
    let out = cli(
        &ann_b,
        &["remove", "--user", "alice", "--all-people", "--yes"],
        b"",
    );
    common::assert_ok(&out, "remove everyone");
    let out = cli(&ann_b, &["fleet", "push"], b"");
    common::assert_ok(&out, "fleet push");
    let status = cli(&ben_c, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(row["people"].as_array().map(Vec::len), Some(2), "{row}");

    // ann removed: her key now chooses no token anywhere in the fleet.
    let out = cli(
        &ben_c,
        &["remove", "--user", "alice", "--person", "ann", "--yes"],
        b"",
    );
    common::assert_ok(&out, "remove ann");
    let (ok, line) = login(&ann_a, &oathtool_code(&ann, &["-N", &next]));
    common::assert_denied(ok, &line, "unbound_key");
}

/// The three-way race of administrators on one shared record, made deterministic on the real
/// cluster: a write whose generation was computed before two other administrators wrote (each
/// computes it from the record and the states, then writes by compare-and-swap) must not
/// lower the record's generation, or every person whose login saw the later writes is refused
/// as "rolled back?" (`Fleet::save_record` takes one more than the stored generation if that
/// is higher; `store::tests::a_save_never_lowers_the_generation_of_the_file` is the same rule
/// on files).
#[test]
fn a_generation_computed_before_other_administrators_wrote_never_lowers_the_record() {
    use pam_ecs_mfa::fleet::login::Fleet;
    use pam_ecs_mfa::fleet::records::Saved;
    use pam_ecs_mfa::state::Owner;
    use pam_ecs_mfa::store::SaveMode;
    use pam_ecs_mfa::user_name::UserName;

    let cluster = Cluster::start("shared-race");
    let ann_a = server(&cluster, "race-ann-a", ANN);
    let ben_b = server(&cluster, "race-ben-b", BEN);
    // Two administrators' writes (generations 1 and 2), then ann logs in: her state saw 2.
    let ann = enroll_person(&ann_a, "ann", ANN);
    enroll_person(&ben_b, "ben", BEN);
    wait_for_fresh_step(10);
    let (ok, line) = login(&ann_a, &oathtool_code(&ann, &[]));
    common::assert_accepted(ok, &line, "ok");

    // The third administrator computed generation 1 before both wrote (an empty record).
    let policy = pam_ecs_mfa::policy::Policy::load(&ann_a.config).unwrap();
    let fleet = Fleet::open(
        policy.fleet.as_ref().unwrap(),
        None,
        pam_ecs_mfa::fleet::transport::native,
    )
    .unwrap();
    let alice = UserName::parse("alice").unwrap();
    let stored = fleet.read(&Owner::account(&alice)).unwrap().record.unwrap();
    assert_eq!(stored.generation, 2, "two writes so far");
    let sealed_2 = common::fleet::get(&ann_a, "records/alice");
    let secret = pam_ecs_mfa::totp::SecretKey::from_bytes(vec![7; 20]).unwrap();
    let late = common::records::token("alice", "cat", vec![], &secret);
    assert_eq!(late.generation, 1, "computed before the other two wrote");
    let saved = fleet.save_record(&late, SaveMode::CreateNew).unwrap();
    assert!(matches!(saved, Saved::Written(3)), "{saved:?}");
    let stored = fleet.read(&Owner::account(&alice)).unwrap().record.unwrap();
    assert_eq!((stored.generation, stored.tokens.len()), (3, 3));

    // ann's next login is not taken for a rollback (it sees 3); record 2 written back is.
    let next = format!("@{}", common::container::now() + 30);
    let (ok, line) = login(&ann_a, &oathtool_code(&ann, &["-N", &next]));
    common::assert_accepted(ok, &line, "ok");
    common::fleet::put(&ann_a, "records/alice", sealed_2);
    let (ok, line) = login(&ann_a, "000000");
    common::assert_denied(ok, &line, "bad_file");
    assert!(
        line.contains("record generation 2 is older than 3 seen before"),
        "{line}"
    );
}

/// An administrator's command refused half-way writes nothing to etcd. A compromised host
/// rewrites a *person's* fleet state (`state/<user>~<person>`), as
/// `fleet_state_trust` does to an account's: a recovery code folded into the record stays used
/// whatever the state says (only a code used since the last fold comes back, until the next
/// fold), a grace mark pushed to 2100 spares nobody the code, and a replay mark pushed far
/// ahead refuses the person's codes for at most the lockout bound, never ben's.
#[test]
fn a_persons_fleet_state_forged_by_a_host_revives_no_folded_code_and_no_grace() {
    let cluster = Cluster::start("shared-forged");
    let a = host(&cluster, "forged-a", "grace_seconds = 300", "");
    a.set_accepted_key(ANN);
    let b = server(&cluster, "forged-b", ANN);
    let ben_c = server(&cluster, "forged-ben", BEN);
    let out = cli(
        &a,
        &[
            "enroll",
            "--user",
            "alice",
            "--person",
            "ann",
            "--key",
            ANN,
            "--no-confirm",
            "--json",
        ],
        b"",
    );
    common::assert_ok(&out, "enroll ann");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ann = v["secret"].as_str().unwrap().to_string();
    let codes: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let ben = enroll_person(&ben_c, "ben", BEN);
    let state = "state/alice~ann";

    // An administrator's command refused half-way (its first key is free, its second is
    // ann's, no --move) writes nothing to etcd either.
    let sealed = common::fleet::get(&a, "records/alice");
    let free = format!("SHA256:{}", "Q".repeat(43));
    let out = cli(
        &ben_c,
        &[
            "bind", "--user", "alice", "--person", "ben", "--key", &free, "--key", ANN,
        ],
        b"",
    );
    common::assert_exit(&out, 2, "bind of ann's key to ben without --move");
    assert!(
        common::fleet::get(&a, "records/alice") == sealed,
        "a refused bind wrote part of itself (ben got the free key)"
    );

    // Recovery codes: one used and folded, one used after the fold; the host empties the list.
    let (ok, line) = login(&b, &codes[0]);
    common::assert_accepted(ok, &line, "recovery_code");
    let out = cli(&b, &["fleet", "fold", "--json"], b"");
    common::assert_ok(&out, "fleet fold");
    let (ok, line) = login(&b, &codes[1]);
    common::assert_accepted(ok, &line, "recovery_code");
    common::fleet::edit_state(&a, state, "used_recovery", |_| "[]".into());
    let (ok, line) = login(&b, &codes[0]);
    common::assert_denied(ok, &line, "bad_code");
    assert!(line.contains("person=ann"), "{line}");
    let (ok, line) = login(&b, &codes[1]);
    assert!(
        ok,
        "the documented window (used since the last fold): {line}"
    );
    let out = cli(&a, &["fleet", "fold"], b"");
    common::assert_ok(&out, "fleet fold");
    let (ok, line) = login(&b, &codes[1]);
    common::assert_denied(ok, &line, "bad_code");

    // Grace: earned on A, then pushed to 2100 by a host: the code is asked again.
    wait_for_fresh_step(10);
    let (ok, line) = login(&a, &oathtool_code(&ann, &[]));
    common::assert_accepted(ok, &line, "ok");
    let no_code = || a.login_with_key("alice", ANN, "");
    let r = no_code();
    assert!(r.success && r.audit().contains("reason=grace"), "{r:#?}");
    common::fleet::edit_state(&a, state, "grace", |v| {
        format!("[\"{}:4102444800\"]", &v[2..18])
    });
    let r = no_code();
    assert!(!r.success && r.prompts() == 1, "{}", r.audit());

    // A replay mark pushed a year ahead: ann's codes are refused as a clock problem (for at
    // most the lockout bound, `attack_fleet` checks the bound), never ben's: his state is his.
    let year = common::container::now() + 365 * 86400;
    common::fleet::edit_state(&a, state, "last_accepted", |_| year.to_string());
    let next = format!("@{}", common::container::now() + 30);
    let (ok, line) = login(&b, &oathtool_code(&ann, &["-N", &next]));
    common::assert_denied(ok, &line, "state_in_future");
    assert!(line.contains("person=ann"), "{line}");
    let (ok, line) = login(&ben_c, &oathtool_code(&ben, &["-N", &next]));
    common::assert_accepted(ok, &line, "ok");
}
