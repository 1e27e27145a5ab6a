//! Tier 2: an outside attack on the shared-account administrator's commands (issue 26) on the
//! files backend: `enroll/reset/remove/recovery/unlock/show/bind/unbind/import --person`,
//! `bind --move`, `remove --all-people`, through the real `mfa-enroll` and real Linux-PAM
//! (pamtester, the real `.so`). `finding_*`: an attack that worked (the test asserts the correct
//! behaviour, so it fails until fixed); `held_*`: an attack that did not work. The key "sshd
//! accepted" comes from `pam_env.so` (`SSH_AUTH_INFO_0`), as in `tests/attack_shared_accounts.rs`.
//!
//! Findings, all fixed in session 9: `import --person --force` dropped the person's keys; a
//! cut-off `SHA256:` fingerprint was bound; `unlock --person` on an unreadable record unlocked
//! the account's own state; a `--key` file name reached the terminal raw; with `fallback`, a
//! person's token that lost its last key became every unbound key's token.

mod common;

use std::process::Output;

use common::{cli, oathtool_code};

use common::shared::{Key, Shared, code_at};

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

// ---------------------------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------------------------

/// Attack: `import google-authenticator --user root --person alice --file F --force` over an
/// existing, key-bound alice (e.g. moving her phone's existing secret in) without repeating
/// `--key`. `enroll`/`reset` keep a token's keys when no `--key` is given; import does not: it
/// wrote alice with `keys = []`. Shown: alice's own key is then bound to nobody, and (bob being
/// bound) her next login is refused `unbound_key`; her token has silently become the account's
/// catch-all token bound to no key (under `fallback`, every unbound key's token).
#[test]
fn finding_import_over_a_person_keeps_the_keys_bound_to_them() {
    let s = Shared::new("import-keeps-keys", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    let phone = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let file = s.ga_file("alice.ga", phone);
    let out = s.import_ga("root", "alice", &file, &["--force"]);
    common::assert_ok(&out, "import --force");
    assert_eq!(
        s.keys_of("root", "alice"),
        vec![a.fp.clone()],
        "import --force without --key dropped alice's keys: {}",
        s.record("root")
    );
    common::wait_for_fresh_step(5);
    s.use_key(Some(&a));
    let (ok, line) = s.login("root", &code_at(phone, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=alice"), "{line}");
}

/// Attack: `--key SHA256:x` (a fingerprint cut short by a copy and paste, or any 1-64 base64
/// characters). `ssh-keygen -l` always prints 43 characters after `SHA256:`; sshd can never
/// report anything else. Shown: `enroll --person alice --key SHA256:abc` and `bind --key
/// SHA256:<64 chars>` exit 0 and bind keys no login can ever present: alice is enrolled,
/// "bound to 1 key(s)", and locked out of her token from the first login (`unbound_key`).
#[test]
fn finding_key_accepts_only_fingerprints_ssh_keygen_can_print() {
    let s = Shared::new("short-fp", "");
    let b = s.key("b", "bob@laptop");
    s.enroll_person("root", "bob", &b);
    let long = format!("SHA256:{}", "A".repeat(64));
    for bad in ["SHA256:abc", "SHA256:x", long.as_str()] {
        let out =
            s.sb.enroll_cmd("root", &["--person", "alice", "--key", bad]);
        common::assert_exit(&out, 2, &format!("enroll --key {bad}"));
        let out = s.run(&["bind", "--user", "root", "--person", "bob", "--key", bad]);
        common::assert_exit(&out, 2, &format!("bind --key {bad}"));
    }
    assert_eq!(s.keys_of("root", "bob"), vec![b.fp.clone()]);
}

/// Attack: `unlock --user root --person alice` while root's record cannot be read (a bad file:
/// every login is `bad_file` anyway). Shown: the command ignores `--person`, unlocks the
/// account's *own* token state (`root.state`), prints "Unlocked root" and exits 0: the
/// administrator asked for alice and was told success about someone else. It should refuse
/// (the person cannot be found) or unlock `root~alice`.
#[test]
fn finding_unlock_of_a_person_never_unlocks_someone_else() {
    let s = Shared::new("unlock-bad-file", "");
    let a = s.key("a", "alice@laptop");
    s.enroll_person("root", "alice", &a);
    let mut text = s.record("root");
    text.push_str("\nbogus = 1\n");
    s.sb.install_record("root", text.as_bytes());
    let out = s.run(&["unlock", "--user", "root", "--person", "alice", "--json"]);
    let said = common::describe(&out);
    if out.status.success() {
        let v = json_of(&out);
        assert_eq!(
            v["person"].as_str(),
            Some("alice"),
            "unlock --person alice exited 0 without unlocking alice: {said}"
        );
    }
}

/// Attack: `--key PATH` whose file name carries terminal control characters (an administrator
/// running `bind --key /home/bob/.ssh/*.pub`, a name bob chose). Shown: the error message
/// "--key: PATH: no public key in it" prints the name raw, so ESC sequences reach the
/// administrator's terminal (window title, colours, hidden text).
#[test]
fn finding_key_file_names_reach_the_terminal_escaped() {
    let s = Shared::new("key-path-escape", "");
    let b = s.key("b", "bob@laptop");
    s.enroll_person("root", "bob", &b);
    let evil = s.sb.root.join("x\u{1b}]0;owned\u{7}\u{1b}[2J.pub");
    std::fs::write(&evil, "not a key\n").unwrap();
    let out = s.run(&[
        "bind",
        "--user",
        "root",
        "--person",
        "bob",
        "--key",
        evil.to_str().unwrap(),
    ]);
    common::assert_exit(&out, 2, "bind --key with a hostile file name");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "raw control characters on stderr: {err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Held
// ---------------------------------------------------------------------------------------------

/// Attack: bind one key to two people (`bind` without `--move`, `enroll`/`reset`/`import`
/// with a key another person holds, the account name as `--person`). Shown: every attempt is
/// exit 2 and leaves the record as it was; `bind --move` takes the key away, so it is bound to
/// exactly one person, and the key then chooses the new holder's token only.
#[test]
fn held_bind_never_leaves_a_key_bound_to_two_people() {
    let s = Shared::new("two-holders", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    let alice = s.enroll_person("root", "alice", &a);
    let bob = s.enroll_person("root", "bob", &b);
    let before = s.record("root");
    let file = s.ga_file("x.ga", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    let attempts: Vec<Vec<&str>> = vec![
        vec!["bind", "--user", "root", "--person", "bob", "--key", &a.fp],
        vec!["bind", "--user", "root", "--person", "root", "--key", &a.fp],
        vec![
            "reset",
            "--user",
            "root",
            "--person",
            "bob",
            "--key",
            &a.fp,
            "--no-confirm",
            "--json",
        ],
        vec![
            "enroll",
            "--user",
            "root",
            "--person",
            "carol",
            "--key",
            &a.fp,
            "--no-confirm",
            "--json",
        ],
        vec![
            "import",
            "google-authenticator",
            "--user",
            "root",
            "--person",
            "carol",
            "--key",
            &a.fp,
            "--file",
            &file,
        ],
    ];
    for args in &attempts {
        let out = s.run(args);
        common::assert_failed(&out, &format!("{args:?}"));
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "{args:?} printed a secret it did not save: {}",
            common::describe(&out)
        );
        assert_eq!(s.record("root"), before, "{args:?} changed the record");
    }
    s.admin(&[
        "bind", "--user", "root", "--person", "bob", "--key", &a.fp, "--move",
    ]);
    let account = s.account("root");
    assert_eq!(
        account
            .tokens
            .iter()
            .filter(|t| t.keys.contains(&a.fp))
            .count(),
        1
    );
    assert_eq!(s.keys_of("root", "bob"), vec![b.fp.clone(), a.fp.clone()]);
    // alice now has no key: she is the account's one token bound to no key.
    assert!(s.keys_of("root", "alice").is_empty());
    common::wait_for_fresh_step(5);
    s.use_key(Some(&a));
    let (ok, line) = s.login("root", &code_at(&alice, 0));
    common::assert_denied(ok, &line, "bad_code");
    assert!(line.contains("person=bob"), "{line}");
    let (ok, line) = s.login("root", &code_at(&bob, 0));
    common::assert_accepted(ok, &line, "ok");
}

/// Attack: hostile `--person` values in every command that takes one: control characters
/// (ESC, newline, NUL-free), `~` and `/` (which would make another state file name), `..`, a
/// leading `-`, 65 and 10 000 characters, the empty name, non-ASCII. Shown: each is exit 2,
/// the value is never echoed, and the store and state directories are unchanged.
#[test]
fn held_hostile_person_names_are_refused_without_echo() {
    let s = Shared::new("hostile-person", "");
    let a = s.key("a", "alice@laptop");
    s.enroll_person("root", "alice", &a);
    let before = s.sb.store_snapshot();
    let long = "p".repeat(65);
    let huge = "q".repeat(10_000);
    let hostile = [
        "x\u{1b}[31mred",
        "bob\nuser=root result=success",
        "root~alice",
        "../alice",
        "a/b",
        "-rf",
        ".hidden",
        "",
        long.as_str(),
        huge.as_str(),
        "alicé",
        "alice ",
    ];
    for name in hostile {
        for cmd in [
            vec![
                "enroll",
                "--user",
                "root",
                "--person",
                name,
                "--key",
                &a.fp,
                "--no-confirm",
                "--json",
            ],
            vec!["reset", "--user", "root", "--person", name, "--no-confirm"],
            vec!["remove", "--user", "root", "--person", name, "--yes"],
            vec!["recovery", "--user", "root", "--person", name],
            vec!["unlock", "--user", "root", "--person", name],
            vec!["show", "--user", "root", "--person", name],
            vec!["bind", "--user", "root", "--person", name, "--key", &a.fp],
            vec!["unbind", "--user", "root", "--person", name, "--key", &a.fp],
        ] {
            let out = s.run(&cmd);
            common::assert_exit(&out, 2, &format!("{:?} {name:?}", cmd[0]));
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if name.len() > 3 {
                assert!(!said.contains(name), "{:?} echoed {name:?}: {said}", cmd[0]);
            }
            assert!(
                !said.chars().any(|c| c.is_control() && c != '\n'),
                "{said:?}"
            );
        }
    }
    assert_eq!(s.sb.store_snapshot(), before);
    let states: Vec<_> = std::fs::read_dir(&s.sb.state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        states
            .iter()
            .all(|n| n.to_string_lossy().starts_with("root~alice")
                || n == "root.state"
                || n.to_string_lossy().starts_with('.')
                || n.to_string_lossy().ends_with(".lock")),
        "{states:?}"
    );
}

/// Attack: a key taken away (`unbind`, `bind --move`, `remove --person`) still choosing a token
/// at login, under the default `key_binding`. Shown: each key, once bound to nobody while
/// others are bound, is refused `unbound_key` with the right code of its former owner; the
/// others' tokens keep working.
#[test]
fn held_a_key_taken_away_chooses_no_token() {
    let s = Shared::new("key-taken", "");
    let (a1, a2, b) = (
        s.key("a1", "alice@one"),
        s.key("a2", "alice@two"),
        s.key("b", "bob@laptop"),
    );
    let alice = s.sb.enroll(
        "root",
        &["--person", "alice", "--key", &a1.fp, "--key", &a2.fp],
    );
    let bob = s.enroll_person("root", "bob", &b);
    s.admin(&[
        "unbind", "--user", "root", "--person", "alice", "--key", &a1.fp,
    ]);
    let out = s.run(&[
        "unbind", "--user", "root", "--person", "alice", "--key", &a1.fp,
    ]);
    common::assert_exit(&out, 2, "unbind of a key not bound");
    common::wait_for_fresh_step(10);
    s.use_key(Some(&a1));
    let (ok, line) = s.login("root", &code_at(&alice, 0));
    common::assert_denied(ok, &line, "unbound_key");
    s.admin(&["remove", "--user", "root", "--person", "bob", "--yes"]);
    s.use_key(Some(&b));
    let (ok, line) = s.login("root", &code_at(&bob, 0));
    // bob's key is bound to nobody; alice (bound to a2) is the only token.
    common::assert_denied(ok, &line, "unbound_key");
    s.use_key(Some(&a2));
    let (ok, line) = s.login("root", &code_at(&alice, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=alice"), "{line}");
}

/// Attack: the export / import round trip of a person (`show --person alice --json`, then
/// `import google-authenticator --person alice --key K --force` of the same secret) to revive
/// a code already used, and to disturb bob. Shown: the used code stays used (`replay`), a new
/// code works, bob's token is byte for byte the same and his record stays readable.
#[test]
fn held_export_import_round_trip_revives_no_used_code() {
    let s = Shared::new("round-trip", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    let bob_before = format!("{:?}", s.account("root").tokens[1].keys);
    let shown = json_of(&s.admin(&["show", "--user", "root", "--person", "alice", "--json"]));
    let secret = shown["secret"].as_str().unwrap().to_string();
    assert!(
        shown.to_string().contains("alice"),
        "show names the person: {shown}"
    );
    common::wait_for_fresh_step(10);
    s.use_key(Some(&a));
    let used = code_at(&secret, 0);
    let (ok, line) = s.login("root", &used);
    common::assert_accepted(ok, &line, "ok");
    let file = s.ga_file("alice.ga", &secret);
    let out = s.import_ga("root", "alice", &file, &["--key", &a.fp, "--force"]);
    common::assert_ok(&out, "import --key --force");
    let (ok, line) = s.login("root", &used);
    assert!(!ok, "a used code works again after the round trip: {line}");
    assert_eq!(s.keys_of("root", "alice"), vec![a.fp.clone()]);
    assert_eq!(
        format!("{:?}", s.account("root").tokens[1].keys),
        bob_before
    );
}

/// Attack: `--key` given as an `authorized_keys` line with options, including a quoted option
/// that itself holds another key (`command="... ssh-ed25519 AAAA<bob>" ssh-ed25519
/// AAAA<alice>`), and as a file holding two keys. Shown: the line binds its own key (alice's),
/// never the one inside the quotes; a file with two keys is exit 2.
#[test]
fn held_authorized_keys_lines_with_options_bind_their_own_key() {
    let s = Shared::new("key-options", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    let b_blob = b.line.split_whitespace().nth(1).unwrap().to_string();
    let line = format!(
        "from=\"10.0.0.1\",command=\"echo ssh-ed25519 {b_blob}\",no-pty {}",
        a.line
    );
    s.sb.enroll("root", &["--person", "alice", "--key", &line]);
    assert_eq!(s.keys_of("root", "alice"), vec![a.fp.clone()]);
    let two = s.sb.root.join("two.pub");
    std::fs::write(&two, format!("{}\n{}\n", a.line, b.line)).unwrap();
    let out = s.run(&[
        "bind",
        "--user",
        "root",
        "--person",
        "alice",
        "--key",
        two.to_str().unwrap(),
    ]);
    common::assert_exit(&out, 2, "a file with two keys");
    // The .pub file itself works.
    s.admin(&[
        "enroll",
        "--user",
        "root",
        "--person",
        "bob",
        "--key",
        b.path.to_str().unwrap(),
        "--no-confirm",
        "--force-params",
        "--json",
    ]);
    assert_eq!(s.keys_of("root", "bob"), vec![b.fp.clone()]);
}

/// Attack: per-token commands without `--person` on an account shared by two people (a script
/// written for format 1 accounts: `reset --user root`, `unlock --user root`, ...). Shown: each
/// is a usage error (exit 2, never 0), names the people, and changes neither the record nor
/// any state file.
#[test]
fn held_commands_without_person_on_a_shared_account_touch_nobody() {
    let s = Shared::new("no-person", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    let record = s.record("root");
    let states = state_files(&s);
    for args in [
        vec!["reset", "--user", "root", "--no-confirm", "--json"],
        vec!["recovery", "--user", "root", "--json"],
        vec!["unlock", "--user", "root", "--all-grace"],
        vec!["remove", "--user", "root", "--yes"],
        vec!["show", "--user", "root", "--json"],
        vec![
            "enroll",
            "--user",
            "root",
            "--no-confirm",
            "--json",
            "--force",
        ],
    ] {
        let out = s.run(&args);
        common::assert_exit(&out, 2, &format!("{args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("alice") && err.contains("bob"),
            "{args:?}: {err}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("secret"),
            "{args:?} printed a secret: {}",
            common::describe(&out)
        );
        assert_eq!(s.record("root"), record, "{args:?}");
        assert_eq!(state_files(&s), states, "{args:?}");
    }
    let out = cli(&s.sb, &["verify", "--user", "root"], b"123456\n");
    common::assert_exit(&out, 2, "verify without --person");
}

/// Every state file and its contents.
fn state_files(s: &Shared) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&s.sb.state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Attack: a long sequence of legitimate commands (format 1 → 2 → 1 → 2, people added, keys
/// moved back and forth, the account's own token removed and re-made, resets, recovery codes,
/// imports, unlocks, `remove --all-people`, enrolment again) looking for a record the module
/// refuses (`bad_file`: a rolled-back generation, a rule broken) or a token lost. Shown: after
/// every step the record parses, and every person still enrolled logs in with their key.
#[test]
fn held_a_long_sequence_of_admin_commands_keeps_every_token_usable() {
    let s = Shared::new("sequence", "key_binding = \"fallback\"\nwindow = 10\n");
    let (a, b, c, x) = (
        s.key("a", "alice@laptop"),
        s.key("b", "bob@laptop"),
        s.key("c", "carol@laptop"),
        s.key("x", "legacy"),
    );
    let mut secrets: std::collections::BTreeMap<&str, String> = Default::default();
    // Each step, then: (who, key) pairs that must log in.
    secrets.insert("root", s.sb.enroll("root", &[]));
    secrets.insert("alice", s.enroll_person("root", "alice", &a));
    secrets.insert("bob", s.enroll_person("root", "bob", &b));
    let last = std::cell::RefCell::new(std::collections::BTreeMap::<String, i64>::new());
    let check = |s: &Shared,
                 secrets: &std::collections::BTreeMap<&str, String>,
                 who: &[(&str, &Key)],
                 step: &str| {
        let account = s.account("root");
        for (person, key) in who {
            assert!(
                account.tokens.iter().any(|t| t.person_name() == *person),
                "{step}: {person} lost: {}",
                s.record("root")
            );
            // Each person's replay mark: every login uses a later step than their last one
            // (window = 10 lets a code up to 300 s ahead work), so no login waits.
            let now = pam_ecs_mfa::clock::unix_now() as i64 / 30;
            let mut last = last.borrow_mut();
            let at = last.get(*person).map_or(now, |l| (l + 1).max(now));
            last.insert(person.to_string(), at);
            s.use_key(Some(key));
            let when = format!("@{}", at * 30 + 1);
            let code = oathtool_code(&secrets[person], &["--totp", "--now", &when]);
            let (ok, line) = s.login("root", &code);
            assert!(ok, "{step}: {person} refused: {line}\n{}", s.record("root"));
        }
    };
    check(
        &s,
        &secrets,
        &[("alice", &a), ("bob", &b), ("root", &x)],
        "enrolled",
    );
    s.admin(&[
        "bind", "--user", "root", "--person", "alice", "--key", &c.fp,
    ]);
    s.admin(&[
        "bind", "--user", "root", "--person", "bob", "--key", &c.fp, "--move",
    ]);
    s.admin(&[
        "unbind", "--user", "root", "--person", "bob", "--key", &b.fp,
    ]);
    s.admin(&[
        "bind", "--user", "root", "--person", "alice", "--key", &b.fp,
    ]);
    check(
        &s,
        &secrets,
        &[("alice", &b), ("bob", &c), ("root", &x)],
        "keys moved",
    );
    let out = s.admin(&[
        "reset",
        "--user",
        "root",
        "--person",
        "bob",
        "--no-confirm",
        "--json",
    ]);
    secrets.insert("bob", json_of(&out)["secret"].as_str().unwrap().to_string());
    s.admin(&["recovery", "--user", "root", "--person", "alice", "--json"]);
    s.admin(&[
        "unlock",
        "--user",
        "root",
        "--person",
        "alice",
        "--all-grace",
    ]);
    s.admin(&["remove", "--user", "root", "--person", "root", "--yes"]);
    check(
        &s,
        &secrets,
        &[("alice", &a), ("bob", &c)],
        "own token removed",
    );
    let out = s.admin(&[
        "enroll",
        "--user",
        "root",
        "--person",
        "root",
        "--no-confirm",
        "--force-params",
        "--json",
    ]);
    secrets.insert(
        "root",
        json_of(&out)["secret"].as_str().unwrap().to_string(),
    );
    s.admin(&["remove", "--user", "root", "--person", "alice", "--yes"]);
    s.admin(&["remove", "--user", "root", "--person", "bob", "--yes"]);
    assert!(
        s.record("root").contains("version = 1"),
        "back to format 1: {}",
        s.record("root")
    );
    check(&s, &secrets, &[("root", &x)], "format 1 again");
    let file = s.ga_file("carol.ga", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    let out = s.import_ga("root", "carol", &file, &["--key", &c.fp]);
    common::assert_ok(&out, "import carol");
    secrets.insert("carol", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP".into());
    secrets.insert("alice", s.enroll_person("root", "alice", &a));
    check(
        &s,
        &secrets,
        &[("carol", &c), ("alice", &a), ("root", &x)],
        "re-enrolled",
    );
    s.admin(&["remove", "--user", "root", "--all-people", "--yes"]);
    assert!(!s.sb.store.join("root.toml").exists());
    secrets.insert("bob", s.enroll_person("root", "bob", &b));
    secrets.insert("alice", s.enroll_person("root", "alice", &a));
    check(
        &s,
        &secrets,
        &[("bob", &b), ("alice", &a)],
        "after --all-people",
    );
}

/// Attack: `key_binding = "fallback"` (the documented migration setting: a key bound to nobody
/// uses "the account's unbound token"), on an account with no own token: alice (key A) and bob
/// (key B). `unbind --person alice --key A` (and, by the same rule, `bind --person bob --key A
/// --move`, not run here) leaves alice bound to no key; her token silently became the
/// catch-all. Shown: any key bound to nobody (mallory's, or A itself after it was taken away)
/// is then offered alice's token, and with her code logs in as `person=alice`. Fixed: `fallback` gives keys bound to
/// nobody only the account's own token, never a person's (and `unbind` says so).
#[test]
fn finding_taking_a_persons_last_key_never_makes_their_token_everyones() {
    let s = Shared::new("last-key", "key_binding = \"fallback\"\n");
    let (a, b, m) = (
        s.key("a", "alice@laptop"),
        s.key("b", "bob@laptop"),
        s.key("m", "mallory@laptop"),
    );
    let alice = s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    let out = s.run(&[
        "unbind", "--user", "root", "--person", "alice", "--key", &a.fp,
    ]);
    if out.status.success() {
        common::wait_for_fresh_step(5);
        s.use_key(Some(&m));
        let (ok, line) = s.login("root", &code_at(&alice, 0));
        assert!(
            !ok,
            "after unbinding alice's last key, mallory's unbound key logs in with alice's token: {line}"
        );
    }
}
