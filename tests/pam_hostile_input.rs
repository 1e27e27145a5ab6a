//! Hardening, tier 2: hostile files, names and input, faults, and concurrency at scale, all
//! through the real `.so` under real Linux-PAM. Every case asserts a denial (or a clear CLI
//! error), no hang (a 60 s limit fails the test), and an unchanged store.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Sandbox, oathtool_code, text, wrong_code};

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn hostile_record_files_are_refused_and_left_as_found() {
    let sb = Sandbox::new("hostile-files");
    let secret = sb.enroll("alice", &[]);
    sb.enroll("bob", &[]);
    let record = sb.store.join("alice.toml");
    let good = std::fs::read(&record).unwrap();
    let reset = || {
        let _ = std::fs::remove_file(&record);
        let _ = std::fs::remove_dir(&record);
        std::fs::write(&record, &good).unwrap();
        set_mode(&record, 0o600);
    };
    let replace_with = |bytes: &[u8]| {
        std::fs::write(&record, bytes).unwrap();
        set_mode(&record, 0o600);
    };
    let half = &good[..good.len() / 2];
    let mut with_nul = good.clone();
    with_nul.splice(40..40, *b"\0\0");
    type Breaker<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("truncated", Box::new(|| replace_with(half))),
        ("empty", Box::new(|| replace_with(b""))),
        (
            "not UTF-8",
            Box::new(|| replace_with(b"\xff\xfe\xfd version = 1")),
        ),
        ("NUL bytes", Box::new(|| replace_with(&with_nul))),
        (
            "sparse 1 GiB",
            Box::new(|| {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&record)
                    .unwrap();
                f.set_len(1 << 30).unwrap();
            }),
        ),
        (
            "owned by nobody",
            Box::new(|| std::os::unix::fs::chown(&record, Some(65534), Some(65534)).unwrap()),
        ),
        ("mode 0640", Box::new(|| set_mode(&record, 0o640))),
        ("mode 0644", Box::new(|| set_mode(&record, 0o644))),
        ("mode 0666", Box::new(|| set_mode(&record, 0o666))),
        ("setuid bit", Box::new(|| set_mode(&record, 0o4600))),
        (
            "symlink",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                symlink(sb.store.join("bob.toml"), &record).unwrap();
            }),
        ),
        (
            "hard link to bob's record",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                std::fs::hard_link(sb.store.join("bob.toml"), &record).unwrap();
            }),
        ),
        (
            "directory",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                std::fs::create_dir(&record).unwrap();
            }),
        ),
        (
            "FIFO",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                nix::unistd::mkfifo(&record, nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .unwrap();
            }),
        ),
        (
            "socket",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                std::mem::forget(std::os::unix::net::UnixListener::bind(&record).unwrap());
            }),
        ),
        (
            "device node",
            Box::new(|| {
                std::fs::remove_file(&record).unwrap();
                nix::sys::stat::mknod(
                    &record,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(1, 3),
                )
                .unwrap();
            }),
        ),
    ];
    let code = oathtool_code(&secret, &[]);
    for (what, break_it) in cases {
        reset();
        break_it();
        let before = sb.store_snapshot();
        let r = sb.auth("alice", format!("{code}\n").as_bytes());
        assert!(!r.success, "{what}: {r:#?}");
        assert_eq!(r.prompts(), 1, "{what}: still prompted (no enumeration)");
        assert!(
            r.audit().contains("reason=bad_file"),
            "{what}: {}",
            r.audit()
        );
        assert!(!r.audit().contains(&secret), "{what}");
        assert_eq!(sb.store_snapshot(), before, "{what}: store changed");
    }
    reset();
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(r.success, "the restored record works: {r:#?}");
}

#[test]
fn an_unsafe_store_directory_denies_everyone_and_is_left_as_found() {
    let sb = Sandbox::new("hostile-dir");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    for (what, mode, owner) in [
        ("group-writable", 0o770, 0),
        ("world-writable", 0o777, 0),
        ("sticky world-writable", 0o1777, 0),
        ("owned by a user", 0o700, 65534),
    ] {
        set_mode(&sb.store, mode);
        std::os::unix::fs::chown(&sb.store, Some(owner), None).unwrap();
        let before = sb.store_snapshot();
        let r = sb.auth("alice", format!("{code}\n").as_bytes());
        assert!(!r.success, "{what}");
        assert!(
            r.audit().contains("reason=bad_file"),
            "{what}: {}",
            r.audit()
        );
        // nullok does not turn an unsafe store into "not enrolled".
        sb.set_stack("auth [success=done ignore=ignore default=die] {module} {args} nullok\nauth required pam_permit.so");
        let r = sb.auth("bob", b"\n");
        assert!(!r.success, "{what}: nullok must not open an unsafe store");
        sb.set_stack("auth required {module} {args}");
        assert_eq!(sb.store_snapshot(), before, "{what}: store changed");
        set_mode(&sb.store, 0o700);
        std::os::unix::fs::chown(&sb.store, Some(0), None).unwrap();
    }
}

