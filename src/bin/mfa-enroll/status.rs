//! `status`: one typed row per user, serialised for `--json` and shown by `Display` for people.

use std::fmt;

use pam_ecs_mfa::backend::{self, Enrollments, States};
use pam_ecs_mfa::policy::Policy;
use pam_ecs_mfa::store::record::Origin;
use pam_ecs_mfa::store::{StoreError, UserRecord};
use pam_ecs_mfa::user_name::UserName;
use serde::Serialize;

use crate::admin::{all_accounts, iso_date};
use crate::{Exit, Failure, Global, target_user, unix_now};

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME", conflicts_with = "all")]
    pub user: Option<String>,
    /// Every local account with a login shell, flagging those not enrolled, plus records
    /// whose account does not exist.
    #[arg(long)]
    pub all: bool,
}

/// Whether the user has a usable enrollment: `true`, `false` or `"invalid"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Enrolled {
    Yes(bool),
    Invalid(&'static str),
}

/// One user's status, as `status --json` prints it (field names are an interface).
#[derive(Debug, Serialize)]
pub struct UserStatus {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_account: Option<bool>,
    pub enrolled: Enrolled,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<Enrollment>,
    /// A shared account (more than one token): one entry per person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub people: Option<Vec<PersonStatus>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One person's token on a shared account.
#[derive(Debug, Serialize)]
pub struct PersonStatus {
    pub person: String,
    #[serde(flatten)]
    pub enrollment: Enrollment,
}

/// What an enrolled user's record and state say.
#[derive(Debug, Serialize)]
pub struct Enrollment {
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    /// "totp" or "hotp".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// HOTP: the next counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    pub created: String,
    /// SSH key fingerprints the token is bound to (shared accounts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    pub recovery_codes_left: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolled_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrolled_key: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
}

/// The replay/lockout state, as the module will treat it.
#[derive(Debug, Serialize)]
pub struct LoginState {
    pub failures: u32,
    pub locked_for_seconds: u64,
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_mark_ahead_seconds: Option<u64>,
    /// When the last code was accepted (UTC), from the login state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
}

pub fn status(g: &Global, args: StatusArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let policy = g.policy()?;
    let store = g.enrollments(&policy)?;
    let state = store.states(&policy);
    let now = unix_now()?;
    let users: Vec<(UserName, Option<bool>)> = if args.all {
        all_accounts(&store)?
    } else {
        vec![(target_user(args.user.as_deref())?, None)]
    };
    let rows: Vec<UserStatus> = users
        .into_iter()
        .map(|(user, has_account)| user_status(&store, &state, &policy, &user, now, has_account))
        .collect();
    if g.json {
        let text = if args.all {
            serde_json::json!({ "users": rows }).to_string()
        } else {
            rows.last()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .unwrap_or_default()
        };
        outln!("{text}");
    } else {
        for row in &rows {
            outln!("{row}");
        }
    }
    // A single user who is not enrolled is an answer, not an error, except for scripts that
    // ask: exit 5 tells them apart; a record that exists but cannot be used is 6.
    match rows.last().map(|r| r.enrolled) {
        _ if args.all => Ok(()),
        Some(Enrolled::Invalid(_)) => Err(Failure::new(
            Exit::Store,
            "the record is unusable (see above)",
        )),
        Some(Enrolled::Yes(false)) => {
            Err(Failure::new(Exit::NotEnrolled, "not enrolled (see above)"))
        }
        _ => Ok(()),
    }
}

fn user_status(
    store: &Enrollments,
    state: &States<'_>,
    policy: &Policy,
    user: &UserName,
    now: u64,
    local_account: Option<bool>,
) -> UserStatus {
    let mut row = UserStatus {
        user: user.to_string(),
        local_account,
        enrolled: Enrolled::Yes(false),
        enrollment: None,
        people: None,
        error: None,
    };
    let account = match store.load_account(user) {
        Ok(account) => account,
        Err(backend::Error::Store(StoreError::NotEnrolled)) => return row,
        Err(e) => {
            row.enrolled = Enrolled::Invalid("invalid");
            row.error = Some(e.to_string());
            return row;
        }
    };
    row.enrolled = Enrolled::Yes(true);
    let mut tokens = Vec::new();
    for token in &account.tokens {
        // Fleet: the token with the recovery codes its state used removed.
        let record = store
            .load_token(user, token.person.as_ref())
            .unwrap_or_else(|_| token.clone());
        tokens.push((
            token.person_name().to_string(),
            token_status(state, policy, record, now),
        ));
    }
    if account.fits_format_1() {
        row.enrollment = tokens.pop().map(|(_, e)| e);
    } else {
        row.people = Some(
            tokens
                .into_iter()
                .map(|(person, enrollment)| PersonStatus { person, enrollment })
                .collect(),
        );
    }
    row
}

/// One token's record and login state, as the module will treat them.
fn token_status(
    state: &States<'_>,
    policy: &Policy,
    mut record: UserRecord,
    now: u64,
) -> Enrollment {
    let (login, state_error) = match state.transact(&record.owner(), |st| *st) {
        Ok(mut st) => {
            // What logins recorded in the (files) state and could not yet write to the
            // record: shown as the module counts it.
            st.fold_into(&mut record);
            // Shown as the module will treat it.
            st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
            let tolerance = record.params.period() * (u64::from(policy.window) + 1);
            let locked_for = st.locked_for(now);
            let login = LoginState {
                failures: st.failures,
                locked_for_seconds: locked_for.unwrap_or(0),
                locked: locked_for.is_some(),
                replay_mark_ahead_seconds: st.mark_ahead(now, tolerance),
                last_login: (st.last_accepted > 0).then(|| iso_time(st.last_accepted)),
            };
            (Some(login), None)
        }
        Err(e) => (None, Some(e.to_string())),
    };
    Enrollment {
        algorithm: record.params.algorithm().as_str(),
        digits: record.params.digits(),
        period: record.params.period(),
        kind: if record.hotp.is_some() {
            "hotp"
        } else {
            "totp"
        },
        counter: record.hotp,
        created: iso_date(record.created),
        keys: record.keys.clone(),
        recovery_codes_left: record.recovery_codes.len(),
        enrolled_by: Some(record.origin.as_str()).filter(|s| !s.is_empty()),
        enrolled_key: match &record.origin {
            Origin::Login { key } => Some(key.clone()),
            _ => None,
        },
        login,
        state_error,
    }
}

/// `YYYY-MM-DD HH:MM UTC`.
fn iso_time(unix: u64) -> String {
    let minutes = unix % 86_400 / 60;
    format!(
        "{} {:02}:{:02} UTC",
        iso_date(unix),
        minutes / 60,
        minutes % 60
    )
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = &self.user;
        let account = if self.local_account == Some(false) {
            " (no local account)"
        } else {
            ""
        };
        if let Some(people) = &self.people {
            write!(f, "{user}: shared by {} people{account}", people.len())?;
            for p in people {
                write!(f, "\n  {}: ", p.person)?;
                p.enrollment.describe(f)?;
            }
            return Ok(());
        }
        let Some(e) = &self.enrollment else {
            return match &self.error {
                Some(error) => write!(f, "{user}: INVALID enrollment: {error}{account}"),
                None => write!(f, "{user}: NOT ENROLLED{account}"),
            };
        };
        write!(f, "{user}: ")?;
        e.describe(f)?;
        f.write_str(account)
    }
}

