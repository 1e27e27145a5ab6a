//! Reading audit lines back (`mfa-enroll report`, `metrics`): the module's lines as they appear
//! in `/var/log/auth.log`, `/var/log/secure` or `journalctl -o short-iso` output, in either
//! audit format. Client fields in a line were cleaned when it was written (no spaces, quotes or
//! `=` in the key=value line; a JSON object is parsed as JSON), so a user name cannot make a
//! line parse as another user's or another address's.
//!
//! Time stamps: RFC 3339 (`2026-12-05T05:20:00.123+00:00`, rsyslog's default on Debian 12,
//! `journalctl -o short-iso`) or the traditional `Dec  5 05:20:00` (no year: the year that puts
//! it at most a day after `now`).
#![forbid(unsafe_code)]

/// One decision read from a log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// Unix time of the line (`None`: no time stamp that could be read).
    pub time: Option<i64>,
    /// `user=`: the name the client gave.
    pub user: String,
    /// `account=`: the account, when it differs.
    pub account: Option<String>,
    /// `person=` (shared accounts).
    pub person: Option<String>,
    /// `key=` (shared accounts, automation keys).
    pub key: Option<String>,
    /// `rhost=` (`None` for `-`).
    pub rhost: Option<String>,
    /// `result=`: `success`, `deny` or `ignore`.
    pub result: String,
    /// `reason=`.
    pub reason: String,
    /// `skew=`.
    pub skew: Option<i64>,
    /// `failures=`.
    pub failures: Option<u32>,
    /// `remaining=` (recovery codes left).
    pub remaining: Option<u32>,
    /// `locked_for=` is present: a lockout started (or is running).
    pub locked: bool,
}

impl Event {
    /// The account the decision was about (`account=`, else `user=`).
    pub fn account_name(&self) -> &str {
        self.account.as_deref().unwrap_or(&self.user)
    }
}

/// The decision in `line`, if it is one of the module's audit lines. `now`: for time stamps
/// without a year.
pub fn parse_line(line: &str, now: i64) -> Option<Event> {
    let at = line.find("pam_ecs_mfa(")?;
    let message = &line[at..];
    let message = &message[message.find("): ")? + 3..];
    let mut event = if message.starts_with('{') {
        parse_json(message)?
    } else if message.starts_with("user=") {
        parse_key_value(message)?
    } else {
        return None;
    };
    event.time = parse_time(&line[..at], now);
    Some(event)
}

fn parse_key_value(message: &str) -> Option<Event> {
    let mut event = Event::default();
    for field in message.split(' ') {
        if field.starts_with("detail=") {
            break;
        }
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let text = || (value != "-").then(|| value.to_string());
        match key {
            "user" => event.user = value.to_string(),
            "account" => event.account = text(),
            "person" => event.person = text(),
            "key" => event.key = text(),
            "rhost" => event.rhost = text(),
            "result" => event.result = value.to_string(),
            "reason" => event.reason = value.to_string(),
            "skew" => event.skew = value.parse().ok(),
            "failures" => event.failures = value.parse().ok(),
            "remaining" => event.remaining = value.parse().ok(),
            "locked_for" => event.locked = true,
            _ => {}
        }
    }
    (!event.result.is_empty() && !event.reason.is_empty()).then_some(event)
}

fn parse_json(message: &str) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(message.trim_end()).ok()?;
    let ours = value.get("ecs_mfa")?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    let source = value.get("source");
    Some(Event {
        time: None,
        user: text(value.get("user").and_then(|u| u.get("name"))).unwrap_or_default(),
        account: text(ours.get("account")),
        person: text(ours.get("person")),
        key: text(ours.get("key")),
        rhost: text(source.and_then(|s| s.get("ip").or_else(|| s.get("domain")))),
        result: text(ours.get("result"))?,
        reason: text(ours.get("reason"))?,
        skew: ours.get("skew").and_then(serde_json::Value::as_i64),
        failures: ours
            .get("failures")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        remaining: ours
            .get("remaining")
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        locked: ours.get("locked_for").is_some(),
    })
}

/// The time stamp at the start of `prefix` (the text before the module's message).
fn parse_time(prefix: &str, now: i64) -> Option<i64> {
    let prefix = prefix.trim_start();
    let first = prefix.split(' ').next()?;
    if first.len() >= 19 && first.as_bytes().get(4) == Some(&b'-') {
        return parse_rfc3339(first);
    }
    parse_bsd(prefix, now)
}

