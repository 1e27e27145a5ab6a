//! Unit tests of the login sequence on local files: a scripted client, a fixed clock, a
//! list of accounts instead of NSS.

use super::attempt::Clock;
use super::conversation::{SSHD_FAKE_ANSWER, is_sshd_fake_answer, split_password_and_code};
use super::files::Files;
use super::verify::HOTP_RESYNC_LIMIT;
use super::*;
use crate::decision::{Decision, Outcome, Reason};
use crate::policy::{FirstFactor, Policy};
use crate::recovery::RecoveryCode;
use crate::ssh_auth_info::SshAuthInfo;
use crate::state::FileStateStore;
use crate::state::StateStore;
use crate::store::SaveMode;
use crate::store::{Store, StoreError, UserRecord};
use crate::test_util::Scratch;
use crate::totp;
use crate::totp::{SecretKey, TotpParams};
use crate::user_name::UserName;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// A scripted client: answers prompts from a list and records every prompt seen.
struct Script {
    answers: Vec<Option<&'static str>>,
    prompts: Vec<String>,
    infos: Vec<String>,
}

impl Script {
    fn answering(answers: &[Option<&'static str>]) -> Self {
        Self {
            answers: answers.iter().rev().copied().collect(),
            prompts: vec![],
            infos: vec![],
        }
    }
}

impl Conversation for Script {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        self.prompts.push(prompt.to_owned());
        match self.answers.pop().flatten() {
            Some(a) => Ok(Zeroizing::new(a.as_bytes().to_vec())),
            None => Err(ConversationError("no answer".into())),
        }
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.infos.push(text.to_owned());
        Ok(())
    }
}

const NOW: u64 = 1_764_300_015;

/// The accounts of these tests, standing in for NSS: `ALICE` and `alice@corp.example` are
/// spellings of the account `alice` (a case-insensitive, aliasing directory), `ghost` has no
/// account, every other valid name is its own account.
fn test_accounts(user: &UserName) -> Option<UserName> {
    match user.as_str() {
        "ALICE" | "Alice" | "alice@corp.example" => Some(UserName::parse("alice").unwrap()),
        "ghost" => None,
        _ => Some(user.clone()),
    }
}

/// `info` parsed as the hook parses `SSH_AUTH_INFO_0` (leaked: tests only).
fn parsed(info: Option<&str>) -> Option<&'static SshAuthInfo> {
    info.map(|i| &*Box::leak(Box::new(SshAuthInfo::parse(i))))
}

/// The login on local files with `accounts` instead of NSS.
fn authenticate_as(
    conv: &mut dyn Conversation,
    policy: &Policy,
    accounts: &dyn Fn(&UserName) -> Option<UserName>,
    attempt: &Attempt<'_>,
    clock: Clock<'_>,
) -> Decision {
    Login::new(conv, policy, *attempt, clock)
        .with_accounts(accounts)
        .run(&mut Files::new(policy))
        .decision
}

/// The login with the test accounts instead of NSS.
fn authenticate_in_test(
    conv: &mut dyn Conversation,
    policy: &Policy,
    attempt: &Attempt<'_>,
    now: SystemTime,
) -> Decision {
    authenticate_as(conv, policy, &test_accounts, attempt, &move || now)
}

struct Fixture {
    _scratch: Scratch,
    policy: Policy,
    secret: SecretKey,
}

impl Fixture {
    fn new() -> Self {
        let scratch = Scratch::new("auth");
        let policy = Policy {
            store_dir: scratch.0.join("users"),
            state_dir: scratch.0.join("run"),
            ..Policy::default()
        };
        let secret = SecretKey::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        let record = UserRecord {
            user: UserName::parse("alice").unwrap(),
            secret: secret.clone(),
            params: TotpParams::default(),
            created: 0,
            issuer: "test".into(),
            recovery_codes: vec![],
            origin: crate::store::record::Origin::Admin,
            hotp: None,
            generation: 0,
            person: None,
            keys: Vec::new(),
        };
        Store::new(&policy.store_dir)
            .save(&record, SaveMode::CreateNew)
            .unwrap();
        Self {
            _scratch: scratch,
            policy,
            secret,
        }
    }

    fn code(&self, at: u64) -> String {
        totp::code_at(&self.secret, TotpParams::default(), at).to_string()
    }

    fn login(&self, user: &str, answer: Option<&str>, at: u64) -> (Decision, usize) {
        let answer: Option<&'static str> = answer.map(|a| &*a.to_owned().leak());
        self.login_as(&Attempt::user(user), answer, at)
    }

    fn login_as(&self, attempt: &Attempt<'_>, answer: Option<&str>, at: u64) -> (Decision, usize) {
        let answer: Option<&'static str> = answer.map(|a| &*a.to_owned().leak());
        let mut conv = Script::answering(&[answer]);
        let d = authenticate_in_test(
            &mut conv,
            &self.policy,
            attempt,
            UNIX_EPOCH + Duration::from_secs(at),
        );
        (d, conv.prompts.len())
    }
}

#[test]
fn correct_code_succeeds_after_exactly_one_prompt() {
    let f = Fixture::new();
    let mut conv = Script::answering(&[Some(&*f.code(NOW).leak())]);
    let d = authenticate_in_test(
        &mut conv,
        &f.policy,
        &Attempt::user("alice"),
        UNIX_EPOCH + Duration::from_secs(NOW),
    );
    assert_eq!(d, Decision::success(0));
    assert_eq!(conv.prompts, vec!["Verification code: ".to_string()]);
}

