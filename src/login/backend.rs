//! The seam between the login sequence (`super::flow`) and where records and login state live:
//! what a login needs from storage, and nothing else. Two implementations: local files
//! (`super::files`) and the fleet (`super::etcd`, with its offline fallback to the local
//! copy). Which one a login uses is chosen once, in [`super::choose_backend`].
//!
//! A backend object lives for one login (or one `pam_sm_setcred`): what it read before the
//! prompt (the fleet's revisions) stays inside it until it settles.
#![forbid(unsafe_code)]

use std::time::Instant;

use super::choose::Chooser;
use super::grace::{Key, PendingGrace};
use crate::decision::Decision;
use crate::state::{FileStateStore, Owner, UserState};
use crate::store::{Store, UserRecord};
use crate::user_name::UserName;

/// What a login needs from storage.
pub trait Backend {
    /// Before the prompt: `user`'s record, the token `chooser` picks from it (shared accounts:
    /// see `super::choose`) and that token's login state, as they are now. The backend keeps
    /// `chooser` for the settle. `Err` is the denial (the flow asks for a code first, so the
    /// client learns nothing).
    fn read(&mut self, user: &UserName, chooser: &Chooser) -> Result<Before, Decision>;

    /// A grace check at `now` in `owner`'s state as read (see `super::grace::use_grace`): the
    /// grace used, if this login is spared the code. Deferred keys take the mark out for good.
    fn take_grace(&mut self, owner: &Owner, key: Key, now: u64) -> Option<PendingGrace>;

    /// After the answer: the decision on the record and `owner`'s state as they are *now*
    /// (under the token's state lock, or by compare-and-swap on what was read, deciding again
    /// on newer values; the key must still choose `owner`'s token), saved with the state it
    /// leaves, and the grace grant of `grace`. Recovery-shaped answers run Argon2 before the
    /// lock and are paced after it.
    fn settle(&mut self, owner: &Owner, answer: &[u8], now: u64, grace: Option<Key>) -> Decision;

    /// Where an enrollment at the first login is created, if this backend allows one (local
    /// files only: fleet records are written by administrators).
    fn enrollment_store(&self) -> Option<(&Store, &FileStateStore)>;

    /// `pam_sm_setcred`: writes a pending grace grant at `now`. `login_started`: when the
    /// authentication began (the fleet gives the commit only what is left of the login's etcd
    /// time, 2 x `timeout_ms`).
    fn commit_grace(
        &mut self,
        owner: &Owner,
        pending: PendingGrace,
        now: u64,
        login_started: Instant,
    ) -> Result<(), String>;
}

/// A user's enrollment and login state as read before the prompt.
pub struct Before {
    /// The chosen token; `None`: not enrolled (nullok and enrollment at login may apply), or
    /// `unbound`.
    pub record: Option<UserRecord>,
    /// The account is enrolled but no token is for this login's key (`super::choose`).
    pub unbound: bool,
    /// A shared account (several tokens, or one bound to keys): the audit line names the key
    /// that chose the token, also when it is the account's own token (`key_binding =
    /// "fallback"`: who used the old shared token is what a migration needs to know).
    pub shared: bool,
    /// The token's login state (read only where the prompt needs it: `try_first_pass`).
    pub state: UserState,
    /// For the audit line when the decision has no detail of its own (the fleet's local copy
    /// could not be refreshed; etcd unreachable and the local copy used).
    pub note: Option<String>,
}
