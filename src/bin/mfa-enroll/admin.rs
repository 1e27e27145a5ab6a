//! `status`, `remove`, `unlock`, `verify` and `recovery`.

use std::io::{BufRead, IsTerminal, Write};

use pam_ecs_mfa::audit::{Outcome, Reason};
use pam_ecs_mfa::auth::{self, Attempt, Conversation, ConversationError};
use pam_ecs_mfa::policy::{FirstFactor, Policy};
use pam_ecs_mfa::recovery;
use pam_ecs_mfa::state::{FileStateStore, StateStore, UserState};
use pam_ecs_mfa::store::{Store, StoreError};
use pam_ecs_mfa::user_name::UserName;
use serde_json::json;
use zeroize::Zeroizing;

use crate::enroll::print_recovery_codes;
use crate::{Exit, Failure, Global, log_change, store_failure, target_user, unix_now};

#[derive(clap::Args)]
pub struct UserArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    user: Option<String>,
    /// Every local account with a login shell, flagging those not enrolled, plus records
    /// whose account does not exist.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

pub fn status(g: &Global, args: StatusArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let policy = g.policy()?;
    let store = Store::new(&policy.store_dir);
    let state = FileStateStore::new(&policy.state_dir);
    let now = unix_now()?;
    let users: Vec<(UserName, Option<bool>)> = if args.all {
        all_accounts(&store)?
    } else {
        vec![(target_user(args.user.as_deref())?, None)]
    };
    let mut rows = Vec::new();
    let mut problems = false;
    for (user, has_account) in users {
        let row = user_status(&store, &state, &policy, &user, now, has_account);
        problems |= row["enrolled"] != json!(true);
        rows.push(row);
    }
    if g.json {
        let value = if args.all {
            json!({ "users": rows })
        } else {
            rows.last().cloned().unwrap_or_default()
        };
        outln!("{value}");
    } else {
        for row in &rows {
            outln!("{}", human_status(row));
        }
    }
    // A single user who is not enrolled is an answer, not an error, except for scripts that
    // ask: exit 5 tells them apart.
    if !args.all && problems {
        // A record that exists but cannot be used is a store problem, not "not enrolled".
        if rows
            .last()
            .is_some_and(|row| row["enrolled"] == json!("invalid"))
        {
            return Err(Failure::new(
                Exit::Store,
                "the record is unusable (see above)",
            ));
        }
        return Err(Failure::new(Exit::NotEnrolled, "not enrolled (see above)"));
    }
    Ok(())
}

fn user_status(
    store: &Store,
    state: &FileStateStore,
    policy: &Policy,
    user: &UserName,
    now: u64,
    has_account: Option<bool>,
) -> serde_json::Value {
    let mut row = json!({ "user": user.as_str() });
    if let Some(has) = has_account {
        row["local_account"] = json!(has);
    }
    match store.load(user) {
        Ok(record) => {
            row["enrolled"] = json!(true);
            row["algorithm"] = json!(record.params.algorithm().as_str());
            row["digits"] = json!(record.params.digits());
            row["period"] = json!(record.params.period());
            row["created"] = json!(iso_date(record.created));
            row["recovery_codes_left"] = json!(record.recovery_codes.len());
            if !record.origin.as_str().is_empty() {
                row["enrolled_by"] = json!(record.origin.as_str());
            }
            if let pam_ecs_mfa::store::record::Origin::Login { key } = &record.origin {
                row["enrolled_key"] = json!(key);
            }
            match state.transact(user, |st| *st) {
                Ok(mut st) => {
                    // Shown as the module will treat it (see auth.rs).
                    st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
                    let tolerance = record.params.period() * (u64::from(policy.window) + 1);
                    if let Some(ahead) = st.mark_ahead(now, tolerance) {
                        row["replay_mark_ahead_seconds"] = json!(ahead);
                    }
                    add_state(&mut row, &st, now)
                }
                Err(e) => row["state_error"] = json!(e.to_string()),
            }
        }
        Err(StoreError::NotEnrolled) => row["enrolled"] = json!(false),
        Err(e) => {
            row["enrolled"] = json!("invalid");
            row["error"] = json!(e.to_string());
        }
    }
    row
}