#[test]
fn hostile_user_names_are_denied() {
    let sb = Sandbox::new("hostile-names");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let long = "a".repeat(300);
    let names: Vec<std::ffi::OsString> = vec![
        "../users/alice".into(),
        "alice/".into(),
        "..".into(),
        "a\nb".into(),
        "alice\n".into(),
        long.clone().into(),
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xffalice").to_os_string(),
    ];
    let before = sb.store_snapshot();
    for name in names {
        let r = sb.auth_os(&name, format!("{code}\n").as_bytes());
        assert!(!r.success, "{name:?}");
        assert!(
            r.audit().contains("reason=bad_user"),
            "{name:?}: {}",
            r.audit()
        );
        assert!(!r.audit().contains('\n'));
        // Every bad name is prompted like a real one (no enumeration), non-UTF-8 included.
        assert_eq!(r.prompts(), 1, "{name:?}");
    }
    assert_eq!(sb.store_snapshot(), before);
}

#[test]
fn hostile_typed_codes_are_wrong_codes() {
    let sb = Sandbox::new("hostile-codes");
    let secret = sb.enroll("alice", &[]);
    sb.set_config("max_failures = 100\n");
    let code = oathtool_code(&secret, &[]);
    let megabyte = "1".repeat(1 << 20);
    let inputs: Vec<Vec<u8>> = vec![
        b"\n".to_vec(),
        b"12345\n".to_vec(),
        b"1234567\n".to_vec(),
        b"123456789012\n".to_vec(),
        "١٢٣٤٥٦\n".as_bytes().to_vec(),
        format!("{}\x1b[2J{}\n", &code[..3], &code[3..]).into_bytes(),
        format!("{}\x08{}\n", &code, "9").into_bytes(),
        format!("{megabyte}\n").into_bytes(),
        wrong_code(&code).into_bytes(),
    ];
    let before = sb.store_snapshot();
    for input in inputs {
        let r = sb.auth("alice", &input);
        assert!(!r.success, "{:?}", &input[..input.len().min(20)]);
        assert!(r.audit().contains("reason=bad_code"), "{}", r.audit());
    }
    assert_eq!(sb.store_snapshot(), before);
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(r.success, "{r:#?}");
}

#[test]
fn malformed_config_or_arguments_deny_every_login() {
    let sb = Sandbox::new("hostile-config");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let configs = [
        "window = \n",
        "window = -1\n",
        "[section]\nwindow = 1\n",
        "nullok = \"yes\"\n",
        "\u{0}",
        "store = \"/tmp/../etc\"\n",
    ];
    for config in configs {
        sb.set_config(config);
        let r = sb.auth("alice", format!("{code}\n").as_bytes());
        assert!(!r.success, "{config:?}");
        assert!(
            r.audit().contains("reason=bad_config"),
            "{config:?}: {}",
            r.audit()
        );
    }
    std::fs::remove_file(&sb.config).unwrap();
    for args in [
        "{args} store=/other",
        "{args} debug debug",
        "{args} window=3",
        "{args} store=rel",
    ] {
        sb.set_stack(&format!("auth required {{module}} {args}"));
        let r = sb.auth("alice", format!("{code}\n").as_bytes());
        assert!(!r.success, "{args}");
        assert!(
            r.audit().contains("reason=bad_config"),
            "{args}: {}",
            r.audit()
        );
    }
}

