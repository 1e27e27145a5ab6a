use super::*;
use crate::test_util::Scratch;
use std::os::unix::fs::PermissionsExt;

fn alice() -> UserName {
    UserName::parse("alice").unwrap()
}

#[test]
fn lockout_starts_at_the_threshold_and_grows() {
    let policy = ThrottlePolicy::default();
    let mut st = UserState::default();
    for _ in 0..4 {
        st.record_failure(1000, &policy);
    }
    assert_eq!(st.locked_for(1000), None);
    st.record_failure(1000, &policy);
    assert_eq!(st.locked_for(1000), Some(30));
    st.record_failure(1030, &policy);
    assert_eq!(st.locked_for(1030), Some(60));
    st.record_failure(1090, &policy);
    assert_eq!(st.locked_for(1090), Some(120));
    for _ in 0..100 {
        st.record_failure(2000, &policy);
    }
    assert_eq!(st.locked_for(2000), Some(900));
    assert_eq!(st.locked_for(2900), None);
    st.record_success(3000);
    assert_eq!((st.failures, st.locked_for(2000)), (0, None));
}

#[test]
fn success_never_moves_the_replay_mark_backwards() {
    let mut st = UserState::default();
    st.record_success(600);
    st.record_success(570);
    assert_eq!(st.last_accepted, 600);
}

#[test]
fn a_lockout_from_a_clock_that_was_ahead_is_cut_to_the_maximum_from_now() {
    let policy = ThrottlePolicy::default();
    let mut st = UserState::default();
    // Five failures while the clock read one day ahead.
    let ahead = 1_000_000 + 86_400;
    for _ in 0..5 {
        st.record_failure(ahead, &policy);
    }
    assert_eq!(st.locked_for(1_000_000), Some(86_400 + 30));
    assert!(st.clamp_lockout(1_000_000, policy.lockout_max_seconds));
    assert_eq!(st.locked_for(1_000_000), Some(900));
    assert!(
        !st.clamp_lockout(1_000_000, policy.lockout_max_seconds),
        "idempotent"
    );
    // A normal lockout is untouched.
    let mut normal = UserState::default();
    for _ in 0..5 {
        normal.record_failure(1_000_000, &policy);
    }
    assert!(!normal.clamp_lockout(1_000_000, 900));
    assert_eq!(normal.locked_for(1_000_000), Some(30));
}

#[test]
fn a_replay_mark_far_ahead_of_the_clock_is_recognised() {
    let st = UserState {
        last_accepted: 1_000_060,
        ..UserState::default()
    };
    assert_eq!(
        st.mark_ahead(1_000_000, 60),
        None,
        "a phone one window ahead"
    );
    assert_eq!(st.mark_ahead(1_000_000, 30), Some(60));
    assert_eq!(st.mark_ahead(2_000_000, 30), None, "in the past: normal");
}

#[test]
fn unlock_moves_the_replay_mark_back_only_out_of_an_impossible_future() {
    let tolerance = replay_tolerance(30, 1);
    // A phone one step ahead: the mark is 30 s in the future; unlock keeps it (issue 23.7:
    // pulling it back to now made the code just used valid again).
    let mut st = UserState {
        last_accepted: 1_000_030,
        failures: 7,
        locked_until: 1_000_500,
        ..UserState::default()
    };
    assert!(!st.unlock(1_000_000, tolerance));
    assert_eq!(
        (st.last_accepted, st.failures, st.locked_until),
        (1_000_030, 0, 0)
    );
    // The unlocking host's clock 45 s behind the host that accepted the code: still kept.
    let mut st = UserState {
        last_accepted: 1_000_000,
        ..UserState::default()
    };
    assert!(!st.unlock(1_000_000 - 45, tolerance));
    assert_eq!(st.last_accepted, 1_000_000);
    // Exactly at the edge of the window: kept; one second beyond: pulled back to now.
    let mut st = UserState {
        last_accepted: 1_000_060,
        ..UserState::default()
    };
    assert!(!st.unlock(1_000_000, tolerance));
    st.last_accepted = 1_000_061;
    assert!(st.unlock(1_000_000, tolerance));
    assert_eq!(st.last_accepted, 1_000_000);
    // A day ahead (a clock that was wrong): pulled back to now.
    let mut st = UserState {
        last_accepted: 1_086_400,
        ..UserState::default()
    };
    assert!(st.unlock(1_000_000, tolerance));
    assert_eq!(st.last_accepted, 1_000_000);
    // In the past: never moves.
    let mut st = UserState {
        last_accepted: 900_000,
        ..UserState::default()
    };
    assert!(!st.unlock(1_000_000, tolerance));
    assert_eq!(st.last_accepted, 900_000);
}