fn add_state(row: &mut serde_json::Value, st: &UserState, now: u64) {
    row["failures"] = json!(st.failures);
    row["locked_for_seconds"] = json!(st.locked_for(now).unwrap_or(0));
    row["locked"] = json!(st.locked_for(now).is_some());
}

fn human_status(row: &serde_json::Value) -> String {
    let user = row["user"].as_str().unwrap_or("?");
    let account = match row.get("local_account") {
        Some(serde_json::Value::Bool(false)) => " (no local account)",
        _ => "",
    };
    match &row["enrolled"] {
        serde_json::Value::Bool(true) => {
            let clock = match row["replay_mark_ahead_seconds"].as_u64() {
                Some(ahead) => format!(
                    ", CLOCK PROBLEM: the last accepted code is {ahead} s ahead of this clock, no code works until then (fix the clock, then mfa-enroll unlock)"
                ),
                None => String::new(),
            };
            let lock = if row["locked"] == json!(true) {
                format!(
                    ", LOCKED for {} s after {} failures (mfa-enroll unlock)",
                    row["locked_for_seconds"], row["failures"]
                )
            } else if row["failures"].as_u64().unwrap_or(0) > 0 {
                format!(", {} recent failures", row["failures"])
            } else {
                String::new()
            };
            let how = match (row["enrolled_by"].as_str(), row["enrolled_key"].as_str()) {
                (Some("login"), Some(key)) => format!(" at login with key {key}"),
                (Some(by), _) => format!(" by {by}"),
                _ => String::new(),
            };
            format!(
                "{user}: enrolled {}{how} ({}, {} digits, {} s), {} recovery codes left{lock}{clock}{account}",
                row["created"].as_str().unwrap_or("?"),
                row["algorithm"].as_str().unwrap_or("?"),
                row["digits"],
                row["period"],
                row["recovery_codes_left"],
            )
        }
        serde_json::Value::Bool(false) => format!("{user}: NOT ENROLLED{account}"),
        _ => format!(
            "{user}: INVALID enrollment: {}{account}",
            row["error"].as_str().unwrap_or("?")
        ),
    }
}

/// Local accounts with a login shell (from /etc/passwd), then records in the store for
/// which no such account exists.
pub fn all_accounts(store: &Store) -> Result<Vec<(UserName, Option<bool>)>, Failure> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Failure::new(Exit::Failure, format!("/etc/passwd: {e}")))?;
    let mut users: Vec<(UserName, Option<bool>)> = Vec::new();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || !has_login_shell(fields[6]) {
            continue;
        }
        if let Ok(user) = UserName::parse(fields[0]) {
            users.push((user, Some(true)));
        }
    }
    if let Ok(entries) = std::fs::read_dir(store.dir()) {
        let mut orphans: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".toml")
                    .map(str::to_owned)
            })
            .filter(|name| !users.iter().any(|(u, _)| u.as_str() == name))
            .collect();
        orphans.sort();
        for name in orphans {
            if let Ok(user) = UserName::parse(&name) {
                users.push((user, Some(false)));
            }
        }
    }
    Ok(users)
}

pub fn has_login_shell(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or("");
    !shell.is_empty() && !matches!(base, "nologin" | "false" | "sync" | "shutdown" | "halt")
}

pub fn remove(g: &Global, args: RemoveArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let policy = g.policy()?;
    let store = Store::new(&policy.store_dir);
    if !store
        .is_enrolled(&user)
        .map_err(|e| store_failure(&user, e))?
    {
        return Err(store_failure(&user, StoreError::NotEnrolled));
    }
    if !args.yes && !ask_yes(&format!("Remove the enrollment of {user}? [y/N] "))? {
        return Err(Failure::new(Exit::Failure, "not removed"));
    }
    store.remove(&user).map_err(|e| store_failure(&user, e))?;
    // Failures go, the replay mark stays: were the same secret enrolled again (import), a code
    // already used must not work a second time.
    if let Err(e) =
        FileStateStore::new(&policy.state_dir).transact(&user, |st| st.forget_failures())
    {
        errln!("mfa-enroll: warning: could not reset login state: {e}");
    }
    log_change("remove", &user, "");
    if g.json {
        outln!("{}", json!({ "user": user.as_str(), "removed": true }));
    } else {
        outln!("Removed the enrollment of {user}.");
    }
    Ok(())
}

