//! The whole login, independent of PAM: one sequence ([`flow`]) over one storage seam
//! ([`backend::Backend`]: local files in [`files`], etcd with its offline fallback in
//! [`etcd`]), chosen once by [`choose_backend`].
//!
//! Order of events, and why (`flow.rs` follows it step by step):
//! 0. With `first_factor=publickey`, sshd must report an accepted SSH key for this connection
//!    (`SSH_AUTH_INFO_0`); otherwise deny at once, before any prompt, `nullok` or exemption:
//!    a key + code stack has no password module, so without a key the code alone would log in.
//! 1. The user name is validated before it touches any path, then turned into the account NSS
//!    names (every spelling of an account is that account).
//! 2. Exemptions (`exempt_*`, `require_groups`).
//!    Automation keys (`automation_keys`) are exempt here too, by the key sshd accepted.
//! 3. The record, the token the SSH key chooses on it ([`choose`]: shared accounts have a
//!    token per person) and that token's state, as they are before the prompt
//!    (`Backend::read`). A key no token is for is denied (`unbound_key`) after a prompt, or
//!    enrolls a new person at this login. Unenrolled users
//!    may enroll at this login ([`enrollment`]), get `Ignore` under `nullok` (no prompt), or
//!    are prompted and denied like a wrong code (no enumeration). An enrollment that exists but
//!    is unusable always denies: `nullok` never turns a broken file into a pass.
//! 4. Grace ([`grace`]): before the prompt, or after the answer with `forward_pass`.
//! 5. The code is asked for (or taken from `PAM_AUTHTOK`: [`conversation`]) *before* any
//!    lock, so a user typing slowly never blocks another login, and the clock is read when the
//!    answer arrives. An answer sshd replaced with its fixed bad string is denied, not counted.
//! 6. Settle (`Backend::settle`): under the user's lock (files) or by compare-and-swap (etcd),
//!    the record as it is *now*, then lockout, verification ([`verify`]), replay check, state
//!    update and the grace grant. The decision stands only if the new state was saved.
#![forbid(unsafe_code)]

pub mod attempt;
pub mod backend;
pub mod choose;
pub mod conversation;
pub mod enrollment;
pub mod etcd;
pub mod files;
pub mod flow;
pub mod grace;
pub mod verify;

#[cfg(test)]
mod tests;

pub use attempt::{Attempt, Clock};
pub use backend::Backend;
pub use conversation::{Conversation, ConversationError};
pub use flow::{Finished, Login, deny_unreadable_user};

use crate::fleet::transport::Connector;
use crate::policy::Policy;

/// The backend `policy` names: the one place a login (and `pam_sm_setcred`, and
/// `mfa-enroll verify`) chooses between local files and the fleet. `connect`: how a fleet login
/// reaches etcd (the module loads `libecs_mfa_etcd.so`; mfa-enroll and tests link the client).
pub fn choose_backend<'a>(policy: &'a Policy, connect: Connector) -> Box<dyn Backend + 'a> {
    match &policy.fleet {
        None => Box::new(files::Files::new(policy)),
        Some(config) => Box::new(etcd::Etcd::new(policy, config, connect)),
    }
}
