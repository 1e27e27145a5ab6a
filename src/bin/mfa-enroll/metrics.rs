//! `metrics --textfile FILE`: Prometheus text format for node_exporter's textfile collector,
//! written atomically (a temporary file in the same directory, fsync, rename: a scrape never
//! sees a partial file, and a failed run leaves the previous file as it was).
//!
//! Gauges come from the records and the login state (through the backend, so the fleet's are
//! fleet-wide); `ecs_mfa_decisions_total` counts the audit lines of `--log` since the previous
//! run: a cursor file remembers the log's inode and offset and the totals so far, so the
//! counters only grow (a rotated log is read from its start; lines written between the last run
//! and a rotation are not counted).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use pam_ecs_mfa::audit::read::parse_line;
use serde::{Deserialize, Serialize};

use crate::{Exit, Failure, Global, unix_now};

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// The file to write (e.g. /var/lib/prometheus/node-exporter/ecs_mfa.prom).
    #[arg(long, value_name = "FILE")]
    textfile: PathBuf,
    /// The log to count decisions in (default: /var/log/auth.log, else /var/log/secure; none:
    /// no decision counters).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Where the counters and the log position are kept between runs.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/ecs-mfa/metrics-cursor.json"
    )]
    cursor: PathBuf,
}

/// Tokens with at most this many recovery codes left count as "few".
const FEW_RECOVERY_CODES: usize = 2;

/// The counters and where the log was read up to.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    log: String,
    inode: u64,
    offset: u64,
    /// `result/reason` → count.
    totals: BTreeMap<String, u64>,
    automation: u64,
    /// Accepted codes by clock skew: `behind` (the phone's code was late), `exact`, `ahead`.
    #[serde(default)]
    skews: BTreeMap<String, u64>,
}

