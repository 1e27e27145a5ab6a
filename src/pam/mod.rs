//! The PAM boundary: the only module with unsafe code.
//!
//! `pam_sm_authenticate` turns the module arguments into text and hands the PAM handle, as a
//! [`PamHandler`] (items, environment, conversation, `pam_syslog`), to [`hook::authenticate`],
//! where the hook's logic lives and is tested with a scripted handler; then it maps the
//! [`Decision`] to a PAM code in [`pam_code`] (the one place that does). A panic anywhere below is caught here, logged as a fixed string, and denies; the
//! default panic message never reaches the host's stderr.

pub mod etcd_helper;

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use pam_bindings::constants::{
    PAM_ESTABLISH_CRED, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_REINITIALIZE_CRED,
    PAM_TEXT_INFO, PamFlag, PamResultCode,
};
use pam_bindings::conv::Conv;
use pam_bindings::items::{AuthTok, RHost, RUser, Service};
use pam_bindings::module::{PamHandle, PamHooks};
use zeroize::Zeroizing;

use crate::audit::Severity;
use crate::decision::{Decision, Outcome};
use crate::hook::{self, PamHandler};
use crate::login::{Conversation, ConversationError};

/// The module type for `pam_hooks!`.
pub struct EcsMfa;

pam_bindings::pam_hooks!(EcsMfa);

impl PamHooks for EcsMfa {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        let code = deny_on_panic(|| authenticate(pamh, &args));
        code.unwrap_or_else(|| {
            // Fixed text: the panic payload could in theory carry anything.
            log(
                pamh,
                Severity::Error,
                "result=deny reason=internal detail=\"internal error (caught panic); denying\"",
            );
            PamResultCode::PAM_AUTH_ERR
        })
    }

    /// The module holds no credentials; setcred is where a pending grace period of a password
    /// stack starts (applications call it only after the whole stack succeeded: see
    /// `crate::login::grace`). Always success, so `pam_setcred` keeps working in every stack.
    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        let establish = flags & (PAM_ESTABLISH_CRED | PAM_REINITIALIZE_CRED) != 0;
        // A panic here only loses the grace period: nothing to deny.
        let _ = deny_on_panic(|| {
            hook::setcred(&mut RealPam(pamh), parse_args(&args), establish);
            PamResultCode::PAM_SUCCESS
        });
        PamResultCode::PAM_SUCCESS
    }
}

/// Runs `hook`, returning `None` if it panicked. The panic is caught here, inside the hook,
/// so it never reaches pam-bindings' guard (which would answer `PAM_ABORT` without a log line),
/// and the quiet panic hook keeps the default message off the host's stderr.
fn deny_on_panic(hook: impl FnOnce() -> PamResultCode) -> Option<PamResultCode> {
    install_quiet_panic_hook();
    IN_MODULE.with(|flag| flag.set(true));
    let result = catch_unwind(AssertUnwindSafe(hook));
    IN_MODULE.with(|flag| flag.set(false));
    result.ok()
}

/// The whole hook, panics allowed (caught by the caller): see [`crate::hook`].
fn authenticate(pamh: &mut PamHandle, args: &[&CStr]) -> PamResultCode {
    pam_code(&hook::authenticate(&mut RealPam(pamh), parse_args(args)))
}

/// The `pam_set_data` name of a pending grace grant, and its type.
const KEPT_FOR_SETCRED: &str = "ecs_mfa_grace_pending";
type Kept = Option<hook::Kept>;

/// The real PAM handle as a [`PamHandler`].
struct RealPam<'a>(&'a mut PamHandle);

