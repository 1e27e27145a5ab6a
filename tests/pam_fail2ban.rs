//! Tier 2 with the real fail2ban (Debian package `fail2ban`): the shipped filter
//! (`packaging/fail2ban/filter.d/ecs-mfa.conf`) matches every line the real module writes for a
//! denial the client causes, and no success, ignore or administrator-side line, in both audit
//! formats, for IPv4 and IPv6 clients, odd and hostile user names (one tries to inject an
//! address); then a real `fail2ban-server` with the shipped jail bans an address after failures
//! spread over several users and leaves an address with only successes and exemptions alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{oathtool_code, wrong_code};

const FILTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/fail2ban/filter.d/ecs-mfa.conf"
);
const JAIL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/fail2ban/jail.d/ecs-mfa.conf"
);

fn require_fail2ban() {
    let present = Path::new("/usr/bin/fail2ban-regex").exists()
        && Path::new("/usr/bin/fail2ban-server").exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "fail2ban is missing: apt-get install fail2ban (scripts/deps does this)"
        );
        panic!("fail2ban is missing: apt-get install fail2ban (scripts/deps)");
    }
}

/// Real module lines: (line, the address fail2ban must extract, or None for no match).
fn module_lines(tag: &str, json: bool) -> Vec<(String, Option<&'static str>)> {
    let sb = common::sandbox_with_rhost(tag);
    let format = if json {
        "audit_format = \"json\"\n"
    } else {
        ""
    };
    sb.set_config(&format!(
        "{format}max_failures = 3\nlockout_seconds = 600\nexempt_networks = [\"198.51.100.0/24\"]\n"
    ));
    let secret = sb.enroll("alice", &[]);
    common::wait_for_fresh_step(8);
    let code = oathtool_code(&secret, &[]);
    let wrong = wrong_code(&code);
    let mut lines = vec![
        (
            common::login_from(&sb, "alice", "192.0.2.10", &wrong),
            Some("192.0.2.10"),
        ),
        (common::login_from(&sb, "alice", "192.0.2.11", &code), None),
        (
            common::login_from(&sb, "alice", "192.0.2.12", &code),
            Some("192.0.2.12"),
        ),
        (
            common::login_from(&sb, "bob", "192.0.2.14", &code),
            Some("192.0.2.14"),
        ),
        (
            common::login_from(&sb, "nosuchuser", "2001:db8::15", &code),
            Some("2001:db8::15"),
        ),
        // A name crafted to carry a second address: only the real client's is taken.
        (
            common::login_from(&sb, "x rhost=203.0.113.9 service=sshd", "192.0.2.16", &code),
            Some("192.0.2.16"),
        ),
        (
            common::login_from(
                &sb,
                "x\"},\"source\":{\"ip\":\"203.0.113.9\"",
                "192.0.2.17",
                &code,
            ),
            Some("192.0.2.17"),
        ),
        (
            common::login_from(&sb, "Alice", "2001:db8::18", &wrong),
            Some("2001:db8::18"),
        ),
        (
            common::login_from(&sb, "alice", "198.51.100.7", &wrong),
            None,
        ),
        (
            common::login_from(&sb, "alice", "2001:db8::19", &wrong),
            Some("2001:db8::19"),
        ),
        // The third failure locks alice out: that attempt and the next are failures too.
        (
            common::login_from(&sb, "alice", "2001:db8::19", &code),
            Some("2001:db8::19"),
        ),
    ];
    // An administrator-side denial: the store made unreadable for a moment.
    let mode = std::fs::metadata(&sb.store).unwrap();
    std::fs::set_permissions(
        &sb.store,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    lines.push((common::login_from(&sb, "alice", "192.0.2.20", &code), None));
    std::fs::set_permissions(&sb.store, mode.permissions()).unwrap();
    lines
}

/// A fail2ban configuration directory with Debian's `common.conf` and the shipped filter.
fn filter_dir(dir: &Path) -> PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("filter.d")).unwrap();
    std::fs::copy(
        "/etc/fail2ban/filter.d/common.conf",
        conf.join("filter.d/common.conf"),
    )
    .unwrap();
    std::fs::copy(FILTER, conf.join("filter.d/ecs-mfa.conf")).unwrap();
    conf
}

