//! `report`'s state part (records and login state through the backend) and its two outputs:
//! a terminal report with a small chart, and one JSON object.

use pam_ecs_mfa::user_name::UserName;
use serde_json::json;

use super::tally::{Tally, Who};
use crate::admin::iso_date;
use crate::{Failure, Global};

/// One enrolled token as its record and state say.
pub struct TokenState {
    pub user: String,
    pub person: Option<String>,
    /// Unix time of the last accepted code (0: never).
    pub last_login: u64,
}

/// Reads every enrollment's records and state into `tally` (locked now, recovery codes left,
/// last login) and returns the tokens.
pub fn tokens(g: &Global, tally: &mut Tally, now: i64) -> Result<Vec<TokenState>, Failure> {
    let policy = g.policy()?;
    let records = g.enrollments(&policy)?;
    let states = records.states(&policy);
    let users = records
        .enrolled_users()
        .map_err(|e| crate::store_failure(&UserName::parse("all").expect("valid"), e))?;
    let mut tokens = Vec::new();
    for user in users {
        let Ok(account) = records.load_account(&user) else {
            continue;
        };
        for token in &account.tokens {
            let folded = records
                .load_token(&user, token.person.as_ref())
                .unwrap_or_else(|_| token.clone());
            let st = states.transact(&token.owner(), |st| *st).ok();
            let person = token.person.as_ref().map(ToString::to_string);
            let who = tally
                .who
                .entry((user.to_string(), person.clone()))
                .or_insert_with(|| Who {
                    user: user.to_string(),
                    person: person.clone(),
                    ..Who::default()
                });
            who.recovery_codes_left = Some(folded.recovery_codes.len());
            if let Some(st) = st {
                who.locked_now = Some(st.locked_for(now.max(0) as u64).is_some());
                who.last_login = Some(st.last_accepted);
            }
            tokens.push(TokenState {
                user: user.to_string(),
                person,
                last_login: st.map_or(0, |s| s.last_accepted),
            });
        }
    }
    Ok(tokens)
}

/// Few recovery codes left: at most this many.
pub const FEW_RECOVERY_CODES: usize = 2;

/// What both outputs show.
pub struct Report<'a> {
    tally: &'a Tally,
    never_used: Vec<String>,
    unused: Vec<(String, u64)>,
    now: i64,
}

fn name(user: &str, person: Option<&str>) -> String {
    match person {
        Some(p) => format!("{p} on {user}"),
        None => user.to_string(),
    }
}

impl<'a> Report<'a> {
    pub fn new(tally: &'a Tally, tokens: &[TokenState], unused_before: i64, now: i64) -> Self {
        let mut never_used = Vec::new();
        let mut unused = Vec::new();
        for t in tokens {
            let key = (t.user.clone(), t.person.clone());
            let used_now = tally.who.get(&key).is_some_and(|w| w.successes > 0);
            if t.last_login == 0 && !used_now {
                never_used.push(name(&t.user, t.person.as_deref()));
            } else if t.last_login > 0 && (t.last_login as i64) < unused_before && !used_now {
                unused.push((name(&t.user, t.person.as_deref()), t.last_login));
            }
        }
        Self {
            tally,
            never_used,
            unused,
            now,
        }
    }

