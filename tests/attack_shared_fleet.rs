//! Tier 4: an outside attack on shared accounts (issue 26) on the etcd fleet backend, against a
//! real 3-node TLS cluster (tests/common/etcd.rs): the administrator's `--person` / `--key`
//! commands and `fleet push/sync/fold`, whose fleet path is other code than the files backend's
//! (`src/fleet/records.rs`, `src/backend.rs`). `finding_*`: an attack that worked (the test
//! asserts the correct behaviour, so it fails until fixed); `held_*`: one that did not. Each
//! sandbox is a server whose logins come with one SSH key (`Sandbox::set_accepted_key`).
//!
//! Findings, all fixed in this session (attack-s10):
//! - `fleet push --force` wrote a shared account one person at a time: refused at the second
//!   person (a key the fleet now binds to someone else), the first stayed written
//!   (`push_account` now checks that every token fits before it writes any);
//! - `reset --person` (and `enroll --force --person`) waiting at its confirmation prompt wrote
//!   back the keys it read before the prompt (a key bound meanwhile was lost) and wrote back a
//!   person removed meanwhile (`SaveMode::Reset`: the token there when written, its keys then);
//! - garbage a host wrote into the account's own state (`state/<user>`), which no person of a
//!   shared account uses, made the record unreadable to `show`, `status`, `recovery`,
//!   `remove --person`, `fleet sync` and `fleet fold`, and denied every person's login
//!   (`bad_file`) with no `unlock` able to reach it (`Fleet::read_record`, and the login's
//!   first read fails on that state only if it then uses it: `Fleet::read_now_to_choose`);
//! - `unlock --person` could not repair a person's state that is not ecs-mfa's (it failed on
//!   it before reaching the repair), as it does for an account's own;
//! - `fleet fold` stopped at the first person whose state could not be read, so the others'
//!   used recovery codes stayed unfolded (revivable by a host) as long as that lasted.
//!
//! Held: every refused command leaves etcd untouched and exits as on the files backend;
//! concurrent binds and `bind --move` on two servers; a key moved or a person removed while a
//! login waits at the prompt; `remove` then `import` of the same person and secret elsewhere
//! (no lockout carried over, no used code back); `verify --person` on the fleet.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Output;

use common::etcd::Cluster;
use common::fleet::get;
use common::{Sandbox, cli, oathtool_code, wait_for_fresh_step};
use pam_ecs_mfa::ssh_auth_info::AcceptedKey;

const ANN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";
const BEN: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

/// A whole `SHA256:` fingerprint no real key in these tests has (`c`: which one).
fn fp(c: char) -> String {
    format!("SHA256:{}A", c.to_string().repeat(42))
}

fn fp_of(key: &str) -> String {
    AcceptedKey::parse(key).unwrap().fingerprint
}

use common::fleet::keyed_host as server;

fn login(sb: &Sandbox, code: &str) -> (bool, String) {
    common::keyed_login(sb, "alice", code)
}