/// A login whose clock is `start` until the prompt is answered and `answered` after it.
fn login_typed_later(f: &Fixture, answer: &str, start: u64, answered: u64) -> Decision {
    use std::cell::Cell;
    let at = Cell::new(start);
    struct Late<'a>(&'a Cell<u64>, u64, String);
    impl Conversation for Late<'_> {
        fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            self.0.set(self.1);
            Ok(Zeroizing::new(self.2.clone().into_bytes()))
        }
        fn info(&mut self, _: &str) -> Result<(), ConversationError> {
            Ok(())
        }
    }
    let mut conv = Late(&at, answered, answer.to_string());
    let clock = || UNIX_EPOCH + Duration::from_secs(at.get());
    authenticate_as(
        &mut conv,
        &f.policy,
        &test_accounts,
        &Attempt::user("alice"),
        &clock,
    )
}

#[test]
fn the_code_is_checked_at_the_time_it_was_typed_not_when_the_prompt_appeared() {
    let f = Fixture::new();
    let start = NOW - NOW % 30;
    // The phone's code 62 s after the prompt appeared: accepted.
    let later = f.code(start + 62);
    let d = login_typed_later(&f, &later, start, start + 62);
    assert_eq!(d.outcome, Outcome::Success, "{d:?}");
    // The code of the prompt's moment, typed 62 s later: two steps old, refused.
    let f = Fixture::new();
    let old = f.code(start);
    let d = login_typed_later(&f, &old, start, start + 62);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
}

#[test]
fn replayed_code_is_rejected() {
    let f = Fixture::new();
    let code = f.code(NOW);
    assert_eq!(
        f.login("alice", Some(&code), NOW).0.outcome,
        Outcome::Success
    );
    let (d, prompts) = f.login("alice", Some(&code), NOW + 5);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::Replay, 1)
    );
    // The next step's code works.
    let next = f.code(NOW + 30);
    assert_eq!(
        f.login("alice", Some(&next), NOW + 30).0.outcome,
        Outcome::Success
    );
}

#[test]
fn wrong_and_malformed_codes_are_denied_and_counted() {
    let f = Fixture::new();
    let right = f.code(NOW);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for (i, answer) in [wrong, "", "12345", &"9".repeat(10_000), "12 34 5x"]
        .into_iter()
        .enumerate()
    {
        let (d, prompts) = f.login("alice", Some(answer), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::BadCode, 1)
        );
        assert_eq!(d.failures, Some(i as u32 + 1));
    }
}

#[test]
fn repeated_failures_say_whether_the_phone_clock_drifts() {
    let f = Fixture::new();
    let early = f.code(NOW + 5 * 30);
    let (d, _) = f.login("alice", Some(&early), NOW);
    assert_eq!(
        (d.reason, d.detail.as_deref()),
        (Reason::BadCode, None),
        "first failure: no extra work"
    );
    let (d, _) = f.login("alice", Some(&early), NOW);
    let detail = d.detail.unwrap();
    assert!(detail.contains("clocks differ by 150 s"), "{detail}");
    assert!(detail.contains("matches +5 steps (+150 s)"), "{detail}");
    assert_eq!(d.outcome, Outcome::Deny, "a hint never accepts");
    let (d, _) = f.login("alice", Some("000000"), NOW);
    assert!(d.detail.as_deref().unwrap().contains("wrong secret"));
    assert!(!crate::audit::line(&Default::default(), &d).contains(&early));
}

#[test]
fn lockout_refuses_even_the_right_code_until_it_expires() {
    let f = Fixture::new();
    for _ in 0..5 {
        f.login("alice", Some("abcdef"), NOW);
    }
    let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW + 1);
    assert_eq!((d.reason, d.locked_for), (Reason::Throttled, Some(29)));
    // Attempts during the lockout are not counted.
    assert_eq!(d.failures, Some(5));
    let later = NOW + 31;
    let (d, _) = f.login("alice", Some(&f.code(later)), later);
    assert_eq!(d.outcome, Outcome::Success);
    // Success resets the counter.
    let (d, _) = f.login("alice", Some("abcdef"), later);
    assert_eq!(d.failures, Some(1));
}

/// State written while the server's clock was a day ahead (bad RTC, VM restore).
fn state_from_a_clock_a_day_ahead(f: &Fixture, accepted: bool) {
    let state = FileStateStore::new(&f.policy.state_dir);
    let alice = crate::state::Owner::account(&UserName::parse("alice").unwrap());
    let ahead = NOW + 86_400;
    state
        .transact(&alice, |st| {
            if accepted {
                st.record_success(ahead - ahead % 30);
            } else {
                for _ in 0..12 {
                    st.record_failure(ahead, &f.policy.throttle);
                }
            }
        })
        .unwrap();
}

#[test]
fn a_lockout_from_a_clock_that_was_ahead_never_exceeds_the_maximum() {
    let f = Fixture::new();
    state_from_a_clock_a_day_ahead(&f, false);
    let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
    assert_eq!((d.reason, d.locked_for), (Reason::Throttled, Some(900)));
    // 900 s later (not a day) the right code works.
    let later = NOW + 901;
    let (d, _) = f.login("alice", Some(&f.code(later)), later);
    assert_eq!(d.outcome, Outcome::Success, "{d:?}");
}

