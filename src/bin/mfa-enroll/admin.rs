//! `status`, `remove`, `unlock`, `verify` and `recovery`.

use std::io::{BufRead, IsTerminal, Write};

use pam_ecs_mfa::backend::{self, Enrollments};
use pam_ecs_mfa::decision::{Outcome, Reason};
use pam_ecs_mfa::fleet::FleetError;
use pam_ecs_mfa::login::{self, Attempt, Conversation, ConversationError, Login};
use pam_ecs_mfa::policy::FirstFactor;
use pam_ecs_mfa::recovery;
use pam_ecs_mfa::state::Owner;
use pam_ecs_mfa::store::StoreError;
use pam_ecs_mfa::user_name::{Person, UserName};
use serde_json::json;
use zeroize::Zeroizing;

use crate::enroll::print_recovery_codes;
use crate::{Exit, Failure, Global, log_change, store_failure, target_user, unix_now};

#[derive(clap::Args)]
pub struct UserArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A shared account: the person whose token this is about (needed when the account has
    /// more than one).
    #[arg(long, value_name = "NAME")]
    person: Option<String>,
}

#[derive(clap::Args)]
pub struct UnlockArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A shared account: the person whose token to unlock (needed when the account has more
    /// than one).
    #[arg(long, value_name = "NAME")]
    person: Option<String>,
    /// Also end every grace period (grace_seconds) of the user: the next login asks for a
    /// code wherever it comes from.
    #[arg(long)]
    all_grace: bool,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A shared account: remove only this person's token (the last one removes the record).
    #[arg(long, value_name = "NAME", conflicts_with = "all_people")]
    person: Option<String>,
    /// A shared account: remove every person's token (the whole record).
    #[arg(long)]
    all_people: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

/// Local accounts with a login shell (from /etc/passwd), then records (in the store, or the
/// fleet) for which no such account exists.
pub fn all_accounts(records: &Enrollments) -> Result<Vec<(UserName, Option<bool>)>, Failure> {
    let mut users: Vec<(UserName, Option<bool>)> = pam_ecs_mfa::accounts::system_login_accounts()
        .map_err(|e| Failure::new(Exit::Failure, format!("/etc/passwd: {e}")))?
        .into_iter()
        .map(|a| (a.name, Some(true)))
        .collect();
    let enrolled = records
        .enrolled_users()
        .map_err(|e| crate::store_failure(&UserName::parse("all").expect("valid"), e))?;
    for user in enrolled {
        if !users.iter().any(|(u, _)| *u == user) {
            users.push((user, Some(false)));
        }
    }
    Ok(users)
}

/// What `remove`, `unlock` and `recovery` start from: root, the user (given or the caller), the
/// policy and its enrollments, and a refusal when the user has no enrollment.
fn enrolled_user(
    g: &Global,
    given: Option<&str>,
) -> Result<(UserName, pam_ecs_mfa::policy::Policy, Enrollments), Failure> {
    crate::require_root()?;
    let user = target_user(given)?;
    let policy = g.policy()?;
    let store = g.enrollments(&policy)?;
    if !store
        .is_enrolled(&user)
        .map_err(|e| store_failure(&user, e))?
    {
        return Err(store_failure(&user, StoreError::NotEnrolled));
    }
    Ok((user, policy, store))
}

/// `--person NAME`, checked like a user name.
pub fn parse_person(given: Option<&str>) -> Result<Option<Person>, Failure> {
    given
        .map(|p| {
            Person::parse(p)
                .map_err(|e| Failure::new(Exit::Usage, format!("--person: {}", person_error(e))))
        })
        .transpose()
}

fn person_error(e: pam_ecs_mfa::user_name::UserNameError) -> String {
    e.to_string().replace("user name", "person name")
}

/// The token `--person` names on `user` (none: the account's only token), as the owner of
/// its login state.
pub fn token_owner(
    store: &Enrollments,
    user: &UserName,
    person: Option<&str>,
) -> Result<Owner, Failure> {
    let person = parse_person(person)?;
    let token = store
        .load_token(user, person.as_ref())
        .map_err(|e| store_failure(user, e))?;
    Ok(token.owner())
}

/// `--person NAME` for messages and log lines: "" or " --person NAME".
pub fn person_arg(owner: &Owner) -> String {
    owner
        .person()
        .map_or_else(String::new, |p| format!(" --person {p}"))
}

pub fn remove(g: &Global, args: RemoveArgs) -> Result<(), Failure> {
    let (user, policy, store) = enrolled_user(g, args.user.as_deref())?;
    let account = store.load_account(&user).ok();
    let people = account.as_ref().map_or(1, |a| a.tokens.len());
    let person = parse_person(args.person.as_deref())?;
    if person.is_none() && people > 1 && !args.all_people {
        let names: Vec<&str> = account
            .iter()
            .flat_map(|a| a.tokens.iter().map(|t| t.person_name()))
            .collect();
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "{user} is shared by {people} people ({}): name one with --person, or remove them all with --all-people",
                names.join(", ")
            ),
        ));
    }
    let owners: Vec<Owner> = match (&person, &account) {
        (Some(_), _) => vec![token_owner(&store, &user, args.person.as_deref())?],
        (None, Some(account)) => account.tokens.iter().map(|t| t.owner()).collect(),
        (None, None) => vec![Owner::account(&user)],
    };
    let what = match &person {
        Some(p) => format!("the token of {p} on {user}"),
        None => format!("the enrollment of {user}"),
    };
    if !args.yes && !ask_yes(&format!("Remove {what}? [y/N] "))? {
        return Err(Failure::new(Exit::Failure, "not removed"));
    }
    match &person {
        Some(_) => store.update_account(&policy, &user, |account| {
            account.remove(owners[0].person());
            Ok(())
        }),
        None => store.remove(&user),
    }
    .map_err(|e| store_failure(&user, e))?;
    // Failures go, the replay mark stays: were the same secret enrolled again (import), a code
    // already used must not work a second time.
    for owner in &owners {
        if let Err(e) = store
            .states(&policy)
            .transact(owner, |st| st.replace_secret())
        {
            errln!("mfa-enroll: warning: could not reset login state: {e}");
        }
    }
    let detail = person
        .as_ref()
        .map_or_else(String::new, |p| format!("person={p}"));
    log_change("remove", &user, &detail);
    if g.json {
        let mut value = json!({ "user": user.as_str(), "removed": true });
        if let Some(p) = &person {
            value["person"] = p.as_str().into();
        }
        outln!("{value}");
    } else {
        outln!("Removed {what}.");
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

pub fn unlock(g: &Global, args: UnlockArgs) -> Result<(), Failure> {
    let (user, policy, records) = enrolled_user(g, args.user.as_deref())?;
    let now = unix_now()?;
    // An unreadable record: the state of the person named (it cannot be checked against the
    // record), else the account's own (what a login of it would use).
    let owner = match records.load_account(&user) {
        Ok(_) => token_owner(&records, &user, args.person.as_deref())?,
        Err(_) => {
            let person = parse_person(args.person.as_deref())?;
            Owner::new(&user, person.as_ref())
        }
    };
    // The replay mark moves back only out of an impossible future (further ahead than any
    // login accepts); for an unreadable record, the longest period (the smallest change).
    let period = records
        .load_token(&user, owner.person())
        .map(|r| r.params.period())
        .unwrap_or(60);
    let tolerance = pam_ecs_mfa::state::replay_tolerance(period, policy.window);
    let result = records.states(&policy).transact(&owner, |st| {
        let before = *st;
        st.unlock(now, tolerance);
        if args.all_grace {
            st.grace.clear();
        }
        before
    });
    let before = match result {
        Ok(before) => before,
        // A fleet state value that is not ecs-mfa's: replaced (the current step stays used).
        Err(backend::Error::FleetState(FleetError::BadValue(why)))
            if records
                .replace_fleet_state(&owner, now)
                .map_err(|e| store_failure(&user, e))? =>
        {
            errln!(
                "mfa-enroll: {why}: replaced with a fresh state; recovery codes already used may work again, so issue new ones: mfa-enroll recovery --user {user}{}",
                person_arg(&owner)
            );
            Default::default()
        }
        Err(e) => return Err(store_failure(&user, e)),
    };
    // An administrator's command on this user's record: fold what logins recorded in the state
    // into it (best effort: without administrator credentials a fleet record cannot be written).
    if let Err(e) = records.fold(&policy, &user) {
        errln!("mfa-enroll: note: the login state was not folded into the record: {e}");
    }
    let person = owner.person().map(|p| p.to_string());
    log_change(
        "unlock",
        &user,
        &match &person {
            Some(p) => format!("person={p} failures_before={}", before.failures),
            None => format!("failures_before={}", before.failures),
        },
    );
    if g.json {
        let mut value =
            json!({ "user": user.as_str(), "unlocked": true, "failures_before": before.failures });
        if let Some(p) = &person {
            value["person"] = p.as_str().into();
        }
        outln!("{value}");
    } else {
        let whose = person.map_or_else(|| user.to_string(), |p| format!("{p} on {user}"));
        outln!("Unlocked {whose} ({} failures cleared).", before.failures);
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
    // verify checks the code, not how sshd got here: there is no SSH connection to ask; and it
    // starts no grace period, never reads PAM_AUTHTOK.
    policy.first_factor = FirstFactor::None;
    policy.grace = None;
    policy.pass = pam_ecs_mfa::policy::PassMode::Prompt;
    let person = parse_person(args.person.as_deref())?;
    // A shared account: which person's code is checked (there is no SSH key to choose), and
    // that person exists (a typo is a usage error, before any code is asked for).
    if let Ok(records) = g.enrollments(&policy)
        && let Ok(account) = records.load_account(&user)
    {
        if person.is_none() && account.tokens.len() > 1 {
            return Err(store_failure(
                &user,
                StoreError::PersonNeeded(
                    account
                        .tokens
                        .iter()
                        .map(|t| t.person_name().to_string())
                        .collect(),
                ),
            ));
        }
        if let Some(person) = &person
            && account.token(Some(person)).is_none()
        {
            let missing = StoreError::NoSuchPerson(person.to_string());
            return Err(store_failure(&user, missing));
        }
    }
    let mut backend = login::choose_backend(&policy, pam_ecs_mfa::fleet::transport::native);
    let decision = Login::new(
        &mut StdinConversation,
        &policy,
        Attempt::user(user.as_str()),
        &pam_ecs_mfa::clock::now,
    )
    .for_person(person)
    .run(&mut *backend)
    .decision;
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
    let (user, policy, store) = enrolled_user(g, args.user.as_deref())?;
    let owner = token_owner(&store, &user, args.person.as_deref())?;
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
    if let Err(e) = store.update(&policy, &owner, |record| {
        record.recovery_codes = hashes.clone()
    }) {
        errln!(
            "mfa-enroll: the recovery codes shown above were NOT saved and do not work; the previous ones still do"
        );
        return Err(store_failure(&user, e));
    }
    log_change(
        "recovery",
        &user,
        &format!(
            "codes=10{}",
            person_arg(&owner).replace(" --person ", " person=")
        ),
    );
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
}
