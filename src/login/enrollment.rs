//! Enrollment at the first SSH login (config `enroll_at_login = true`).
//!
//! A user with no enrollment who has just proven an SSH key (sshd's `SSH_AUTH_INFO_0`, checked
//! by the caller) is shown a short explanation and the QR code through the PAM conversation,
//! confirms a code from the app (three tries), and only then is the record written; the
//! recovery codes are shown once and the login succeeds: the user proved both factors. On any
//! failure nothing is written and the login is denied.
//!
//! Exactly one enrollment per user, and no lock held while a person types: the secret is
//! made, shown and confirmed without any lock; then, under the user's state lock for an
//! instant, the record is created only if none exists (create-exclusive). If another login or
//! an administrator (`mfa-enroll enroll`) enrolled the user meanwhile, that enrollment stands,
//! this one is discarded and the user is told so. An administrator's command therefore never
//! waits for a user sitting at the confirmation prompt.
#![forbid(unsafe_code)]

use std::time::UNIX_EPOCH;

use zeroize::Zeroizing;

use super::attempt::Clock;
use super::conversation::{Conversation, ConversationError};
use crate::decision::{Decision, Reason};
use crate::otpauth;
use crate::policy::{KeyBinding, Policy};
use crate::state::{StateStore, generation_after};
use crate::store::record::Origin;
use crate::store::{SaveMode, Store, StoreError, UserRecord};
use crate::totp::{self, SecretKey, TotpParams, Verification};
use crate::user_name::{Person, UserName};

/// Tries to confirm the first code.
const CONFIRM_ATTEMPTS: u32 = 3;
/// The confirmation prompt (tests and docs look for it).
pub const CONFIRM_PROMPT: &str = "Enter the code from the app to confirm: ";

/// Who enrolls: the account's own token, or (shared account) a new person bound to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whom {
    /// The account has no record: its own token (bound to no key, as before).
    Account,
    /// The account has tokens, none for this key: a new person's token bound to it.
    NewPerson,
}

