//! No secret, code or recovery code ever appears in a `Debug` or `Display` text of any record,
//! error or decision type, including errors about files that contain the secret.

use pam_ecs_mfa::audit::{Context, line};
use pam_ecs_mfa::decision::{Decision, Reason};
use pam_ecs_mfa::recovery::{RecoveryCode, generate};
use pam_ecs_mfa::store::{RecordError, StoreError, UserRecord};
use pam_ecs_mfa::totp::{SecretKey, TotpError, TotpParams, code_at, normalize_code};
use pam_ecs_mfa::user_name::UserName;

const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn assert_clean(what: &str, shown: &str, needles: &[&str]) {
    for needle in needles {
        assert!(!shown.contains(needle), "{what} shows {needle}: {shown}");
    }
}

#[test]
fn no_type_formats_a_secret_a_code_or_a_recovery_code() {
    let alice = UserName::parse("alice").unwrap();
    let secret = SecretKey::from_base32(SECRET_B32).unwrap();
    let code = code_at(&secret, TotpParams::default(), 1_764_300_000).to_string();
    let (codes, hashes) = generate().unwrap();
    let recovery = codes[0].to_string();
    let record = UserRecord {
        user: alice.clone(),
        secret: secret.clone(),
        params: TotpParams::default(),
        created: 0,
        issuer: "x".into(),
        recovery_codes: hashes,
        origin: pam_ecs_mfa::store::record::Origin::Admin,
        hotp: None,
        generation: 0,
        person: None,
        keys: Vec::new(),
    };
    let text = record.to_toml().unwrap();
    let needles = [
        SECRET_B32,
        "GEZDGNBV",
        code.as_str(),
        recovery.as_str(),
        &recovery[..5],
    ];

    let mut shown = vec![
        ("SecretKey", format!("{secret:?}")),
        ("UserRecord", format!("{record:?}")),
        (
            "TypedCode",
            format!("{:?}", normalize_code(code.as_bytes(), 6)),
        ),
        (
            "RecoveryCode",
            format!("{:?}", RecoveryCode::parse(recovery.as_bytes())),
        ),
    ];
    // Every way the record file can be broken while still holding the secret.
    let broken: Vec<String> = vec![
        text.replace("version = 1", "version = 9"),
        text.replace("digits = 6", "digits = \"six\""),
        text.replace(&format!("\"{SECRET_B32}\""), SECRET_B32),
        text.replace(&format!("\"{SECRET_B32}\""), &format!("\"{SECRET_B32}!\"")),
        text.replace("\"alice\"", "\"bob\""),
        text.replace("algorithm = \"SHA1\"", "algorithm = \"GEZDGNBV\""),
        format!("{}\nsecret2 = \"{SECRET_B32}\"\n", text.as_str()),
        text.replace(
            "recovery_codes = [",
            &format!("recovery_codes = [\"{SECRET_B32}\","),
        ),
    ];
    for (i, bad) in broken.iter().enumerate() {
        let err = UserRecord::parse(bad.as_bytes(), &alice).unwrap_err();
        shown.push(("RecordError", format!("{i}: {err} {err:?}")));
        let store_err = StoreError::Record {
            path: "/x/alice.toml".into(),
            error: err,
        };
        shown.push(("StoreError", format!("{store_err} {store_err:?}")));
        let decision = Decision::deny(Reason::BadFile).with_detail(store_err.to_string());
        shown.push(("audit line", line(&Context::default(), &decision)));
        let json = Context {
            format: pam_ecs_mfa::audit::Format::Json,
            ..Context::default()
        };
        shown.push(("JSON audit line", line(&json, &decision)));
    }
    for e in [
        TotpError::BadBase32,
        TotpError::SecretTooShort,
        TotpError::BadDigits,
    ] {
        shown.push(("TotpError", format!("{e} {e:?}")));
    }
    shown.push(("RecordError", format!("{:?}", RecordError::WrongUser)));
    for (what, text) in shown {
        assert_clean(what, &text, &needles);
    }
}
