//! Tier 2: an administrator's `mfa-enroll` never waits on a user who sits at the module's
//! enrollment-at-login prompt (real Linux-PAM through pamtester, the real `.so` and CLI).
//!
//! sshd's `SSH_AUTH_INFO_0` (a key accepted first) comes from `pam_env.so` in the same stack:
//! pamtester runs `setcred` (pam_env sets the variable there) before `authenticate`. The login
//! waits at "Enter the code from the app to confirm" with its stdin held open by the test,
//! while the administrator's commands run; each must return at once (a generous 20 s bound;
//! they take milliseconds, and on the old code they hung until the login ended).

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{PamRun, Sandbox, cli, oathtool_code, text};

/// A key sshd accepted (the value does not matter to the module beyond its fingerprint).
const KEY_INFO: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";
const CONFIRM: &str = "Enter the code from the app to confirm: ";
/// libstdbuf keeps pamtester's stdout (where the QR code and secret go) unbuffered, so the test
/// can read the secret while the login waits, as the user reads it off the screen.
const UNBUFFERED: &str = "export LD_PRELOAD=/usr/libexec/coreutils/libstdbuf.so _STDBUF_O=0";

fn sandbox(tag: &str) -> Sandbox {
    let sb = Sandbox::new(tag);
    sb.set_config("enroll_at_login = true\n");
    // The store must exist: another user is enrolled.
    sb.enroll("bob", &[]);
    let env = sb.root.join("pam_env.conf");
    std::fs::write(&env, format!("SSH_AUTH_INFO_0 DEFAULT=\"{KEY_INFO}\"\n")).unwrap();
    sb.set_stack(&format!(
        "auth optional pam_env.so readenv=0 user_readenv=0 conffile={}\n\
         auth required {{module}} {{args}}",
        env.display()
    ));
    sb.set_ns_setup(UNBUFFERED);
    sb
}

/// A first login of `user` waiting at the confirmation prompt; its stdout (the secret) is
/// collected by a thread.
struct Waiting {
    run: PamRun,
    shown: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
    stderr: Vec<u8>,
}

fn login_waiting_at_confirmation(sb: &Sandbox, user: &str) -> Waiting {
    let mut run = sb.pamtester_open(user, &[], &["setcred", "authenticate"]);
    let mut stdout = run.child.stdout.take().unwrap();
    let shown = Arc::new(Mutex::new(Vec::new()));
    let sink = shown.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stderr = Vec::new();
    let mut pipe = run.child.stderr.take().unwrap();
    let mut byte = [0u8; 1];
    while !text(&stderr).contains(CONFIRM) {
        match pipe.read(&mut byte) {
            Ok(1) => stderr.push(byte[0]),
            _ => panic!("no confirmation prompt came: {}", text(&stderr)),
        }
    }
    run.child.stderr = Some(pipe);
    Waiting {
        run,
        shown,
        reader,
        stderr,
    }
}

impl Waiting {
    /// The secret the login showed (the `Secret: ABCD EFGH ...` line).
    fn secret(&self) -> String {
        for _ in 0..500 {
            let shown = text(&self.shown.lock().unwrap());
            if let Some(line) = shown.lines().find_map(|l| l.strip_prefix("Secret: ")) {
                return line.replace(' ', "");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no secret shown: {}", text(&self.shown.lock().unwrap()));
    }

    /// Types `answer` and waits for the end of the login.
    fn answer(mut self, answer: &str) -> (common::AuthResult, String) {
        let mut stdin = self.run.child.stdin.take().unwrap();
        let _ = stdin.write_all(format!("{answer}\n").as_bytes());
        drop(stdin);
        let mut result = self.run.finish();
        let _ = self.reader.join();
        result.stderr = text(&self.stderr) + &result.stderr;
        let shown = text(&self.shown.lock().unwrap());
        (result, shown)
    }
}

/// Runs an administrator's command, which must succeed within 20 s; prints how long it took.
fn admin(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let start = Instant::now();
    let out = cli(sb, args, b"");
    let took = start.elapsed();
    eprintln!("mfa-enroll {args:?} took {took:?} while the user sat at the prompt");
    assert!(
        took < Duration::from_secs(20),
        "mfa-enroll {args:?} waited on the user at the prompt: {took:?}"
    );
    common::assert_ok(&out, &format!("mfa-enroll {args:?}"));
    out
}

fn secret_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("one JSON object");
    v["secret"].as_str().unwrap().to_string()
}

#[test]
fn admin_commands_return_at_once_while_a_user_sits_at_the_enrollment_prompt() {
    let sb = sandbox("admin-during-login");
    common::wait_for_fresh_step(15);
    let waiting = login_waiting_at_confirmation(&sb, "alice");
    let hers = waiting.secret();

    // Enroll, unlock, recovery codes, reset: each at once, while she still sits there.
    admin(
        &sb,
        &["enroll", "--user", "alice", "--no-confirm", "--json"],
    );
    admin(&sb, &["unlock", "--user", "alice"]);
    admin(&sb, &["recovery", "--user", "alice", "--json"]);
    let reset = admin(&sb, &["reset", "--user", "alice", "--no-confirm", "--json"]);
    let admins = secret_of(&text(&reset.stdout));

    // She types the right code for the secret she was shown: the administrator's enrollment
    // stands, hers is not saved, and she is told why (not bad_file).
    let (result, shown) = waiting.answer(&oathtool_code(&hers, &[]));
    assert!(!result.success, "{result:#?}");
    let audit = result.audit();
    assert!(
        audit.contains("result=deny reason=not_enrolled") && audit.contains("enrolled meanwhile"),
        "{audit}"
    );
    assert!(!audit.contains("bad_file"), "{audit}");
    assert!(shown.contains("enrolled meanwhile"), "{shown}");
    // The administrator's record is the one in force: its code logs in, hers does not.
    let ok = sb.auth(
        "alice",
        format!("{}\n", oathtool_code(&admins, &[])).as_bytes(),
    );
    assert!(ok.success, "{}", ok.audit());
}

#[test]
fn a_removal_while_the_user_confirms_lets_her_enrollment_be_saved() {
    let sb = sandbox("remove-during-login");
    common::wait_for_fresh_step(15);
    let waiting = login_waiting_at_confirmation(&sb, "alice");
    let hers = waiting.secret();
    admin(
        &sb,
        &["enroll", "--user", "alice", "--no-confirm", "--json"],
    );
    admin(&sb, &["remove", "--user", "alice", "--yes", "--json"]);
    // No record any more when she confirms: hers is created.
    let (result, _) = waiting.answer(&oathtool_code(&hers, &[]));
    assert!(result.success, "{result:#?}");
    assert!(
        result.audit().contains("reason=enrolled_at_login"),
        "{}",
        result.audit()
    );
    let record = std::fs::read_to_string(sb.store.join("alice.toml")).unwrap();
    assert!(record.contains("\"login\""), "{record}");
}
