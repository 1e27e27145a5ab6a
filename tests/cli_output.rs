//! `mfa-enroll` output that survives pipes, parameters that phones honour, an issuer per fleet
//! (issue "mfa-enroll: output that survives pipes ..."). Real binary, real pipes.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use common::{Sandbox, cli, text};

/// `mfa-enroll ARGS` with the sandbox's store, state and config; stderr piped.
fn command(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = Command::new(common::enroll_bin());
    cmd.args(args)
        .args(["--store", sb.store.to_str().unwrap(), "--state"])
        .arg(&sb.state)
        .arg("--config")
        .arg(&sb.config)
        .env_remove("SUDO_USER")
        .stderr(Stdio::piped());
    cmd
}

/// `mfa-enroll ARGS` with stdout connected to a pipe whose reader is already gone.
fn with_closed_stdout(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(read);
    let child = command(sb, args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Like `| head -c N`: reads `n` bytes, then closes the pipe while the tool may still write.
fn like_head(sb: &Sandbox, args: &[&str], n: usize) -> (std::process::Output, Vec<u8>) {
    let mut child = command(sb, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = vec![0u8; n];
    let got = stdout.read(&mut head).unwrap();
    head.truncate(got);
    drop(stdout);
    (child.wait_with_output().unwrap(), head)
}

fn quiet(out: &std::process::Output, what: &str) {
    let err = text(&out.stderr);
    assert!(
        !err.contains("internal error") && !err.contains("panicked"),
        "{what}: {err}"
    );
    assert!(
        out.status.code().is_some(),
        "{what}: killed by a signal (abort?) {:?}",
        out.status
    );
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_and_saves_nothing_unseen() {
    let sb = Sandbox::new("pipes");
    sb.enroll("alice", &[]);
    let before = sb.store_snapshot();
    for args in [
        &["enroll", "--user", "bob", "--no-confirm"][..],
        &["enroll", "--user", "bob", "--no-confirm", "--json"],
        &["enroll", "--user", "bob", "--no-confirm", "--qr", "utf8"],
        &["reset", "--user", "alice", "--no-confirm"],
        &["reset", "--user", "alice", "--no-confirm", "--json"],
        &["recovery", "--user", "alice"],
        &["recovery", "--user", "alice", "--json"],
    ] {
        let out = with_closed_stdout(&sb, args);
        quiet(&out, &args.join(" "));
        common::assert_exit(&out, 141, &format!("{args:?}"));
        let err = text(&out.stderr);
        assert!(
            !err.contains("Broken pipe") && !err.contains("cannot write"),
            "{args:?}: quiet about the pipe, like coreutils: {err}"
        );
        assert_eq!(
            sb.store_snapshot(),
            before,
            "{args:?} saved what nobody saw"
        );
    }
    for args in [
        &["status", "--all"][..],
        &["status", "--user", "alice", "--json"],
        &["show", "--user", "alice"],
        &["show", "--user", "alice", "--json"],
        &["completions", "bash"],
    ] {
        let out = with_closed_stdout(&sb, args);
        quiet(&out, &args.join(" "));
        common::assert_exit(&out, 141, &format!("{args:?}"));
    }
}

#[test]
fn a_reader_that_stops_early_never_leaves_codes_nobody_could_see() {
    let sb = Sandbox::new("head");
    sb.enroll("alice", &[]);
    // `enroll | head -2`, `--json | head -c 10`, `recovery | head -c 10`: either the tool was
    // stopped before it saved (141, nothing saved) or it had written everything (0, saved).
    for (args, n, user) in [
        (
            &["enroll", "--user", "bob", "--no-confirm", "--qr", "utf8"][..],
            40,
            "bob",
        ),
        (
            &["enroll", "--user", "carol", "--no-confirm", "--json"],
            10,
            "carol",
        ),
    ] {
        let (out, _) = like_head(&sb, args, n);
        quiet(&out, &args.join(" "));
        let saved = sb.store.join(format!("{user}.toml")).exists();
        match out.status.code() {
            Some(141) => assert!(!saved, "{args:?}: stopped but saved"),
            Some(0) => assert!(saved, "{args:?}"),
            other => panic!("{args:?}: {other:?} {}", text(&out.stderr)),
        }
    }
    for args in [
        &["status", "--all"][..],
        &["show", "--user", "alice"],
        &["status", "--all", "--json"],
    ] {
        let (out, head) = like_head(&sb, args, 10);
        quiet(&out, &args.join(" "));
        assert!(matches!(out.status.code(), Some(0 | 141)), "{args:?}");
        assert!(!head.is_empty());
    }
}

#[test]
fn parameters_most_apps_ignore_are_warned_about_and_need_force_params_without_confirmation() {
    let sb = Sandbox::new("params");
    let out = cli(
        &sb,
        &[
            "enroll",
            "--user",
            "alice",
            "--algorithm",
            "SHA256",
            "--digits",
            "8",
            "--no-confirm",
        ],
        b"",
    );
    common::assert_exit(&out, 2, "mfa-enroll enroll");
    let err = text(&out.stderr);
    assert!(
        err.contains("Google Authenticator (Android)") && err.contains("FreeOTP"),
        "{err}"
    );
    assert!(err.contains("--force-params"), "{err}");
    assert!(!sb.store.join("alice.toml").exists(), "nothing saved");

    let out = cli(
        &sb,
        &[
            "enroll",
            "--user",
            "alice",
            "--period",
            "60",
            "--no-confirm",
            "--force-params",
        ],
        b"",
    );
    common::assert_ok(&out, "mfa-enroll enroll");
    assert!(text(&out.stderr).contains("warning: SHA1, 6 digits, 60 s"));
    assert!(
        text(&out.stdout)
            .contains("an app that honours these parameters (FreeOTP (Android), Bitwarden)"),
        "{}",
        text(&out.stdout)
    );
    // With a confirmation the warning is shown and the confirmation is the safety net.
    let out = cli(
        &sb,
        &["enroll", "--user", "bob", "--digits", "8"],
        b"00000000\n00000000\n00000000\n",
    );
    common::assert_exit(&out, 7, "mfa-enroll enroll");
    assert!(text(&out.stderr).contains("warning: SHA1, 8 digits, 30 s"));
    // The defaults: no warning, the usual apps named.
    let out = cli(&sb, &["enroll", "--user", "carol", "--no-confirm"], b"");
    common::assert_ok(&out, "mfa-enroll enroll");
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("Google Authenticator, Microsoft Authenticator or Authy"));
}

#[test]
fn one_issuer_from_the_config_for_every_uri_and_the_option_wins() {
    let sb = Sandbox::new("issuer");
    sb.set_config("issuer = \"Acme ECS\"\n");
    let uri = |out: &std::process::Output| -> String {
        common::assert_ok(out, "mfa-enroll enroll");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["otpauth_uri"].as_str().unwrap().to_string()
    };
    let enrolled = uri(&cli(
        &sb,
        &["enroll", "--user", "alice", "--no-confirm", "--json"],
        b"",
    ));
    assert!(
        enrolled.starts_with("otpauth://totp/Acme%20ECS:alice")
            && enrolled.contains("issuer=Acme%20ECS"),
        "{enrolled}"
    );
    assert_eq!(
        uri(&cli(&sb, &["show", "--user", "alice", "--json"], b"")),
        enrolled
    );
    let reset = uri(&cli(
        &sb,
        &["reset", "--user", "alice", "--no-confirm", "--json"],
        b"",
    ));
    assert!(reset.contains("issuer=Acme%20ECS"), "{reset}");
    let own = uri(&cli(
        &sb,
        &[
            "enroll",
            "--user",
            "bob",
            "--no-confirm",
            "--json",
            "--issuer",
            "Lab",
        ],
        b"",
    ));
    assert!(own.contains("issuer=Lab"), "{own}");
    // Imports get the configured issuer too.
    sb.import_oath("carol", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    let carol = uri(&cli(&sb, &["show", "--user", "carol", "--json"], b""));
    assert!(carol.contains("issuer=Acme%20ECS"), "{carol}");
    // A bad value is a config error, like every other key.
    sb.set_config("issuer = \"\"\n");
    let out = cli(&sb, &["status", "--user", "alice"], b"");
    common::assert_exit(&out, 9, "mfa-enroll status");
}

/// On a terminal-style run, recovery codes are printed only once the first code is confirmed.
#[test]
fn recovery_codes_appear_only_after_the_first_code_is_confirmed() {
    use std::io::{BufRead, BufReader, Write};
    let sb = Sandbox::new("confirm-order");
    let spawn = || {
        command(&sb, &["enroll", "--user", "alice", "--qr", "none"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Three wrong codes: no recovery codes were ever shown, nothing saved.
    let mut child = spawn();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"000000\n000000\n000000\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    common::assert_exit(&out, 7, "mfa-enroll enroll (three wrong confirmations)");
    assert!(
        !text(&out.stdout).contains("Recovery codes"),
        "{}",
        text(&out.stdout)
    );
    assert!(!sb.store.join("alice.toml").exists());
    // The right code: then, and only then, the codes.
    let mut child = spawn();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut before = String::new();
    let secret = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no secret in {before}"
        );
        before.push_str(&line);
        if let Some(s) = line.trim().strip_prefix("Secret:") {
            break s.split_whitespace().collect::<String>();
        }
    };
    assert!(!before.contains("Recovery codes"));
    let code = common::oathtool_code(&secret, &[]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{code}\n").as_bytes())
        .unwrap();
    let mut after = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut after).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(after.contains("Recovery codes"), "{after}");
}
