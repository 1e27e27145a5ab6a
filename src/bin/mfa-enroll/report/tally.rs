//! What `report` counts: the decisions read from audit lines, per account and person, per
//! source address, per hour, and the clock skew of accepted codes.

use std::collections::{BTreeMap, HashMap};

use pam_ecs_mfa::audit::read::Event;
use serde::Serialize;

/// One account's (or one person's on a shared account) decisions in the period.
#[derive(Debug, Default, Serialize)]
pub struct Who {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    pub successes: u64,
    /// Denials by reason.
    pub failures: BTreeMap<String, u64>,
    /// Lockouts that started in the period.
    pub lockouts: u64,
    pub replays: u64,
    pub recovery_codes_used: u64,
    pub grace_logins: u64,
    pub exempt_logins: u64,
    /// Exempt logins by an automation key (`key=` on an exempt line).
    pub automation_logins: u64,
    /// From the state: locked out right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_now: Option<bool>,
    /// From the records: recovery codes left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes_left: Option<usize>,
    /// From the state: when the last code was accepted (Unix time; 0: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<u64>,
    /// Skews of accepted codes, for the drift warning (not printed).
    #[serde(skip)]
    pub skews: Vec<i64>,
}

/// Everything counted.
#[derive(Debug, Default)]
pub struct Tally {
    pub lines: u64,
    pub decisions: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub who: BTreeMap<(String, Option<String>), Who>,
    pub sources: HashMap<String, u64>,
    pub skews: BTreeMap<i64, u64>,
    pub failures_per_hour: BTreeMap<i64, u64>,
}

impl Tally {
    /// Counts `event` if it falls at or after `since`.
    pub fn add(&mut self, event: Event, since: Option<i64>) {
        if let (Some(since), Some(time)) = (since, event.time)
            && time < since
        {
            return;
        }
        self.decisions += 1;
        if let Some(time) = event.time {
            self.first = Some(self.first.map_or(time, |f| f.min(time)));
            self.last = Some(self.last.map_or(time, |l| l.max(time)));
        }
        let account = event.account_name().to_string();
        let person = event.person.clone().filter(|p| *p != account);
        let who = self
            .who
            .entry((account.clone(), person.clone()))
            .or_insert_with(|| Who {
                user: account,
                person,
                ..Who::default()
            });
        match (event.result.as_str(), event.reason.as_str()) {
            ("success", reason) => {
                who.successes += 1;
                match reason {
                    "recovery_code" => who.recovery_codes_used += 1,
                    "grace" => who.grace_logins += 1,
                    _ => {}
                }
                if let Some(skew) = event.skew {
                    who.skews.push(skew);
                    *self.skews.entry(skew).or_default() += 1;
                }
            }
            ("ignore", "exempt") => {
                who.exempt_logins += 1;
                if event.key.is_some() {
                    who.automation_logins += 1;
                }
            }
            ("deny", reason) => {
                *who.failures.entry(reason.to_string()).or_default() += 1;
                if reason == "replay" {
                    who.replays += 1;
                }
                // The failure that starts a lockout carries locked_for= (throttled ones too).
                if reason != "throttled" && event.locked {
                    who.lockouts += 1;
                }
                if let Some(rhost) = &event.rhost {
                    *self.sources.entry(rhost.clone()).or_default() += 1;
                }
                if let Some(time) = event.time {
                    *self
                        .failures_per_hour
                        .entry(time.div_euclid(3600))
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }

    /// The addresses with most failures, most first (ties by address), at most `n`.
    pub fn top_sources(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.sources.iter().map(|(a, c)| (a.clone(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// Accounts (and people) whose accepted codes are mostly off by a step or more: the
    /// phone's clock drifts (at least 3 accepted codes, half of them or more off).
    pub fn drifting(&self) -> Vec<String> {
        self.who
            .values()
            .filter(|w| {
                w.skews.len() >= 3
                    && 2 * w.skews.iter().filter(|s| **s != 0).count() >= w.skews.len()
            })
            .map(|w| match &w.person {
                Some(p) => format!("{p} on {}", w.user),
                None => w.user.clone(),
            })
            .collect()
    }

    /// `Some(direction)` when the server's clock is the likely culprit: at least 5 accepted
    /// codes from at least 3 accounts or people, half of them off, and 80 % of those off in the
    /// same direction ("behind": codes are ahead of the server).
    pub fn server_drift(&self) -> Option<&'static str> {
        let people = self.who.values().filter(|w| !w.skews.is_empty()).count();
        let total: u64 = self.skews.values().sum();
        let ahead: u64 = self
            .skews
            .iter()
            .filter(|(s, _)| **s > 0)
            .map(|(_, n)| n)
            .sum();
        let behind: u64 = self
            .skews
            .iter()
            .filter(|(s, _)| **s < 0)
            .map(|(_, n)| n)
            .sum();
        let off = ahead + behind;
        if people < 3 || total < 5 || 2 * off < total {
            return None;
        }
        if 5 * ahead >= 4 * off {
            Some("behind")
        } else if 5 * behind >= 4 * off {
            Some("ahead")
        } else {
            None
        }
    }
}