#[test]
fn a_replay_mark_ahead_of_the_clock_is_a_clock_problem_that_unlock_clears() {
    let f = Fixture::new();
    state_from_a_clock_a_day_ahead(&f, true);
    for _ in 0..6 {
        let (d, prompts) = f.login("alice", Some(&f.code(NOW)), NOW);
        assert_eq!(
            (d.outcome, d.reason, d.failures, prompts),
            (Outcome::Deny, Reason::StateInFuture, None, 1)
        );
        assert!(d.detail.unwrap().contains("s ahead of this server's clock"));
    }
    // What `mfa-enroll unlock` does.
    let state = FileStateStore::new(&f.policy.state_dir);
    let alice = crate::state::Owner::account(&UserName::parse("alice").unwrap());
    state
        .transact(&alice, |st| {
            st.unlock(NOW, crate::state::replay_tolerance(30, 1))
        })
        .unwrap();
    let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
    assert_eq!(
        d.reason,
        Reason::Replay,
        "the current step stays used: {d:?}"
    );
    let next = NOW + 30;
    assert_eq!(
        f.login("alice", Some(&f.code(next)), next).0.outcome,
        Outcome::Success
    );
    // In normal operation the mark still refuses replays (one window ahead is normal).
    let (d, _) = f.login("alice", Some(&f.code(next)), next);
    assert_eq!(d.reason, Reason::Replay);
}

#[test]
fn unenrolled_users_are_prompted_and_denied_like_a_wrong_code() {
    let f = Fixture::new();
    let (d, prompts) = f.login("bob", Some("123456"), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::NotEnrolled, 1)
    );
}

#[test]
fn nullok_ignores_unenrolled_users_without_a_prompt_but_not_broken_files() {
    let mut f = Fixture::new();
    f.policy.nullok = true;
    let (d, prompts) = f.login("bob", Some("123456"), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Ignore, Reason::NotEnrolled, 0)
    );
    // An enrolled user still needs the code.
    let (d, _) = f.login("alice", Some("abcdef"), NOW);
    assert_eq!(d.outcome, Outcome::Deny);
    // A record that exists but is unsafe is a denial, never an ignore.
    let path = f.policy.store_dir.join("alice.toml");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (d, prompts) = f.login("alice", Some(&f.code(NOW)), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::BadFile, 1)
    );
}

#[test]
fn nullok_never_turns_a_missing_or_unreadable_store_into_a_pass() {
    let mut f = Fixture::new();
    f.policy.nullok = true;
    f.policy.store_dir = f.policy.store_dir.with_file_name("typo");
    for user in ["alice", "bob"] {
        let (d, prompts) = f.login(user, Some("123456"), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::BadFile, 1),
            "{user}"
        );
        assert!(d.detail.unwrap().contains("does not exist"));
    }
    // A store below a directory others can change: the same (the whole path is checked).
    let store = f.policy.store_dir.with_file_name("users");
    let above = store.parent().unwrap().to_owned();
    f.policy.store_dir = store;
    std::fs::set_permissions(&above, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (d, prompts) = f.login("bob", Some("123456"), NOW);
    std::fs::set_permissions(&above, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::BadFile, 1)
    );
    assert!(d.detail.unwrap().contains("a directory on the way"));
    // A store that is a file, not a directory: the same.
    f.policy.store_dir = f
        .policy
        .state_dir
        .with_file_name("users")
        .join("alice.toml");
    let (d, _) = f.login("alice", Some("123456"), NOW);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadFile));
}

#[test]
fn every_spelling_of_an_account_is_that_account() {
    let mut f = Fixture::new();
    f.policy.nullok = true;
    // Another spelling is alice: her record, her replay mark, and both names logged.
    let (d, prompts) = f.login("ALICE", Some(&f.code(NOW)), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Success, Reason::Ok, 1)
    );
    assert_eq!(d.account(), Some("alice"));
    let line = crate::audit::line(
        &crate::audit::Context {
            user: Some("ALICE".into()),
            ..Default::default()
        },
        &d,
    );
    assert!(line.starts_with("user=ALICE account=alice "), "{line}");
    let (d, _) = f.login("alice@corp.example", Some(&f.code(NOW)), NOW);
    assert_eq!(d.reason, Reason::Replay, "the same account's replay mark");
    let (d, _) = f.login("alice", Some("000000"), NOW + 30);
    assert_eq!(d.account(), None, "no account= when the names agree");
    // nullok never skips MFA for an enrolled account through another spelling.
    let (d, prompts) = f.login("Alice", Some("000000"), NOW + 30);
    assert_eq!((d.outcome, prompts), (Outcome::Deny, 1));
    // An account NSS does not know: prompted and denied, never ignored (even with nullok).
    let (d, prompts) = f.login("ghost", Some("123456"), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::UnknownAccount, 1)
    );
}

#[test]
fn path_like_user_names_are_denied_before_touching_files() {
    let f = Fixture::new();
    for user in ["../../etc/passwd", "alice/../alice", "", "a\nb"] {
        let (d, prompts) = f.login(user, Some(&f.code(NOW)), NOW);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Deny, Reason::BadUser, 1)
        );
    }
}

/// Gives alice a fresh set of recovery codes and returns them as typed text.
fn with_recovery_codes(f: &Fixture) -> Vec<String> {
    let (codes, hashes) = crate::recovery::generate().unwrap();
    let user = UserName::parse("alice").unwrap();
    Store::new(&f.policy.store_dir)
        .update(&user, None, |r| r.recovery_codes = hashes)
        .unwrap();
    codes.iter().map(ToString::to_string).collect()
}

#[test]
fn a_recovery_code_works_once_at_the_same_prompt() {
    let f = Fixture::new();
    let codes = with_recovery_codes(&f);
    let (d, prompts) = f.login("alice", Some(&codes[3].to_uppercase()), NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Success, Reason::RecoveryCode, 1)
    );
    assert_eq!(d.remaining, Some(9));
    assert!(
        crate::audit::line(&Default::default(), &d).contains("reason=recovery_code remaining=9")
    );
    let (d, _) = f.login("alice", Some(&codes[3]), NOW);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
    let (d, _) = f.login("alice", Some("zzzzz-zzzzz"), NOW);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
    // Other codes and TOTP still work.
    assert_eq!(f.login("alice", Some(&codes[0]), NOW).0.remaining, Some(8));
    assert_eq!(
        f.login("alice", Some(&f.code(NOW)), NOW).0.outcome,
        Outcome::Success
    );
}