    pub fn to_json(&self, since: Option<i64>) -> String {
        let t = self.tally;
        let who: Vec<&Who> = t.who.values().collect();
        let few = self.few_recovery_codes();
        let skew: serde_json::Map<String, serde_json::Value> = t
            .skews
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "period": { "since": since, "first": t.first, "last": t.last, "now": self.now },
            "lines": t.lines,
            "decisions": t.decisions,
            "users": who,
            "top_sources": t.top_sources(10).iter().map(|(a, n)| json!({"address": a, "failures": n})).collect::<Vec<_>>(),
            "skew": { "histogram": skew, "drifting": t.drifting(), "server_clock": t.server_drift() },
            "few_recovery_codes": few,
            "never_used": self.never_used,
            "unused": self.unused.iter().map(|(n, at)| json!({"user": n, "last_login": at})).collect::<Vec<_>>(),
            "failures_per_hour": t.failures_per_hour.iter().map(|(h, n)| json!({"hour": h * 3600, "failures": n})).collect::<Vec<_>>(),
        })
        .to_string()
    }

    pub fn print(&self, since: Option<i64>) {
        let t = self.tally;
        let from = since.or(t.first).map_or_else(|| "-".into(), iso_time);
        let to = t.last.map_or_else(|| "-".into(), iso_time);
        outln!(
            "ecs-mfa report: {} decisions in {} lines, {from} to {to}\n",
            t.decisions,
            t.lines
        );
        outln!(
            "{:<28} {:>5} {:>6} {:>5} {:>6} {:>5} {:>6} {:>6}  {}",
            "USER",
            "OK",
            "FAILED",
            "LOCKS",
            "REPLAY",
            "RECOV",
            "GRACE",
            "EXEMPT",
            "NOW"
        );
        for w in t.who.values() {
            let failed: u64 = w.failures.values().sum();
            let mut now = Vec::new();
            if w.locked_now == Some(true) {
                now.push("LOCKED".to_string());
            }
            if let Some(left) = w.recovery_codes_left {
                now.push(format!("{left} recovery codes left"));
            }
            if w.automation_logins > 0 {
                now.push(format!("{} by automation key", w.automation_logins));
            }
            outln!(
                "{:<28} {:>5} {:>6} {:>5} {:>6} {:>5} {:>6} {:>6}  {}",
                truncate(&name(&w.user, w.person.as_deref()), 28),
                w.successes,
                failed,
                w.lockouts,
                w.replays,
                w.recovery_codes_used,
                w.grace_logins,
                w.exempt_logins,
                now.join(", ")
            );
        }
        self.print_sources_and_skew();
        self.print_lists();
        self.print_chart();
    }

    fn print_sources_and_skew(&self) {
        let t = self.tally;
        let top = t.top_sources(10);
        if !top.is_empty() {
            outln!("\nMost failures by source address:");
            for (address, n) in top {
                outln!("  {n:>6}  {address}");
            }
        }
        if !t.skews.is_empty() {
            let hist: Vec<String> = t.skews.iter().map(|(s, n)| format!("{s:+}: {n}")).collect();
            outln!(
                "\nClock skew of accepted codes (steps): {}",
                hist.join(", ")
            );
            let drifting = t.drifting();
            if !drifting.is_empty() {
                outln!(
                    "WARNING: phones whose clock drifts (codes a step or more off): {}",
                    drifting.join(", ")
                );
            }
            if let Some(way) = t.server_drift() {
                outln!(
                    "WARNING: nearly everyone's codes are off the same way: this server's clock is probably {way} (check chrony/NTP)"
                );
            }
        }
    }

    /// Accounts and people with at most [`FEW_RECOVERY_CODES`] recovery codes left.
    fn few_recovery_codes(&self) -> Vec<String> {
        self.tally
            .who
            .values()
            .filter(|w| {
                w.recovery_codes_left
                    .is_some_and(|n| n <= FEW_RECOVERY_CODES)
            })
            .map(|w| name(&w.user, w.person.as_deref()))
            .collect()
    }

    fn print_lists(&self) {
        let few = self.few_recovery_codes();
        if !few.is_empty() {
            outln!(
                "\nAt most {FEW_RECOVERY_CODES} recovery codes left (mfa-enroll recovery): {}",
                few.join(", ")
            );
        }
        if !self.never_used.is_empty() {
            outln!(
                "\nEnrolled but never logged in with a code: {}",
                self.never_used.join(", ")
            );
        }
        if !self.unused.is_empty() {
            let list: Vec<String> = self
                .unused
                .iter()
                .map(|(n, at)| format!("{n} (last {})", iso_date(*at)))
                .collect();
            outln!(
                "\nUnused for a long time (--unused-days): {}",
                list.join(", ")
            );
        }
    }

    /// Failures per hour: one bar per hour, the last 24 hours with any line.
    fn print_chart(&self) {
        let hours = &self.tally.failures_per_hour;
        let (Some((&first, _)), Some((&last, _))) =
            (hours.first_key_value(), hours.last_key_value())
        else {
            return;
        };
        let start = first.max(last - 23);
        let most = hours
            .range(start..)
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(1)
            .max(1);
        outln!("\nFailures per hour (UTC):");
        for hour in start..=last {
            let n = hours.get(&hour).copied().unwrap_or(0);
            let width = (n * 40).div_ceil(most) as usize;
            outln!("  {} {:>5} {}", iso_time(hour * 3600), n, "#".repeat(width));
        }
    }
}

fn truncate(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// `YYYY-MM-DD HH:MM`, UTC.
fn iso_time(unix: i64) -> String {
    let unix = unix.max(0) as u64;
    let minutes = unix % 86_400 / 60;
    format!("{} {:02}:{:02}", iso_date(unix), minutes / 60, minutes % 60)
}
