//! The library's codes match oathtool (oath-toolkit), an independent implementation, for every
//! algorithm, both digit counts, both periods and a spread of times including RFC 6238's.

mod common;

use pam_ecs_mfa::totp::{Algorithm, SecretKey, TotpParams, code_at};

#[test]
fn codes_match_oathtool() {
    common::require_real_parts();
    let secrets = [
        SecretKey::from_bytes(b"12345678901234567890".to_vec()).unwrap(),
        SecretKey::from_bytes((0u8..32).collect()).unwrap(),
        SecretKey::from_bytes((100u8..164).collect()).unwrap(),
    ];
    let times = [
        59u64,
        1_111_111_109,
        1_234_567_890,
        2_000_000_000,
        1_764_300_015,
    ];
    let mut checked = 0;
    for secret in &secrets {
        let b32 = secret.to_base32();
        for (alg, name) in [
            (Algorithm::Sha1, "sha1"),
            (Algorithm::Sha256, "sha256"),
            (Algorithm::Sha512, "sha512"),
        ] {
            for digits in [6u8, 8] {
                for period in [30u64, 60] {
                    let params = TotpParams::new(alg, digits, period).unwrap();
                    for t in times {
                        let expected = common::oathtool_code(
                            &b32,
                            &[
                                &format!("--totp={name}"),
                                &format!("--digits={digits}"),
                                &format!("--time-step-size={period}s"),
                                &format!("--now=@{t}"),
                            ],
                        );
                        assert_eq!(
                            code_at(secret, params, t).as_str(),
                            expected,
                            "{name} {digits} digits {period}s at {t}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 3 * 2 * 2 * 5);
}