#[test]
fn a_grace_mark_longer_than_grace_seconds_covers_nothing() {
    let mut grace = Grace::default();
    grace.grant(7, 1_000_600, 1_000_000);
    assert!(grace.covers(7, 1_000_000, 600));
    assert!(grace.covers(7, 1_000_599, 600));
    assert!(!grace.covers(7, 1_000_600, 600), "ended");
    assert!(
        !grace.covers(7, 1_000_000, 599),
        "longer than policy allows now"
    );
    // A forged mark ending in 2100 (a fleet host wrote it): never.
    let forged = Grace::from_strings(&["0000000000000007:4102444800".to_string()]).unwrap();
    assert!(!forged.covers(7, 1_000_000, 3600));
    assert!(!forged.covers(0, 1_000_000, u64::MAX));
    // Forged marks do not hold slots against real ones: the next grant drops them.
    let all: Vec<String> = (1..=4).map(|i| format!("{i:016x}:4102444800")).collect();
    let mut full = Grace::from_strings(&all).unwrap();
    full.grant(9, 1_000_600, 1_000_000);
    full.grant(10, 1_000_600, 1_000_000);
    assert!(full.covers(9, 1_000_000, 600) && full.covers(10, 1_000_000, 600));
    assert_eq!(full.marks().count(), 2);
}

#[test]
fn record_generations_never_go_back() {
    let mut st = UserState::default();
    assert_eq!(st.see_generation(0), Ok(()), "records without a generation");
    assert_eq!(st.see_generation(3), Ok(()));
    assert_eq!(st.see_generation(3), Ok(()));
    assert_eq!(st.see_generation(2), Err(3));
    assert_eq!(st.see_generation(0), Err(3));
    assert_eq!(st.generation, 3);
}

#[test]
fn an_administrators_write_follows_a_seen_generation_only_within_the_leap() {
    assert_eq!(generation_after(0, 0), 1);
    assert_eq!(generation_after(5, 3), 6);
    assert_eq!(
        generation_after(5, 9),
        10,
        "rolled back: above what logins saw"
    );
    let leap = MAX_GENERATION_LEAP;
    assert_eq!(generation_after(5, 5 + leap), 6 + leap);
    assert_eq!(generation_after(5, 6 + leap), 6, "forged: not followed");
    assert_eq!(generation_after(5, MAX_GENERATION), 6);
    // The forged state is put right by the write, so the token's logins work again.
    let mut st = UserState {
        generation: MAX_GENERATION,
        ..Default::default()
    };
    assert_eq!(st.see_generation(6), Err(MAX_GENERATION));
    st.remember_written(6);
    assert_eq!(st.see_generation(6), Ok(()));
    assert_eq!(st.see_generation(5), Err(6));
}

