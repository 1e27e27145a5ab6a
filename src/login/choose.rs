//! Which of an account's tokens a login may use: the SSH key chooses (shared accounts, see
//! `crate::store::account`). Only the chosen token's code is accepted and only its state is
//! touched, so one attempt is always one guess against one token.
//!
//! 1. A key bound to a token chooses that token (a key is bound to at most one token of an
//!    account).
//! 2. Otherwise the account's unbound token (at most one), if `key_binding` allows it: always
//!    when the account has no bound token (every record before shared accounts) unless
//!    `"required"`; on an account with bound tokens only with `"fallback"`, and only when it
//!    is the account's own token (not a person's that lost its last key).
//! 3. Otherwise none: the login is denied (`reason=unbound_key`), or a new person enrolls
//!    (enrollment at login).
#![forbid(unsafe_code)]

use crate::decision::{Decision, Reason};
use crate::policy::KeyBinding;
use crate::state::Owner;
use crate::store::{AccountRecord, UserRecord};
use crate::user_name::Person;

/// What chooses the token: the key sshd accepted (if any) and the `key_binding` rule. Kept
/// by a backend from the read before the prompt to the settle after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chooser {
    /// `SHA256:` fingerprint of the accepted key (a certificate: of the key it certifies).
    pub key: Option<String>,
    /// `key_binding`.
    pub binding: KeyBinding,
    /// `mfa-enroll verify --person`: this person's token, whatever the key (never set by the
    /// module: a login is chosen by its key).
    pub person: Option<Person>,
}

/// The choice for one account.
#[derive(Debug)]
pub enum Choice<'r> {
    /// This token.
    Token(&'r UserRecord),
    /// The account is enrolled, but no token is for this key.
    Unbound,
}

