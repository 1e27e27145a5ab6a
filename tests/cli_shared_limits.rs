//! Tier 2: the shared-account limits and OpenSSH certificates through the administrator's
//! commands (issue 26), with the real `mfa-enroll`, `ssh-keygen` and Linux-PAM (pamtester, the
//! real `.so`; the key "sshd accepted" comes from `pam_env.so`, as in
//! `tests/attack_shared_admin.rs`):
//! - a change that would pass a record's limits (500 tokens, 32 keys a token) or bind a key
//!   twice is refused with the reason and exit 2, and the record stays byte for byte as it
//!   was, also when an earlier key of the same command was fine (no half-done change);
//! - `--key` given a certificate binds the key it certifies (the fingerprint `ssh-keygen -l`
//!   prints for both), so logins with the certificate or the plain key choose that person;
//!   a CA's key given as `--key` binds only that key, never the keys it signs (a binding to a
//!   CA is not offered: README "Shared accounts");
//! - `remove --person` on a terminal (a real pty, util-linux `script`) asks before it removes
//!   that one person, and anything but "yes" removes nothing.

mod common;

use std::process::Command;

use common::shared::{Key, Shared, code_at};
use pam_ecs_mfa::store::AccountRecord;
use pam_ecs_mfa::store::account::{MAX_KEYS, MAX_TOKENS};
use pam_ecs_mfa::totp::SecretKey;
use pam_ecs_mfa::user_name::UserName;

/// A fingerprint no real key has: `SHA256:` and 43 base64 characters made from `n`.
fn made_up(n: usize) -> String {
    format!("SHA256:{}{n:08}", "Q".repeat(35))
}

fn assert_refused(out: &std::process::Output, want: &str, what: &str) {
    common::assert_exit(out, 2, what);
    let err = common::text(&out.stderr);
    assert!(err.contains(want), "{what}: expected {want:?} in {err}");
    assert!(!err.contains("invalid record"), "{what}: {err}");
}

