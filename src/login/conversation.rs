//! Talking to the client: the [`Conversation`] (PAM's in production, a script in tests), where
//! the code comes from (`pass` modes: asked, `PAM_AUTHTOK`, or the end of a "password & code"
//! answer), and asking without looking (unknown users must not be told apart by the prompt).
#![forbid(unsafe_code)]

use zeroize::Zeroizing;

use super::attempt::Attempt;
use crate::policy::{PassMode, Policy};
use crate::recovery::RecoveryCode;
use crate::totp::{self, TotpParams};

/// How the module talks to the user. PAM's conversation in production, a script in tests.
pub trait Conversation {
    /// Shows `prompt` and returns the answer typed without echo. The buffer is wiped on drop.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError>;

    /// Like [`Conversation::ask_hidden`], but the answer is shown while typed when `echo`
    /// (PAM_PROMPT_ECHO_ON; config `echo_code`). Conversations that cannot show it ask hidden.
    fn ask(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        let _ = echo;
        self.ask_hidden(prompt)
    }

    /// Shows `text` without asking anything (PAM_TEXT_INFO): the explanation, QR code and
    /// recovery codes of an enrollment at login. sshd passes such text on with the next prompt.
    fn info(&mut self, text: &str) -> Result<(), ConversationError>;
}

/// The client did not answer (disconnected, no conversation function, refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationError(pub String);

/// The answer to the code prompt: the code, and with `forward_pass` the password typed before
/// it, for the next module.
pub struct Answer {
    /// What is checked as the code (wiped on drop).
    pub code: Zeroizing<Vec<u8>>,
    /// `forward_pass`: the password part, set as `PAM_AUTHTOK` whatever the decision.
    pub password: Option<Zeroizing<Vec<u8>>>,
}

/// The prompt of `forward_pass`, as google-authenticator words it.
pub const FORWARD_PASS_PROMPT: &str = "Password & verification code: ";

/// Where the code comes from (`PassMode`): asked; `PAM_AUTHTOK` (`use_first_pass`, or
/// `try_first_pass` when it *is* a valid code, `is_the_code`: a password that merely looks like
/// one is not taken, not counted, and the code is asked for); or the end of a "password & code"
/// answer (`forward_pass`), whose password part comes back in [`Answer::password`].
pub fn read_code(
    conv: &mut dyn Conversation,
    policy: &Policy,
    attempt: &Attempt<'_>,
    digits: u8,
    is_the_code: &dyn Fn(&[u8]) -> bool,
) -> Result<Answer, ConversationError> {
    let first = attempt.authtok.map(|t| Zeroizing::new(t.to_vec()));
    let code = match policy.pass {
        PassMode::Prompt => conv.ask(&policy.prompt, policy.echo_code)?,
        PassMode::UseFirst => first.ok_or_else(|| {
            ConversationError(
                "use_first_pass: no PAM_AUTHTOK from an earlier module in the stack".into(),
            )
        })?,
        PassMode::TryFirst => match first {
            Some(token) if is_code_shaped(&token, digits) && is_the_code(&token) => token,
            _ => conv.ask(&policy.prompt, policy.echo_code)?,
        },
        PassMode::Forward => {
            let whole = conv.ask(FORWARD_PASS_PROMPT, policy.echo_code)?;
            if is_sshd_fake_answer(&whole) && crate::sshd_answer::sshd_may_replace(attempt.user) {
                return Ok(Answer {
                    code: whole,
                    password: None,
                });
            }
            let (password, code) = split_password_and_code(&whole, digits);
            return Ok(Answer {
                code: Zeroizing::new(code.to_vec()),
                password: Some(Zeroizing::new(password.to_vec())),
            });
        }
    };
    Ok(Answer {
        code,
        password: None,
    })
}

/// `forward_pass` for a user who needs no code (exempt, or unenrolled under `nullok`): the
/// whole answer is the password, for the next module.
pub fn forward_all(conv: &mut dyn Conversation, policy: &Policy) -> Option<Zeroizing<Vec<u8>>> {
    if policy.pass != PassMode::Forward {
        return None;
    }
    conv.ask(FORWARD_PASS_PROMPT, policy.echo_code).ok()
}

/// Asks like for a known user and ignores the answer (wiped on drop): asking makes an unknown
/// user look like a known one to the client, and input shaped like a recovery code (or an
/// imported 8-digit scratch code) takes the time it takes for an enrolled user (waiting, not
/// computing), so timing does not tell either. `try_first_pass`: no token is a code of an
/// unknown user, so it is asked like a known user whose password is not the code. With
/// `forward_pass` the password part is returned, for the next module.
pub fn ask_and_discard(
    conv: &mut dyn Conversation,
    policy: &Policy,
    attempt: &Attempt<'_>,
) -> Option<Zeroizing<Vec<u8>>> {
    let answer = read_code(
        conv,
        policy,
        attempt,
        TotpParams::default().digits(),
        &|_| false,
    )
    .ok()?;
    if RecoveryCode::parse(&answer.code).is_some()
        || RecoveryCode::from_scratch_code(&answer.code).is_some()
    {
        crate::recovery::wait_like_a_check();
    }
    answer.password
}

/// OpenSSH's `fake_password()` (auth-pam.c): when sshd will refuse the login whatever PAM says
/// (root without `PermitRootLogin yes`, an invalid account), it passes PAM this string, cut or
/// repeated to the length of what was typed, instead of the answer.
pub const SSHD_FAKE_ANSWER: &[u8] = b"\x08\n\r\x7fINCORRECT";

/// Whether `answer` is sshd's replacement string (see [`SSHD_FAKE_ANSWER`]).
pub fn is_sshd_fake_answer(answer: &[u8]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .zip(SSHD_FAKE_ANSWER.iter().cycle())
            .all(|(a, b)| a == b)
}

/// A TOTP code of `digits` digits, or a recovery code (or a legacy 8-digit scratch code).
fn is_code_shaped(token: &[u8], digits: u8) -> bool {
    totp::normalize_code(token, digits).is_some()
        || RecoveryCode::parse(token).is_some()
        || RecoveryCode::from_scratch_code(token).is_some()
}

/// Splits "password" + "code" typed as one answer: the code is a recovery code at the end
/// (`xxxxx-xxxxx`), else the last `digits` characters if they are digits. Without either, the
/// whole answer is the password and the code is empty (a wrong code: the next module still
/// checks the password, so the client cannot tell which of the two was wrong).
pub fn split_password_and_code(answer: &[u8], digits: u8) -> (&[u8], &[u8]) {
    const RECOVERY_LEN: usize = 11;
    if answer.len() >= RECOVERY_LEN {
        let (password, tail) = answer.split_at(answer.len() - RECOVERY_LEN);
        if tail[5] == b'-' && RecoveryCode::parse(tail).is_some() {
            return (password, tail);
        }
    }
    let n = usize::from(digits);
    if answer.len() >= n {
        let (password, tail) = answer.split_at(answer.len() - n);
        if tail.iter().all(u8::is_ascii_digit) {
            return (password, tail);
        }
    }
    (answer, &[])
}
