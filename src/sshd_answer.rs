//! Who put sshd's fixed bad string into an answer: sshd, or the client.
//!
//! OpenSSH (auth-pam.c, `fake_password()`) replaces what the client typed with
//! `"\b\n\r\177INCORRECT"` (cut or repeated to the typed length) only when it will refuse the
//! login whatever PAM says: for root when `PermitRootLogin` is not `yes`, and for an account
//! it considers invalid. Such an answer is denied without counting a failure (the user typed
//! something we never saw). But any client can type that string itself: for an account NSS
//! knows with a uid other than 0 it is then an ordinary wrong answer, counted like any other.
//!
//! Known limit: sshd also calls an account invalid when it exists but sshd refuses it
//! (`DenyUsers`, `AllowUsers`, `AllowGroups`, `DenyGroups`, a missing shell, an expired
//! account). Its answers are then replaced too, and counted as failures here: the same as any
//! wrong code typed for an account that may log in through another service with this module.
#![forbid(unsafe_code)]

/// Whether sshd may have replaced the answer of `user` (the PAM user name, which NSS already
/// resolved to an existing account): root, or an account NSS cannot tell us about now (kept on
/// the not-counted side: a failure must never be charged for what sshd may have changed).
pub fn sshd_may_replace(user: &str) -> bool {
    may_replace_for_uid(
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|account| account.uid.as_raw()),
    )
}

/// [`sshd_may_replace`] for the account's uid (`None`: unknown).
fn may_replace_for_uid(uid: Option<u32>) -> bool {
    uid.is_none_or(|uid| uid == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_or_an_unknown_account_may_have_its_answer_replaced_by_sshd() {
        assert!(may_replace_for_uid(Some(0)));
        assert!(may_replace_for_uid(None));
        assert!(!may_replace_for_uid(Some(1000)));
        assert!(sshd_may_replace("root"));
        assert!(sshd_may_replace("no-such-account-ecs-mfa"));
        // Every Linux system has a non-root system account named daemon or nobody.
        assert!(!sshd_may_replace("nobody") || !sshd_may_replace("daemon"));
    }
}
