//! `report`: who failed, from where, how often; who is locked out now; whose phone drifts; who
//! has few recovery codes left; automation and grace logins; enrollments never or long unused.
//! From the audit lines (a log file, stdin, or the system's log) and the state and records
//! (local files or the fleet, through the same backend as every command).

mod show;
mod tally;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pam_ecs_mfa::audit::read::{parse_line, unix_of};

pub use tally::Tally;

use crate::{Exit, Failure, Global, unix_now};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Read audit lines from this file (repeatable; `-` is stdin). Default: /var/log/auth.log,
    /// else /var/log/secure, else the journal (journalctl _COMM=sshd).
    #[arg(long, value_name = "FILE")]
    log: Vec<PathBuf>,
    /// Only lines from this time on: `24h`, `7d`, `90m`, or a UTC date `2026-12-01` or time
    /// `2026-12-01T08:00:00` (default: everything in the input).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Enrollments whose last login is older than this many days are listed as unused.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    unused_days: u64,
    /// Only the audit lines: no records or state are read (no root needed).
    #[arg(long)]
    no_state: bool,
}

/// Where `report` reads lines from when no `--log` is given.
const SYSTEM_LOGS: [&str; 2] = ["/var/log/auth.log", "/var/log/secure"];

pub fn run(g: &Global, args: ReportArgs) -> Result<(), Failure> {
    let now = unix_now()? as i64;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()?;
    let mut tally = Tally::default();
    for input in inputs(&args)? {
        read_into(&mut tally, input, since, now)?;
    }
    let state = if args.no_state {
        Vec::new()
    } else {
        crate::require_root()?;
        show::tokens(g, &mut tally, now)?
    };
    let unused_before = now.saturating_sub((args.unused_days * 86_400) as i64);
    let report = show::Report::new(&tally, &state, unused_before, now);
    if g.json {
        outln!("{}", report.to_json(since));
    } else {
        report.print(since);
    }
    Ok(())
}

/// A readable source of lines.
type Input = Box<dyn Read>;

fn inputs(args: &ReportArgs) -> Result<Vec<Input>, Failure> {
    let open = |path: &PathBuf| -> Result<Input, Failure> {
        if path.as_os_str() == "-" {
            return Ok(Box::new(std::io::stdin()));
        }
        std::fs::File::open(path)
            .map(|f| Box::new(f) as Input)
            .map_err(|e| Failure::new(Exit::Failure, format!("{}: {e}", path.display())))
    };
    if !args.log.is_empty() {
        return args.log.iter().map(open).collect();
    }
    if let Some(path) = SYSTEM_LOGS.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Ok(vec![open(&path)?]);
    }
    let child = Command::new("journalctl")
        .args(["-q", "--no-pager", "-o", "short-iso", "_COMM=sshd"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Failure::new(
                Exit::Failure,
                format!(
                    "no /var/log/auth.log or /var/log/secure, and journalctl: {e}; give --log FILE"
                ),
            )
        })?;
    Ok(vec![Box::new(child.stdout.ok_or_else(|| {
        Failure::new(Exit::Failure, "journalctl: no output")
    })?)])
}

/// Counts every audit line of `input` (other lines are skipped; non-UTF-8 bytes replaced).
pub fn read_into(
    tally: &mut Tally,
    input: Input,
    since: Option<i64>,
    now: i64,
) -> Result<(), Failure> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::new(Exit::Failure, format!("reading the log: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        tally.lines += 1;
        // Cheap test first: most lines of an auth log are not ours.
        if !buf.windows(12).any(|w| w == b"pam_ecs_mfa(") {
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        if let Some(event) = parse_line(line.trim_end(), now) {
            tally.add(event, since);
        }
    }
}

/// `--since`: `24h`, `7d`, `90m`, `2026-12-01`, `2026-12-01T08:00:00` (UTC).
pub fn parse_since(text: &str, now: i64) -> Result<i64, Failure> {
    let bad = || {
        Failure::new(
            Exit::Usage,
            format!("--since {text:?}: expected 90m, 24h, 7d, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS"),
        )
    };
    if let Some((number, unit)) = text
        .char_indices()
        .last()
        .map(|(i, c)| (&text[..i], c))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        return Ok(now - n.saturating_mul(seconds));
    }
    let num = |from: usize, len: usize| -> Option<i64> { text.get(from..from + len)?.parse().ok() };
    let date = (num(0, 4), num(5, 2), num(8, 2));
    let (Some(y), Some(mo), Some(d)) = date else {
        return Err(bad());
    };
    let (h, mi, s) = match text.len() {
        10 => (0, 0, 0),
        19 => (
            num(11, 2).ok_or_else(bad)?,
            num(14, 2).ok_or_else(bad)?,
            num(17, 2).ok_or_else(bad)?,
        ),
        _ => return Err(bad()),
    };
    unix_of(y, mo, d, h, mi, s).ok_or_else(bad)
}