#[test]
fn a_full_or_read_only_state_directory_fails_closed_and_keeps_the_enrollment() {
    let sb = Sandbox::new("faults-state");
    let secret = sb.enroll("alice", &[]);
    let code = oathtool_code(&secret, &[]);
    let state = sb.state.display().to_string();
    let before = sb.store_snapshot();
    for (what, setup, expect) in [
        (
            "full",
            format!(
                "mount -t tmpfs -o size=8k,mode=0700 full {state}\n\
                 dd if=/dev/zero of={state}/fill bs=4k count=8 2>/dev/null || true"
            ),
            "No space left",
        ),
        (
            "read-only",
            format!("mount -t tmpfs -o ro,mode=0700 ro {state}"),
            "Read-only",
        ),
    ] {
        sb.set_ns_setup(&setup);
        let r = sb.auth("alice", format!("{code}\n").as_bytes());
        assert!(
            !r.success,
            "{what}: a correct code must not pass without replay state"
        );
        let audit = r.audit();
        assert!(audit.contains("reason=internal"), "{what}: {audit}");
        assert!(audit.contains(expect), "{what}: {audit}");
        assert_eq!(sb.store_snapshot(), before, "{what}: enrollment changed");
    }
    sb.set_ns_setup("");
    let r = sb.auth("alice", format!("{code}\n").as_bytes());
    assert!(
        r.success,
        "works again once the state directory is usable: {r:#?}"
    );
}

#[test]
fn killing_mfa_enroll_mid_write_leaves_the_old_or_the_new_record() {
    let sb = Sandbox::new("faults-kill");
    sb.enroll("alice", &[]);
    let store = pam_ecs_mfa::store::Store::new(&sb.store);
    let alice = pam_ecs_mfa::user_name::UserName::parse("alice").unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..40u64 {
        let mut child = Command::new(common::enroll_bin())
            .args([
                "enroll",
                "--user",
                "alice",
                "--no-confirm",
                "--json",
                "--force",
                "--store",
            ])
            .arg(&sb.store)
            .arg("--state")
            .arg(&sb.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the whole run (hashing recovery codes, then the write).
        std::thread::sleep(Duration::from_micros((i * 7919) % 400_000));
        let _ = child.kill();
        let _ = child.wait();
        let record = store.load(&alice).expect("always a complete, valid record");
        seen.insert(record.secret.to_base32().to_string());
    }
    // The next run is never blocked by what a killed run left behind, and cleans up.
    let secret = sb.enroll("alice", &["--force"]);
    let leftovers: Vec<_> = std::fs::read_dir(&sb.store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "alice.toml")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        sb.auth(
            "alice",
            format!("{}\n", oathtool_code(&secret, &[])).as_bytes()
        )
        .success
    );
    eprintln!("{} distinct records survived the kills", seen.len());
}

#[test]
fn two_hundred_concurrent_logins_across_twenty_users_are_exact() {
    let sb = Sandbox::new("scale");
    // No lockouts, so every failure must show up in the counters.
    sb.set_config("max_failures = 100\n");
    let mut secrets = Vec::new();
    for u in 0..20 {
        secrets.push(sb.enroll(&format!("user{u}"), &[]));
    }
    common::wait_for_fresh_step(25);
    let mut runs = Vec::new();
    for (u, secret) in secrets.iter().enumerate() {
        let code = oathtool_code(secret, &[]);
        // Users 0-9: ten logins with one valid code. Users 10-19: ten wrong codes.
        let input = if u < 10 { code } else { wrong_code(&code) };
        for _ in 0..10 {
            runs.push((
                u,
                sb.auth_spawn(&format!("user{u}"), format!("{input}\n").as_bytes(), &[]),
            ));
        }
    }
    let mut successes = [0usize; 20];
    for (u, run) in runs {
        if run.finish().success {
            successes[u] += 1;
        }
    }
    for (u, &wins) in successes.iter().enumerate() {
        assert_eq!(wins, usize::from(u < 10), "user{u}");
        let state = std::fs::read_to_string(sb.state.join(format!("user{u}.state"))).unwrap();
        // Valid-code users: the success reset the counter, then 9 replays. Others: 10 failures.
        let failures = if u < 10 { 9 } else { 10 };
        assert!(
            state.contains(&format!("failures = {failures}\n")),
            "user{u}: {state}"
        );
        assert!(state.starts_with("version = 1\n"), "user{u}: {state}");
    }
}

#[test]
fn cli_errors_are_one_line_without_a_panic() {
    let sb = Sandbox::new("cli-hostile");
    for args in [
        vec!["enroll", "--user", "a\nb", "--no-confirm"],
        vec!["enroll", "--user", &"x".repeat(300), "--no-confirm"],
        vec!["recovery", "--user", "ghost"],
    ] {
        let out = Command::new(common::enroll_bin())
            .args(&args)
            .arg("--store")
            .arg(&sb.store)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        common::assert_failed(&out, &format!("{args:?}"));
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("mfa-enroll: ") && !err.contains("panicked"),
            "{err}"
        );
    }
}