#[test]
fn used_recovery_codes_and_hotp_counters_live_in_the_state_and_fold_into_the_record() {
    use crate::store::UserRecord;
    use crate::totp::{SecretKey, TotpParams};
    let hashes: Vec<String> = (0..10).map(|i| format!("$argon2id$h{i}")).collect();
    let mut st = UserState::default();
    assert!(st.used_recovery.use_code(&hashes[3], &hashes));
    assert!(st.used_recovery.use_code(&hashes[5], &hashes));
    assert!(st.used_recovery.contains(&hashes[3]));
    assert!(!st.used_recovery.contains(&hashes[4]));
    assert_eq!(st.used_recovery.unused_in(&hashes), 8);
    let mut record = UserRecord {
        user: alice(),
        secret: SecretKey::from_bytes(vec![9; 20]).unwrap(),
        params: TotpParams::default(),
        created: 1,
        issuer: "t".into(),
        recovery_codes: hashes.clone(),
        origin: crate::store::record::Origin::Admin,
        hotp: Some(4),
        generation: 0,
        person: None,
        keys: Vec::new(),
    };
    st.hotp = Some((hotp_tag(record.secret.as_bytes()), 9));
    // Round trip through the file format.
    st.generation = 5;
    let text = st.to_text();
    let back = UserState::parse(text.as_bytes()).unwrap();
    assert_eq!(back, UserState { version: 1, ..st });
    back.fold_into(&mut record);
    assert_eq!(record.recovery_codes.len(), 8);
    assert_eq!(record.hotp, Some(9));
    // Another token (a reset): the counter is not carried over.
    let mut other = record.clone();
    other.secret = SecretKey::from_bytes(vec![8; 20]).unwrap();
    other.hotp = Some(0);
    back.fold_into(&mut other);
    assert_eq!(other.hotp, Some(0));
    // Codes no longer in the record are forgotten when the next one is used.
    let mut st = back;
    assert!(
        st.used_recovery
            .use_code(&record.recovery_codes[0], &record.recovery_codes)
    );
    assert_eq!(st.used_recovery.to_toml_array().matches('"').count(), 2);
    // A secret replaced: grace, used codes, resync, failures go; mark, counter stay.
    st.grace.grant(1, 2_000, 1_000);
    st.failures = 3;
    st.hotp_resync = 44;
    st.last_accepted = 990;
    st.replace_secret();
    assert_eq!(
        (st.failures, st.hotp_resync, st.grace.marks().count()),
        (0, 0, 0)
    );
    assert_eq!(st.used_recovery, UsedRecovery::default());
    assert_eq!((st.last_accepted, st.hotp.map(|h| h.1)), (990, Some(9)));
    // Junk is refused.
    for junk in [
        "version = 1\nlast_accepted = 0\nfailures = 0\nlocked_until = 0\nused_recovery = [\"zz\"]\n",
        "version = 1\nlast_accepted = 0\nfailures = 0\nlocked_until = 0\nhotp = \"12\"\n",
    ] {
        assert!(UserState::parse(junk.as_bytes()).is_err(), "{junk}");
    }
}

#[test]
fn state_is_saved_under_the_lock_and_read_back() {
    let s = Scratch::new("state");
    let store = FileStateStore::new(s.0.join("run"));
    store
        .transact(&Owner::account(&alice()), |st| st.record_success(90))
        .unwrap();
    let seen = store.transact(&Owner::account(&alice()), |st| *st).unwrap();
    assert_eq!(seen.last_accepted, 90);
    // An administrator's unlock/reset/removal forgets failures, never the replay mark.
    let policy = ThrottlePolicy {
        max_failures: 1,
        ..ThrottlePolicy::default()
    };
    store
        .transact(&Owner::account(&alice()), |st| {
            st.record_failure(100, &policy)
        })
        .unwrap();
    store
        .transact(&Owner::account(&alice()), |st| st.forget_failures())
        .unwrap();
    let after = store.transact(&Owner::account(&alice()), |st| *st).unwrap();
    assert_eq!(
        (after.last_accepted, after.failures, after.locked_until),
        (90, 0, 0)
    );
}

#[test]
fn corrupt_state_denies_and_empty_state_is_fresh() {
    let s = Scratch::new("state");
    let store = FileStateStore::new(&s.0);
    let path = s.0.join("alice.state");
    std::fs::write(&path, "garbage =").unwrap();
    std::fs::set_permissions(&path, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(matches!(
        store.transact(&Owner::account(&alice()), |_| ()),
        Err(StateError::Corrupt { .. })
    ));
    std::fs::write(&path, "").unwrap();
    assert_eq!(
        store.transact(&Owner::account(&alice()), |st| *st).unwrap(),
        UserState::default()
    );
}

#[test]
fn concurrent_transactions_are_serialised() {
    let s = Scratch::new("state");
    let store = FileStateStore::new(&s.0);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    store
                        .transact(&Owner::account(&alice()), |st| st.failures += 1)
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        store
            .transact(&Owner::account(&alice()), |st| st.failures)
            .unwrap(),
        200
    );
}