fn enroll_json(sb: &Sandbox, person: &str, keys: &[&str]) -> serde_json::Value {
    let mut args = vec!["enroll", "--user", "alice", "--person", person];
    for k in keys {
        args.extend(["--key", k]);
    }
    args.extend(["--no-confirm", "--json"]);
    let out = cli(sb, &args, b"");
    common::assert_ok(&out, &format!("enroll {person}"));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn enroll_person(sb: &Sandbox, person: &str, keys: &[&str]) -> String {
    enroll_json(sb, person, keys)["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

fn record(sb: &Sandbox) -> Vec<u8> {
    get(sb, "records/alice")
}

/// The record as the fleet has it (opened with the fleet key).
fn account(sb: &Sandbox) -> pam_ecs_mfa::store::AccountRecord {
    let policy = pam_ecs_mfa::policy::Policy::load(&sb.config).unwrap();
    let fleet = pam_ecs_mfa::fleet::login::Fleet::open(
        policy.fleet.as_ref().unwrap(),
        None,
        pam_ecs_mfa::fleet::transport::native,
    )
    .unwrap();
    let kv = fleet
        .etcd
        .get(&format!("{}records/alice", common::fleet::PREFIX))
        .unwrap()
        .expect("a record");
    fleet
        .open_record(
            &pam_ecs_mfa::user_name::UserName::parse("alice").unwrap(),
            &kv,
        )
        .unwrap()
}

fn people(sb: &Sandbox) -> Vec<(String, Vec<String>)> {
    account(sb)
        .tokens
        .iter()
        .map(|t| (t.person_name().to_string(), t.keys.clone()))
        .collect()
}

fn keys_of(sb: &Sandbox, person: &str) -> Vec<String> {
    people(sb)
        .into_iter()
        .find(|(p, _)| p == person)
        .map(|(_, k)| k)
        .unwrap_or_else(|| panic!("no {person}: {:?}", people(sb)))
}

/// `reset --user alice --person PERSON --json` (with its confirmation prompt) started: returns
/// the waiting process and the new secret it printed; the reset is written only once the
/// code is typed ([`finish_reset`]).
fn start_reset(sb: &Sandbox, person: &str) -> (std::process::Child, String) {
    start_confirmed(
        sb,
        &["reset", "--user", "alice", "--person", person, "--json"],
    )
}

/// `ARGS` (an enroll or reset with `--json`, waiting at its confirmation prompt) started:
/// the waiting process and the secret it printed.
fn start_confirmed(sb: &Sandbox, args: &[&str]) -> (std::process::Child, String) {
    let mut child = common::spawn_cli(sb, args);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("reset printed {line:?}"));
    let secret = v["secret"].as_str().unwrap().to_string();
    // Keep the pipe open (the process writes more after the confirmation).
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
    });
    (child, secret)
}

/// Waits for a command started by [`common::spawn_cli`] (its stdin closed: no answer).
fn done(mut child: std::process::Child) -> Output {
    drop(child.stdin.take());
    common::wait_with_timeout(child, std::time::Duration::from_secs(60))
}

fn finish_reset(mut child: std::process::Child, code: &str) -> Output {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{code}\n").as_bytes()).unwrap();
    drop(stdin);
    common::wait_with_timeout(child, std::time::Duration::from_secs(60))
}

fn exit_of(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

// ---------------------------------------------------------------------------------------------
// Findings and held attacks
// ---------------------------------------------------------------------------------------------

/// Attack: `fleet push --force` of a shared account whose second person cannot be written
/// (their key is bound, in etcd, to someone else since the local copy was made). `push_account`
/// saves the local record one token at a time; the first token written stays written when the
/// second is refused: the refused push changes the fleet's record half-way (ann's token
/// replaced by the local copy, her state's used recovery codes forgotten), like the `bind`
/// the author fixed in `update_account`.
#[test]
fn finding_fleet_push_force_refused_for_one_person_writes_nothing() {
    let cluster = Cluster::start("sf-push");
    let a = server(&cluster, "sfpush-a", ANN);
    enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    // The local copy has ann and ben; then, in the fleet, ben goes and carl gets ben's key.
    common::assert_ok(&cli(&a, &["fleet", "sync"], b""), "fleet sync");
    common::assert_ok(
        &cli(
            &a,
            &["remove", "--user", "alice", "--person", "ben", "--yes"],
            b"",
        ),
        "remove ben",
    );
    enroll_person(&a, "carl", &[BEN]);
    let before = record(&a);
    let out = cli(&a, &["fleet", "push", "--force"], b"");
    assert_eq!(
        exit_of(&out),
        2,
        "ben's key is carl's: {}",
        common::describe(&out)
    );
    assert!(
        record(&a) == before,
        "a refused push wrote part of itself: {:?}",
        people(&a)
    );
}

/// Every key and value under the prefix, with its `mod_revision` (a rewrite of the same
/// value is a write too).
fn everything(sb: &Sandbox) -> Vec<(String, i64, Vec<u8>)> {
    let answer = common::fleet::client(sb)
        .txn(
            &[],
            &[pam_ecs_mfa::fleet::etcd::Op::Prefix {
                prefix: common::fleet::PREFIX.to_string(),
                keys_only: false,
            }],
            &[],
        )
        .unwrap();
    answer
        .reads
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.mod_revision, kv.value.to_vec()))
        .collect()
}

