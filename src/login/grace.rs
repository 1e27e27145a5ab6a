//! `grace_seconds`: after an accepted code, the next logins of the same user from the same
//! client (service, address, SSH key, requesting user) on the same server (or fleet) skip the
//! code for a while. The one home of the concept: the digest, the check, the grant, and the
//! deferred grant of password stacks.
//!
//! **When the grant is made.** The module can only grant grace for a login that succeeded as
//! a whole. When no password module is involved (`pass = prompt` and no earlier module left a
//! password in `PAM_AUTHTOK`: sshd's key + code stacks), the module's code is the last factor
//! and the grant is written with the decision. Otherwise a password module decides after,
//! before (with `required` the stack goes on after its failure) or independently of the
//! module, and a wrong password with the right code must not start a grace period: the grant is
//! *pending*, kept in the PAM handle (`pam_set_data`), and written only by
//! `pam_sm_setcred(PAM_ESTABLISH_CRED)`, which applications call only after the whole
//! authentication succeeded. A grace login in those modes takes the mark out of the state and
//! the same setcred puts it back (same end, never extended): a wrong password during a grace
//! period ends it. Applications that authenticate in one process and establish credentials in
//! another (sshd's keyboard-interactive method runs PAM in a child process) never commit: such
//! stacks get no grace, which is the safe side.
#![forbid(unsafe_code)]

use sha2::Digest;

use super::attempt::{Attempt, host_identity};
pub use crate::decision::PendingGrace;
use crate::decision::{Decision, Outcome, Reason};
use crate::policy::{PassMode, Policy};
use crate::state::{Owner, UserState};

/// The grace digest of a login and whether its grant waits for `pam_sm_setcred`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The digest ([`grace_id`]).
    pub id: u64,
    /// A password module is involved: grants wait for setcred, grace logins take the mark.
    pub deferred: bool,
}

/// The digest of this login for `grace_seconds`, `None` when grace is off: the scope (this
/// host's name and machine id, or the whole fleet with `grace_scope = "fleet"`), the account,
/// the PAM service, the requesting user (`PAM_RUSER`: who ran `su`), the client address
/// (`PAM_RHOST`, empty for local services) and the SSH key's fingerprint when sshd reports one
/// (`SSH_AUTH_INFO_0`; absent for password logins, which are then keyed on the rest).
pub fn grace_id(policy: &Policy, owner: &Owner, attempt: &Attempt<'_>) -> Option<Key> {
    let grace = policy.grace?;
    let key = attempt.accepted_key().unwrap_or_default();
    let scope = if grace.fleet_wide {
        "fleet"
    } else {
        host_identity()
    };
    let mut digest = sha2::Sha256::new().chain_update(b"ecs-mfa grace v2\0");
    // The account (`<user>`), or the person's token on it (`<user>~<person>`).
    let token = owner.stem();
    for part in [
        scope,
        token.as_str(),
        attempt.service.unwrap_or(""),
        attempt.ruser.unwrap_or(""),
        attempt.rhost.unwrap_or(""),
        key,
    ] {
        digest.update(part.as_bytes());
        digest.update(b"\0");
    }
    let digest = digest.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    Some(Key {
        id: u64::from_be_bytes(id).max(1),
        deferred: policy.pass != PassMode::Prompt || attempt.earlier_password,
    })
}

/// Whether a grace period spares this login the code: one was granted for this digest and has
/// not ended, and there has been no failure and no lockout since (a failure ends them all). A
/// mark that ends further than `grace_seconds` from now was not written by a login of this
/// policy (a forged or clock-skewed state): it is ignored.
pub fn in_grace(policy: &Policy, st: &UserState, id: u64, now: u64) -> bool {
    let max = policy.grace.map_or(0, |g| g.seconds);
    st.failures == 0 && st.locked_for(now).is_none() && st.grace.covers(id, now, max)
}

