//! Tier 3: a shared account (`root`, as on ECS public images) used by several people, each with
//! their own SSH key and their own phone, against a real sshd and ssh client in the namespace
//! container (see `tests/sshd_e2e.rs`). The key chooses the token: alice's key takes only
//! alice's codes, a lockout or a reset of alice leaves bob alone, the audit line names the
//! person and the key, a key bound to nobody is refused (or enrolls a new person at login),
//! and an automation key logs in without a prompt, logged as such.

mod common;

use std::process::{Command, Output};

use common::container::{
    audit_lines, code, code_at_offset, first_login, give_root_a_key, in_container,
    keygen_fingerprint as fingerprint, new_audit_lines, set_config, sh, ssh, sshd_settings, status,
};

const KEYS: &str = "/run/ecs-mfa-test/keys";

fn mfa_enroll(args: &[&str]) -> Output {
    Command::new("/usr/sbin/mfa-enroll")
        .args(args)
        .output()
        .unwrap()
}

/// `mfa-enroll ARGS --no-confirm --json`: the secret it shows.
fn enroll_secret(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--no-confirm", "--json"]);
    let out = mfa_enroll(&all);
    common::assert_ok(&out, &format!("mfa-enroll {args:?}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["secret"].as_str().unwrap().to_string()
}

/// The only new audit line since `seen`, which must contain every one of `parts`.
fn one_line_with(seen: usize, parts: &[&str]) -> String {
    let lines = new_audit_lines(seen);
    assert_eq!(lines.len(), 1, "one decision, one line: {lines:#?}");
    for part in parts {
        assert!(lines[0].contains(part), "{part:?} not in {:?}", lines[0]);
    }
    lines[0].clone()
}

#[test]
fn root_shared_by_people_with_their_own_keys_and_phones() {
    in_container(
        "root_shared_by_people_with_their_own_keys_and_phones",
        &[],
        || {
            // root (on a private tmpfs) with the keys of alice, bob, dave (a laptop), the
            // root key of the image (bound to nobody) and a backup job restricted by from=.
            give_root_a_key();
            sh(&format!(
                "ssh-keygen -q -t ed25519 -N '' -C 'dave@laptop' -f {KEYS}/dave && \
                 ssh-keygen -q -t ed25519 -N '' -C 'nightly backup' -f {KEYS}/backup && \
                 cat {KEYS}/alice.pub {KEYS}/bob.pub {KEYS}/dave.pub >> /root/.ssh/authorized_keys && \
                 printf 'from=\"127.0.0.1\",no-pty %s\\n' \"$(cat {KEYS}/backup.pub)\" >> /root/.ssh/authorized_keys"
            ));
            sshd_settings("PermitRootLogin yes\n");
            let (alice_key, bob_key, root_key, backup_key) = (
                fingerprint(&format!("{KEYS}/alice.pub")),
                fingerprint(&format!("{KEYS}/bob.pub")),
                fingerprint(&format!("{KEYS}/root.pub")),
                fingerprint(&format!("{KEYS}/backup.pub")),
            );
            set_config(&format!(
                "max_failures = 3\nlockout_seconds = 600\nautomation_keys = [\"root:{backup_key}\"]\n"
            ));
            // alice by her public key file, bob by an authorized_keys line's fingerprint.
            let alice = enroll_secret(&[
                "enroll",
                "--user",
                "root",
                "--person",
                "alice",
                "--key",
                &format!("{KEYS}/alice.pub"),
            ]);
            let bob = enroll_secret(&[
                "enroll", "--user", "root", "--person", "bob", "--key", &bob_key,
            ]);
            // Clear errors: a key bound to two people, an unknown person, a malformed key.
            let taken = mfa_enroll(&[
                "enroll",
                "--user",
                "root",
                "--person",
                "mallory",
                "--key",
                &alice_key,
                "--no-confirm",
            ]);
            common::assert_exit(&taken, 2, "key of another person");
            assert!(
                common::text(&taken.stderr).contains("bound to both alice and mallory"),
                "{taken:?}"
            );
            // Refused before anything is shown: no secret to scan for a token never saved.
            assert!(
                !common::text(&taken.stdout).contains("otpauth://"),
                "{taken:?}"
            );
            let unknown = mfa_enroll(&["unlock", "--user", "root", "--person", "nobody"]);
            common::assert_exit(&unknown, 2, "unknown person");
            assert!(
                common::text(&unknown.stderr).contains("no person named nobody"),
                "{unknown:?}"
            );
            let malformed = mfa_enroll(&[
                "bind",
                "--user",
                "root",
                "--person",
                "bob",
                "--key",
                "ssh-ed25519 not-base64!",
            ]);
            common::assert_exit(&malformed, 2, "malformed key");
            common::wait_for_fresh_step(20);

            // alice's key + alice's code: in, and the line names her and her key.
            let seen = audit_lines().len();
            let login = ssh("root", Some("alice"), Some(&code(&alice)), "id -un");
            assert!(login.success && login.stdout.trim() == "root", "{login:#?}");
            one_line_with(
                seen,
                &[
                    "result=success reason=ok",
                    "person=alice",
                    &format!("key={alice_key}"),
                ],
            );
            // alice's key + bob's code: refused (only alice's token is tried), counted on alice.
            let seen = audit_lines().len();
            let wrong = ssh("root", Some("alice"), Some(&code(&bob)), "id -un");
            assert!(!wrong.success, "{wrong:#?}");
            one_line_with(
                seen,
                &["result=deny reason=bad_code failures=1", "person=alice"],
            );
            // bob's key + bob's code, in the same time step as alice's: per-person replay marks.
            let seen = audit_lines().len();
            let login = ssh("root", Some("bob"), Some(&code(&bob)), "id -un");
            assert!(login.success, "{login:#?}");
            one_line_with(
                seen,
                &[
                    "result=success reason=ok",
                    "person=bob",
                    &format!("key={bob_key}"),
                ],
            );
            // The image's root key is bound to nobody: with key_binding = "if-bound" (default)
            // it gets no token, even with a valid code of someone else.
            let seen = audit_lines().len();
            let unbound = ssh("root", Some("root"), Some(&code(&alice)), "id -un");
            assert!(!unbound.success, "{unbound:#?}");
            assert_eq!(unbound.prompts.len(), 1, "asked like anyone: {unbound:#?}");
            one_line_with(
                seen,
                &["result=deny reason=unbound_key", &format!("key={root_key}")],
            );

            // alice locked out (two more failures); bob still gets in (next step's code).
            for _ in 0..2 {
                let _ = ssh("root", Some("alice"), Some("000000"), "id -un");
            }
            let seen = audit_lines().len();
            let locked = ssh(
                "root",
                Some("alice"),
                Some(&code_at_offset(&alice, 30)),
                "id -un",
            );
            assert!(!locked.success, "{locked:#?}");
            one_line_with(seen, &["reason=throttled", "person=alice"]);
            let seen = audit_lines().len();
            let login = ssh(
                "root",
                Some("bob"),
                Some(&code_at_offset(&bob, 30)),
                "id -un",
            );
            assert!(
                login.success,
                "bob is not locked out with alice: {login:#?}"
            );
            one_line_with(seen, &["reason=ok", "person=bob"]);

            // status lists the people, their keys, lockouts, recovery codes and last login.
            let row = status("root");
            let people = row["people"].as_array().expect("people");
            let of = |name: &str| people.iter().find(|p| p["person"] == name).unwrap().clone();
            assert_eq!(of("alice")["locked"], true, "{row}");
            assert_eq!(of("alice")["keys"][0], alice_key.as_str(), "{row}");
            assert_eq!(of("bob")["locked"], false, "{row}");
            assert_eq!(of("bob")["recovery_codes_left"], 10, "{row}");
            assert!(of("bob")["last_login"].is_string(), "{row}");

            // A reset of alice: new secret; bob's token is untouched.
            let bob_before = std::fs::read_to_string("/var/lib/ecs-mfa/users/root.toml").unwrap();
            let alice2 = enroll_secret(&["reset", "--user", "root", "--person", "alice"]);
            assert_ne!(alice2, alice);
            let show = mfa_enroll(&["show", "--user", "root", "--person", "bob", "--json"]);
            common::assert_ok(&show, "show bob");
            let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
            assert_eq!(shown["secret"], bob.as_str());
            assert!(bob_before.contains("person = \"bob\""));
            let row = status("root");
            let people = row["people"].as_array().unwrap();
            let alice_row = people.iter().find(|p| p["person"] == "alice").unwrap();
            assert_eq!(
                alice_row["locked"], false,
                "a reset ends the lockout: {row}"
            );

            // The automation key: no prompt, exempt, with its key in the line.
            let seen = audit_lines().len();
            let job = ssh("root", Some("backup"), None, "id -un");
            assert!(job.success && job.prompts.is_empty(), "{job:#?}");
            one_line_with(
                seen,
                &["result=ignore reason=exempt", &format!("key={backup_key}")],
            );
            let doctor = mfa_enroll(&["doctor"]);
            let report = common::text(&doctor.stdout);
            assert!(
                report.contains(&format!(
                    "automation key {backup_key} of root (nightly backup)"
                )) && report.contains("from the addresses its from= allows"),
                "{report}"
            );

            // Enrollment at login: dave's key, bound to nobody, enrolls a third person named
            // after the key's comment.
            set_config(&format!(
                "max_failures = 3\nlockout_seconds = 600\nenroll_at_login = true\n\
                 automation_keys = [\"root:{backup_key}\"]\n"
            ));
            let seen = audit_lines().len();
            let (ok, _, client, _) = first_login("root", "dave", None, "dave");
            assert!(ok, "{client}");
            one_line_with(seen, &["reason=enrolled_at_login", "person=dave@laptop"]);
            let row = status("root");
            let names: Vec<&str> = row["people"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["person"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["alice", "bob", "dave@laptop"], "{row}");
            // Still nobody's: the root key (it would enroll too, so check with the log only
            // that alice's new token works and removing people works down to the record).
            let seen = audit_lines().len();
            let login = ssh(
                "root",
                Some("alice"),
                Some(&code_at_offset(&alice2, 30)),
                "id -un",
            );
            assert!(login.success, "alice after her reset: {login:#?}");
            one_line_with(seen, &["reason=ok", "person=alice"]);
            for person in ["alice", "bob", "dave@laptop"] {
                let out = mfa_enroll(&["remove", "--user", "root", "--person", person, "--yes"]);
                common::assert_ok(&out, person);
            }
            assert!(
                !std::path::Path::new("/var/lib/ecs-mfa/users/root.toml").exists(),
                "removing the last person removes the record"
            );
        },
    );
}
