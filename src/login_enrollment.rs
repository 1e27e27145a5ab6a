//! Enrollment at the first SSH login (config `enroll_at_login = true`).
//!
//! A user with no enrollment who has just proven an SSH key (sshd's `SSH_AUTH_INFO_0`, checked
//! by the caller) is shown a short explanation and the QR code through the PAM conversation,
//! confirms a code from the app (three tries), and only then is the record written; the
//! recovery codes are shown once and the login succeeds: the user proved both factors. On any
//! failure nothing is written and the login is denied.
//!
//! Exactly one enrollment per user: the user's state lock is held from the check "still not
//! enrolled" to the save, so a second first login of the same user waits, then finds the record
//! and is asked for a code like any enrolled user.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64, Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};

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
    now: SystemTime,
) -> Option<Decision> {
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        return Some(Decision::deny(Reason::Internal).with_detail("system clock is before 1970"));
    };
    let now = since_epoch.as_secs();
    let outcome = state.transact(user, |st| {
        match store.load(user) {
            Ok(_) => return None,
            Err(StoreError::NotEnrolled) => {}
            Err(e) => return Some(Decision::deny(Reason::BadFile).with_detail(e.to_string())),
        }
        // Above every generation this user's state has seen (a removed record's included).
        let generation = st.generation.saturating_add(1);
        Some(
            match enroll(conv, policy, store, user, key, now, generation) {
                Ok((decision, step_start)) => {
                    st.generation = generation;
                    // The confirmation code is used: it cannot log in a second time.
                    st.record_success(step_start);
                    decision
                }
                Err(decision) => decision,
            },
        )
    });
    match outcome {
        Ok(decision) => decision,
        Err(e) => Some(Decision::deny(Reason::Internal).with_detail(e.to_string())),
    }
}

/// The conversation and the save; `Ok` with the success decision and the start of the
/// confirmed step, `Err` with the denial.
fn enroll(
    conv: &mut (impl Conversation + ?Sized),
    policy: &Policy,
    store: &Store,
    user: &UserName,
    key: &str,
    now: u64,
    generation: u64,
) -> Result<(Decision, u64), Decision> {
    let internal = |why: String| Decision::deny(Reason::Internal).with_detail(why);
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; 20]);
    getrandom::fill(&mut bytes).map_err(|_| internal("no randomness for a secret".into()))?;
    let secret = SecretKey::from_bytes(bytes.to_vec()).map_err(|e| internal(e.to_string()))?;
    let host = otpauth::host_name();
    let mut record = UserRecord {
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
        generation,
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
    store
        .save(&record, SaveMode::CreateNew)
        .map_err(|e| Decision::deny(Reason::BadFile).with_detail(e.to_string()))?;
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
    Ok((
        Decision::new_success(Reason::EnrolledAtLogin).with_detail(format!("key {key}")),
        step_start,
    ))
}

/// The `SHA256:` fingerprint (as `ssh-keygen -l` shows it) of the key in the rest of an
/// `SSH_AUTH_INFO_0` line after `publickey `: `ssh-ed25519 AAAA... [comment]`.
pub fn fingerprint(key_line: &str) -> Option<String> {
    let blob = key_line.split_whitespace().nth(1)?;
    if blob.len() > 16 * 1024 {
        return None;
    }
    let bytes = Base64::decode_vec(blob).ok()?;
    Some(format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(&bytes))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
