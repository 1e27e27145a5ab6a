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

use crate::auth::Conversation;
use crate::decision::{Decision, Reason};
use crate::otpauth;
use crate::policy::Policy;
use crate::state::StateStore;
use crate::store::record::Origin;
use crate::store::{SaveMode, Store, StoreError, UserRecord};
use crate::totp::{self, SecretKey, TotpParams, Verification};
use crate::user_name::UserName;

/// Tries to confirm the first code.
const CONFIRM_ATTEMPTS: u32 = 3;
/// The confirmation prompt (tests and docs look for it).
pub const CONFIRM_PROMPT: &str = "Enter the code from the app to confirm: ";

/// Runs the enrollment for `user`, proven by the SSH key `key` (a `SHA256:` fingerprint).
/// `None` when another login enrolled the user meanwhile (the caller then asks for a code).
pub fn run(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    user: &UserName,
    key: &str,
    clock: crate::auth::Clock<'_>,
) -> Option<Decision> {
    let unix = || clock().duration_since(UNIX_EPOCH).map(|d| d.as_secs());
    if unix().is_err() {
        return Some(Decision::deny(Reason::Internal).with_detail("system clock is before 1970"));
    }
    // A quick look without a lock (the authoritative check is the create-exclusive save).
    match store.load(user) {
        Ok(_) => return None,
        Err(StoreError::NotEnrolled) => {}
        Err(e) => return Some(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
    }
    Some(
        enroll(conv, policy, store, state, user, key, &|| {
            unix().unwrap_or(0)
        })
        .unwrap_or_else(|denied| denied),
    )
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
    let saved = state.transact(&record.user, |st| {
        // Above every generation this user's state has seen (a removed record's included).
        let generation = st.trusted_generation().saturating_add(1);
        let record = UserRecord {
            generation,
            ..record.clone()
        };
        match store.save(&record, SaveMode::CreateNew) {
            Ok(()) => {
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
            Err(e) => Err(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
        }
    });
    saved.unwrap_or_else(|e| Err(Decision::deny(Reason::Internal).with_detail(e.to_string())))
}

/// The conversation (no lock held) and the save; `Ok` with the success decision, `Err` with
/// the denial.
fn enroll(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    state: &impl StateStore,
    user: &UserName,
    key: &str,
    unix_now: &dyn Fn() -> u64,
) -> Result<Decision, Decision> {
    let internal = |why: String| Decision::deny(Reason::Internal).with_detail(why);
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; 20]);
    getrandom::fill(&mut bytes).map_err(|_| internal("no randomness for a secret".into()))?;
    let secret = SecretKey::from_bytes(bytes.to_vec()).map_err(|e| internal(e.to_string()))?;
    let host = otpauth::host_name();
    let mut record = UserRecord {
        user: user.clone(),
        secret,
        params: TotpParams::default(),
        created: unix_now(),
        issuer: otpauth::clean_name(policy.issuer.as_deref().unwrap_or(&host)),
        recovery_codes: Vec::new(),
        origin: Origin::Login {
            key: key.to_string(),
        },
        hotp: None,
        // Set by `save_new`, under the lock, above what the state has seen.
        generation: 0,
    };
    let uri = otpauth::compact_record_uri(&record);
    // Error correction L keeps the code small (about 23 lines for a typical URI), so that it
    // fits an 80x24 terminal with the text around it.
    // The QR code, the URI and the grouped secret all carry the secret: wiped buffers.
    let qr = crate::qr::matrix(&uri, qrcode::EcLevel::L)
        .map(|rows| zeroize::Zeroizing::new(crate::qr::half_blocks(&rows)))
        .map_err(|e| internal(format!("cannot draw the QR code: {e}")))?;
    let secret_b32 = record.secret.to_base32();
    let grouped = zeroize::Zeroizing::new(
        secret_b32
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let said = |r: Result<(), crate::auth::ConversationError>| {
        r.map_err(|e| Decision::deny(Reason::NoCode).with_detail(format!("conversation: {}", e.0)))
    };
    said(conv.info(&format!(
        "{user}: this server needs a verification code from an authenticator app at each login, \
         and you have none yet. Scan the QR code below with Google Authenticator, Microsoft \
         Authenticator or Authy (or add the account by hand), then type the code it shows."
    )))?;
    let shown = zeroize::Zeroizing::new(format!(
        "{}URI:    {}\nSecret: {}\n",
        qr.as_str(),
        uri.as_str(),
        grouped.as_str()
    ));
    said(conv.info(&shown))?;
    let mut confirmed = None;
    for attempt in 1..=CONFIRM_ATTEMPTS {
        let answer = conv.ask(CONFIRM_PROMPT, policy.echo_code).map_err(|e| {
            Decision::deny(Reason::NoCode).with_detail(format!(
                "enrollment at login abandoned ({}); nothing saved",
                e.0
            ))
        })?;
        // The window is placed around the moment the answer arrived: the QR code may have
        // been on the screen for minutes while the user set up the app.
        let now = unix_now();
        let code = totp::normalize_code(&answer, record.params.digits());
        if let Some(code) = code
            && let Verification::Accepted { step, .. } =
                totp::verify(&record.secret, record.params, &code, now, policy.window, 0)
        {
            confirmed = Some(record.params.step_start(step));
            break;
        }
        if attempt < CONFIRM_ATTEMPTS {
            said(conv.info(
                "That code is not valid. Check that the phone's clock is right and try again.",
            ))?;
        }
    }
    let Some(step_start) = confirmed else {
        return Err(Decision::deny(Reason::NotEnrolled)
            .with_detail("enrollment at login not confirmed (3 wrong codes); nothing saved"));
    };
    let (codes, hashes) = crate::recovery::generate().map_err(|e| internal(e.to_string()))?;
    record.recovery_codes = hashes;
    if let Err(denied) = save_new(store, state, &record, step_start) {
        if denied.reason == Reason::NotEnrolled {
            let _ = conv.info(
                "Not saved: you were enrolled meanwhile (by an administrator or another login). \
                 Delete the account just added to the app; log in again with the code of the \
                 enrollment that was saved.",
            );
        }
        return Err(denied);
    }
    let mut text = zeroize::Zeroizing::new(String::from(
        "Enrolled. Recovery codes: each works once instead of a code, for when the phone is \
         lost. Keep them offline; they are shown only now.\n",
    ));
    for pair in codes.chunks(2) {
        let line: Vec<String> = pair.iter().map(ToString::to_string).collect();
        text.push_str(&format!("  {}\n", line.join("    ")));
    }
    // The record is saved and the user proved both factors: a client that left before seeing
    // the codes does not undo that (an administrator can make new ones: mfa-enroll recovery).
    let _ = conv.info(&text);
    Ok(Decision::new_success(Reason::EnrolledAtLogin).with_detail(format!("key {key}")))
}

/// The `SHA256:` fingerprint (as `ssh-keygen -l` shows it) of the key in the rest of an
/// `SSH_AUTH_INFO_0` line after `publickey `: `ssh-ed25519 AAAA... [comment]`. For an OpenSSH
/// certificate, the fingerprint of the certified key (see [`crate::ssh_auth_info`]).
pub fn fingerprint(key_line: &str) -> Option<String> {
    crate::ssh_auth_info::AcceptedKey::parse(key_line).map(|key| key.fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FileStateStore;
    use crate::test_util::Scratch;
    use std::time::Duration;

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // ssh-keygen -l -f on this public key prints this fingerprint.
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3 x";
        assert_eq!(
            fingerprint(line).as_deref(),
            Some("SHA256:zK1Kn26Ep1Pqkrc2MIOvr+LMslEBx/CjKOzxYyYUEIo")
        );
        assert_eq!(fingerprint("ssh-ed25519"), None);
        assert_eq!(fingerprint("ssh-ed25519 not*base64"), None);
    }

    /// A user at the confirmation prompt while an administrator acts (in another thread, as
    /// another process would): the administrator takes the user's locks at once; the user's
    /// right code then finds the administrator's record, which stays.
    struct AdminActsMeanwhile<'a> {
        store: &'a Store,
        state: &'a FileStateStore,
        admin: UserRecord,
        infos: Vec<String>,
        waited: Option<Duration>,
    }

    impl Conversation for AdminActsMeanwhile<'_> {
        fn ask_hidden(
            &mut self,
            _: &str,
        ) -> Result<zeroize::Zeroizing<Vec<u8>>, crate::auth::ConversationError> {
            if self.waited.is_none() {
                let (store, state, admin) =
                    (self.store.clone(), self.state.clone(), self.admin.clone());
                let (done, finished) = std::sync::mpsc::channel();
                let start = std::time::Instant::now();
                std::thread::spawn(move || {
                    let _ = state.transact(&admin.user, |st| st.forget_failures());
                    store.save(&admin, SaveMode::Replace).unwrap();
                    let _ = done.send(());
                });
                finished
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the administrator waited on the user at the prompt");
                self.waited = Some(start.elapsed());
            }
            let secret = self
                .infos
                .iter()
                .find_map(|t| t.lines().find_map(|l| l.strip_prefix("Secret: ")))
                .unwrap()
                .replace(' ', "");
            let secret = SecretKey::from_base32(&secret).unwrap();
            let now = crate::clock::now().duration_since(UNIX_EPOCH).unwrap();
            let code = totp::code_at(&secret, TotpParams::default(), now.as_secs());
            Ok(zeroize::Zeroizing::new(code.to_string().into_bytes()))
        }

        fn info(&mut self, text: &str) -> Result<(), crate::auth::ConversationError> {
            self.infos.push(text.to_string());
            Ok(())
        }
    }

    #[test]
    fn no_lock_is_held_at_the_prompt_and_an_enrollment_made_meanwhile_stands() {
        let scratch = Scratch::new("login-enroll");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(scratch.0.join("users"))
            .unwrap();
        let store = Store::new(scratch.0.join("users"));
        let state = FileStateStore::new(scratch.0.join("run"));
        let alice = UserName::parse("alice").unwrap();
        let admin = UserRecord {
            user: alice.clone(),
            secret: SecretKey::from_bytes(vec![7; 20]).unwrap(),
            params: TotpParams::default(),
            created: 1,
            issuer: "admin".into(),
            recovery_codes: vec![],
            origin: Origin::Admin,
            hotp: None,
            generation: 0,
        };
        let mut conv = AdminActsMeanwhile {
            store: &store,
            state: &state,
            admin: admin.clone(),
            infos: vec![],
            waited: None,
        };
        let d = run(
            &mut conv,
            &Policy::default(),
            &store,
            &state,
            &alice,
            "SHA256:x",
            &crate::clock::now,
        )
        .unwrap();
        let waited = conv.waited.unwrap_or_else(|| panic!("never asked: {d:?}"));
        eprintln!("the administrator's change took {waited:?}");
        assert_eq!(d.reason, Reason::NotEnrolled, "{d:?}");
        assert!(d.detail.unwrap().contains("enrolled meanwhile"));
        assert!(conv.infos.last().unwrap().contains("enrolled meanwhile"));
        assert_eq!(store.load(&alice).unwrap(), admin);
    }
}