fn ask_yes(question: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            Exit::Usage,
            "refusing to remove without a terminal to confirm on; add --yes",
        ));
    }
    crate::out::warn(format_args!("{question}"));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}

pub fn unlock(g: &Global, args: UserArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let policy = g.policy()?;
    if !Store::new(&policy.store_dir)
        .is_enrolled(&user)
        .map_err(|e| store_failure(&user, e))?
    {
        return Err(store_failure(&user, StoreError::NotEnrolled));
    }
    let now = unix_now()?;
    let before = FileStateStore::new(&policy.state_dir)
        .transact(&user, |st| {
            let before = *st;
            st.unlock(now);
            before
        })
        .map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    log_change(
        "unlock",
        &user,
        &format!("failures_before={}", before.failures),
    );
    if g.json {
        outln!(
            "{}",
            json!({ "user": user.as_str(), "unlocked": true, "failures_before": before.failures })
        );
    } else {
        outln!("Unlocked {user} ({} failures cleared).", before.failures);
    }
    Ok(())
}

/// Reads the code from stdin (a terminal or a pipe).
struct StdinConversation;

impl Conversation for StdinConversation {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        crate::out::warn(format_args!("{prompt}"));
        let _ = std::io::stderr().flush();
        let mut line = Zeroizing::new(String::new());
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Err(ConversationError("no input".into())),
            Ok(_) => Ok(Zeroizing::new(line.as_bytes().to_vec())),
            Err(e) => Err(ConversationError(e.to_string())),
        }
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        errln!("{text}");
        Ok(())
    }
}

pub fn verify(g: &Global, args: UserArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let mut policy = g.policy()?;
    // verify checks the code, not how sshd got here: there is no SSH connection to ask.
    policy.first_factor = FirstFactor::None;
    let decision = auth::authenticate(
        &mut StdinConversation,
        &policy,
        &Attempt::user(user.as_str()),
        pam_ecs_mfa::clock::now(),
    );
    let reason = decision.reason.as_str();
    log_change("verify", &user, &format!("reason={reason}"));
    let ok = decision.outcome == Outcome::Success;
    if g.json {
        outln!(
            "{}",
            json!({ "user": user.as_str(), "valid": ok, "reason": reason, "skew": decision.skew })
        );
    } else if ok {
        outln!("Valid: {user} can log in with this code ({reason}). It is now used up.");
    } else {
        outln!("NOT valid for {user}: {reason}");
        if decision.reason == Reason::Replay {
            outln!(
                "That code was already used (right after an enrollment: by its confirmation). \
                 Wait for the next code in the app and run verify again."
            );
        }
    }
    if ok {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::CodeRejected,
            format!("code not accepted ({reason})"),
        ))
    }
}

pub fn recovery(g: &Global, args: UserArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let store = g.store()?;
    if !store
        .is_enrolled(&user)
        .map_err(|e| store_failure(&user, e))?
    {
        return Err(store_failure(&user, StoreError::NotEnrolled));
    }
    let (codes, hashes) =
        recovery::generate().map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
    // Shown first, saved after: a closed stdout ends the process before the old codes are
    // replaced, so nobody is left with codes they never saw.
    if g.json {
        let value = json!({
            "user": user.as_str(),
            "recovery_codes": codes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        outln!("{value}");
    } else {
        outln!("New recovery codes for {user}; the previous ones stop working now.\n");
        print_recovery_codes(&codes);
    }
    if let Err(e) = store.update(&user, |record| record.recovery_codes = hashes) {
        errln!(
            "mfa-enroll: the recovery codes shown above were NOT saved and do not work; the previous ones still do"
        );
        return Err(store_failure(&user, e));
    }
    log_change("recovery", &user, "codes=10");
    Ok(())
}

/// `YYYY-MM-DD` (UTC) for a Unix time (civil-from-days, proleptic Gregorian).
pub fn iso_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso() {
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(iso_date(951_782_400), "2000-02-29");
        assert_eq!(iso_date(1_764_300_000), "2025-11-28");
    }

    #[test]
    fn service_accounts_have_no_login_shell() {
        assert!(has_login_shell("/bin/bash"));
        assert!(has_login_shell("/bin/sh"));
        for shell in ["/usr/sbin/nologin", "/bin/false", "/bin/sync", ""] {
            assert!(!has_login_shell(shell), "{shell}");
        }
    }
}
