use super::*;
use crate::store::record::Origin;
use crate::totp::{SecretKey, TotpParams};

const ALICE_KEY: &str = "SHA256:aliceAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const BOB_KEY: &str = "SHA256:bobBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

fn root() -> UserName {
    UserName::parse("root").unwrap()
}

fn token(person: Option<&str>, keys: &[&str], seed: u8) -> UserRecord {
    UserRecord {
        user: root(),
        person: person.map(|p| Person::parse(p).unwrap()),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        secret: SecretKey::from_bytes(vec![seed; 20]).unwrap(),
        params: TotpParams::default(),
        created: 1_764_300_000,
        issuer: "web-01".into(),
        recovery_codes: vec![],
        origin: Origin::Admin,
        hotp: None,
        generation: 0,
    }
}

fn shared() -> AccountRecord {
    let mut account = AccountRecord::single(token(None, &[], 1));
    account.put(token(Some("alice"), &[ALICE_KEY], 2)).unwrap();
    account.put(token(Some("bob"), &[BOB_KEY], 3)).unwrap();
    account.set_generation(4);
    account
}

#[test]
fn a_format_1_record_reads_as_one_unbound_token_and_is_written_back_byte_for_byte() {
    // What the release before shared accounts wrote (tests/fixtures has a file of it too).
    let v1 = "# ecs-mfa enrollment record. Managed by mfa-enroll; do not edit.\n\
              version = 1\nuser = \"root\"\nsecret = \"AEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIB\"\n\
              algorithm = \"SHA1\"\ndigits = 6\nperiod = 30\ncreated = 1764300000\n\
              issuer = \"web-01\"\nrecovery_codes = []\ngeneration = 3\nenrolled_by = \"admin\"\n";
    let account = AccountRecord::parse(v1.as_bytes(), &root()).unwrap();
    assert_eq!(account.tokens.len(), 1);
    let only = &account.tokens[0];
    assert_eq!((only.person.as_ref(), only.keys.len()), (None, 0));
    assert_eq!(account.generation, 3);
    assert!(account.fits_format_1());
    assert_eq!(account.to_toml().unwrap().as_str(), v1);
}

#[test]
fn a_shared_record_round_trips_through_format_2() {
    let account = shared();
    let text = account.to_toml().unwrap();
    assert!(text.contains("version = 2\n") && text.contains("[[token]]\nperson = \"alice\"\n"));
    assert!(
        text.contains("person = \"root\"\nkeys = []"),
        "{}",
        text.as_str()
    );
    assert_eq!(
        AccountRecord::parse(text.as_bytes(), &root()).unwrap(),
        account
    );
    // One token bound to a key no longer fits format 1.
    let mut bound = AccountRecord::single(token(None, &[ALICE_KEY], 1));
    bound.set_generation(0);
    let text = bound.to_toml().unwrap();
    assert!(text.contains("version = 2\n"));
    assert_eq!(
        AccountRecord::parse(text.as_bytes(), &root()).unwrap(),
        bound
    );
}

#[test]
fn the_rules_of_a_shared_account_hold_on_write_and_on_read() {
    let mut account = shared();
    // A key bound to two people.
    let err = account
        .put(token(Some("carol"), &[ALICE_KEY], 5))
        .unwrap_err();
    assert!(
        err.to_string().contains("bound to both alice and carol"),
        "{err}"
    );
    // A second unbound token.
    let err = account.put(token(Some("carol"), &[], 5)).unwrap_err();
    assert!(err.to_string().contains("bound to no key"), "{err}");
    assert_eq!(account, shared(), "a refused put changes nothing");
    // The same in a file written by hand (or by an attacker): refused when read.
    let text = shared().to_toml().unwrap();
    let dup_key = text.replace(BOB_KEY, ALICE_KEY);
    let dup_person = text.replace("person = \"bob\"", "person = \"alice\"");
    let two_unbound = text.replace(&format!("keys = [\"{BOB_KEY}\"]"), "keys = []");
    for (bad, why) in [
        (dup_key, "bound to both"),
        (dup_person, "two tokens of alice"),
        (two_unbound, "bound to no key"),
    ] {
        let err = AccountRecord::parse(bad.as_bytes(), &root()).unwrap_err();
        assert!(err.to_string().contains(why), "{err}");
        assert!(!err.to_string().contains("AEAQ"), "no secret in {err}");
    }
}

#[test]
fn hostile_person_names_and_keys_are_refused_and_never_quoted() {
    let text = shared().to_toml().unwrap();
    for (from, to) in [
        ("person = \"bob\"", "person = \"bob\\u001b[31m\""),
        (
            "person = \"bob\"",
            "person = \"bob\\nuser=admin result=success\"",
        ),
        ("person = \"bob\"", "person = \"../../etc\""),
        ("person = \"bob\"", "person = \"\""),
        (BOB_KEY, "SHA256:bad key"),
        (BOB_KEY, "MD5:aa:bb"),
    ] {
        let bad = text.replace(from, to);
        assert_ne!(bad, *text, "{to}");
        let err = AccountRecord::parse(bad.as_bytes(), &root()).unwrap_err();
        let shown = err.to_string();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown:?}"
        );
        assert!(!shown.contains("admin result"), "{shown:?}");
    }
}

#[test]
fn hundreds_of_tokens_parse_but_more_than_the_limit_are_refused() {
    let mut account = AccountRecord::single(token(None, &[], 1));
    for i in 0..MAX_TOKENS - 1 {
        let key = format!("SHA256:k{i:042}");
        account
            .put(token(Some(&format!("p{i}")), &[key.as_str()], 2))
            .unwrap();
    }
    let text = account.to_toml().unwrap();
    assert!(text.len() < super::super::record::MAX_RECORD_BYTES as usize);
    let read = AccountRecord::parse(text.as_bytes(), &root()).unwrap();
    assert_eq!(read.tokens.len(), MAX_TOKENS);
    let one_more = format!(
        "{}\n[[token]]\nperson = \"extra\"\nkeys = [\"SHA256:extra\"]\n\
         secret = \"AEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIB\"\nalgorithm = \"SHA1\"\ndigits = 6\n\
         period = 30\ncreated = 0\n",
        text.as_str()
    );
    let err = AccountRecord::parse(one_more.as_bytes(), &root()).unwrap_err();
    assert!(err.to_string().contains("more than 500"), "{err}");
}

#[test]
fn people_are_found_by_name_and_key_and_removed() {
    let mut account = shared();
    let alice = Person::parse("alice").unwrap();
    assert_eq!(
        account.bound_to(ALICE_KEY).unwrap().person,
        Some(alice.clone())
    );
    assert_eq!(account.unbound().unwrap().person, None);
    assert!(account.remove(Some(&alice)));
    assert!(!account.remove(Some(&alice)));
    assert!(account.bound_to(ALICE_KEY).is_none());
}
