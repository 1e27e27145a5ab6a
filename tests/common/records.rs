//! Records built in memory for tests that write hostile or oversized shared-account files.

use pam_ecs_mfa::store::record::{Origin, UserRecord};
use pam_ecs_mfa::totp::{SecretKey, TotpParams};
use pam_ecs_mfa::user_name::{Person, UserName};

/// A TOTP token of `person` on the account `user`, bound to `keys`.
pub fn token(user: &str, person: &str, keys: Vec<String>, secret: &SecretKey) -> UserRecord {
    UserRecord {
        user: UserName::parse(user).unwrap(),
        person: Some(Person::parse(person).unwrap()),
        keys,
        secret: secret.clone(),
        params: TotpParams::default(),
        created: 1,
        issuer: "t".into(),
        recovery_codes: vec![],
        origin: Origin::Admin,
        hotp: None,
        generation: 1,
    }
}
