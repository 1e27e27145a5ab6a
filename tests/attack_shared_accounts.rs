//! Tier 2: an outside attack on shared accounts (issue 26), through real Linux-PAM (pamtester,
//! the real `.so`) and the real `mfa-enroll`. `finding_*`: a hole the attack found (each failed
//! before its fix); `held_*`: an attack that did not work. The key "sshd accepted" comes from
//! `pam_env.so` (`SSH_AUTH_INFO_0`, set by pamtester's `setcred` before `authenticate`), as in
//! `tests/pam_shared_accounts.rs`; its config file is rewritten between logins to switch keys.

mod common;

use std::process::{Command, Output};

use common::{cli, oathtool_code};

use common::shared::{Key, Shared, code_at};

fn secret_of(out: &Output) -> String {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    v["secret"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------------

/// Removing the last person removes the record; the person's login state stays (its replay
/// mark keeps used codes used), with the generation it saw. Enrolling that person again (a
/// lost phone handled as "remove, enroll") must write a generation above it: before the fix
/// the new record took the generation after the *account's* state only, and every login of
/// the person was refused as a rolled-back record (`bad_file`).
#[test]
fn finding_a_person_enrolled_again_after_the_record_was_removed_can_log_in() {
    let s = Shared::new("reenroll-person", "");
    let alice = s.key("alice", "alice@laptop");
    s.use_key(Some(&alice));
    let secret = enroll_reset_remove_enroll(&s, "root", "alice", &alice);
    common::wait_for_fresh_step(5);
    let (ok, line) = s.login("root", &code_at(&secret, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=alice"), "{line}");
}

/// Enrolls `person` on `user`, resets and makes new recovery codes (generation 3 in the
/// person's state), removes the person (the last: the record goes), enrolls them again; the
/// new secret.
fn enroll_reset_remove_enroll(s: &Shared, user: &str, person: &str, key: &Key) -> String {
    s.enroll_person(user, person, key);
    let whom = ["--user", user, "--person", person];
    s.admin(&[&["reset"], &whom[..], &["--no-confirm", "--json"]].concat());
    s.admin(&[&["recovery"], &whom[..], &["--json"]].concat());
    s.admin(&[&["remove"], &whom[..], &["--yes"]].concat());
    assert!(
        !s.sb.store.join(format!("{user}.toml")).exists(),
        "last person gone"
    );
    s.enroll_person(user, person, key)
}

/// The account's own name as `--person` means the account's own token (docs/file-formats.md).
/// On an account with its own token and a person, `enroll --person root --key K` added a
/// *second* token of "root": the file then held two `person = "root"` tables, and every login
/// of the account (every person's) was refused with `bad_file`. `reset`/`show`/`remove
/// --person root` answered "name one with --person" although one was named.
#[test]
fn finding_the_account_name_as_person_is_the_accounts_own_token_in_every_command() {
    let s = Shared::new("person-root", "key_binding = \"fallback\"\n");
    let alice = s.key("alice", "alice@laptop");
    let other = s.key("other", "root@ops");
    // The account's own token (format 1), then alice bound to her key.
    let own = s.sb.enroll("root", &[]);
    let alices = s.enroll_person("root", "alice", &alice);

    // Adding "root" again is refused (it exists), and the record stays valid.
    let out = cli(
        &s.sb,
        &[
            "enroll",
            "--user",
            "root",
            "--person",
            "root",
            "--key",
            other.fp.as_str(),
            "--no-confirm",
            "--json",
        ],
        b"",
    );
    common::assert_failed(
        &out,
        "enroll --person root on an account with its own token",
    );
    let record = s.record("root");
    assert_eq!(
        record.matches("person = \"root\"").count(),
        1,
        "one token of root: {record}"
    );
    common::wait_for_fresh_step(5);
    s.use_key(Some(&alice));
    let (ok, line) = s.login("root", &code_at(&alices, 0));
    common::assert_accepted(ok, &line, "ok");

    // --person root names the own token in the other commands.
    let shown = s.admin(&["show", "--user", "root", "--person", "root", "--json"]);
    assert_eq!(secret_of(&shown), own, "show --person root");
    let reset = s.admin(&[
        "reset",
        "--user",
        "root",
        "--person",
        "root",
        "--no-confirm",
        "--json",
    ]);
    let own = secret_of(&reset);
    s.use_key(Some(&other));
    let (ok, line) = s.login("root", &code_at(&own, 0));
    common::assert_accepted(ok, &line, "ok");
    s.admin(&["remove", "--user", "root", "--person", "root", "--yes"]);
    let record = s.record("root");
    assert!(
        !record.contains("person = \"root\"") && record.contains("person = \"alice\""),
        "{record}"
    );
}

/// libstdbuf keeps pamtester's stdout (the QR code and the secret) unbuffered, so that the
/// test reads the secret while the login waits for the confirmation code.
const UNBUFFERED: &str = "export LD_PRELOAD=/usr/libexec/coreutils/libstdbuf.so _STDBUF_O=0";
const CONFIRM: &str = "Enter the code from the app to confirm: ";

/// A first login of `user` (enrollment at login) waiting at the confirmation prompt, with the
/// secret it showed.
struct Enrolling {
    run: common::PamRun,
    stdout: std::process::ChildStdout,
    stderr: std::process::ChildStderr,
    secret: String,
}

/// Starts a first login of `user` and waits until it asks for the confirmation code.
fn start_enrolling(s: &Shared, user: &str) -> Enrolling {
    use std::io::Read;
    s.sb.set_ns_setup(UNBUFFERED);
    let mut run = s.sb.pamtester_open(user, &[], &["setcred", "authenticate"]);
    s.sb.set_ns_setup("");
    let mut stdout = run.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
            let text = common::text(&shown);
            if text.contains("\nSecret: ") && text.ends_with('\n') {
                break;
            }
        }
        (shown, stdout)
    });
    let mut stderr = run.child.stderr.take().unwrap();
    common::read_until(&mut stderr, CONFIRM);
    let (shown, stdout) = reader.join().unwrap();
    let secret = common::text(&shown)
        .lines()
        .find_map(|l| l.strip_prefix("Secret: "))
        .expect("secret shown")
        .replace(' ', "");
    Enrolling {
        run,
        stdout,
        stderr,
        secret,
    }
}

impl Enrolling {
    /// Confirms with the current code: (success, audit line).
    fn confirm(self) -> (bool, String) {
        let (ok, line, _) = self.confirm_shown();
        (ok, line)
    }

    /// [`Enrolling::confirm`], and what the login showed after the code (stdout and stderr).
    fn confirm_shown(mut self) -> (bool, String, String) {
        use std::io::Write;
        let mut stdin = self.run.child.stdin.take().unwrap();
        let _ = stdin.write_all(format!("{}\n", code_at(&self.secret, 0)).as_bytes());
        drop(stdin);
        self.run.child.stdout = Some(self.stdout);
        self.run.child.stderr = Some(self.stderr);
        let result = self.run.finish();
        let shown = format!("{}{}", result.stdout, result.stderr);
        (result.success, result.audit(), shown)
    }
}

/// A whole first login of `user`: (success, audit line, secret).
fn enroll_at_login(s: &Shared, user: &str) -> (bool, String, String) {
    let enrolling = start_enrolling(s, user);
    let secret = enrolling.secret.clone();
    let (ok, line) = enrolling.confirm();
    (ok, line, secret)
}

/// `key_binding = "required"` with `enroll_at_login`: the first login of an account that has
/// no record enrolled the account's own token *bound to no key*, which "required" never lets
/// anyone use; every later login enrolled yet another token (a new QR code each time) and the
/// first one's secret and recovery codes were void. The token made at login is now bound to
/// the key that proved itself.
#[test]
fn finding_enrollment_at_login_under_key_binding_required_binds_the_key() {
    let s = Shared::new(
        "required-enroll",
        "enroll_at_login = true\nkey_binding = \"required\"\n",
    );
    s.sb.enroll("bob", &[]);
    let dave = s.key("dave", "dave@laptop");
    s.use_key(Some(&dave));
    common::wait_for_fresh_step(3);
    let (ok, line, secret) = enroll_at_login(&s, "alice");
    common::assert_accepted(ok, &line, "enrolled_at_login");
    let record = s.record("alice");
    assert!(
        record.contains(&format!("keys = [\"{}\"]", dave.fp)),
        "bound to dave's key: {record}"
    );
    // The next login: the code of the token just made (next step), no second enrollment.
    let (ok, line) = s.login("alice", &code_at(&secret, 30));
    common::assert_accepted(ok, &line, "ok");
    // Another key still gets nothing of it.
    let eve = s.key("eve", "eve@box");
    s.use_key(Some(&eve));
    s.sb.set_config("key_binding = \"required\"\n");
    let (ok, line) = s.login("alice", &code_at(&secret, 30));
    common::assert_denied(ok, &line, "unbound_key");
}

/// A record at the documented limits (500 tokens of 32 keys each, under the 1 MiB read limit)
/// is valid, and every login of the account checks its rules, twice (before the prompt and at
/// the settle, under the token's lock). The check compared every key with every other one:
/// about 128 million comparisons, 0.4 s of CPU per read in a release build, several seconds
/// in this debug build, for each login of the account, by anyone who reaches the prompt. It is
/// linear now. Measured as the CPU time of the real pamtester process.
#[test]
fn finding_a_record_at_the_documented_limits_costs_a_login_little_cpu() {
    use pam_ecs_mfa::store::AccountRecord;
    use pam_ecs_mfa::store::record::UserRecord;
    use pam_ecs_mfa::totp::SecretKey;
    use pam_ecs_mfa::user_name::UserName;
    use std::os::unix::fs::PermissionsExt;

    let s = Shared::new("limits-cost", "");
    let mine = s.key("mine", "mine");
    s.use_key(Some(&mine));
    let secret = SecretKey::from_bytes(vec![5; 20]).unwrap();
    let token = |i: usize, keys| common::records::token("alice", &format!("p{i}"), keys, &secret);
    // Long fingerprints that differ only at the end: the costliest to compare.
    let fp = |n: usize| format!("SHA256:{}{n:08}", "A".repeat(35));
    let mut tokens: Vec<UserRecord> = (0..499)
        .map(|i| token(i, (0..32).map(|j| fp(i * 32 + j)).collect()))
        .collect();
    let mut last: Vec<String> = (0..31).map(|j| fp(499 * 32 + j)).collect();
    last.push(mine.fp.clone());
    tokens.push(token(499, last));
    let account = AccountRecord {
        user: UserName::parse("alice").unwrap(),
        generation: 1,
        tokens,
    };
    let text = account.to_toml().unwrap();
    assert!(text.len() < 1 << 20, "under the read limit: {}", text.len());
    s.sb.install_record("alice", text.as_bytes());

    // POSIX `times`: the second line is the CPU time of the shell's children (pamtester).
    let wrapper = s.sb.root.join("timed-pamtester");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\npamtester -v \"$@\"\nrc=$?\ntimes >&2\nexit $rc\n",
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let code = oathtool_code(&secret.to_base32(), &[]);
    let r =
        s.sb.pamtester(
            "alice",
            format!("{code}\n").as_bytes(),
            &[("ECS_MFA_PAM_CLIENT", wrapper.to_str().unwrap())],
            &["setcred", "authenticate"],
        )
        .finish();
    let line = r.audit();
    common::assert_accepted(r.success, &line, "ok");
    assert!(line.contains("person=p499"), "{line}");
    let children = r.stderr.lines().last().unwrap_or_default().to_string();
    let cpu: f64 = children
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum();
    println!("login on a 500 x 32 key record: {cpu:.3} s CPU (debug build)");
    assert!(cpu < 1.5, "a login costs {cpu:.3} s of CPU");
}

/// A server of a fleet (real 3-node TLS etcd) whose shared-account logins come with keys
/// chosen by [`Shared::use_key`]; on etcd outages it uses its local copy.
fn fleet_server(cluster: &common::etcd::Cluster, tag: &str) -> Shared {
    let sb = common::fleet::host(
        cluster,
        tag,
        "",
        "timeout_ms = 400\non_unavailable = \"local\"",
    );
    let env = sb.root.join("pam_env.conf");
    std::fs::write(&env, "").unwrap();
    sb.set_stack(&format!(
        "auth optional pam_env.so readenv=0 user_readenv=0 conffile={}\n\
         auth required {{module}} {{args}}",
        env.display()
    ));
    Shared { sb, env }
}

/// The fleet, shared accounts: `mfa-enroll fleet sync` refused every account with more than one
/// person ("name one with --person"), so the local copy (what logins use in an outage) kept
/// people removed from the fleet; `fleet push` could not push them either. And a person enrolled
/// again after the record was deleted was refused as a rolled-back record, as on files.
#[test]
fn finding_fleet_sync_and_push_carry_every_person_of_a_shared_account() {
    let mut cluster = common::etcd::Cluster::start("attack-shared");
    let s = fleet_server(&cluster, "attack-shared-a");
    let ann = s.key("ann", "ann@laptop");
    let ben = s.key("ben", "ben@laptop");
    let ann_secret = s.enroll_person("alice", "ann", &ann);
    s.enroll_person("alice", "ben", &ben);

    // fleet push of a local shared account (files, then pushed).
    let local = Shared::new("attack-shared-local", "");
    local.enroll_person("bob", "ann", &ann);
    local.enroll_person("bob", "ben", &ben);
    std::fs::create_dir_all(&s.sb.store).unwrap();
    std::fs::copy(local.sb.store.join("bob.toml"), s.sb.store.join("bob.toml")).unwrap();
    s.admin(&["fleet", "push"]);
    let status = s.admin(&["status", "--user", "bob", "--json"]);
    let row: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(row["people"].as_array().map(Vec::len), Some(2), "{row}");

    // fleet sync writes both people into the local copy; ben removed, sync drops him.
    s.admin(&["fleet", "sync"]);
    assert!(s.record("alice").contains("person = \"ben\""));
    s.admin(&["remove", "--user", "alice", "--person", "ben", "--yes"]);
    s.admin(&["fleet", "sync"]);
    let copy = s.record("alice");
    assert!(
        copy.contains("person = \"ann\"") && !copy.contains("person = \"ben\""),
        "{copy}"
    );

    // On carol: ann enrolled, reset, removed (the record goes) and enrolled again: her new
    // token works (it was refused as a rolled-back record).
    s.use_key(Some(&ann));
    let carol_secret = enroll_reset_remove_enroll(&s, "carol", "ann", &ann);
    common::wait_for_fresh_step(5);
    let (ok, line) = s.login("carol", &code_at(&carol_secret, 0));
    common::assert_accepted(ok, &line, "ok");
    let (ok, line) = s.login("alice", &code_at(&ann_secret, 0));
    common::assert_accepted(ok, &line, "ok");

    // The outage: the copy is current, so ben (removed) is refused and ann gets in.
    for i in 0..3 {
        cluster.kill(i);
    }
    s.use_key(Some(&ben));
    let (ok, line) = s.login("alice", "123456");
    common::assert_denied(ok, &line, "unbound_key");
    // The denial says it was decided on the local copy (it said only "bound to no token").
    assert!(line.contains("fleet unavailable"), "the local copy: {line}");
    s.use_key(Some(&ann));
    let (ok, line) = s.login("alice", &code_at(&ann_secret, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("fleet unavailable"), "the local copy: {line}");
}

/// `key_binding = "fallback"` (a migration: people are bound one by one while the old shared
/// token still works): a login through the account's own token on a shared account wrote an
/// audit line with neither `person=` nor `key=`, so nobody could tell who still used the old
/// token, the one thing the migration needs to know (issue 26: "every audit line for a shared
/// account carries ... the key fingerprint"). A key bound to a person never gets the old
/// token's code through.
#[test]
fn finding_fallback_logins_through_the_accounts_own_token_name_the_key() {
    let s = Shared::new("fallback-audit", "key_binding = \"fallback\"\n");
    let alice = s.key("alice", "alice@laptop");
    let legacy = s.key("legacy", "someone@old");
    let own = s.sb.enroll("root", &[]);
    let alices = s.enroll_person("root", "alice", &alice);
    common::wait_for_fresh_step(5);
    s.use_key(Some(&legacy));
    let (ok, line) = s.login("root", &code_at(&own, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(
        line.contains(&format!("key={}", legacy.fp)) && !line.contains("person="),
        "{line}"
    );
    // alice's key with the old shared token's code: only her token is tried.
    s.use_key(Some(&alice));
    let (ok, line) = s.login("root", &code_at(&own, 30));
    common::assert_denied(ok, &line, "bad_code");
    assert!(line.contains("person=alice"), "{line}");
    let (ok, line) = s.login("root", &code_at(&alices, 30));
    common::assert_accepted(ok, &line, "ok");
}

// ---------------------------------------------------------------------------------------------
// Attacks that held
// ---------------------------------------------------------------------------------------------

/// One attempt, one token: a key is checked against its person's token only (another person's
/// code, the old shared token's code: refused); a person's failures and lockout follow the
/// person across all their keys (switching keys dodges nothing) and touch nobody else.
#[test]
fn held_one_attempt_one_token_and_lockouts_stay_with_their_person() {
    let s = Shared::new(
        "one-token",
        "max_failures = 2\nlockout_seconds = 600\nkey_binding = \"fallback\"\n",
    );
    let (a1, a2, b, x) = (
        s.key("a1", "alice@one"),
        s.key("a2", "alice@two"),
        s.key("b", "bob@laptop"),
        s.key("x", "legacy"),
    );
    let own = s.sb.enroll("root", &[]);
    let alice = s.sb.enroll(
        "root",
        &["--person", "alice", "--key", &a1.fp, "--key", &a2.fp],
    );
    let bob = s.enroll_person("root", "bob", &b);
    common::wait_for_fresh_step(10);
    // alice's key with bob's and with the shared token's code: refused, counted on alice.
    s.use_key(Some(&a1));
    let (ok, line) = s.login("root", &code_at(&bob, 0));
    common::assert_denied(ok, &line, "bad_code");
    assert!(
        line.contains("person=alice") && line.contains("failures=1"),
        "{line}"
    );
    s.use_key(Some(&a2));
    let (ok, line) = s.login("root", &code_at(&own, 0));
    common::assert_denied(ok, &line, "bad_code");
    assert!(line.contains("person=alice"), "{line}");
    // Locked out on both of her keys.
    for key in [&a1, &a2] {
        s.use_key(Some(key));
        let (ok, line) = s.login("root", &code_at(&alice, 0));
        common::assert_denied(ok, &line, "throttled");
    }
    // bob and the shared token: untouched.
    s.use_key(Some(&b));
    let (ok, line) = s.login("root", &code_at(&bob, 0));
    common::assert_accepted(ok, &line, "ok");
    s.use_key(Some(&x));
    let (ok, line) = s.login("root", &code_at(&own, 0));
    common::assert_accepted(ok, &line, "ok");
    // An unbound key with alice's code: the shared token is checked, not alice's.
    let (ok, line) = s.login("root", &code_at(&alice, 30));
    common::assert_denied(ok, &line, "bad_code");
    assert!(!line.contains("person=alice"), "{line}");
}

/// `key_binding = "required"`: a login without a key (a password login) or with a key bound to
/// nobody is refused after a prompt, `nullok` or not, whatever code it types; a bound key works.
#[test]
fn held_key_binding_required_refuses_logins_without_a_bound_key() {
    let s = Shared::with_args("required", "key_binding = \"required\"\n", "nullok");
    let alice = s.key("alice", "alice@laptop");
    let other = s.key("other", "other");
    let secret = s.enroll_person("root", "alice", &alice);
    common::wait_for_fresh_step(5);
    for key in [None, Some(&other)] {
        s.use_key(key);
        let (ok, line) = s.login("root", &code_at(&secret, 0));
        common::assert_denied(ok, &line, "unbound_key");
    }
    s.use_key(Some(&alice));
    let (ok, line) = s.login("root", &code_at(&secret, 0));
    common::assert_accepted(ok, &line, "ok");
}

/// A login sitting at the prompt while the administrator moves its key to another person or
/// removes its person: the code typed afterwards (the right one for the token the login
/// started with) is refused, and nobody's failures are counted.
#[test]
fn held_a_key_moved_or_a_person_removed_at_the_prompt_denies_that_login() {
    use std::io::Write;
    let s = Shared::new("moved-at-prompt", "");
    let (a, b) = (s.key("a", "alice"), s.key("b", "bob"));
    let alice = s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    s.use_key(Some(&a));
    let at_prompt = |meanwhile: &dyn Fn()| {
        let mut run =
            s.sb.pamtester_open("root", &[], &["setcred", "authenticate"]);
        let mut stderr = run.child.stderr.take().unwrap();
        common::read_until(&mut stderr, "Verification code:");
        meanwhile();
        let mut stdin = run.child.stdin.take().unwrap();
        let _ = stdin.write_all(format!("{}\n", code_at(&alice, 0)).as_bytes());
        drop(stdin);
        run.child.stderr = Some(stderr);
        let r = run.finish();
        (r.success, r.audit())
    };
    common::wait_for_fresh_step(10);
    let (ok, line) = at_prompt(&|| {
        s.admin(&[
            "bind", "--user", "root", "--person", "bob", "--key", &a.fp, "--move",
        ]);
    });
    common::assert_denied(ok, &line, "not_enrolled");
    s.admin(&[
        "bind", "--user", "root", "--person", "alice", "--key", &a.fp, "--move",
    ]);
    let (ok, line) = at_prompt(&|| {
        s.admin(&["remove", "--user", "root", "--person", "alice", "--yes"]);
    });
    common::assert_denied(ok, &line, "not_enrolled");
    let status = s.admin(&["status", "--user", "root", "--json"]);
    let text = common::text(&status.stdout);
    assert!(!text.contains("\"failures\":1"), "nobody's failure: {text}");
}

/// Automation keys count only as sshd reports them: `SSH_AUTH_INFO_0` in the *process*
/// environment of the PAM application (what a user controls when running `su` or `sudo`) is not
/// the PAM environment; an entry for one account does not exempt the key on another.
#[test]
fn held_automation_keys_count_only_as_sshd_reports_them_and_where_listed() {
    let deploy = {
        let s = Shared::new("automation-keygen", "");
        s.key("deploy", "deploy-job")
    };
    let s = Shared::new(
        "automation",
        &format!("automation_keys = [\"root:{}\"]\n", deploy.fp),
    );
    s.sb.enroll("root", &[]);
    s.sb.enroll("alice", &[]);
    let mut parts = deploy.line.split_whitespace();
    let info = format!(
        "publickey {} {}",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    // In the process environment only: asked for a code like anyone.
    s.use_key(None);
    let r =
        s.sb.pamtester(
            "root",
            b"000000\n",
            &[("SSH_AUTH_INFO_0", info.as_str())],
            &["setcred", "authenticate"],
        )
        .finish();
    let line = r.audit();
    common::assert_denied(r.success, &line, "bad_code");
    // sshd's report, on another account: not exempt; on root: exempt, named.
    s.use_key(Some(&deploy));
    let (ok, line) = s.login("alice", "000000");
    common::assert_denied(ok, &line, "bad_code");
    // PAM_IGNORE (the only module of this stack, so the stack itself fails).
    let (_, line) = s.login("root", "");
    assert!(
        line.contains("result=ignore reason=exempt")
            && line.contains(&format!("key={}", deploy.fp)),
        "{line}"
    );
}

/// Hostile format-2 records (written by a compromised administrator or restored from a bad
/// backup): deep nesting, a 2 MiB file, a person with the separator of state file names, a key
/// with a line break, a version-1 file with a `[[token]]`. Each is refused (`bad_file`) by a
/// module that does not crash (exactly one audit line), with nothing raw in the log.
#[test]
fn held_hostile_format_2_records_are_refused_without_a_crash() {
    let s = Shared::new("hostile-v2", "");
    let k = s.key("k", "k");
    s.use_key(Some(&k));
    let head = "version = 2\nuser = \"alice\"\n";
    let token = |person: &str, keys: &str| {
        format!(
            "[[token]]\nperson = \"{person}\"\nkeys = {keys}\nsecret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\ncreated = 1\n"
        )
    };
    let fp = format!("[\"{}\"]", k.fp);
    let deep_array = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let deep_table = format!("x = {}1{}\n", "{a = ".repeat(100_000), "}".repeat(100_000));
    let cases: Vec<(&str, String)> = vec![
        ("deep array", format!("{head}{}", token("p", &deep_array))),
        (
            "deep table",
            format!("{head}{deep_table}{}", token("p", &fp)),
        ),
        (
            "2 MiB",
            format!("{head}{}# {}\n", token("p", &fp), "x".repeat(2 << 20)),
        ),
        ("separator", format!("{head}{}", token("alice~bob", &fp))),
        (
            "line break in a key",
            format!("{head}{}", token("p", "[\"SHA256:ab\\ncd user=root\"]")),
        ),
        (
            "version 1 with tokens",
            format!("version = 1\nuser = \"alice\"\n{}", token("p", &fp)),
        ),
        (
            "escape in person",
            format!("{head}{}", token("p\\u001b[2J", &fp)),
        ),
    ];
    for (what, text) in cases {
        s.sb.install_record("alice", text.as_bytes());
        let (ok, line) = s.login("alice", "123456");
        common::assert_denied(ok, &line, "bad_file");
        assert!(
            !line.contains('\u{1b}') && line.matches(" user=").count() == 1,
            "{what}: {line}"
        );
        assert!(line.len() < 2000, "{what}: a bounded line: {}", line.len());
    }
}

/// Format 1 stays format 1: administrators' commands that add no person and no key (status,
/// show, unlock, recovery, reset) and a bind/unbind round trip leave a record written by the
/// release before shared accounts in format 1.
#[test]
fn held_format_1_stays_format_1_through_commands_that_add_nobody() {
    let s = Shared::new("format-1", "");
    let k = s.key("k", "k");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/release-v1/alice.toml"
    );
    s.sb.install_record("alice", &std::fs::read(fixture).unwrap());
    let before = s.record("alice");
    let format_1 = |what: &str| {
        let text = s.record("alice");
        assert!(
            text.contains("version = 1\n")
                && !text.contains("[[token]]")
                && !text.contains("person"),
            "{what}: {text}"
        );
    };
    s.admin(&["status", "--user", "alice", "--json"]);
    s.admin(&["show", "--user", "alice", "--json"]);
    s.admin(&["unlock", "--user", "alice"]);
    assert_eq!(
        s.record("alice"),
        before,
        "read-only commands and a no-op unlock"
    );
    s.admin(&["recovery", "--user", "alice", "--json"]);
    format_1("recovery");
    s.admin(&["reset", "--user", "alice", "--no-confirm", "--json"]);
    format_1("reset");
    s.admin(&[
        "bind", "--user", "alice", "--person", "alice", "--key", &k.fp,
    ]);
    assert!(
        s.record("alice").contains("version = 2\n"),
        "a key: format 2"
    );
    s.admin(&[
        "unbind", "--user", "alice", "--person", "alice", "--key", &k.fp,
    ]);
    format_1("bind, unbind");
}

/// Enrollment at login names the new person after the key's `authorized_keys` comment, read
/// as root inside sshd from the account's home: a FIFO there does not block the login, a
/// symbolic link is not followed, and a hostile comment (terminal escapes, forged audit fields)
/// becomes a plain name.
#[test]
fn held_enrollment_at_login_reads_authorized_keys_safely() {
    use std::os::unix::fs::symlink;
    let s = Shared::new("names-from-keys", "enroll_at_login = true\n");
    let (p1, dave, erin) = (s.key("p1", "p1"), s.key("dave", "d"), s.key("erin", "e"));
    s.enroll_person("alice", "p1", &p1);
    let ssh = alice_ssh_dir(&s);
    let body = |key: &Key| key.line.rsplit_once(' ').unwrap().0.to_string();
    let out = Command::new("mkfifo")
        .arg(ssh.join("authorized_keys"))
        .output()
        .unwrap();
    common::assert_ok(&out, "mkfifo");
    std::fs::write(
        ssh.join("authorized_keys2"),
        format!(
            "{}\n{} \u{1b}[2J evil user=root result=success\n",
            p1.line,
            body(&dave)
        ),
    )
    .unwrap();
    s.use_key(Some(&dave));
    let (ok, line, _) = enroll_at_login(&s, "alice");
    common::assert_accepted(ok, &line, "enrolled_at_login");
    assert!(
        line.contains("person=2J-evil-user-root-result-success")
            && !line.contains('\u{1b}')
            && line.matches(" result=").count() == 1,
        "{line}"
    );
    // A symbolic link in the last component is not followed.
    let elsewhere = s.sb.root.join("elsewhere");
    std::fs::write(&elsewhere, format!("{} erin-followed\n", body(&erin))).unwrap();
    std::fs::remove_file(ssh.join("authorized_keys")).unwrap();
    symlink(&elsewhere, ssh.join("authorized_keys")).unwrap();
    s.use_key(Some(&erin));
    let (ok, line, _) = enroll_at_login(&s, "alice");
    common::assert_accepted(ok, &line, "enrolled_at_login");
    assert!(
        line.contains("person=key-") && !line.contains("followed"),
        "{line}"
    );
}

/// Gives alice a home directory in the sandbox's NSS and returns its `.ssh` directory.
fn alice_ssh_dir(s: &Shared) -> std::path::PathBuf {
    let home = s.sb.root.join("home-alice");
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let passwd = s.sb.root.join("nss/passwd");
    let text = std::fs::read_to_string(&passwd).unwrap();
    let text = text
        .lines()
        .map(|l| match l.starts_with("alice:") {
            true => l.replace("/nonexistent", home.to_str().unwrap()),
            false => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&passwd, text + "\n").unwrap();
    ssh
}

/// Two first logins at once whose keys carry the same `authorized_keys` comment (two laptops
/// set up from one template: `ops@laptop`): both chose the name `ops@laptop`, and the second
/// to confirm was told it had been "enrolled meanwhile" and saved nothing. Now it is saved as
/// the next free name, and told so.
#[test]
fn finding_two_first_logins_with_the_same_key_comment_both_get_their_token() {
    let s = Shared::new("same-comment", "enroll_at_login = true\n");
    let (p1, dave, erin) = (
        s.key("p1", "p1"),
        s.key("dave", "ops@laptop"),
        s.key("erin", "ops@laptop"),
    );
    s.enroll_person("alice", "p1", &p1);
    let ssh = alice_ssh_dir(&s);
    let lines = format!("{}\n{}\n{}\n", p1.line, dave.line, erin.line);
    std::fs::write(ssh.join("authorized_keys"), lines).unwrap();
    let (people, shown) = two_first_logins_at_once(&s, &dave, &erin);
    assert_eq!(people, ["ops@laptop", "ops@laptop-2"], "{people:?}");
    assert!(
        shown.contains(
            "Saved as person ops@laptop-2: the name shown was taken meanwhile by another key's \
             first login"
        ),
        "the login that lost its name is told, in one clean sentence: {shown}"
    );
}

/// Two people enrolling at their first login on one shared account at once (different keys):
/// both tokens are saved, each bound to its own key, and each works afterwards.
#[test]
fn held_two_people_enrolling_at_login_at_once_both_get_their_token() {
    let s = Shared::new("two-at-once", "enroll_at_login = true\n");
    let (p1, dave, erin) = (s.key("p1", "p1"), s.key("dave", "d"), s.key("erin", "e"));
    s.enroll_person("alice", "p1", &p1);
    let (people, _) = two_first_logins_at_once(&s, &dave, &erin);
    assert_eq!(people.len(), 2, "{people:?}");
}

/// The first logins of `first` and `second` on alice (which has one person already), both at
/// the confirmation prompt before either confirms, the second confirming first. Each must be
/// saved and log in with its own code after; the people they became, sorted, and what the
/// login that confirmed last was shown after its code.
fn two_first_logins_at_once(s: &Shared, first: &Key, second: &Key) -> (Vec<String>, String) {
    common::wait_for_fresh_step(10);
    s.use_key(Some(first));
    let one = start_enrolling(s, "alice");
    s.use_key(Some(second));
    let two = start_enrolling(s, "alice");
    let secrets = [one.secret.clone(), two.secret.clone()];
    let (ok, line) = two.confirm();
    common::assert_accepted(ok, &line, "enrolled_at_login");
    let (ok, line, shown) = one.confirm_shown();
    common::assert_accepted(ok, &line, "enrolled_at_login");
    let mut people = Vec::new();
    for (key, secret) in [first, second].into_iter().zip(&secrets) {
        s.use_key(Some(key));
        let (ok, line) = s.login("alice", &code_at(secret, 30));
        common::assert_accepted(ok, &line, "ok");
        let person = line.split(' ').find_map(|f| f.strip_prefix("person="));
        people.push(person.expect("person named").to_string());
    }
    let record = s.record("alice");
    assert_eq!(record.matches("[[token]]").count(), 3, "{record}");
    people.sort();
    (people, shown)
}