fn fail2ban_regex(conf: &Path, log: &Path) -> Vec<String> {
    let out = Command::new("fail2ban-regex")
        .arg("--config")
        .arg(conf)
        .args(["--print-no-missed", "--print-no-ignored", "-o", "ip"])
        .arg(log)
        .arg("ecs-mfa")
        .output()
        .unwrap();
    common::assert_ok(&out, "fail2ban-regex");
    common::text(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_filter_matches_every_client_failure_and_nothing_else_in_both_formats() {
    require_fail2ban();
    for json in [false, true] {
        let lines = module_lines(if json { "f2b-json" } else { "f2b-kv" }, json);
        let dir = std::env::temp_dir().join(format!("ecs-mfa-f2b-{}-{json}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = filter_dir(&dir);
        for (line, want) in &lines {
            // One line at a time: each must match with exactly its address, or not at all.
            let log = dir.join("auth.log");
            std::fs::write(&log, format!("{line}\n")).unwrap();
            let got = fail2ban_regex(&conf, &log);
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "json={json}: {line}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A fail2ban-server of its own: config, socket, pid file and log in `dir`, the shipped filter
/// and jail (enabled, polling `log`), and a ban action that writes the address to a file.
struct Server {
    dir: PathBuf,
    socket: PathBuf,
}

impl Server {
    fn start(dir: &Path, log: &Path) -> Self {
        let conf = dir.join("conf");
        for sub in ["filter.d", "action.d", "jail.d"] {
            std::fs::create_dir_all(conf.join(sub)).unwrap();
        }
        std::fs::copy(
            "/etc/fail2ban/filter.d/common.conf",
            conf.join("filter.d/common.conf"),
        )
        .unwrap();
        std::fs::copy(FILTER, conf.join("filter.d/ecs-mfa.conf")).unwrap();
        std::fs::copy(JAIL, conf.join("jail.d/ecs-mfa.conf")).unwrap();
        for file in ["paths-common.conf", "paths-debian.conf"] {
            std::fs::copy(Path::new("/etc/fail2ban").join(file), conf.join(file)).unwrap();
        }
        let socket = dir.join("f2b.sock");
        std::fs::write(
            conf.join("fail2ban.conf"),
            format!(
                "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = :memory:\n",
                dir.join("server.log").display(),
                socket.display(),
                dir.join("f2b.pid").display()
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("action.d/record.conf"),
            format!(
                "[Definition]\nactionstart =\nactionstop =\nactioncheck =\nactionban = echo <ip> >> {bans}\nactionunban =\n",
                bans = dir.join("bans").display()
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("jail.local"),
            format!(
                "[INCLUDES]\nbefore = paths-debian.conf\n[DEFAULT]\nbanaction = record\naction = record\n\n\
                 [ecs-mfa]\nenabled = true\nbackend = polling\nlogpath = {}\nmaxretry = 3\nfindtime = 10m\nbantime = 1h\n",
                log.display()
            ),
        )
        .unwrap();
        // jail.conf is required by fail2ban; an empty one is enough with jail.local above.
        std::fs::write(conf.join("jail.conf"), "[DEFAULT]\n").unwrap();
        let out = Command::new("fail2ban-server")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-p")
            .arg(dir.join("f2b.pid"))
            .args(["-b", "-x"])
            .output()
            .unwrap();
        common::assert_ok(&out, "fail2ban-server");
        let server = Self {
            dir: dir.to_path_buf(),
            socket,
        };
        server.wait_for(|s| {
            s.client(&["status", "ecs-mfa"])
                .contains("Currently failed")
        });
        server
    }

    fn client(&self, args: &[&str]) -> String {
        let out = Command::new("fail2ban-client")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        common::text(&out.stdout) + &common::text(&out.stderr)
    }

    fn bans(&self) -> String {
        std::fs::read_to_string(self.dir.join("bans")).unwrap_or_default()
    }

    fn wait_for(&self, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if done(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        panic!("fail2ban-server: condition not met in 60 s; its log:\n{log}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.client(&["stop"]);
        let pid = std::fs::read_to_string(self.dir.join("f2b.pid")).unwrap_or_default();
        if let Ok(pid) = pid.trim().parse::<i32>() {
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

#[test]
fn the_real_fail2ban_server_bans_an_address_failing_for_several_users() {
    require_fail2ban();
    let sb = common::sandbox_with_rhost("f2b-server");
    sb.set_config("exempt_networks = [\"198.51.100.0/24\"]\n");
    let secrets: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| sb.enroll(u, &[]))
        .collect();
    let dir = std::env::temp_dir().join(format!("ecs-mfa-f2b-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    let server = Server::start(&dir, &log);

    // The good address: a success per user, and an exempt login, many times.
    common::wait_for_fresh_step(10);
    let mut text = String::new();
    for (user, secret) in ["alice", "bob", "carol"].iter().zip(&secrets) {
        text.push_str(&common::login_from(
            &sb,
            user,
            "192.0.2.51",
            &oathtool_code(secret, &[]),
        ));
        text.push('\n');
        text.push_str(&common::login_from(&sb, user, "198.51.100.9", "000000"));
        text.push('\n');
    }
    // The bad address: one wrong code for each of three users (maxretry = 3).
    for user in ["alice", "bob", "carol"] {
        text.push_str(&common::login_from(&sb, user, "192.0.2.50", "000000"));
        text.push('\n');
    }
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    server.wait_for(|s| s.bans().contains("192.0.2.50"));
    let status = server.client(&["status", "ecs-mfa"]);
    assert!(status.contains("192.0.2.50"), "{status}");
    assert_eq!(
        server.bans().trim(),
        "192.0.2.50",
        "only the failing address"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
