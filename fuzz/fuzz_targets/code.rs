//! Typed input never panics the normalisers; what they accept has exactly the expected shape,
//! and nothing is both a TOTP code and a recovery code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_ecs_mfa::recovery::RecoveryCode;
use pam_ecs_mfa::totp::{SecretKey, TotpParams, Verification, normalize_code, verify};

fuzz_target!(|data: &[u8]| {
    let secret = SecretKey::from_bytes(b"12345678901234567890".to_vec()).expect("valid secret");
    for digits in [6u8, 8] {
        if let Some(code) = normalize_code(data, digits) {
            assert!(RecoveryCode::parse(data).is_none());
            let params = TotpParams::new(Default::default(), digits, 30).expect("valid params");
            let result = verify(&secret, params, &code, 1_764_300_000, 1, 0);
            assert!(!matches!(result, Verification::Replayed { .. }));
        }
    }
    if let Some(code) = RecoveryCode::parse(data) {
        assert_eq!(code.to_string().len(), 11);
    }
});