/// Whether the grace of this policy is decided after the answer arrives (`forward_pass`: the
/// prompt is shown in any case, for the password; a prompt left open must not outlive the
/// grace, and an unanswered one must not end it).
pub fn after_the_answer(policy: &Policy) -> bool {
    policy.pass == PassMode::Forward
}

/// A grace check before the prompt, in the state `st` (under the user's lock or in the
/// compare-and-swap): `Some` when this login is spared the code. In the deferred modes the
/// mark is taken out (a wrong password then ends the grace) and comes back as the pending
/// grant of the returned success.
pub fn use_grace(policy: &Policy, key: Key, now: u64, st: &mut UserState) -> Option<PendingGrace> {
    let id = key.id;
    if !in_grace(policy, st, id, now) {
        return None;
    }
    let until = st.grace.until(id).unwrap_or(now);
    if key.deferred {
        st.grace.remove(id);
    }
    Some(PendingGrace { id, until })
}

/// After a decision: starts the grace period of this login's digest when a code (or recovery
/// code) was accepted, at once (`pass = prompt`), or as a pending grant on the decision that
/// `pam_sm_setcred` writes (the other modes).
pub fn grant(
    policy: &Policy,
    key: Option<Key>,
    decision: &mut Decision,
    now: u64,
    st: &mut UserState,
) {
    let (Some(g), Some(key)) = (policy.grace, key) else {
        return;
    };
    if decision.outcome != Outcome::Success {
        return;
    }
    let until = now.saturating_add(g.seconds);
    if key.deferred {
        decision.grace_pending = Some(Box::new(PendingGrace { id: key.id, until }));
    } else {
        st.grace.grant(key.id, until, now);
    }
}

/// Writes a pending grant into `st` (`pam_sm_setcred`): never beyond its original end, never
/// over a failure or lockout recorded since the code was accepted.
pub fn commit(pending: PendingGrace, now: u64, st: &mut UserState) {
    if pending.until > now && st.failures == 0 && st.locked_for(now).is_none() {
        st.grace.grant(pending.id, pending.until, now);
    }
}

/// The success of a login in a grace period. With `forward_pass` the answer was read first
/// (the password went on to the next module; a code at its end is ignored). The detail says
/// what the grace was keyed on for *this* login; a deferred key's mark comes back only through
/// `pam_sm_setcred`.
pub fn success(key: Key, attempt: &Attempt<'_>, used: PendingGrace) -> Decision {
    let mut d = Decision::new_success(Reason::Grace).with_detail(format!(
        "grace_seconds: a code was accepted for this user recently from {}, with no failure \
         since",
        keyed_on(attempt)
    ));
    if key.deferred {
        d.grace_pending = Some(Box::new(used));
    }
    d
}