impl PamHandler for RealPam<'_> {
    fn etcd_connector(&self) -> crate::fleet::transport::Connector {
        etcd_helper::connect
    }

    fn user(&mut self) -> Result<String, i32> {
        self.0.get_user(None).map_err(|code| code as i32)
    }

    fn rhost(&self) -> Option<String> {
        self.0
            .get_item::<RHost>()
            .ok()
            .flatten()
            .map(|v| lossy(v.0))
    }

    fn service(&self) -> Option<String> {
        self.0
            .get_item::<Service>()
            .ok()
            .flatten()
            .map(|v| lossy(v.0))
    }

    fn ruser(&self) -> Option<String> {
        self.0
            .get_item::<RUser>()
            .ok()
            .flatten()
            .map(|v| lossy(v.0))
    }

    fn keep_for_setcred(&mut self, pending: Option<hook::Kept>) {
        // A failure only loses the grace period (setcred then finds nothing).
        let _ = self.0.set_data::<Kept>(KEPT_FOR_SETCRED, Box::new(pending));
    }

    fn take_kept_for_setcred(&mut self) -> Option<hook::Kept> {
        // SAFETY: KEPT_FOR_SETCRED is a name private to this module, and the only value ever
        // stored under it is a `Kept` (keep_for_setcred above); PAM keeps it alive until it is
        // replaced or the handle ends, and it is cloned before being replaced.
        let kept = unsafe { self.0.get_data::<Kept>(KEPT_FOR_SETCRED) }
            .ok()
            .cloned()
            .flatten();
        if kept.is_some() {
            self.keep_for_setcred(None);
        }
        kept
    }

    fn env(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        pam_env(self.0, &name)
    }

    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.0
            .get_item::<AuthTok>()
            .ok()
            .flatten()
            .map(|t| Zeroizing::new(t.as_bytes().to_vec()))
    }

    fn set_authtok(&mut self, token: &[u8]) -> Result<(), i32> {
        set_authtok(self.0, token)
    }

    fn with_conversation<R>(&self, f: impl FnOnce(Option<&mut dyn Conversation>) -> R) -> R {
        match self.0.get_item::<Conv>() {
            Ok(Some(conv)) => f(Some(&mut PamConversation(conv))),
            Ok(None) | Err(_) => f(None),
        }
    }

    fn log(&self, severity: Severity, message: &str) {
        log(self.0, severity, message);
    }
}

/// The one mapping from decisions to PAM codes. `PAM_SUCCESS` only for a verified code,
/// `PAM_IGNORE` only for "MFA not required"; everything else is `PAM_AUTH_ERR`, including
/// lockouts (sshd treats `PAM_MAXTRIES` specially, which would tell the client it is locked).
pub fn pam_code(decision: &Decision) -> PamResultCode {
    match decision.outcome {
        Outcome::Success => PamResultCode::PAM_SUCCESS,
        Outcome::Ignore => PamResultCode::PAM_IGNORE,
        Outcome::Deny => PamResultCode::PAM_AUTH_ERR,
    }
}

fn parse_args(args: &[&CStr]) -> Result<Vec<String>, String> {
    args.iter()
        .map(|a| {
            a.to_str()
                .map(str::to_owned)
                .map_err(|_| "a module argument is not UTF-8".to_string())
        })
        .collect()
}

fn lossy(value: &CStr) -> String {
    String::from_utf8_lossy(value.to_bytes()).into_owned()
}

/// PAM's conversation as an [`crate::login::Conversation`].
struct PamConversation<'a>(Conv<'a>);

impl Conversation for PamConversation<'_> {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        self.ask(prompt, false)
    }

    fn ask(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        let style = if echo {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        match self.0.send(style, prompt) {
            Ok(Some(answer)) => Ok(Zeroizing::new(answer.as_bytes().to_vec())),
            Ok(None) => Err(ConversationError("empty response".into())),
            Err(code) => Err(ConversationError(format!("PAM code {}", code as i32))),
        }
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.0
            .send(PAM_TEXT_INFO, text)
            .map(|_| ())
            .map_err(|code| ConversationError(format!("PAM code {}", code as i32)))
    }
}

unsafe extern "C" {
    /// `void pam_syslog(const pam_handle_t *pamh, int priority, const char *fmt, ...)`
    /// from libpam: logs to LOG_AUTHPRIV with the `pam_ecs_mfa(service:auth):` prefix.
    fn pam_syslog(pamh: *const PamHandle, priority: libc::c_int, fmt: *const libc::c_char, ...);
    /// `const char *pam_getenv(pam_handle_t *pamh, const char *name)` from libpam: the value
    /// of `name` in the PAM environment, or NULL. The string belongs to the handle.
    fn pam_getenv(pamh: *const PamHandle, name: *const libc::c_char) -> *const libc::c_char;
    /// `int pam_set_item(pam_handle_t *pamh, int item_type, const void *item)` from libpam;
    /// for PAM_AUTHTOK it copies the string (and wipes the old copy).
    fn pam_set_item(
        pamh: *mut PamHandle,
        item_type: libc::c_int,
        item: *const libc::c_void,
    ) -> libc::c_int;
}