/// Runs the enrollment for `user`, proven by the SSH key `key` (a `SHA256:` fingerprint).
/// `None` when another login enrolled the user (or, for a new person, this key) meanwhile
/// (the caller then asks for a code).
#[allow(clippy::too_many_arguments)]
pub fn run(
    conv: &mut dyn Conversation,
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    user: &UserName,
    key: &str,
    whom: Whom,
    clock: Clock<'_>,
) -> Option<Decision> {
    let unix = || clock().duration_since(UNIX_EPOCH).map(|d| d.as_secs());
    if unix().is_err() {
        return Some(Decision::deny(Reason::Internal).with_detail("system clock is before 1970"));
    }
    // A quick look without a lock (the authoritative check is the create-exclusive save).
    let person = match (store.load_account(user), whom) {
        (Ok(_), Whom::Account) => return None,
        (Err(StoreError::NotEnrolled), Whom::Account) => None,
        (Ok(account), Whom::NewPerson) if account.bound_to(key).is_some() => return None,
        (Ok(account), Whom::NewPerson) => match new_person_name(&account, user, key) {
            Some(person) => Some(person),
            None => {
                return Some(Decision::deny(Reason::Internal).with_detail("no free person name"));
            }
        },
        (Err(StoreError::NotEnrolled), Whom::NewPerson) => return None,
        (Err(e), _) => return Some(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
    };
    let unix_now = || unix().unwrap_or(0);
    let enrolled = new_record(policy, user, key, unix_now()).and_then(|mut record| {
        if let Some(person) = &person {
            record.person = Some(person.clone());
            record.keys = vec![key.to_string()];
        } else if policy.key_binding == KeyBinding::Required {
            // "required" never lets a token bound to no key be used: the account's own token
            // made here is bound to the key that proved itself (else it would be void, and
            // every later login would enroll yet another token).
            record.keys = vec![key.to_string()];
        }
        let mut talk = Talk {
            conv,
            echo: policy.echo_code,
        };
        talk.show(&record)?;
        let step_start = talk.confirm(&record, policy.window, &unix_now)?;
        save_and_show_codes(&mut talk, store, state, record, step_start)
    });
    let (mut decision, person) = match enrolled {
        Ok(saved_as) => (
            Decision::new_success(Reason::EnrolledAtLogin).with_detail(format!("key {key}")),
            saved_as,
        ),
        Err(denied) => (denied, person),
    };
    if let Some(person) = person {
        decision = decision.with_who(Some(person.to_string()), Some(key.to_string()));
    }
    Some(decision)
}

/// The new person's name: the key's `authorized_keys` comment (`alice@laptop`), cleaned, else
/// `key-` and the start of the fingerprint; `-2`, `-3`... when the account already has it.
fn new_person_name(
    account: &crate::store::AccountRecord,
    user: &UserName,
    key: &str,
) -> Option<Person> {
    let home = nix::unistd::User::from_name(user.as_str())
        .ok()
        .flatten()
        .map(|u| u.dir);
    let comment = home
        .and_then(|home| crate::authorized_keys::find_for_home(&home, key))
        .map(|line| line.comment)
        .unwrap_or_default();
    let short: String = key.trim_start_matches("SHA256:").chars().take(12).collect();
    let base = Person::from_label(&comment)
        .filter(|p| p.as_str() != user.as_str())
        .or_else(|| Person::from_label(&format!("key-{short}")))?;
    let taken = |p: &Person| p.as_str() == user.as_str() || account.token(Some(p)).is_some();
    if !taken(&base) {
        return Some(base);
    }
    (2..1000)
        .filter_map(|n| {
            let stem: String = base.as_str().chars().take(58).collect();
            Person::parse(&format!("{stem}-{n}")).ok()
        })
        .find(|p| !taken(p))
}

/// Saves `record`, confirmed with the code of the step starting at `step_start`, if the user
/// still has no record, and marks that step used: under the user's state lock, held only for
/// this (never across a prompt). `Err` with the denial when someone enrolled the user meanwhile
/// or the save failed.
fn save_new(
    store: &Store,
    state: &impl StateStore,
    record: &UserRecord,
    step_start: u64,
) -> Result<(), Decision> {
    let saved = state.transact(&record.owner(), |st| {
        // Above every generation this token's state has seen (a removed record's included),
        // and above the account's (its other people's states have seen that one).
        let current = store.load_account(&record.user).map_or(0, |a| a.generation);
        let generation = generation_after(current, st.trusted_generation());
        let record = UserRecord {
            generation,
            ..record.clone()
        };
        match store.save(&record, SaveMode::CreateNew) {
            Ok(generation) => {
                st.generation = generation;
                // The confirmation code is used: it cannot log in a second time.
                st.record_success(step_start);
                Ok(())
            }
            Err(StoreError::AlreadyEnrolled) => Err(Decision::deny(Reason::NotEnrolled)
                .with_detail(
                    "enrollment at login not saved: the user was enrolled meanwhile (mfa-enroll or \
             another login); that enrollment stands",
                )),
            // The same key enrolled meanwhile under another name by another login.
            Err(StoreError::Refused(_)) if bound_meanwhile(store, &record) => {
                Err(Decision::deny(Reason::NotEnrolled).with_detail(
                    "enrollment at login not saved: this key was enrolled meanwhile by another \
                     login; that enrollment stands",
                ))
            }
            Err(e) => Err(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
        }
    });
    saved.unwrap_or_else(|e| Err(Decision::deny(Reason::Internal).with_detail(e.to_string())))
}

/// Whether the key of a new person's `record` is bound to a token of the account now.
fn bound_meanwhile(store: &Store, record: &UserRecord) -> bool {
    let account = store.load_account(&record.user);
    matches!((record.keys.as_slice(), account), ([key], Ok(a)) if a.bound_to(key).is_some())
}

fn internal(why: String) -> Decision {
    Decision::deny(Reason::Internal).with_detail(why)
}

/// A new TOTP record with a fresh 160-bit secret, not yet saved.
fn new_record(
    policy: &Policy,
    user: &UserName,
    key: &str,
    now: u64,
) -> Result<UserRecord, Decision> {
    let mut bytes = Zeroizing::new(vec![0u8; 20]);
    getrandom::fill(&mut bytes).map_err(|_| internal("no randomness for a secret".into()))?;
    let secret = SecretKey::from_bytes(bytes.to_vec()).map_err(|e| internal(e.to_string()))?;
    let host = otpauth::host_name();
    Ok(UserRecord {
        user: user.clone(),
        secret,
        params: TotpParams::default(),
        created: now,
        issuer: otpauth::clean_name(policy.issuer.as_deref().unwrap_or(&host)),
        recovery_codes: Vec::new(),
        origin: Origin::Login {
            key: key.to_string(),
        },
        hotp: None,
        // Set by `save_new`, under the lock, above what the state has seen.
        generation: 0,
        person: None,
        keys: Vec::new(),
    })
}

/// The conversation of an enrollment at login (no lock is held while it runs).
struct Talk<'c> {
    conv: &'c mut dyn Conversation,
    echo: bool,
}

impl Talk<'_> {
    fn said(r: Result<(), ConversationError>) -> Result<(), Decision> {
        r.map_err(|e| Decision::deny(Reason::NoCode).with_detail(format!("conversation: {}", e.0)))
    }

    /// The explanation, then the QR code, the URI and the grouped secret (all of which carry
    /// the secret: wiped buffers).
    fn show(&mut self, record: &UserRecord) -> Result<(), Decision> {
        let user = &record.user;
        let uri = otpauth::compact_record_uri(record);
        // Error correction L keeps the code small (about 23 lines for a typical URI), so that
        // it fits an 80x24 terminal with the text around it.
        let qr = crate::qr::matrix(&uri, qrcode::EcLevel::L)
            .map(|rows| Zeroizing::new(crate::qr::half_blocks(&rows)))
            .map_err(|e| internal(format!("cannot draw the QR code: {e}")))?;
        let grouped = record.secret.to_grouped_base32();
        Self::said(self.conv.info(&format!(
            "{user}: this server needs a verification code from an authenticator app at each \
             login, and you have none yet. Scan the QR code below with Google Authenticator, \
             Microsoft Authenticator or Authy (or add the account by hand), then type the code \
             it shows."
        )))?;
        let shown = Zeroizing::new(format!(
            "{}URI:    {}\nSecret: {}\n",
            qr.as_str(),
            uri.as_str(),
            grouped.as_str()
        ));
        Self::said(self.conv.info(&shown))
    }

    /// Up to [`CONFIRM_ATTEMPTS`] codes from the app; the start of the step of the one that
    /// matched. The window is placed around the moment each answer arrived: the QR code may
    /// have been on the screen for minutes while the user set up the app.
    fn confirm(
        &mut self,
        record: &UserRecord,
        window: u8,
        unix_now: &dyn Fn() -> u64,
    ) -> Result<u64, Decision> {
        for attempt in 1..=CONFIRM_ATTEMPTS {
            let answer = self.conv.ask(CONFIRM_PROMPT, self.echo).map_err(|e| {
                Decision::deny(Reason::NoCode).with_detail(format!(
                    "enrollment at login abandoned ({}); nothing saved",
                    e.0
                ))
            })?;
            let now = unix_now();
            if let Some(code) = totp::normalize_code(&answer, record.params.digits())
                && let Verification::Accepted { step, .. } =
                    totp::verify(&record.secret, record.params, &code, now, window, 0)
            {
                return Ok(record.params.step_start(step));
            }
            if attempt < CONFIRM_ATTEMPTS {
                Self::said(self.conv.info(
                    "That code is not valid. Check that the phone's clock is right and try again.",
                ))?;
            }
        }
        Err(Decision::deny(Reason::NotEnrolled)
            .with_detail("enrollment at login not confirmed (3 wrong codes); nothing saved"))
    }
}