#[test]
fn a_change_beyond_the_limits_is_refused_and_the_record_stays_as_it_was() {
    let s = Shared::new("limits-admin", "");
    let (mine, other) = (s.key("mine", "p0@laptop"), s.key("other", "new@laptop"));
    let secret = SecretKey::from_bytes(vec![9; 20]).unwrap();
    // p0 holds the maximum number of keys (one of them real); p1..p499 one made-up key each.
    let mut p0: Vec<String> = (1..MAX_KEYS).map(made_up).collect();
    p0.push(mine.fp.clone());
    let mut tokens = vec![common::records::token("root", "p0", p0, &secret)];
    tokens.extend((1..MAX_TOKENS).map(|i| {
        common::records::token("root", &format!("p{i}"), vec![made_up(1000 + i)], &secret)
    }));
    let account = AccountRecord {
        user: UserName::parse("root").unwrap(),
        generation: 1,
        tokens,
    };
    s.sb.install_record("root", account.to_toml().unwrap().as_bytes());
    let before = s.record("root");

    let extra = [
        "enroll", "--user", "root", "--person", "extra", "--key", &other.fp,
    ];
    let extra = [&extra[..], &["--no-confirm"]].concat();
    let enroll = s.run(&extra);
    assert_refused(&enroll, "more than 500 tokens", "a 501st person");
    let file = s.ga_file("extra.ga", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    let import = s.import_ga("root", "extra", &file, &["--key", &other.fp]);
    // import reports per entry (exit 10: "some entries not imported"), on standard output.
    common::assert_exit(&import, 10, "a 501st person imported");
    let said = common::text(&import.stdout);
    assert!(
        said.contains("NOT imported: refused: more than 500 tokens"),
        "{said}"
    );
    let bind = s.run(&[
        "bind", "--user", "root", "--person", "p0", "--key", &other.fp,
    ]);
    assert_refused(&bind, "p0 is bound to more than 32 keys", "a 33rd key");
    // The first key of the command is fine, the second is p0's: nothing of it is written.
    let bind = s.run(&[
        "bind", "--user", "root", "--person", "p1", "--key", &other.fp, "--key", &mine.fp,
    ]);
    assert_refused(
        &bind,
        "bound to p0; add --move",
        "a key of p0 without --move",
    );
    let enroll = s.run(&[
        "enroll",
        "--user",
        "root",
        "--person",
        "p1",
        "--key",
        &mine.fp,
        "--force",
        "--no-confirm",
    ]);
    common::assert_exit(&enroll, 2, "p0's key given to p1 by enroll --force");
    assert_eq!(s.record("root"), before, "a refused change wrote nothing");

    // The record at the limits is still every person's: p0's real key logs in.
    common::wait_for_fresh_step(5);
    s.use_key(Some(&mine));
    let (ok, line) = s.login("root", &code_at(&secret.to_base32(), 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=p0"), "{line}");
    // Removing a person makes room; the 500th person again is fine.
    s.admin(&["remove", "--user", "root", "--person", "p499", "--yes"]);
    s.admin(&extra);
    assert_eq!(s.account("root").tokens.len(), MAX_TOKENS);
}

/// `ssh-keygen -s CA` signs `key` for principal `root`: the certificate's `.pub` line.
fn certify(ca: &Key, key: &Key, id: &str) -> Key {
    let ca_private = ca.path.with_extension("");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca_private)
        .args(["-I", id, "-n", "root"])
        .arg(&key.path)
        .output()
        .unwrap();
    common::assert_ok(&out, "ssh-keygen -s");
    let path = key.path.with_file_name(format!(
        "{}-cert.pub",
        key.path.file_stem().unwrap().to_str().unwrap()
    ));
    let line = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(
        line.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{line}"
    );
    let printed = common::container::keygen_fingerprint(path.to_str().unwrap());
    assert_eq!(printed, key.fp, "ssh-keygen -l: the certificate is its key");
    Key {
        line,
        fp: printed,
        path,
    }
}

#[test]
fn a_certificate_binds_the_key_it_certifies_and_a_ca_key_binds_only_itself() {
    let s = Shared::new("limits-certs", "");
    let ca = s.key("ca", "team-ca");
    let (alice, bob) = (s.key("alice", "alice@laptop"), s.key("bob", "bob@laptop"));
    let (alice_cert, bob_cert) = (
        certify(&ca, &alice, "alice@corp"),
        certify(&ca, &bob, "bob@corp"),
    );

    // alice is enrolled with her certificate's file: her key's fingerprint is bound.
    let secret = s.sb.enroll(
        "root",
        &[
            "--person",
            "alice",
            "--key",
            alice_cert.path.to_str().unwrap(),
        ],
    );
    assert_eq!(s.keys_of("root", "alice"), vec![alice.fp.clone()]);
    // Her certificate as an authorized_keys line is the same key: already hers.
    let again = s.run(&[
        "bind",
        "--user",
        "root",
        "--person",
        "alice",
        "--key",
        &alice_cert.line,
    ]);
    common::assert_ok(&again, "bind of her own certificate's key");
    assert_eq!(s.keys_of("root", "alice"), vec![alice.fp.clone()]);

    // The team's CA key bound to "team": only that key, not the keys the CA signs.
    let team = s.sb.enroll(
        "root",
        &["--person", "team", "--key", ca.path.to_str().unwrap()],
    );
    assert_eq!(s.keys_of("root", "team"), vec![ca.fp.clone()]);

    common::wait_for_fresh_step(5);
    s.use_key(Some(&alice_cert));
    let (ok, line) = s.login("root", &code_at(&secret, 0));
    common::assert_accepted(ok, &line, "ok");
    assert!(
        line.contains("person=alice") && line.contains(&format!("key={}", alice.fp)),
        "the certificate chose alice's token: {line}"
    );
    s.use_key(Some(&alice));
    let (ok, line) = s.login("root", &code_at(&secret, 30));
    common::assert_accepted(ok, &line, "ok");
    assert!(line.contains("person=alice"), "{line}");
    // bob's certificate, signed by the bound CA, is bob's key: bound to nobody.
    s.use_key(Some(&bob_cert));
    let (ok, line) = s.login("root", &code_at(&team, 0));
    common::assert_denied(ok, &line, "unbound_key");
    assert!(line.contains(&format!("key={}", bob.fp)), "{line}");
}

/// `mfa-enroll ARGS` on a pseudo-terminal (util-linux `script`), answering `answer` once the
/// prompt is up: the exit status and what the terminal showed.
fn on_a_terminal(s: &Shared, args: &[&str], answer: &str) -> (Option<i32>, String) {
    let mut command = vec![common::enroll_bin().display().to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    for (flag, path) in [("--store", &s.sb.store), ("--state", &s.sb.state)] {
        command.extend([flag.to_string(), path.display().to_string()]);
    }
    command.extend(["--config".to_string(), s.sb.config.display().to_string()]);
    let quoted: Vec<String> = command
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut child = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    std::thread::sleep(std::time::Duration::from_secs(1));
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin); // held open until the command ended: script ends with it
    (out.status.code(), common::text(&out.stdout))
}

#[test]
fn remove_of_a_person_asks_on_a_terminal_and_only_yes_removes_them() {
    let s = Shared::new("limits-remove", "");
    let (a, b) = (s.key("a", "alice@laptop"), s.key("b", "bob@laptop"));
    s.enroll_person("root", "alice", &a);
    s.enroll_person("root", "bob", &b);
    let before = s.record("root");
    let remove = ["remove", "--user", "root", "--person", "alice"];
    for answer in ["", "n", "no", "YES please", "y e s"] {
        let (code, shown) = on_a_terminal(&s, &remove, answer);
        assert!(
            shown.contains("Remove the token of alice on root? [y/N]"),
            "{shown}"
        );
        assert_eq!(code, Some(1), "answer {answer:?}: {shown}");
        assert_eq!(
            s.record("root"),
            before,
            "answer {answer:?} removed something"
        );
    }
    let (code, shown) = on_a_terminal(&s, &remove, "yes");
    assert_eq!(code, Some(0), "{shown}");
    let people: Vec<String> = s
        .account("root")
        .tokens
        .iter()
        .map(|t| t.person_name().to_string())
        .collect();
    assert_eq!(people, vec!["bob".to_string()], "only alice was removed");
    // Without a terminal and without --yes: refused, nothing removed.
    let out = s.run(&["remove", "--user", "root", "--person", "bob"]);
    common::assert_exit(&out, 2, "remove without a terminal");
    assert_eq!(s.account("root").tokens.len(), 1);
}