impl Chooser {
    /// The token for this login on `account` (see the module doc).
    pub fn choose<'r>(&self, account: &'r AccountRecord) -> Choice<'r> {
        if let Some(person) = &self.person {
            let person = Some(person).filter(|p| p.as_str() != account.user.as_str());
            return account.token(person).map_or(Choice::Unbound, Choice::Token);
        }
        if let Some(token) = self.key.as_deref().and_then(|key| account.bound_to(key)) {
            return Choice::Token(token);
        }
        let unbound = account.unbound();
        let unbound_allowed = match self.binding {
            KeyBinding::IfBound => !account.has_bound_tokens(),
            // The old shared token (the account's own) while people are bound one by one;
            // never a person's token that lost its last key: their phone would answer for
            // every key bound to nobody.
            KeyBinding::Fallback => {
                !account.has_bound_tokens() || unbound.is_some_and(|t| t.person.is_none())
            }
            KeyBinding::Required => false,
        };
        match unbound {
            Some(token) if unbound_allowed => Choice::Token(token),
            _ => Choice::Unbound,
        }
    }

    /// After the prompt, on the record as it is now: the token of `owner` if this login
    /// still chooses it; else the denial (an administrator moved the key, removed the person
    /// or reset the record while the code was being typed).
    pub fn again<'r>(
        &self,
        account: &'r AccountRecord,
        owner: &Owner,
    ) -> Result<&'r UserRecord, Decision> {
        match self.choose(account) {
            Choice::Token(token) if token.owner() == *owner => Ok(token),
            _ => Err(Decision::deny(Reason::NotEnrolled).with_detail(
                "the token of this key changed while the code was being typed (a person or \
                 key removed or moved); log in again",
            )),
        }
    }

    /// The denial for [`Choice::Unbound`].
    pub fn unbound_denial(&self) -> Decision {
        let key = self.key.as_deref().unwrap_or("none");
        Decision::deny(Reason::UnboundKey).with_detail(format!(
            "key {key} is bound to no token of this account and key_binding={} gives it none \
             (mfa-enroll enroll --user USER --person NAME --key KEY binds one)",
            self.binding.as_str()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::Origin;
    use crate::totp::{SecretKey, TotpParams};
    use crate::user_name::UserName;

    const ALICE_KEY: &str = "SHA256:aliceAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const BOB_KEY: &str = "SHA256:bobBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    const OTHER_KEY: &str = "SHA256:otherCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC";

    fn token(person: Option<&str>, keys: &[&str]) -> UserRecord {
        UserRecord {
            user: UserName::parse("root").unwrap(),
            person: person.map(|p| Person::parse(p).unwrap()),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            secret: SecretKey::from_bytes(vec![3; 20]).unwrap(),
            params: TotpParams::default(),
            created: 1,
            issuer: "t".into(),
            recovery_codes: vec![],
            origin: Origin::Admin,
            hotp: None,
            generation: 0,
        }
    }

    fn account(tokens: Vec<UserRecord>) -> AccountRecord {
        let mut account = AccountRecord::single(tokens[0].clone());
        for t in tokens.into_iter().skip(1) {
            account.put(t).unwrap();
        }
        account
    }

    fn chosen(chooser: &Chooser, account: &AccountRecord) -> Option<String> {
        match chooser.choose(account) {
            Choice::Token(t) => Some(t.person_name().to_string()),
            Choice::Unbound => None,
        }
    }

    fn with(key: Option<&str>, binding: KeyBinding) -> Chooser {
        Chooser {
            key: key.map(str::to_string),
            binding,
            person: None,
        }
    }

    #[test]
    fn an_account_with_one_unbound_token_works_as_before_unless_binding_is_required() {
        let acc = account(vec![token(None, &[])]);
        for key in [None, Some(OTHER_KEY)] {
            assert_eq!(
                chosen(&with(key, KeyBinding::IfBound), &acc).as_deref(),
                Some("root")
            );
            assert_eq!(
                chosen(&with(key, KeyBinding::Fallback), &acc).as_deref(),
                Some("root")
            );
            assert_eq!(chosen(&with(key, KeyBinding::Required), &acc), None);
        }
    }

    #[test]
    fn a_bound_key_chooses_its_token_and_only_it() {
        let acc = account(vec![
            token(None, &[]),
            token(Some("alice"), &[ALICE_KEY]),
            token(Some("bob"), &[BOB_KEY, "SHA256:bob2"]),
        ]);
        for binding in [
            KeyBinding::IfBound,
            KeyBinding::Fallback,
            KeyBinding::Required,
        ] {
            assert_eq!(
                chosen(&with(Some(ALICE_KEY), binding), &acc).as_deref(),
                Some("alice")
            );
            assert_eq!(
                chosen(&with(Some("SHA256:bob2"), binding), &acc).as_deref(),
                Some("bob")
            );
        }
        // A key bound to nobody: only "fallback" gives it the account's unbound token.
        assert_eq!(
            chosen(&with(Some(OTHER_KEY), KeyBinding::IfBound), &acc),
            None
        );
        assert_eq!(chosen(&with(None, KeyBinding::IfBound), &acc), None);
        assert_eq!(
            chosen(&with(Some(OTHER_KEY), KeyBinding::Fallback), &acc).as_deref(),
            Some("root")
        );
        assert_eq!(
            chosen(&with(Some(OTHER_KEY), KeyBinding::Required), &acc),
            None
        );
        // A person's token left with no key is nobody's fallback.
        let acc = account(vec![
            token(Some("alice"), &[]),
            token(Some("bob"), &[BOB_KEY]),
        ]);
        assert_eq!(
            chosen(&with(Some(OTHER_KEY), KeyBinding::Fallback), &acc),
            None
        );
        // Unless no token is bound at all (then it is the account's only token, as before).
        let acc = account(vec![token(Some("alice"), &[])]);
        assert_eq!(
            chosen(&with(Some(OTHER_KEY), KeyBinding::Fallback), &acc).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn the_settle_refuses_a_token_the_key_no_longer_chooses() {
        let before = account(vec![
            token(Some("alice"), &[ALICE_KEY]),
            token(Some("bob"), &[BOB_KEY]),
        ]);
        let chooser = with(Some(ALICE_KEY), KeyBinding::IfBound);
        let Choice::Token(alice) = chooser.choose(&before) else {
            panic!("alice chosen")
        };
        let owner = alice.owner();
        assert!(chooser.again(&before, &owner).is_ok());
        // The key moved to bob meanwhile.
        let moved = account(vec![
            token(Some("alice"), &["SHA256:new"]),
            token(Some("bob"), &[BOB_KEY, ALICE_KEY]),
        ]);
        let denial = chooser.again(&moved, &owner).unwrap_err();
        assert_eq!(denial.reason, Reason::NotEnrolled);
    }
}
