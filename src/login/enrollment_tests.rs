//! Unit tests of `super` (enrollment at login).

use super::*;
use crate::state::FileStateStore;
use crate::test_util::Scratch;
use std::time::Duration;

/// A user at the confirmation prompt while an administrator acts (in another thread, as
/// another process would): the administrator takes the user's locks at once; the user's
/// right code then finds the administrator's record, which stays.
struct AdminActsMeanwhile<'a> {
    store: &'a Store,
    state: &'a FileStateStore,
    admin: UserRecord,
    infos: Vec<String>,
    waited: Option<Duration>,
}

impl Conversation for AdminActsMeanwhile<'_> {
    fn ask_hidden(&mut self, _: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, ConversationError> {
        if self.waited.is_none() {
            let (store, state, admin) =
                (self.store.clone(), self.state.clone(), self.admin.clone());
            let (done, finished) = std::sync::mpsc::channel();
            let start = std::time::Instant::now();
            std::thread::spawn(move || {
                let _ = state.transact(&admin.owner(), |st| st.forget_failures());
                store.save(&admin, SaveMode::Replace).unwrap();
                let _ = done.send(());
            });
            finished
                .recv_timeout(Duration::from_secs(20))
                .expect("the administrator waited on the user at the prompt");
            self.waited = Some(start.elapsed());
        }
        let secret = self
            .infos
            .iter()
            .find_map(|t| t.lines().find_map(|l| l.strip_prefix("Secret: ")))
            .unwrap()
            .replace(' ', "");
        let secret = SecretKey::from_base32(&secret).unwrap();
        let now = crate::clock::now().duration_since(UNIX_EPOCH).unwrap();
        let code = totp::code_at(&secret, TotpParams::default(), now.as_secs());
        Ok(zeroize::Zeroizing::new(code.to_string().into_bytes()))
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.infos.push(text.to_string());
        Ok(())
    }
}

#[test]
fn no_lock_is_held_at_the_prompt_and_an_enrollment_made_meanwhile_stands() {
    let scratch = Scratch::new("login-enroll");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(scratch.0.join("users"))
        .unwrap();
    let store = Store::new(scratch.0.join("users"));
    let state = FileStateStore::new(scratch.0.join("run"));
    let alice = UserName::parse("alice").unwrap();
    let admin = UserRecord {
        user: alice.clone(),
        secret: SecretKey::from_bytes(vec![7; 20]).unwrap(),
        params: TotpParams::default(),
        created: 1,
        issuer: "admin".into(),
        recovery_codes: vec![],
        origin: Origin::Admin,
        hotp: None,
        generation: 0,
        person: None,
        keys: Vec::new(),
    };
    let mut conv = AdminActsMeanwhile {
        store: &store,
        state: &state,
        admin: admin.clone(),
        infos: vec![],
        waited: None,
    };
    let d = run(
        &mut conv,
        &Policy::default(),
        &store,
        &state,
        &alice,
        "SHA256:x",
        super::Whom::Account,
        &crate::clock::now,
    )
    .unwrap();
    let waited = conv.waited.unwrap_or_else(|| panic!("never asked: {d:?}"));
    eprintln!("the administrator's change took {waited:?}");
    assert_eq!(d.reason, Reason::NotEnrolled, "{d:?}");
    assert!(d.detail.unwrap().contains("enrolled meanwhile"));
    assert!(conv.infos.last().unwrap().contains("enrolled meanwhile"));
    assert_eq!(store.load(&alice).unwrap(), admin);
}