#[test]
fn two_parallel_logins_with_one_recovery_code_give_one_success() {
    let f = Fixture::new();
    let codes = with_recovery_codes(&f);
    let code: &'static str = codes[5].clone().leak();
    let results: Vec<Decision> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| f.login("alice", Some(code), NOW).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wins = results
        .iter()
        .filter(|d| d.outcome == Outcome::Success)
        .count();
    assert_eq!(wins, 1, "{results:#?}");
    let record = Store::new(&f.policy.store_dir)
        .load(&UserName::parse("alice").unwrap())
        .unwrap();
    assert_eq!(record.recovery_codes.len(), 9);
}

#[test]
fn recovery_shaped_input_takes_the_same_time_but_argon2_only_where_it_can_match() {
    let f = Fixture::new();
    let codes = with_recovery_codes(&f);
    // (Argon2 runs, wall time) of one login.
    let cost = |user: &str, answer: &str| {
        let before = crate::recovery::verifications();
        let started = std::time::Instant::now();
        f.login(user, Some(answer), NOW);
        let took = started.elapsed();
        assert!(
            took >= crate::recovery::CHECK_WALL,
            "{user} {answer}: {took:?} is shorter than a check"
        );
        crate::recovery::verifications() - before
    };
    let wrong = "zzzzz-zzzzz";
    assert_eq!(cost("alice", wrong), 10, "enrolled, 10 codes left");
    assert_eq!(cost("alice", &codes[0]), 10, "the right code");
    assert_eq!(cost("alice", &codes[1]), 9);
    assert_eq!(cost("alice", wrong), 8, "8 codes left");
    // Attempts that cannot match cost no Argon2 at all: unknown, impossible, locked out.
    assert_eq!(cost("nobody", wrong), 0, "not enrolled");
    assert_eq!(
        cost("nobody", "1234 5678"),
        0,
        "scratch-shaped, not enrolled"
    );
    assert_eq!(cost("../etc", wrong), 0, "impossible user name");
    for _ in 0..4 {
        cost("alice", wrong);
    }
    let (d, _) = f.login("alice", Some(wrong), NOW);
    assert_eq!(d.reason, Reason::Throttled);
    assert_eq!(cost("alice", wrong), 0, "locked out");
    // TOTP input never pays for Argon2 (nor waits).
    let before = crate::recovery::verifications();
    f.login("alice", Some("123456"), NOW);
    f.login("nobody", Some("123456"), NOW);
    assert_eq!(crate::recovery::verifications() - before, 0);
}

#[test]
fn recovery_checks_do_not_hold_the_store_lock() {
    let f = Fixture::new();
    with_recovery_codes(&f);
    let dir = crate::secure_fs::open_dir(&f.policy.store_dir)
        .unwrap()
        .unwrap();
    // Another writer (an enrollment, another user's recovery code) holds the store lock.
    let lock = dir.lock_dir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let d = f.login("alice", Some("zzzzz-zzzzz"), NOW).0;
            tx.send(d).unwrap();
        });
        let d = rx.recv_timeout(Duration::from_secs(60));
        drop(lock);
        let d = d.expect("a wrong recovery code waited for the store lock");
        assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::BadCode));
    });
}

#[test]
fn imported_eight_digit_scratch_codes_work_once_for_six_digit_users() {
    let f = Fixture::new();
    let scratch = RecoveryCode::from_scratch_code(b"12345678").unwrap();
    let hash = scratch.hash().unwrap();
    let user = UserName::parse("alice").unwrap();
    Store::new(&f.policy.store_dir)
        .update(&user, None, |r| r.recovery_codes = vec![hash])
        .unwrap();
    let (d, _) = f.login("alice", Some("1234 5678"), NOW);
    assert_eq!((d.reason, d.remaining), (Reason::RecoveryCode, Some(0)));
    let (d, _) = f.login("alice", Some("12345678"), NOW);
    assert_eq!(d.reason, Reason::BadCode);
}

#[test]
fn recovery_codes_are_throttled_like_totp_codes() {
    let f = Fixture::new();
    let codes = with_recovery_codes(&f);
    for _ in 0..5 {
        f.login("alice", Some("zzzzz-zzzzz"), NOW);
    }
    let (d, _) = f.login("alice", Some(&codes[0]), NOW);
    assert_eq!(d.reason, Reason::Throttled);
}

#[test]
fn grace_spares_the_code_for_the_same_client_and_key_until_a_failure_or_its_end() {
    let mut f = Fixture::new();
    f.policy.grace = Some(crate::policy::GracePolicy {
        seconds: 600,
        fleet_wide: false,
    });
    let from = |rhost: &'static str, key: Option<&'static str>| Attempt {
        user: "alice",
        rhost: Some(rhost),
        ssh_auth_info: parsed(key),
        ..Attempt::default()
    };
    let other_key = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm5bXvPb3rlYwJXuFEX3JHCEYdeSyDP63klSjN8cC9x";
    let a = from("192.0.2.1", Some(KEY_INFO));
    // No grace before any code.
    let (d, prompts) = f.login_as(&a, Some(&f.code(NOW)), NOW);
    assert_eq!((d.reason, prompts), (Reason::Ok, 1));
    // Same user, address and key, within the grace: in without a prompt.
    let (d, prompts) = f.login_as(&a, None, NOW + 100);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Success, Reason::Grace, 0)
    );
    // Another address, or another key, or no key: asked.
    for other in [
        from("192.0.2.2", Some(KEY_INFO)),
        from("192.0.2.1", Some(other_key)),
        from("192.0.2.1", None),
    ] {
        let (d, prompts) = f.login_as(&other, None, NOW + 100);
        assert_eq!(
            (d.reason, prompts),
            (Reason::NoCode, 1),
            "{:?}",
            other.rhost
        );
    }
    // ... which were failures (no answer is not one), so grace still holds; a wrong code
    // from anywhere ends every grace period.
    let (d, _) = f.login_as(&a, None, NOW + 200);
    assert_eq!(d.reason, Reason::Grace);
    let (d, _) = f.login_as(&from("192.0.2.9", None), Some("000000"), NOW + 200);
    assert_eq!(d.reason, Reason::BadCode);
    let (d, prompts) = f.login_as(&a, Some(&f.code(NOW + 210)), NOW + 210);
    assert_eq!(
        (d.reason, prompts),
        (Reason::Ok, 1),
        "asked again after a failure"
    );
    // The new success starts a new grace, which ends after grace_seconds.
    let (d, _) = f.login_as(&a, None, NOW + 800);
    assert_eq!(d.reason, Reason::Grace);
    let (d, prompts) = f.login_as(&a, None, NOW + 811);
    assert_eq!((d.reason, prompts), (Reason::NoCode, 1), "ended");
}

