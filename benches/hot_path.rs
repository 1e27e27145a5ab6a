//! The authentication hot path without PAM: record load + TOTP verify + replay/throttle state
//! update (`login::Login` with a scripted conversation), for correct, wrong and replayed
//! codes and for recovery codes, on a tmpfs (/dev/shm) like /run. Reports figures; asserts
//! nothing about time (machines here are shared and noisy).
//!
//!     sudo cargo bench --bench hot_path
//!
//! Needs root: the store must be root-owned. scripts/bench measures the whole PAM stack.

use std::time::{Duration, Instant, SystemTime};

use pam_ecs_mfa::login::files::Files;
use pam_ecs_mfa::login::{Attempt, Conversation, ConversationError, Login};
use pam_ecs_mfa::policy::Policy;
use pam_ecs_mfa::recovery;
use pam_ecs_mfa::store::{SaveMode, Store, UserRecord};
use pam_ecs_mfa::totp::{SecretKey, TotpParams, code_at};
use pam_ecs_mfa::user_name::UserName;
use zeroize::Zeroizing;

struct Answer(String);

impl Conversation for Answer {
    fn ask_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
        Ok(Zeroizing::new(self.0.as_bytes().to_vec()))
    }

    fn info(&mut self, _: &str) -> Result<(), ConversationError> {
        Ok(())
    }
}

fn main() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "run as root (root-owned store)"
    );
    let users = 2000;
    let dir = std::env::temp_dir().join(format!("ecs-mfa-hot-{}", std::process::id()));
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from(format!("/dev/shm/ecs-mfa-hot-{}", std::process::id()))
    } else {
        dir
    };
    let policy = Policy {
        store_dir: dir.join("users"),
        state_dir: dir.join("run"),
        throttle: pam_ecs_mfa::state::ThrottlePolicy {
            max_failures: 100,
            ..Default::default()
        },
        ..Policy::default()
    };
    let store = Store::new(&policy.store_dir);
    let secret = SecretKey::from_bytes(vec![42; 20]).unwrap();
    let (codes, hashes) = recovery::generate().unwrap();
    for i in 0..users {
        let record = UserRecord {
            user: UserName::parse(&format!("u{i}")).unwrap(),
            secret: secret.clone(),
            params: TotpParams::default(),
            created: 0,
            issuer: "bench".into(),
            recovery_codes: if i == 0 { hashes.clone() } else { vec![] },
            origin: pam_ecs_mfa::store::record::Origin::Admin,
            hotp: None,
            generation: 0,
            person: None,
            keys: Vec::new(),
        };
        store.save(&record, SaveMode::CreateNew).unwrap();
    }
    let now = pam_ecs_mfa::clock::now();
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = code_at(&secret, TotpParams::default(), unix).to_string();
    let wrong = code
        .bytes()
        .map(|b| char::from(b'0' + (b - b'0' + 5) % 10))
        .collect::<String>();
    // The bench users are not NSS accounts: every valid name stands for its own account here.
    // What the NSS lookup of a real login costs is measured on its own below.
    let accounts = |u: &UserName| (!u.as_str().starts_with("nobody")).then(|| u.clone());
    let authenticate = |conv: &mut Answer, policy: &Policy, attempt: &Attempt, now| {
        Login::new(conv, policy, *attempt, &move || now)
            .with_accounts(&accounts)
            .run(&mut Files::new(policy))
            .decision
    };
    let run = |name: &str, answer: &str, n: usize, user: &dyn Fn(usize) -> String| {
        let mut lat = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let t0 = Instant::now();
            let _ = authenticate(
                &mut Answer(answer.to_string()),
                &policy,
                &Attempt::user(&user(i)),
                now,
            );
            lat.push(t0.elapsed());
        }
        report(name, start.elapsed(), &mut lat);
    };
    run("correct code", &code, users, &|i| format!("u{i}"));
    run("replayed code", &code, users, &|i| format!("u{i}"));
    run("wrong code", &wrong, users, &|i| format!("u{i}"));
    run("unknown user", &code, users, &|i| format!("nobody{i}"));
    let recovery: Vec<String> = codes.iter().map(ToString::to_string).collect();
    let mut lat = Vec::new();
    let start = Instant::now();
    for code in &recovery {
        let t0 = Instant::now();
        let _ = authenticate(
            &mut Answer(code.clone()),
            &policy,
            &Attempt::user("u0"),
            now,
        );
        lat.push(t0.elapsed());
    }
    report("recovery code (10 stored)", start.elapsed(), &mut lat);
    // Recovery-shaped input must cost the same whoever asks (no enrollment oracle): a wrong
    // code for a user with codes, one without codes, one not enrolled at all.
    run("wrong recovery, 0 left", "zzzzz-zzzzz", 5, &|_| {
        "u0".to_string()
    });
    run("wrong recovery, none ever", "zzzzz-zzzzz", 5, &|_| {
        "u1".to_string()
    });
    run("wrong recovery, unknown", "zzzzz-zzzzz", 5, &|i| {
        format!("nobody{i}")
    });
    let mut lat = Vec::new();
    let start = Instant::now();
    let root = UserName::parse("root").unwrap();
    for _ in 0..users {
        let t0 = Instant::now();
        let _ = pam_ecs_mfa::user_name::nss_account(&root);
        lat.push(t0.elapsed());
    }
    report("NSS account lookup (root)", start.elapsed(), &mut lat);
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(name: &str, total: Duration, lat: &mut [Duration]) {
    lat.sort();
    let n = lat.len();
    println!(
        "{name:<28} {n:>5} runs  {:>9.1}/s  p50 {:>7.1} us  p99 {:>7.1} us",
        n as f64 / total.as_secs_f64(),
        lat[n / 2].as_secs_f64() * 1e6,
        lat[n * 99 / 100].as_secs_f64() * 1e6
    );
}