/// `PAM_AUTHTOK` in `<security/_pam_types.h>`.
const PAM_AUTHTOK: libc::c_int = 6;

/// Sets `PAM_AUTHTOK` (a copy is made by libpam; our buffer is wiped). A token with a NUL byte
/// cannot be a C string: it is refused (`PAM_AUTHTOK_ERR`, 20).
fn set_authtok(pamh: &mut PamHandle, token: &[u8]) -> Result<(), i32> {
    if token.contains(&0) {
        return Err(20);
    }
    let mut buffer = Zeroizing::new(Vec::with_capacity(token.len() + 1));
    buffer.extend_from_slice(token);
    buffer.push(0);
    // SAFETY: `pamh` is the live handle PAM passed to this hook; `buffer` is NUL-terminated,
    // has no interior NUL, and outlives the call; libpam copies string items before returning.
    let code = unsafe { pam_set_item(pamh, PAM_AUTHTOK, buffer.as_ptr().cast()) };
    if code == 0 { Ok(()) } else { Err(code) }
}

/// A variable of the PAM environment (where sshd puts `SSH_AUTH_INFO_0`), copied; `None`
/// when it is not set. Not UTF-8 bytes are replaced (it is only matched against ASCII).
fn pam_env(pamh: &PamHandle, name: &CStr) -> Option<String> {
    // SAFETY: `pamh` is the live handle PAM passed to this hook and `name` is NUL-terminated.
    // libpam returns NULL or a NUL-terminated string owned by the handle that stays valid until
    // the environment changes; it is copied before any other PAM call.
    unsafe {
        let value = pam_getenv(pamh, name.as_ptr());
        (!value.is_null()).then(|| lossy(CStr::from_ptr(value)))
    }
}

/// Writes one line through `pam_syslog`. A logging failure never changes the result.
fn log(pamh: &PamHandle, severity: Severity, message: &str) {
    let priority = match severity {
        Severity::Info => libc::LOG_INFO,
        Severity::Notice => libc::LOG_NOTICE,
        Severity::Error => libc::LOG_ERR,
    };
    let Ok(text) = CString::new(message.replace('\0', "?")) else {
        return;
    };
    // SAFETY: `pamh` is the live handle PAM passed to this hook; the format is the literal
    // "%s" with exactly one matching NUL-terminated string argument that outlives the call.
    unsafe {
        pam_syslog(pamh, priority, c"%s".as_ptr(), text.as_ptr());
    }
}

thread_local! {
    /// True while this thread runs inside one of our hooks.
    static IN_MODULE: Cell<bool> = const { Cell::new(false) };
}

/// Replaces the process's panic hook once with one that stays silent for panics inside this
/// module (they are caught and logged through syslog) and defers to the previous hook for
/// everything else, so a Rust host program keeps its own behaviour.
fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = IN_MODULE.try_with(Cell::get).unwrap_or(false);
            if !inside {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_the_hook_becomes_a_denial() {
        assert_eq!(deny_on_panic(|| panic!("boom")), None);
        assert_eq!(
            deny_on_panic(|| PamResultCode::PAM_SUCCESS),
            Some(PamResultCode::PAM_SUCCESS)
        );
        // The flag is reset, so panics outside the module reach the previous hook again.
        assert!(!IN_MODULE.with(Cell::get));
    }

    #[test]
    fn only_a_verified_code_maps_to_success() {
        use crate::decision::Reason::*;
        assert_eq!(pam_code(&Decision::success(0)), PamResultCode::PAM_SUCCESS);
        assert_eq!(
            pam_code(&Decision::ignore(NotEnrolled)),
            PamResultCode::PAM_IGNORE
        );
        for reason in crate::decision::Reason::ALL {
            assert_eq!(
                pam_code(&Decision::deny(reason)),
                PamResultCode::PAM_AUTH_ERR,
                "{reason:?}"
            );
        }
    }
}