#[test]
fn grace_is_kept_in_the_state_and_cleared_by_reset_remove_or_unlock_all_grace() {
    let mut f = Fixture::new();
    f.policy.grace = Some(crate::policy::GracePolicy {
        seconds: 600,
        fleet_wide: false,
    });
    let a = Attempt {
        user: "alice",
        rhost: None,
        ..Attempt::default()
    };
    let (d, _) = f.login_as(&a, Some(&f.code(NOW)), NOW);
    assert_eq!(d.reason, Reason::Ok);
    let state = FileStateStore::new(&f.policy.state_dir);
    let alice = crate::state::Owner::account(&UserName::parse("alice").unwrap());
    let st = state.transact(&alice, |st| *st).unwrap();
    assert_eq!(st.grace.marks().count(), 1);
    let text = std::fs::read_to_string(f.policy.state_dir.join("alice.state")).unwrap();
    assert!(text.contains("grace = [\""), "{text}");
    let (d, _) = f.login_as(&a, None, NOW + 1);
    assert_eq!(
        d.reason,
        Reason::Grace,
        "a local service (no address, no key) too"
    );
    state.transact(&alice, |st| st.grace.clear()).unwrap();
    let (d, prompts) = f.login_as(&a, None, NOW + 2);
    assert_eq!((d.reason, prompts), (Reason::NoCode, 1));
    // Off by default: nothing is granted.
    let mut g = Fixture::new();
    g.policy.grace = None;
    g.login_as(&a, Some(&g.code(NOW)), NOW);
    let st = FileStateStore::new(&g.policy.state_dir)
        .transact(&alice, |st| *st)
        .unwrap();
    assert_eq!(st.grace.marks().count(), 0);
}

fn hotp_fixture(counter: u64) -> Fixture {
    let f = Fixture::new();
    Store::new(&f.policy.store_dir)
        .update(&UserName::parse("alice").unwrap(), None, |r| {
            r.hotp = Some(counter)
        })
        .unwrap();
    f
}

fn hotp(f: &Fixture, counter: u64) -> String {
    totp::hotp_code(&f.secret, TotpParams::default(), counter)
        .unwrap()
        .to_string()
}

fn stored_counter(f: &Fixture) -> Option<u64> {
    Store::new(&f.policy.store_dir)
        .load(&UserName::parse("alice").unwrap())
        .unwrap()
        .hotp
}

#[test]
fn hotp_codes_move_the_counter_forward_only_on_success_and_never_twice() {
    let f = hotp_fixture(5);
    // RFC 4226 appendix D: counter 5 of the test secret is 254676.
    assert_eq!(hotp(&f, 5), "254676");
    let (d, _) = f.login("alice", Some("254676"), NOW);
    assert_eq!(d.reason, Reason::Ok);
    assert_eq!(stored_counter(&f), Some(6), "persisted in the record");
    let (d, _) = f.login("alice", Some("254676"), NOW);
    assert_eq!(d.reason, Reason::Replay, "a used code is a replay");
    // Wrong codes never move the counter (an attacker cannot desynchronise the token).
    for _ in 0..3 {
        let (d, _) = f.login("alice", Some("000000"), NOW);
        assert_eq!(d.reason, Reason::BadCode);
    }
    assert_eq!(stored_counter(&f), Some(6));
    // A code a few presses ahead (inside hotp_window) is accepted and skips the rest.
    let (d, _) = f.login("alice", Some(&hotp(&f, 8)), NOW + 1000);
    assert_eq!((d.reason, d.skew), (Reason::Ok, Some(2)));
    assert_eq!(stored_counter(&f), Some(9));
    let (d, _) = f.login("alice", Some(&hotp(&f, 7)), NOW + 1000);
    assert_eq!(d.reason, Reason::Replay, "skipped codes are dead too");
}

#[test]
fn an_hotp_token_far_ahead_resynchronises_with_two_consecutive_codes() {
    let f = hotp_fixture(0);
    let (d, _) = f.login("alice", Some(&hotp(&f, 50)), NOW);
    assert_eq!(d.outcome, Outcome::Deny);
    assert!(
        d.detail.as_deref().unwrap().contains("resynchronises"),
        "{d:?}"
    );
    assert_eq!(stored_counter(&f), Some(0));
    // Not consecutive: no resync.
    let (d, _) = f.login("alice", Some(&hotp(&f, 53)), NOW);
    assert_eq!(d.outcome, Outcome::Deny);
    // Consecutive: resynchronised, accepted.
    let (d, _) = f.login("alice", Some(&hotp(&f, 54)), NOW);
    assert_eq!(d.reason, Reason::Ok, "{d:?}");
    assert_eq!(stored_counter(&f), Some(55));
    // Beyond the resync limit: just wrong.
    let (d, _) = f.login(
        "alice",
        Some(&hotp(&f, 55 + 10 + HOTP_RESYNC_LIMIT + 5)),
        NOW,
    );
    assert_eq!(d.reason, Reason::BadCode);
    assert!(d.detail.is_none(), "{d:?}");
}

