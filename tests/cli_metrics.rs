//! `mfa-enroll metrics` against the real Prometheus node_exporter (Debian package
//! `prometheus-node-exporter`): its textfile collector serves the file, scraped over HTTP, with
//! the values of a scripted state (enrolled, locked out, few recovery codes) and the decisions of
//! a real log, counted once across runs; a failed write (a full file system) leaves the previous
//! file whole; the shipped alert rules pass `promtool check rules` (Debian package
//! `prometheus`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, cli, oathtool_code};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
const PROMTOOL: &str = "/usr/bin/promtool";
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/prometheus/ecs-mfa-alerts.yml"
);

fn require(tool: &str, package: &str) {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: apt-get install {package} (scripts/deps does this)"
    );
}

fn login_line(sb: &Sandbox, user: &str, answer: &str) -> String {
    let r = sb.auth_env(
        user,
        format!("{answer}\n").as_bytes(),
        &[("PAM_RHOST", "192.0.2.9")],
    );
    r.syslog
        .iter()
        .filter(|l| l.contains("pam_ecs_mfa(") && l.contains("result="))
        .map(|l| common::auth_log_line(l) + "\n")
        .collect()
}

/// node_exporter with only the textfile collector, on a free loopback port.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(NODE_EXPORTER)
            .args(["--collector.disable-defaults", "--collector.textfile"])
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    /// `GET /metrics` (waits up to 20 s for the exporter to listen).
    fn scrape(&self) -> String {
        let start = Instant::now();
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    .unwrap();
                let mut body = String::new();
                let _ = stream.read_to_string(&mut body);
                if body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200") {
                    return body;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node_exporter did not answer"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn value(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn node_exporter_serves_the_metrics_and_counters_only_grow() {
    require(NODE_EXPORTER, "prometheus-node-exporter");
    let sb = common::sandbox_with_rhost("metrics");
    sb.set_config("max_failures = 2\nlockout_seconds = 600\n");
    let alice = sb.enroll("alice", &[]);
    sb.enroll("bob", &[]);
    common::wait_for_fresh_step(10);
    let mut log = login_line(&sb, "alice", &oathtool_code(&alice, &[]));
    log += &login_line(&sb, "bob", "000000");
    log += &login_line(&sb, "bob", "111111");
    let dir = sb.root.join("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    let log_file = sb.root.join("auth.log");
    std::fs::write(&log_file, &log).unwrap();
    let prom = dir.join("ecs_mfa.prom");
    let cursor = sb.root.join("cursor.json");
    let run = || {
        let out = cli(
            &sb,
            &[
                "metrics",
                "--textfile",
                prom.to_str().unwrap(),
                "--log",
                log_file.to_str().unwrap(),
                "--cursor",
                cursor.to_str().unwrap(),
            ],
            b"",
        );
        common::assert_ok(&out, "mfa-enroll metrics");
    };
    run();
    let exporter = Exporter::start(&dir);
    let scrape = exporter.scrape();
    assert_eq!(
        value(&scrape, "ecs_mfa_enrolled_accounts"),
        Some(2.0),
        "{scrape}"
    );
    assert_eq!(value(&scrape, "ecs_mfa_enrolled_tokens"), Some(2.0));
    assert_eq!(
        value(&scrape, "ecs_mfa_locked_tokens"),
        Some(1.0),
        "bob is locked out"
    );
    assert_eq!(
        value(&scrape, "ecs_mfa_few_recovery_codes_tokens"),
        Some(0.0)
    );
    assert_eq!(value(&scrape, "ecs_mfa_problem_records"), Some(0.0));
    let bad_code = "ecs_mfa_decisions_total{reason=\"bad_code\",result=\"deny\"}";
    let ok = "ecs_mfa_decisions_total{reason=\"ok\",result=\"success\"}";
    assert_eq!(value(&scrape, bad_code), Some(2.0), "{scrape}");
    assert_eq!(value(&scrape, ok), Some(1.0), "{scrape}");
    assert_eq!(
        value(&scrape, "ecs_mfa_accepted_codes_total{skew=\"exact\"}"),
        Some(1.0),
        "{scrape}"
    );
    assert!(!scrape.contains(&alice[..8]), "no secret in the metrics");

    // Another run with one more line: counted once, earlier lines not again.
    let more = login_line(&sb, "bob", "222222");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_file)
        .unwrap()
        .write_all(more.as_bytes())
        .unwrap();
    run();
    run();
    let scrape = exporter.scrape();
    assert_eq!(
        value(
            &scrape,
            "ecs_mfa_decisions_total{reason=\"throttled\",result=\"deny\"}"
        ),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(value(&scrape, bad_code), Some(2.0), "{scrape}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("ecs_mfa.prom")],
        "no temporary file left"
    );
}

#[test]
fn a_failed_write_leaves_the_previous_file_whole() {
    let sb = Sandbox::new("metrics-full");
    sb.enroll("alice", &[]);
    let dir = sb.root.join("full");
    std::fs::create_dir_all(&dir).unwrap();
    // A tiny private tmpfs (in a mount namespace of its own): the good file, then a filler.
    let script = format!(
        "set -e; mount -t tmpfs -o size=12k ecs-mfa-full {d}; \
         \"$@\" --textfile {d}/ecs_mfa.prom --cursor {d}/c.json; cp {d}/ecs_mfa.prom {d}/../before.prom; \
         dd if=/dev/zero of={d}/filler bs=1k count=64 2>/dev/null || true; \
         if \"$@\" --textfile {d}/ecs_mfa.prom --cursor {d}/c.json; then echo WROTE; fi; \
         cmp {d}/ecs_mfa.prom {d}/../before.prom && echo SAME; ls -a {d}",
        d = dir.display()
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(common::enroll_bin())
        .args([
            "--store",
            sb.store.to_str().unwrap(),
            "--state",
            sb.state.to_str().unwrap(),
        ])
        .args(["--config", sb.config.to_str().unwrap(), "metrics"])
        .output()
        .unwrap();
    let text = common::text(&out.stdout);
    assert!(
        text.contains("SAME") && !text.contains("WROTE"),
        "{}",
        common::describe(&out)
    );
    assert!(!text.contains(".tmp-"), "no temporary file left: {text}");
    assert!(
        common::text(&out.stderr).contains("No space left"),
        "{}",
        common::describe(&out)
    );
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    require(PROMTOOL, "prometheus");
    let out = Command::new(PROMTOOL)
        .args(["check", "rules", RULES])
        .output()
        .unwrap();
    common::assert_ok(&out, "promtool check rules");
    assert!(
        common::text(&out.stdout).contains("SUCCESS: 5 rules found"),
        "{}",
        common::describe(&out)
    );
}