pub fn run(g: &Global, args: MetricsArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let policy = g.policy()?;
    let mut out = String::new();
    gauges(g, &policy, &mut out)?;
    let log = args.log.clone().or_else(|| {
        ["/var/log/auth.log", "/var/log/secure"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    if let Some(log) = &log {
        let cursor = count_new_lines(log, &args.cursor)?;
        counters(&cursor, &mut out);
        write_atomic(
            &args.cursor,
            serde_json::to_string(&cursor)
                .unwrap_or_default()
                .as_bytes(),
        )?;
    }
    metric(
        &mut out,
        "ecs_mfa_metrics_last_run_timestamp_seconds",
        "gauge",
        "When mfa-enroll metrics last ran.",
        unix_now()? as f64,
    );
    write_atomic(&args.textfile, out.as_bytes())
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}

/// Enrolled accounts and tokens, locked, few recovery codes, problems; the fleet's health.
fn gauges(
    g: &Global,
    policy: &pam_ecs_mfa::policy::Policy,
    out: &mut String,
) -> Result<(), Failure> {
    let started = Instant::now();
    let records = match g.enrollments(policy) {
        Ok(records) => records,
        Err(e) if policy.fleet.is_some() => {
            metric(
                out,
                "ecs_mfa_fleet_up",
                "gauge",
                "1 if the etcd fleet backend answered.",
                0.0,
            );
            errln!("mfa-enroll: {}", e.message);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let users = records.enrolled_users();
    if policy.fleet.is_some() {
        let up = if users.is_ok() { 1.0 } else { 0.0 };
        metric(
            out,
            "ecs_mfa_fleet_up",
            "gauge",
            "1 if the etcd fleet backend answered.",
            up,
        );
        metric(
            out,
            "ecs_mfa_fleet_latency_seconds",
            "gauge",
            "Time to list the fleet's records.",
            started.elapsed().as_secs_f64(),
        );
    }
    let users = users.unwrap_or_default();
    let states = records.states(policy);
    let now = unix_now()?;
    let (mut tokens, mut locked, mut few, mut bad_records, mut bad_states) = (0, 0, 0, 0, 0);
    for user in &users {
        let Ok(account) = records.load_account(user) else {
            bad_records += 1;
            continue;
        };
        for token in &account.tokens {
            tokens += 1;
            let folded = records
                .load_token(user, token.person.as_ref())
                .unwrap_or_else(|_| token.clone());
            if folded.recovery_codes.len() <= FEW_RECOVERY_CODES {
                few += 1;
            }
            match states.transact(&token.owner(), |st| *st) {
                Ok(st) if st.locked_for(now).is_some() => locked += 1,
                Ok(_) => {}
                Err(_) => bad_states += 1,
            }
        }
    }
    for (name, help, value) in [
        (
            "ecs_mfa_enrolled_accounts",
            "Accounts with an enrollment.",
            users.len() as f64,
        ),
        (
            "ecs_mfa_enrolled_tokens",
            "Tokens (people on shared accounts count one each).",
            f64::from(tokens),
        ),
        (
            "ecs_mfa_locked_tokens",
            "Tokens locked out right now.",
            f64::from(locked),
        ),
        (
            "ecs_mfa_few_recovery_codes_tokens",
            "Tokens with at most 2 recovery codes left.",
            f64::from(few),
        ),
        (
            "ecs_mfa_problem_records",
            "Records that cannot be read (every login of the account is denied).",
            f64::from(bad_records),
        ),
        (
            "ecs_mfa_problem_states",
            "Login states that cannot be read.",
            f64::from(bad_states),
        ),
    ] {
        metric(out, name, "gauge", help, value);
    }
    Ok(())
}

fn counters(cursor: &Cursor, out: &mut String) {
    out.push_str("# HELP ecs_mfa_decisions_total Audit lines (decisions) counted in the log, by result and reason.\n# TYPE ecs_mfa_decisions_total counter\n");
    for (key, n) in &cursor.totals {
        let (result, reason) = key.split_once('/').unwrap_or((key, ""));
        out.push_str(&format!(
            "ecs_mfa_decisions_total{{result=\"{result}\",reason=\"{reason}\"}} {n}\n"
        ));
    }
    metric(
        out,
        "ecs_mfa_automation_logins_total",
        "counter",
        "Logins by an automation key (automation_keys).",
        cursor.automation as f64,
    );
    out.push_str("# HELP ecs_mfa_accepted_codes_total Accepted codes by clock skew (behind: the code was for an earlier step than the server's).\n# TYPE ecs_mfa_accepted_codes_total counter\n");
    for (way, n) in &cursor.skews {
        out.push_str(&format!(
            "ecs_mfa_accepted_codes_total{{skew=\"{way}\"}} {n}\n"
        ));
    }
}

/// Reads the lines of `log` written since the cursor's position and adds them to its totals.
fn count_new_lines(log: &Path, cursor_file: &Path) -> Result<Cursor, Failure> {
    let fail = |what: &str, e: std::io::Error| Failure::new(Exit::Failure, format!("{what}: {e}"));
    let mut cursor: Cursor = std::fs::read(cursor_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut file = std::fs::File::open(log).map_err(|e| fail(&log.display().to_string(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| fail(&log.display().to_string(), e))?;
    let same = cursor.log == log.display().to_string()
        && cursor.inode == meta.ino()
        && cursor.offset <= meta.len();
    let start = if same { cursor.offset } else { 0 };
    file.seek(SeekFrom::Start(start))
        .map_err(|e| fail("seek", e))?;
    let mut text = Vec::new();
    file.take(meta.len() - start)
        .read_to_end(&mut text)
        .map_err(|e| fail("read", e))?;
    // Only complete lines: a line being written now is counted next time.
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let now = unix_now()? as i64;
    for line in String::from_utf8_lossy(&text[..complete]).lines() {
        if let Some(event) = parse_line(line, now) {
            *cursor
                .totals
                .entry(format!("{}/{}", event.result, event.reason))
                .or_default() += 1;
            if event.reason == "exempt" && event.key.is_some() {
                cursor.automation += 1;
            }
            if let Some(skew) = event.skew {
                let way = match skew {
                    s if s < 0 => "behind",
                    0 => "exact",
                    _ => "ahead",
                };
                *cursor.skews.entry(way.to_string()).or_default() += 1;
            }
        }
    }
    cursor.log = log.display().to_string();
    cursor.inode = meta.ino();
    cursor.offset = start + complete as u64;
    Ok(cursor)
}

/// Writes `bytes` to `path` through a temporary file in the same directory (fsync, rename):
/// readers see the old or the new file, never a part.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(Exit::Failure, format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| fail(std::io::ErrorKind::InvalidInput.into()))?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(fail)
}