#[test]
fn two_parallel_logins_with_one_hotp_code_give_one_success() {
    let f = hotp_fixture(0);
    let code = hotp(&f, 0);
    let f = &f;
    let code = code.as_str();
    let results: Vec<Decision> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(move || f.login("alice", Some(code), NOW).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results
            .iter()
            .filter(|d| d.outcome == Outcome::Success)
            .count(),
        1,
        "{results:?}"
    );
    assert_eq!(stored_counter(f), Some(1));
}

#[test]
fn password_and_code_are_split_at_the_code() {
    let split = |a: &str, d| {
        let (p, c) = split_password_and_code(a.as_bytes(), d);
        (
            String::from_utf8_lossy(p).into_owned(),
            String::from_utf8_lossy(c).into_owned(),
        )
    };
    assert_eq!(split("pw123456", 6), ("pw".into(), "123456".into()));
    assert_eq!(split("pw12345678", 8), ("pw".into(), "12345678".into()));
    assert_eq!(
        split("p9123456", 6),
        ("p9".into(), "123456".into()),
        "digits in the password"
    );
    assert_eq!(
        split("123456", 6),
        ("".into(), "123456".into()),
        "no password"
    );
    assert_eq!(
        split("pwabcde-12345", 6),
        ("pw".into(), "abcde-12345".into()),
        "recovery code"
    );
    assert_eq!(split("pw", 6), ("pw".into(), "".into()));
    assert_eq!(split("pw12345x", 6), ("pw12345x".into(), "".into()));
    assert_eq!(split("", 6), ("".into(), "".into()));
}

#[test]
fn no_answer_is_a_denial() {
    let f = Fixture::new();
    let (d, prompts) = f.login("alice", None, NOW);
    assert_eq!(
        (d.outcome, d.reason, prompts),
        (Outcome::Deny, Reason::NoCode, 1)
    );
}

#[test]
fn clock_before_the_epoch_denies_without_panicking() {
    let f = Fixture::new();
    let mut conv = Script::answering(&[Some("123456")]);
    let before = UNIX_EPOCH - Duration::from_secs(1);
    let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), before);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::Internal));
    let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    let d = authenticate_in_test(
        &mut Script::answering(&[Some("123456")]),
        &f.policy,
        &Attempt::user("alice"),
        far,
    );
    assert_eq!(d.outcome, Outcome::Deny);
}

#[test]
fn unwritable_state_denies_even_a_correct_code() {
    let mut f = Fixture::new();
    // A state "directory" that is a regular file cannot hold state.
    let bogus = f.policy.store_dir.join("alice.toml");
    f.policy.state_dir = bogus;
    let (d, _) = f.login("alice", Some(&f.code(NOW)), NOW);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::Internal));
}

/// A client that sits at the prompt while `meanwhile` runs (an administrator acting), then
/// answers `answer`.
struct SlowTypist<F: FnMut()> {
    meanwhile: F,
    answer: String,
}

impl<F: FnMut()> Conversation for SlowTypist<F> {
    fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        (self.meanwhile)();
        Ok(Zeroizing::new(self.answer.as_bytes().to_vec()))
    }

    fn info(&mut self, _: &str) -> Result<(), ConversationError> {
        Ok(())
    }
}

#[test]
fn a_reset_or_removal_during_the_prompt_takes_effect_for_that_login() {
    let f = Fixture::new();
    let store = Store::new(&f.policy.store_dir);
    let alice = UserName::parse("alice").unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    // Reset: a new secret is saved while the old code is being typed.
    let mut conv = SlowTypist {
        meanwhile: || {
            let mut record = store.load(&alice).unwrap();
            record.secret = SecretKey::from_bytes(b"abcdefghijabcdefghij".to_vec()).unwrap();
            store.save(&record, SaveMode::Replace).unwrap();
        },
        answer: f.code(NOW),
    };
    let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), at);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Deny, Reason::BadCode),
        "old secret dead at once"
    );
    // Removal while typing.
    let mut conv = SlowTypist {
        meanwhile: || store.remove(&alice).unwrap(),
        answer: f.code(NOW),
    };
    let d = authenticate_in_test(&mut conv, &f.policy, &Attempt::user("alice"), at);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::NotEnrolled));
}

/// A phone: reads the secret from the enrollment text it is shown and answers each
/// confirmation with the code for `at` (after `wrong` wrong answers).
struct Phone {
    at: u64,
    wrong: usize,
    infos: Vec<String>,
    prompts: Vec<String>,
}

impl Phone {
    fn new(at: u64, wrong: usize) -> Self {
        Self {
            at,
            wrong,
            infos: vec![],
            prompts: vec![],
        }
    }

    fn secret(&self) -> Option<SecretKey> {
        let line = self
            .infos
            .iter()
            .flat_map(|i| i.lines())
            .find_map(|l| l.strip_prefix("Secret: "))?;
        SecretKey::from_base32(&line.replace(' ', "")).ok()
    }
}