/// `2026-12-05T05:20:00[.frac](Z|+hh:mm|+hhmm)`.
fn parse_rfc3339(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    let num =
        |from: usize, len: usize| -> Option<i64> { stamp.get(from..from + len)?.parse().ok() };
    if b.get(10) != Some(&b'T') && b.get(10) != Some(&b' ') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut rest = &stamp[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest.as_bytes().first() {
        None | Some(b'Z') => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let digits: String = rest[1..].chars().filter(char::is_ascii_digit).collect();
            let (oh, om): (i64, i64) = (
                digits.get(0..2)?.parse().ok()?,
                digits.get(2..4)?.parse().ok()?,
            );
            let minutes = oh * 60 + om;
            if sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    Some(unix_of(y, mo, d, h, mi, s)? - offset)
}

/// `Dec  5 05:20:00`: the year that puts it at most a day after `now`.
fn parse_bsd(prefix: &str, now: i64) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = prefix.split_whitespace();
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as i64 + 1;
    let day: i64 = parts.next()?.parse().ok()?;
    let clock = parts.next()?;
    let num = |from: usize| -> Option<i64> { clock.get(from..from + 2)?.parse().ok() };
    let (h, mi, s) = (num(0)?, num(3)?, num(6)?);
    let year = civil_year(now);
    let this_year = unix_of(year, month, day, h, mi, s)?;
    if this_year > now + 86_400 {
        unix_of(year - 1, month, day, h, mi, s)
    } else {
        Some(this_year)
    }
}

/// Unix time of a UTC civil date and time (proleptic Gregorian; `None` when out of range).
pub fn unix_of(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// The UTC year of a Unix time.
fn civil_year(unix: i64) -> i64 {
    let days = unix.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Context, Format, line};
    use crate::decision::{Decision, Reason};

    const NOW: i64 = 1_796_428_800; // 2026-12-05 00:00 UTC

    #[test]
    fn civil_dates_convert_both_ways() {
        assert_eq!(unix_of(2026, 12, 5, 0, 0, 0), Some(NOW));
        assert_eq!(unix_of(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(civil_year(NOW), 2026);
        assert_eq!(unix_of(2026, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn both_formats_read_back_the_same_event() {
        let mut d =
            Decision::deny(Reason::BadCode).with_who(Some("alice".into()), Some("SHA256:k".into()));
        d.failures = Some(2);
        for format in [Format::KeyValue, Format::Json] {
            let ctx = Context {
                user: Some("root".into()),
                rhost: Some("2001:db8::7".into()),
                service: Some("sshd".into()),
                format,
            };
            let text = format!(
                "2026-12-04T23:59:30.123456+00:00 web-01 sshd[42]: pam_ecs_mfa(sshd:auth): {}",
                line(&ctx, &d)
            );
            let e = parse_line(&text, NOW).unwrap();
            assert_eq!(e.time, Some(NOW - 30), "{format:?}");
            assert_eq!(
                (
                    e.user.as_str(),
                    e.person.as_deref(),
                    e.key.as_deref(),
                    e.rhost.as_deref()
                ),
                ("root", Some("alice"), Some("SHA256:k"), Some("2001:db8::7")),
                "{format:?}"
            );
            assert_eq!(
                (e.result.as_str(), e.reason.as_str(), e.failures),
                ("deny", "bad_code", Some(2))
            );
        }
    }

    #[test]
    fn syslog_time_stamps_without_a_year_land_before_now() {
        let l = "Dec  4 23:00:00 web-01 sshd[1]: pam_ecs_mfa(sshd:auth): user=a rhost=- service=sshd result=success reason=ok skew=0";
        assert_eq!(parse_line(l, NOW).unwrap().time, Some(NOW - 3600));
        // Late December seen in January: last year.
        let jan = unix_of(2027, 1, 2, 0, 0, 0).unwrap();
        let dec = "Dec 31 23:00:00 h sshd[1]: pam_ecs_mfa(sshd:auth): user=a rhost=- service=sshd result=success reason=ok";
        assert_eq!(
            parse_line(dec, jan).unwrap().time,
            unix_of(2026, 12, 31, 23, 0, 0)
        );
        assert_eq!(
            parse_rfc3339("2026-12-05T06:20:00+0100"),
            Some(NOW + 5 * 3600 + 1200)
        );
    }

    #[test]
    fn other_lines_and_forged_fields_are_not_events() {
        for junk in [
            "",
            "Dec  5 05:20:00 h sshd[1]: Accepted publickey for root",
            "Dec  5 05:20:00 h sshd[1]: pam_ecs_mfa(sshd:auth): grace not started",
            "Dec  5 05:20:00 h sshd[1]: pam_ecs_mfa(sshd:auth): {not json",
        ] {
            assert_eq!(parse_line(junk, NOW), None, "{junk:?}");
        }
        // A detail cannot add fields: everything after detail= is ignored.
        let l = "Dec  5 05:20:00 h sshd[1]: pam_ecs_mfa(sshd:auth): user=a rhost=192.0.2.1 service=sshd result=deny reason=bad_code detail=\"x rhost=203.0.113.9 result=success\"";
        let e = parse_line(l, NOW).unwrap();
        assert_eq!(
            (e.rhost.as_deref(), e.result.as_str()),
            (Some("192.0.2.1"), "deny")
        );
    }
}