/// The administrator's commands that must fail on `alice` (ann bound to ANN, ben to BEN, dave
/// to no key), each with a name.
fn failing_commands(ga: &str, many: &[String]) -> Vec<(&'static str, Vec<String>)> {
    let fq = fp('Q');
    let s = |v: &[&str]| -> Vec<String> { v.iter().map(|x| x.to_string()).collect() };
    let mut bind33 = s(&["bind", "--user", "alice", "--person", "ann"]);
    for k in many {
        bind33.extend(["--key".to_string(), k.clone()]);
    }
    vec![
        (
            "enroll: key of ben",
            s(&[
                "enroll",
                "--user",
                "alice",
                "--person",
                "carl",
                "--key",
                BEN,
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "enroll: ann again",
            s(&[
                "enroll",
                "--user",
                "alice",
                "--person",
                "ann",
                "--key",
                &fq,
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "enroll: second unbound",
            s(&[
                "enroll",
                "--user",
                "alice",
                "--person",
                "eve",
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "enroll: bad person",
            s(&[
                "enroll",
                "--user",
                "alice",
                "--person",
                "e\u{1b}[31mve",
                "--key",
                &fq,
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "reset: nobody",
            s(&[
                "reset",
                "--user",
                "alice",
                "--person",
                "nobody",
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "reset: ann to ben's key",
            s(&[
                "reset",
                "--user",
                "alice",
                "--person",
                "ann",
                "--key",
                BEN,
                "--no-confirm",
                "--json",
            ]),
        ),
        (
            "reset: no person",
            s(&["reset", "--user", "alice", "--no-confirm", "--json"]),
        ),
        (
            "bind: nobody",
            s(&[
                "bind", "--user", "alice", "--person", "nobody", "--key", &fq,
            ]),
        ),
        (
            "bind: free then ann's",
            s(&[
                "bind", "--user", "alice", "--person", "ben", "--key", &fq, "--key", ANN,
            ]),
        ),
        (
            "bind: cut-off key",
            s(&[
                "bind",
                "--user",
                "alice",
                "--person",
                "ben",
                "--key",
                "SHA256:abc",
            ]),
        ),
        ("bind: 33 keys", bind33),
        (
            "unbind: not hers",
            s(&["unbind", "--user", "alice", "--person", "ann", "--key", BEN]),
        ),
        (
            "unbind: free then hers",
            s(&[
                "unbind", "--user", "alice", "--person", "ann", "--key", ANN, "--key", &fq,
            ]),
        ),
        (
            "unbind: ann's only key (dave is the unbound one)",
            s(&["unbind", "--user", "alice", "--person", "ann", "--key", ANN]),
        ),
        (
            "remove: nobody",
            s(&["remove", "--user", "alice", "--person", "nobody", "--yes"]),
        ),
        (
            "remove: no person",
            s(&["remove", "--user", "alice", "--yes"]),
        ),
        (
            "recovery: nobody",
            s(&["recovery", "--user", "alice", "--person", "nobody"]),
        ),
        ("recovery: no person", s(&["recovery", "--user", "alice"])),
        (
            "unlock: nobody",
            s(&["unlock", "--user", "alice", "--person", "nobody"]),
        ),
        ("unlock: no person", s(&["unlock", "--user", "alice"])),
        (
            "show: nobody",
            s(&["show", "--user", "alice", "--person", "nobody"]),
        ),
        (
            "verify: nobody",
            s(&["verify", "--user", "alice", "--person", "nobody"]),
        ),
        (
            "import: key of ben",
            s(&[
                "import",
                "google-authenticator",
                "--user",
                "alice",
                "--person",
                "carl",
                "--key",
                BEN,
                "--file",
                ga,
            ]),
        ),
        (
            "import: ann again",
            s(&[
                "import",
                "google-authenticator",
                "--user",
                "alice",
                "--person",
                "ann",
                "--file",
                ga,
            ]),
        ),
        (
            "import: second unbound",
            s(&[
                "import",
                "google-authenticator",
                "--user",
                "alice",
                "--person",
                "eve",
                "--file",
                ga,
            ]),
        ),
    ]
}

/// Attack: every administrator's command that a rule refuses (unknown person, a key bound to
/// someone else, a malformed key, 33 keys, a second token bound to no key, no `--person` on
/// an account of several), on the fleet. Held: nothing under the prefix changes (record and
/// every state, compared with their revisions), and each exits with the same status as on the
/// files backend.
#[test]
fn held_every_refused_admin_command_leaves_etcd_untouched_and_exits_as_on_files() {
    let cluster = Cluster::start("sf-refuse");
    let a = server(&cluster, "sfref-a", ANN);
    let files = Sandbox::new("sfref-files");
    files.set_config("max_failures = 3\nlockout_seconds = 600");
    for sb in [&a, &files] {
        enroll_person(sb, "ann", &[ANN]);
        enroll_person(sb, "ben", &[BEN]);
        enroll_person(sb, "dave", &[]);
    }
    let ga = a.root.join("ga");
    std::fs::write(&ga, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n\" TOTP_AUTH\n").unwrap();
    let ga = ga.display().to_string();
    let many: Vec<String> = "BCDEFGHIJKLMNOPRSTUVWXYZabcdefghi"
        .chars()
        .map(fp)
        .collect();
    assert_eq!(many.len(), 33);
    let before = everything(&a);
    let files_before = files.store_snapshot();
    let mut report = Vec::new();
    for (what, args) in failing_commands(&ga, &many) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fleet_out = cli(&a, &args, b"");
        let files_out = cli(&files, &args, b"");
        let (f, l) = (exit_of(&fleet_out), exit_of(&files_out));
        assert!(
            f != 0,
            "{what}: succeeded on the fleet: {}",
            common::describe(&fleet_out)
        );
        if f != l {
            report.push(format!(
                "{what}: fleet exit {f} ({}) but files exit {l} ({})",
                common::text(&fleet_out.stderr).trim(),
                common::text(&files_out.stderr).trim()
            ));
        }
        let after = everything(&a);
        if after != before {
            let changed: Vec<&String> = after
                .iter()
                .filter(|kv| !before.contains(kv))
                .map(|kv| &kv.0)
                .collect();
            report.push(format!("{what}: wrote {changed:?} to etcd"));
        }
        if files.store_snapshot() != files_before {
            report.push(format!("{what}: wrote the files store"));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

/// Attack: `reset --person ann` waits at its confirmation prompt (the human scans the QR code
/// and types the first code), and meanwhile another administrator, on another server, binds a
/// second key to ann. The reset kept the keys it read before the prompt (`record.keys =
/// existing.keys`) and `save_record` replaces the whole token: the key bound meanwhile is lost
/// (ann's new laptop is refused `unbound_key`), though neither command failed.
#[test]
fn finding_a_reset_at_its_prompt_keeps_a_key_bound_meanwhile() {
    let cluster = Cluster::start("sf-rbind");
    let a = server(&cluster, "sfrbind-a", ANN);
    let b = server(&cluster, "sfrbind-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    let (reset, secret) = start_reset(&a, "ann");
    let laptop = fp('L');
    let out = cli(
        &b,
        &[
            "bind", "--user", "alice", "--person", "ann", "--key", &laptop,
        ],
        b"",
    );
    common::assert_ok(&out, "bind ann's new laptop");
    let out = finish_reset(reset, &common::shared::code_at(&secret, 0));
    common::assert_ok(&out, "reset ann");
    assert_eq!(
        keys_of(&a, "ann"),
        vec![fp_of(ANN), laptop],
        "the reset wrote back the keys it read before its prompt"
    );
}

/// Attack: `reset --person ann` waits at its prompt; meanwhile another administrator removes
/// ann (she left). The reset, once confirmed, writes ann back (`SaveMode::Replace` puts a token
/// that is no longer there): the removal is lost and ann, who left, has a token again.
#[test]
fn finding_a_reset_at_its_prompt_does_not_bring_back_a_person_removed_meanwhile() {
    let cluster = Cluster::start("sf-rrm");
    let a = server(&cluster, "sfrrm-a", ANN);
    let b = server(&cluster, "sfrrm-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    let (reset, secret) = start_reset(&a, "ann");
    let out = cli(
        &b,
        &["remove", "--user", "alice", "--person", "ann", "--yes"],
        b"",
    );
    common::assert_ok(&out, "remove ann");
    let out = finish_reset(reset, &common::shared::code_at(&secret, 0));
    let names: Vec<String> = people(&a).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        names,
        vec!["ben".to_string()],
        "the reset brought ann back after her removal: {}",
        common::describe(&out)
    );
    assert_ne!(exit_of(&out), 0, "{}", common::describe(&out));
}

/// A login of alice on `sb` (with its accepted key) that waits at the prompt while
/// `meanwhile` runs (another administrator, on another server), then answers `code`.
fn login_at_prompt(sb: &Sandbox, meanwhile: impl FnOnce(), code: &str) -> (bool, String) {
    use std::io::Read;
    let mut run = sb.pamtester_open("alice", &[], &["setcred", "authenticate"]);
    let mut stderr = run.child.stderr.take().unwrap();
    let seen = common::read_until(&mut stderr, "Verification code:");
    meanwhile();
    let mut stdin = run.child.stdin.take().unwrap();
    let _ = stdin.write_all(format!("{code}\n").as_bytes());
    drop(stdin);
    let mut rest = Vec::new();
    let _ = stderr.read_to_end(&mut rest);
    let mut r = run.finish();
    r.stderr = common::text(&seen) + &common::text(&rest) + &r.stderr;
    (r.success, r.audit())
}

/// Attack: `remove --person ann` on one server, then the same person enrolled again on
/// another: by `import --person ann` of the very same secret (her phone kept it) after she
/// had locked herself out and used a code. Held: the lockout is not carried over (the import
/// forgets the old secret's failures), and the code she used before the removal stays used
/// (the replay mark of `state/alice~ann` outlives the record).
#[test]
fn held_remove_then_import_of_the_same_person_elsewhere_carries_no_lockout_and_no_used_code() {
    let cluster = Cluster::start("sf-reimp");
    let a = server(&cluster, "sfreimp-a", ANN);
    let b = server(&cluster, "sfreimp-b", ANN);
    let ann = enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    wait_for_fresh_step(20);
    let code = oathtool_code(&ann, &[]);
    let (ok, line) = login(&a, &code);
    common::assert_accepted(ok, &line, "ok");
    for _ in 0..3 {
        let (ok, _) = login(&a, "000000");
        assert!(!ok);
    }
    let next = common::shared::code_at(&ann, 30);
    let (ok, line) = login(&b, &next);
    common::assert_denied(ok, &line, "throttled");
    common::assert_ok(
        &cli(
            &b,
            &["remove", "--user", "alice", "--person", "ann", "--yes"],
            b"",
        ),
        "remove ann",
    );
    let ga = b.root.join("ann.ga");
    std::fs::write(&ga, format!("{ann}\n\" TOTP_AUTH\n")).unwrap();
    let out = cli(
        &b,
        &[
            "import",
            "google-authenticator",
            "--user",
            "alice",
            "--person",
            "ann",
            "--key",
            ANN,
            "--file",
            ga.to_str().unwrap(),
        ],
        b"",
    );
    common::assert_ok(&out, "import ann again");
    let (ok, line) = login(&b, &code);
    assert!(!ok, "a code used before the removal worked again: {line}");
    assert!(
        !line.contains("reason=throttled"),
        "the lockout of the removed token carried over: {line}"
    );
    let (ok, line) = login(&a, &next);
    common::assert_accepted(ok, &line, "ok");
}

/// Attack: a compromised server writes garbage into `state/alice`, the *account's own*
/// state, which on an account of people only belongs to no token and no login of theirs
/// should need. The fleet's `load_account` reads it with the record (`Fleet::read` of the
/// account's owner), so every administrator's command that loads the record failed on it:
/// `show --person`, `status`, `remove --person`, `recovery --person`, `fleet sync` (the local
/// copy never refreshed), `fleet fold` (used codes never folded). The record is the
/// administrator's; a host-written value must not take it hostage.
#[test]
fn finding_garbage_in_the_accounts_own_state_blocks_no_admin_command_on_its_people() {
    let cluster = Cluster::start("sf-own");
    let a = server(&cluster, "sfown-a", ANN);
    let b = server(&cluster, "sfown-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    let ben = enroll_person(&a, "ben", &[BEN]);
    enroll_person(&a, "carl", &[&fp('C')]);
    common::fleet::put(&a, "state/alice", b"\x00garbage".to_vec());
    let mut failed = Vec::new();
    for args in [
        vec!["show", "--user", "alice", "--person", "ann", "--qr", "none"],
        vec!["status", "--user", "alice", "--json"],
        vec!["recovery", "--user", "alice", "--person", "ann", "--json"],
        vec![
            "bind",
            "--user",
            "alice",
            "--person",
            "ann",
            "--key",
            &fp('L'),
        ],
        vec!["remove", "--user", "alice", "--person", "carl", "--yes"],
        vec!["fleet", "sync"],
        vec!["fleet", "fold"],
    ] {
        let out = cli(&a, &args, b"");
        if !out.status.success() {
            failed.push(format!("{args:?}: {}", common::describe(&out)));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // ben's login needs ben's state, not the account's: it works (it was denied `bad_file`,
    // and no `unlock` reached that value: without --person it asks for a person here).
    wait_for_fresh_step(10);
    let (ok, line) = login(&b, &oathtool_code(&ben, &[]));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=ben"), "{line}");
}

/// Attack: a compromised server writes garbage into one person's state (`state/alice~ann`).
/// Held: `status --json` still reports ben (and names ann's state as the problem), `show
/// --person ben` works, `unlock --person ben` never touches ann's value, and `unlock --person
/// ann` replaces only hers.
#[test]
fn finding_unlock_of_a_person_repairs_their_garbage_state_and_touches_nobody_else() {
    let cluster = Cluster::start("sf-pgarb");
    let a = server(&cluster, "sfpgarb-a", ANN);
    enroll_person(&a, "ann", &[ANN]);
    let ben = enroll_person(&a, "ben", &[BEN]);
    let b = server(&cluster, "sfpgarb-b", BEN);
    wait_for_fresh_step(10);
    let (ok, line) = login(&b, &oathtool_code(&ben, &[]));
    common::assert_accepted(ok, &line, "ok");
    let ben_state = get(&a, "state/alice~ben");
    common::fleet::put(
        &a,
        "state/alice~ann",
        b"version = 1\nx = \"\x1b[31m\"".to_vec(),
    );
    let out = cli(&a, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("status --json: {}", common::describe(&out)));
    let people = row["people"].as_array().expect("people");
    let of = |name: &str| people.iter().find(|p| p["person"] == name).cloned();
    assert_eq!(
        of("ben").map(|b| b["locked"].clone()),
        Some(false.into()),
        "{row}"
    );
    assert!(
        !common::text(&out.stdout).contains('\u{1b}'),
        "raw escape in status"
    );
    assert!(
        !common::text(&out.stderr).contains('\u{1b}'),
        "raw escape in status"
    );
    let out = cli(
        &a,
        &["show", "--user", "alice", "--person", "ben", "--qr", "none"],
        b"",
    );
    common::assert_ok(&out, "show ben");
    let out = cli(&a, &["unlock", "--user", "alice", "--person", "ben"], b"");
    common::assert_ok(&out, "unlock ben");
    assert!(
        get(&a, "state/alice~ann").starts_with(b"version = 1\nx ="),
        "unlock of ben touched ann's state"
    );
    let out = cli(&a, &["unlock", "--user", "alice", "--person", "ann"], b"");
    common::assert_ok(&out, "unlock ann");
    assert!(
        !common::text(&out.stderr).contains('\u{1b}'),
        "raw escape in unlock"
    );
    assert_eq!(
        get(&a, "state/alice~ben"),
        ben_state,
        "unlock of ann touched ben's"
    );
    let next = common::shared::code_at(&ben, 30);
    let (ok, line) = login(&b, &next);
    common::assert_accepted(ok, &line, "ok");
}

/// Attack: two administrators on two servers bind keys to two people of the same record at
/// the same time, and two others `bind --move` the same key to two different people at once.
/// Held: compare-and-swap keeps every bind (none lost), and the moved key ends bound to
/// exactly one person (the record stays valid).
#[test]
fn held_concurrent_binds_on_two_servers_lose_nothing_and_bind_a_key_once() {
    let cluster = Cluster::start("sf-conc");
    let a = server(&cluster, "sfconc-a", ANN);
    let b = server(&cluster, "sfconc-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    let (ka, kb): (Vec<String>, Vec<String>) = (
        "DEFGH".chars().map(fp).collect(),
        "defgh".chars().map(fp).collect(),
    );
    for (ka, kb) in ka.iter().zip(&kb) {
        let one = common::spawn_cli(
            &a,
            &["bind", "--user", "alice", "--person", "ann", "--key", ka],
        );
        let two = common::spawn_cli(
            &b,
            &["bind", "--user", "alice", "--person", "ben", "--key", kb],
        );
        common::assert_ok(&done(one), "bind ann");
        common::assert_ok(&done(two), "bind ben");
    }
    let mut want_a = vec![fp_of(ANN)];
    want_a.extend(ka);
    let mut want_b = vec![fp_of(BEN)];
    want_b.extend(kb);
    assert_eq!((keys_of(&a, "ann"), keys_of(&a, "ben")), (want_a, want_b));
    let moved = fp('M');
    common::assert_ok(
        &cli(
            &a,
            &[
                "bind", "--user", "alice", "--person", "ann", "--key", &moved,
            ],
            b"",
        ),
        "bind M to ann",
    );
    let children: Vec<_> = [(&a, "ben"), (&b, "ann"), (&a, "ben"), (&b, "ben")]
        .into_iter()
        .map(|(sb, person)| {
            common::spawn_cli(
                sb,
                &[
                    "bind", "--user", "alice", "--person", person, "--key", &moved, "--move",
                ],
            )
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(done).collect();
    for out in &outs {
        common::assert_ok(out, "bind --move");
    }
    let holders: Vec<String> = people(&a)
        .into_iter()
        .filter(|(_, keys)| keys.contains(&moved))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
}

/// Attack: ann's login waits at the prompt (her key chose her token) while another
/// administrator moves her key to ben (`bind --move`), or removes her. Held: the settle sees
/// the record changed (compare-and-swap on its revision) and chooses again: ann's code no
/// longer opens the account with that key.
#[test]
fn held_a_key_moved_or_a_person_removed_while_a_login_waits_at_the_prompt() {
    let cluster = Cluster::start("sf-prompt");
    let a = server(&cluster, "sfprompt-a", ANN);
    let b = server(&cluster, "sfprompt-b", BEN);
    let ann = enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    wait_for_fresh_step(15);
    let (ok, line) = login_at_prompt(
        &a,
        || {
            common::assert_ok(
                &cli(
                    &b,
                    &[
                        "bind", "--user", "alice", "--person", "ben", "--key", ANN, "--move",
                    ],
                    b"",
                ),
                "move ann's key to ben",
            )
        },
        &oathtool_code(&ann, &[]),
    );
    assert!(!ok, "ann's code with a key that is now ben's: {line}");
    // Back to ann, then ann removed while she types.
    common::assert_ok(
        &cli(
            &b,
            &[
                "bind", "--user", "alice", "--person", "ann", "--key", ANN, "--move",
            ],
            b"",
        ),
        "move the key back",
    );
    let (ok, line) = login_at_prompt(
        &a,
        || {
            common::assert_ok(
                &cli(
                    &b,
                    &["remove", "--user", "alice", "--person", "ann", "--yes"],
                    b"",
                ),
                "remove ann",
            )
        },
        &common::shared::code_at(&ann, 30),
    );
    assert!(!ok, "a removed person's code: {line}");
}

/// Attack: a compromised server writes garbage into one person's state (`state/alice~ann`),
/// then waits. `fleet fold` (run daily, the bound on what a host can revive) folded the
/// people of an account one at a time and stopped at the first that failed: ben's recovery
/// code, used and then "folded", stayed in the record, so the host erasing ben's
/// `used_recovery` revived it for as long as ann's state stayed broken (the documented
/// window "since the last fold" became unbounded).
#[test]
fn finding_one_persons_broken_state_stops_no_fold_of_the_others() {
    let cluster = Cluster::start("sf-fold");
    let a = server(&cluster, "sffold-a", ANN);
    let b = server(&cluster, "sffold-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    let v = enroll_json(&a, "ben", &[BEN]);
    let code = v["recovery_codes"][0].as_str().unwrap().to_string();
    let (ok, line) = login(&b, &code);
    common::assert_accepted(ok, &line, "recovery_code");
    common::fleet::put(&a, "state/alice~ann", b"not a state".to_vec());
    let out = cli(&a, &["fleet", "fold"], b"");
    assert_ne!(
        exit_of(&out),
        0,
        "ann's state is broken: {}",
        common::describe(&out)
    );
    // The host erases ben's used codes (a no-op once the fold has taken them into the record).
    let text = String::from_utf8(get(&a, "state/alice~ben")).unwrap();
    let erased: String = text
        .lines()
        .map(|l| match l.starts_with("used_recovery = ") {
            true => "used_recovery = []\n".to_string(),
            false => format!("{l}\n"),
        })
        .collect();
    common::fleet::put(&a, "state/alice~ben", erased.into_bytes());
    let (ok, line) = login(&b, &code);
    assert!(
        !ok,
        "ben's folded recovery code came back (the fold stopped at ann): {line}"
    );
}

/// Attack: as [`finding_a_reset_at_its_prompt_keeps_a_key_bound_meanwhile`], with `enroll
/// --force --person ann` (a new phone for ann, no `--key`: her keys are kept) waiting at its
/// confirmation prompt while another administrator binds ann's new laptop.
#[test]
fn finding_an_enroll_force_at_its_prompt_keeps_a_key_bound_meanwhile() {
    let cluster = Cluster::start("sf-efbind");
    let a = server(&cluster, "sfefbind-a", ANN);
    let b = server(&cluster, "sfefbind-b", BEN);
    enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    let (enroll, secret) = start_confirmed(
        &a,
        &[
            "enroll", "--user", "alice", "--person", "ann", "--force", "--json",
        ],
    );
    let laptop = fp('L');
    let out = cli(
        &b,
        &[
            "bind", "--user", "alice", "--person", "ann", "--key", &laptop,
        ],
        b"",
    );
    common::assert_ok(&out, "bind ann's new laptop");
    let out = finish_reset(enroll, &common::shared::code_at(&secret, 0));
    common::assert_ok(&out, "enroll --force ann");
    assert_eq!(
        keys_of(&a, "ann"),
        vec![fp_of(ANN), laptop],
        "enroll --force wrote back the keys it read before its prompt"
    );
}

/// Attack: `verify --person` on the fleet, as a check of a person's code from any server.
/// Held: ann's code verified for ann is used fleet-wide (a login with it is a replay); ann's
/// code given as ben's is refused and counts against ben only; no `--person` on an account
/// of two people is a usage error (exit 2) before any code is read.
#[test]
fn held_verify_person_on_the_fleet_uses_that_persons_code_and_state_only() {
    let cluster = Cluster::start("sf-verify");
    let a = server(&cluster, "sfverify-a", ANN);
    let ann = enroll_person(&a, "ann", &[ANN]);
    enroll_person(&a, "ben", &[BEN]);
    wait_for_fresh_step(15);
    let code = oathtool_code(&ann, &[]);
    let out = cli(
        &a,
        &["verify", "--user", "alice"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_exit(&out, 2, "verify without --person");
    let out = cli(
        &a,
        &["verify", "--user", "alice", "--person", "ben", "--json"],
        format!("{code}\n").as_bytes(),
    );
    assert_ne!(
        exit_of(&out),
        0,
        "ann's code as ben's: {}",
        common::describe(&out)
    );
    let out = cli(
        &a,
        &["verify", "--user", "alice", "--person", "ann", "--json"],
        format!("{code}\n").as_bytes(),
    );
    common::assert_ok(&out, "verify ann");
    let status = cli(&a, &["status", "--user", "alice", "--json"], b"");
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let people = row["people"].as_array().unwrap();
    let failures =
        |name: &str| people.iter().find(|p| p["person"] == name).unwrap()["failures"].clone();
    assert_eq!(
        (failures("ann"), failures("ben")),
        (0.into(), 1.into()),
        "{row}"
    );
    let (ok, line) = login(&a, &code);
    common::assert_denied(ok, &line, "replay");
}