impl Conversation for Phone {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        self.prompts.push(prompt.to_owned());
        let answer = match self.secret() {
            Some(_) if self.wrong > 0 => {
                self.wrong -= 1;
                "000000".to_string()
            }
            Some(secret) => totp::code_at(&secret, TotpParams::default(), self.at).to_string(),
            None => "123456".to_string(),
        };
        Ok(Zeroizing::new(answer.into_bytes()))
    }

    fn info(&mut self, text: &str) -> Result<(), ConversationError> {
        self.infos.push(text.to_owned());
        Ok(())
    }
}

fn enrolling(f: &mut Fixture) {
    f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment::default());
}

#[test]
fn a_user_with_a_key_and_no_enrollment_enrolls_during_the_login() {
    let mut f = Fixture::new();
    enrolling(&mut f);
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let attempt = Attempt {
        user: "bob",
        rhost: Some("192.0.2.9"),
        ssh_auth_info: parsed(Some(KEY_INFO)),
        ..Attempt::default()
    };
    let mut phone = Phone::new(NOW, 1);
    let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Success, Reason::EnrolledAtLogin),
        "{d:?}"
    );
    assert!(d.detail.as_deref().unwrap().starts_with("key SHA256:"));
    // Explanation, QR code with URI and secret, one retry hint, recovery codes.
    assert!(
        phone.infos[1].contains('\u{2588}') && phone.infos[1].contains("URI:    otpauth://totp/")
    );
    assert!(phone.infos.last().unwrap().contains("Recovery codes"));
    assert_eq!(phone.prompts, vec![super::enrollment::CONFIRM_PROMPT; 2]);
    let bob = UserName::parse("bob").unwrap();
    let record = Store::new(&f.policy.store_dir).load(&bob).unwrap();
    assert_eq!(record.recovery_codes.len(), 10);
    assert!(
        matches!(record.origin, crate::store::record::Origin::Login { ref key } if key.starts_with("SHA256:"))
    );
    // The next login asks for a code; the confirmation code is used up.
    let code = totp::code_at(&record.secret, TotpParams::default(), NOW).to_string();
    let (d, prompts) = f.login_as(&attempt, Some(&code), NOW);
    assert_eq!((d.reason, prompts), (Reason::Replay, 1));
    let next = totp::code_at(&record.secret, TotpParams::default(), NOW + 30).to_string();
    assert_eq!(
        f.login_as(&attempt, Some(&next), NOW + 30).0.reason,
        Reason::Ok
    );
}

#[test]
fn without_a_key_or_after_the_deadline_or_outside_the_groups_nobody_enrolls_at_login() {
    let mut f = Fixture::new();
    enrolling(&mut f);
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let bob = UserName::parse("bob").unwrap();
    let denied = |f: &Fixture, info: Option<&str>, user: &str| {
        let attempt = Attempt {
            user,
            rhost: None,
            ssh_auth_info: parsed(info),
            ..Attempt::default()
        };
        let mut phone = Phone::new(NOW, 0);
        let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
        assert_eq!(
            (d.outcome, d.reason),
            (Outcome::Deny, Reason::NotEnrolled),
            "{info:?} {d:?}"
        );
        assert!(phone.infos.is_empty(), "no QR code shown");
        assert_eq!(phone.prompts, vec!["Verification code: ".to_string()]);
    };
    for info in [
        None,
        Some(""),
        Some("password"),
        Some("keyboard-interactive"),
    ] {
        denied(&f, info, "bob");
    }
    f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
        groups: vec![],
        until: Some(NOW),
    });
    denied(&f, Some(KEY_INFO), "bob");
    f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
        groups: vec!["root".into()],
        until: None,
    });
    denied(&f, Some(KEY_INFO), "bob");
    // Three wrong codes: nothing written.
    enrolling(&mut f);
    let attempt = Attempt {
        user: "bob",
        rhost: None,
        ssh_auth_info: parsed(Some(KEY_INFO)),
        ..Attempt::default()
    };
    let mut phone = Phone::new(NOW, 3);
    let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
    assert_eq!((d.outcome, d.reason), (Outcome::Deny, Reason::NotEnrolled));
    assert!(matches!(
        Store::new(&f.policy.store_dir).load(&bob),
        Err(StoreError::NotEnrolled)
    ));
    // nullok is unchanged for users outside the policy, and applies after the deadline.
    f.policy.nullok = true;
    f.policy.enroll_at_login = Some(crate::policy::LoginEnrollment {
        groups: vec![],
        until: Some(NOW),
    });
    let (d, _) = f.login_as(&attempt, None, NOW);
    assert_eq!(
        (d.outcome, d.reason),
        (Outcome::Ignore, Reason::NotEnrolled)
    );
}