/// The save (create-exclusive), then the recovery codes, shown once. Returns the person the
/// token was saved as (a new person: the name shown may have been taken meanwhile by another
/// key's first login, then the next free one is used and the user is told).
fn save_and_show_codes(
    talk: &mut Talk<'_>,
    store: &Store,
    state: &impl StateStore,
    mut record: UserRecord,
    step_start: u64,
) -> Result<Option<Person>, Decision> {
    let (codes, hashes) = crate::recovery::generate().map_err(|e| internal(e.to_string()))?;
    record.recovery_codes = hashes;
    let shown = record.person.clone();
    let mut saved = save_new(store, state, &record, step_start);
    for _ in 0..3 {
        let Err(denied) = &saved else { break };
        let Some(person) = free_name_meanwhile(store, &record, denied) else {
            break;
        };
        record.person = Some(person);
        saved = save_new(store, state, &record, step_start);
    }
    if record.person != shown
        && saved.is_ok()
        && let Some(person) = &record.person
    {
        let _ = talk.conv.info(&format!(
            "Saved as person {person}: the name shown was taken meanwhile by another key's \
             first login (the app's label keeps the name shown)."
        ));
    }
    if let Err(denied) = saved {
        if denied.reason == Reason::NotEnrolled {
            let _ = talk.conv.info(
                "Not saved: you were enrolled meanwhile (by an administrator or another login). \
                 Delete the account just added to the app; log in again with the code of the \
                 enrollment that was saved.",
            );
        }
        return Err(denied);
    }
    let mut text = Zeroizing::new(String::from(
        "Enrolled. Recovery codes: each works once instead of a code, for when the phone is \
         lost. Keep them offline; they are shown only now.\n",
    ));
    for pair in codes.chunks(2) {
        let line: Vec<String> = pair.iter().map(ToString::to_string).collect();
        text.push_str(&format!("  {}\n", line.join("    ")));
    }
    // The record is saved and the user proved both factors: a client that left before seeing
    // the codes does not undo that (an administrator can make new ones: mfa-enroll recovery).
    let _ = talk.conv.info(&text);
    Ok(record.person)
}

/// A new person's token refused because its name was taken meanwhile by another key's first
/// login (two people whose keys carry the same `authorized_keys` comment): the next free name,
/// unless this very key was enrolled meanwhile (then "enrolled meanwhile" stands).
fn free_name_meanwhile(store: &Store, record: &UserRecord, denied: &Decision) -> Option<Person> {
    let [key] = record.keys.as_slice() else {
        return None;
    };
    if record.person.is_none() || denied.reason != Reason::NotEnrolled {
        return None;
    }
    let account = store.load_account(&record.user).ok()?;
    if account.bound_to(key).is_some() {
        return None;
    }
    new_person_name(&account, &record.user, key)
}

#[cfg(test)]
#[path = "enrollment_tests.rs"]
mod tests;