impl Enrollment {
    /// "enrolled ... (...), N recovery codes left, ..." for people.
    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        let how = match (e.enrolled_by, &e.enrolled_key) {
            (Some("login"), Some(key)) => format!(" at login with key {key}"),
            (Some(by), _) => format!(" by {by}"),
            _ => String::new(),
        };
        let kind = match e.counter {
            Some(counter) => format!(
                "HOTP, {}, {} digits, next counter {counter}",
                e.algorithm, e.digits
            ),
            None => format!("{}, {} digits, {} s", e.algorithm, e.digits, e.period),
        };
        write!(
            f,
            "enrolled {}{how} ({kind}), {} recovery codes left",
            e.created, e.recovery_codes_left
        )?;
        if !e.keys.is_empty() {
            write!(f, ", keys {}", e.keys.join(" "))?;
        }
        if let Some(login) = &e.login {
            if login.locked {
                write!(
                    f,
                    ", LOCKED for {} s after {} failures (mfa-enroll unlock)",
                    login.locked_for_seconds, login.failures
                )?;
            } else if login.failures > 0 {
                write!(f, ", {} recent failures", login.failures)?;
            }
            if let Some(ahead) = login.replay_mark_ahead_seconds {
                write!(
                    f,
                    ", CLOCK PROBLEM: the last accepted code is {ahead} s ahead of this clock, no code works until then (fix the clock, then mfa-enroll unlock)"
                )?;
            }
        }
        if let Some(login) = &e.login
            && let Some(last) = &login.last_login
        {
            write!(f, ", last login {last}")?;
        }
        if let Some(error) = &e.state_error {
            write!(f, ", state unreadable: {error}")?;
        }
        Ok(())
    }
}