#[test]
fn two_first_logins_at_once_give_one_enrollment_and_the_other_is_told_it_was_not_saved() {
    let mut f = Fixture::new();
    enrolling(&mut f);
    let f = &f;
    let at = UNIX_EPOCH + Duration::from_secs(NOW);
    let results: Vec<(Decision, Phone)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(move || {
                    let attempt = Attempt {
                        user: "bob",
                        rhost: None,
                        ssh_auth_info: parsed(Some(KEY_INFO)),
                        ..Attempt::default()
                    };
                    let mut phone = Phone::new(NOW, 0);
                    let d = authenticate_in_test(&mut phone, &f.policy, &attempt, at);
                    (d, phone)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let enrolled: Vec<_> = results
        .iter()
        .filter(|(d, _)| d.reason == Reason::EnrolledAtLogin)
        .collect();
    assert_eq!(
        enrolled.len(),
        1,
        "{:?}",
        results.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let other = results
        .iter()
        .find(|(d, _)| d.reason != Reason::EnrolledAtLogin)
        .unwrap();
    // Neither login holds a lock at its prompt: when both showed a QR code, the second to
    // save found the first one's record, which stands, and was told; a login that started
    // after the save was asked for a code like any enrolled user.
    if other.1.infos.is_empty() {
        assert_eq!(other.1.prompts, vec!["Verification code: ".to_string()]);
    } else {
        let told = other.0.detail.as_deref().unwrap_or_default();
        assert_eq!(other.0.reason, Reason::NotEnrolled, "{:?}", other.0);
        assert!(told.contains("enrolled meanwhile"));
        assert!(other.1.infos.last().unwrap().contains("enrolled meanwhile"));
    }
    let bob = UserName::parse("bob").unwrap();
    let record = Store::new(&f.policy.store_dir).load(&bob).unwrap();
    assert_eq!(Some(record.secret), enrolled[0].1.secret());
}

const KEY_INFO: &str =
    "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";

#[test]
fn first_factor_publickey_denies_without_a_key_before_any_prompt_even_nullok_and_exempt() {
    let mut f = Fixture::new();
    f.policy.first_factor = FirstFactor::PublicKey;
    f.policy.nullok = true;
    f.policy.exemptions.exempt_networks = vec!["192.0.2.0/24".parse().unwrap()];
    let code = f.code(NOW);
    for info in [
        None,
        Some(""),
        Some("password"),
        Some("keyboard-interactive\n"),
        Some(" publickey ssh-ed25519 AAAA"),
    ] {
        for user in ["alice", "bob", "../x"] {
            for rhost in [None, Some("192.0.2.7")] {
                let attempt = Attempt {
                    user,
                    rhost,
                    ssh_auth_info: parsed(info),
                    ..Attempt::default()
                };
                let (d, prompts) = f.login_as(&attempt, Some(&code), NOW);
                assert_eq!(
                    (d.outcome, d.reason, prompts),
                    (Outcome::Deny, Reason::NoFirstFactor, 0),
                    "{attempt:?}"
                );
                assert!(
                    d.detail
                        .unwrap()
                        .contains("AuthenticationMethods publickey,keyboard-interactive")
                );
            }
        }
    }
    // Nothing was counted: the right code still works once a key was accepted, also when
    // the key is one of several completed methods.
    for info in [KEY_INFO.to_string(), format!("password\n{KEY_INFO}\n")] {
        let attempt = Attempt {
            user: "alice",
            rhost: None,
            ssh_auth_info: parsed(Some(&info)),
            ..Attempt::default()
        };
        let at = if info.starts_with("password") {
            NOW + 30
        } else {
            NOW
        };
        let (d, prompts) = f.login_as(&attempt, Some(&f.code(at)), at);
        assert_eq!((d, prompts), (Decision::success(0), 1));
    }
    // nullok and exemptions apply again once the key is there.
    let bob = Attempt {
        user: "bob",
        rhost: Some("192.0.2.7"),
        ssh_auth_info: parsed(Some(KEY_INFO)),
        ..Attempt::default()
    };
    assert_eq!(f.login_as(&bob, None, NOW).0.reason, Reason::Exempt);
    // Without the setting the environment is not consulted (password + code stacks).
    f.policy.first_factor = FirstFactor::None;
    let (d, _) = f.login_as(&Attempt::user("alice"), Some(&f.code(NOW + 60)), NOW + 60);
    assert_eq!(d.outcome, Outcome::Success);
}

#[test]
fn sshds_substituted_answer_is_denied_without_counting_a_failure() {
    let f = Fixture::new();
    // What sshd passes for root under prohibit-password: the junk string cut or repeated
    // to the typed length.
    for typed_len in [1, 6, 8, 11, 13, 30] {
        let fake: Vec<u8> = SSHD_FAKE_ANSWER
            .iter()
            .cycle()
            .take(typed_len)
            .copied()
            .collect();
        let fake = String::from_utf8(fake).unwrap();
        let (d, prompts) = f.login("alice", Some(&fake), NOW);
        assert_eq!(
            (d.outcome, d.reason, d.failures, prompts),
            (Outcome::Deny, Reason::SshdReplacedAnswer, None, 1),
            "{typed_len}"
        );
        assert!(d.detail.unwrap().contains("PermitRootLogin yes"));
    }
    // Not counted: a wrong code now is the first failure.
    let (d, _) = f.login("alice", Some("abcdef"), NOW);
    assert_eq!(d.failures, Some(1));
    assert!(!is_sshd_fake_answer(b""));
    assert!(!is_sshd_fake_answer(b"\x08\nX"));
}

#[test]
fn a_loopback_exemption_is_not_applied_and_the_audit_line_says_so() {
    let mut f = Fixture::new();
    f.policy.exemptions.exempt_networks = vec!["127.0.0.0/8".parse().unwrap()];
    for rhost in ["127.0.0.1", "::1"] {
        let attempt = Attempt {
            user: "alice",
            rhost: Some(rhost),
            ssh_auth_info: None,
            ..Attempt::default()
        };
        let at = if rhost == "::1" { NOW + 30 } else { NOW };
        let (d, prompts) = f.login_as(&attempt, Some(&f.code(at)), at);
        assert_eq!(
            (d.outcome, d.reason, prompts),
            (Outcome::Success, Reason::Ok, 1)
        );
        assert!(d.detail.unwrap().contains("not applied"), "{rhost}");
    }
}

#[test]
fn no_decision_text_contains_the_code_or_secret() {
    let f = Fixture::new();
    let code = f.code(NOW);
    let mut lines = vec![];
    for answer in [code.as_str(), code.as_str(), "999999"] {
        let (d, _) = f.login("alice", Some(answer), NOW);
        lines.push(format!(
            "{d:?} {}",
            crate::audit::line(&Default::default(), &d)
        ));
    }
    for line in lines {
        assert!(!line.contains(&code), "{line}");
        assert!(!line.contains("GEZDGNBV"), "{line}");
    }
}