/// What the digest of `attempt` covers, in words for the audit line.
fn keyed_on(attempt: &Attempt<'_>) -> String {
    let service = attempt.service.unwrap_or("this service");
    let place = match attempt.rhost {
        Some(host) if !host.is_empty() => "this client address".to_string(),
        _ => "this terminal's service (no client address)".to_string(),
    };
    let key = match attempt.accepted_key() {
        Some(_) => " and SSH key",
        None => " (no SSH key: a password login is keyed on the address alone)",
    };
    let ruser = match attempt.ruser {
        Some(r) if !r.is_empty() => " for the same requesting user",
        _ => "",
    };
    format!(
        "{place}{key}{ruser} through {}",
        crate::text::ascii_printable(service, 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::GracePolicy;

    /// A key whose grant is written at once, and one that waits for setcred.
    const NOW_KEY: Key = Key {
        id: 7,
        deferred: false,
    };
    const LATER_KEY: Key = Key {
        id: 7,
        deferred: true,
    };

    fn policy(pass: PassMode) -> Policy {
        Policy {
            grace: Some(GracePolicy {
                seconds: 600,
                fleet_wide: false,
            }),
            pass,
            ..Policy::default()
        }
    }

    fn id(attempt: &Attempt<'_>) -> u64 {
        grace_id(
            &policy(PassMode::Prompt),
            &Owner::account(&crate::user_name::UserName::parse("alice").unwrap()),
            attempt,
        )
        .unwrap()
        .id
    }

    #[test]
    fn the_digest_differs_by_service_requesting_user_address_and_key() {
        let base = Attempt {
            service: Some("sshd"),
            rhost: Some("192.0.2.1"),
            ..Attempt::user("alice")
        };
        let other_service = Attempt {
            service: Some("su"),
            ..base
        };
        let other_ruser = Attempt {
            ruser: Some("mallory"),
            ..base
        };
        let other_host = Attempt {
            rhost: Some("192.0.2.2"),
            ..base
        };
        let info = crate::ssh_auth_info::SshAuthInfo::parse(
            "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3",
        );
        let with_key = Attempt {
            ssh_auth_info: Some(&info),
            ..base
        };
        let ids = [
            id(&base),
            id(&other_service),
            id(&other_ruser),
            id(&other_host),
            id(&with_key),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn with_a_password_module_the_grant_waits_for_setcred_and_a_grace_login_takes_the_mark() {
        let now = 1_000_000;
        let mut st = UserState::default();
        // prompt: written at once.
        let mut d = Decision::success(0);
        grant(
            &policy(PassMode::Prompt),
            Some(NOW_KEY),
            &mut d,
            now,
            &mut st,
        );
        assert!(st.grace.covers(7, now + 1, 600) && d.grace_pending.is_none());
        // forward_pass: pending only.
        let mut st = UserState::default();
        let mut d = Decision::success(0);
        let fwd = policy(PassMode::Forward);
        grant(&fwd, Some(LATER_KEY), &mut d, now, &mut st);
        assert!(!st.grace.covers(7, now + 1, 600));
        let pending = *d.grace_pending.unwrap();
        assert_eq!(pending.until, now + 600);
        commit(pending, now + 1, &mut st);
        assert!(st.grace.covers(7, now + 2, 600));
        // A grace login takes the mark out; without setcred (a wrong password) it is gone.
        let used = use_grace(&fwd, LATER_KEY, now + 10, &mut st).unwrap();
        assert!(!st.grace.covers(7, now + 11, 600));
        assert_eq!(used.until, now + 600, "never extended");
        // setcred puts it back with the same end.
        commit(used, now + 11, &mut st);
        assert!(st.grace.covers(7, now + 12, 600) && !st.grace.covers(7, now + 600, 600));
        // A failure recorded meanwhile wins over a pending grant.
        st.failures = 1;
        let mut st2 = st;
        st2.grace.clear();
        commit(used, now + 12, &mut st2);
        assert!(!st2.grace.covers(7, now + 13, 600));
    }

    #[test]
    fn a_password_left_by_an_earlier_module_defers_the_grant_in_prompt_mode() {
        let alice = Owner::account(&crate::user_name::UserName::parse("alice").unwrap());
        let key = |earlier_password| {
            grace_id(
                &policy(PassMode::Prompt),
                &alice,
                &Attempt {
                    earlier_password,
                    ..Attempt::user("alice")
                },
            )
            .unwrap()
        };
        assert!(
            !key(false).deferred,
            "key + code: written with the decision"
        );
        assert!(
            key(true).deferred,
            "pam_unix ran before: its verdict is unknown here"
        );
        assert_eq!(key(false).id, key(true).id);
    }

    #[test]
    fn a_failed_decision_grants_nothing() {
        let mut st = UserState::default();
        let mut d = Decision::deny(Reason::BadCode);
        grant(
            &policy(PassMode::Forward),
            Some(LATER_KEY),
            &mut d,
            5,
            &mut st,
        );
        assert!(d.grace_pending.is_none());
        grant(&policy(PassMode::Prompt), Some(NOW_KEY), &mut d, 5, &mut st);
        assert!(!st.grace.covers(7, 6, 600));
    }
}
