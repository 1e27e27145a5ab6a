//! Single-use recovery codes: for the day the phone is lost.
//!
//! A code is 10 characters of Crockford base32 (`0-9 a-z` without `i l o u`), shown as
//! `xxxxx-xxxxx`: 50 bits of entropy, no characters that look alike. When typed, case, dashes
//! and spaces do not matter, and `o`, `i`, `l` are read as `0`, `1`, `1`. Ten codes are made per
//! enrollment and shown once; the record keeps only their Argon2id hashes (PHC strings), so a
//! leaked backup of the store does not leak usable recovery codes.
//!
//! A recovery code has letters or ten characters, so it can never be confused with a 6- or
//! 8-digit TOTP code: the (slow) hash check runs only for input shaped like a recovery code,
//! and a normal TOTP login never pays for it. Scratch codes imported from
//! google-authenticator (8 digits) are stored the same way and tried only for users whose TOTP
//! codes have 6 digits.
#![forbid(unsafe_code)]

use std::fmt;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use zeroize::Zeroizing;

/// Codes per enrollment.
pub const CODE_COUNT: usize = 10;
/// Characters per code.
pub const CODE_LEN: usize = 10;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (the OWASP recommendation for Argon2id). One check
/// takes ~20-40 ms; recovery-shaped input costs one check per stored code, and only for an
/// enrolled user who is not locked out (see [`CHECK_WALL`]); TOTP input none.
pub const M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes.
pub const T_COST: u32 = 2;
/// Argon2id lanes.
pub const P_COST: u32 = 1;
/// Upper bounds accepted when *reading* a hash, so a crafted record cannot make a login
/// allocate gigabytes or spin for minutes.
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 4;

/// A normalised recovery code (10 alphabet characters). Wiped on drop, never formatted by
/// `Debug`; `Display` shows it as `xxxxx-xxxxx` (only the CLI prints it, once).
pub struct RecoveryCode(Zeroizing<String>);

impl RecoveryCode {
    /// Reads typed input as a recovery code, or `None` if it is not shaped like one.
    pub fn parse(input: &[u8]) -> Option<Self> {
        if input.len() > 64 {
            return None;
        }
        let mut code = Zeroizing::new(String::with_capacity(CODE_LEN));
        for &b in input.trim_ascii() {
            let c = match b.to_ascii_lowercase() {
                b'-' | b' ' => continue,
                b'o' => b'0',
                b'i' | b'l' => b'1',
                c if ALPHABET.contains(&c) => c,
                _ => return None,
            };
            if code.len() == CODE_LEN {
                return None;
            }
            code.push(char::from(c));
        }
        (code.len() == CODE_LEN).then(|| Self(code))
    }

    /// An imported google-authenticator scratch code: exactly 8 ASCII digits (spaces ignored).
    /// Only tried for enrollments with 6-digit TOTP codes, where 8 digits cannot be a TOTP
    /// code (see `auth`).
    pub fn from_scratch_code(input: &[u8]) -> Option<Self> {
        let code = crate::totp::normalize_code(input, 8)?;
        Some(Self(Zeroizing::new(code.as_str().to_owned())))
    }

    fn random() -> Result<Self, RecoveryError> {
        let mut bytes = Zeroizing::new([0u8; CODE_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| RecoveryError::Randomness)?;
        // 256 is a multiple of 32, so `b % 32` is uniform.
        let code = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
            .collect::<String>();
        Ok(Self(Zeroizing::new(code)))
    }

    /// Hashes the code with Argon2id and a fresh random salt (PHC string).
    pub fn hash(&self) -> Result<String, RecoveryError> {
        hasher()
            .hash_password(self.0.as_bytes())
            .map(|h| h.to_string())
            .map_err(|_| RecoveryError::Hashing)
    }

    /// Index of the hash in `hashes` that this code matches. Every hash is checked (no early
    /// exit); the caller paces the whole check to [`CHECK_WALL`] ([`pace`]), so the time taken
    /// tells neither which slot matched nor how many codes are left.
    pub fn find_in(&self, hashes: &[String]) -> Option<usize> {
        let mut found = None;
        for (i, hash) in hashes.iter().enumerate() {
            if verify(self.0.as_bytes(), hash) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

/// The wall time every recovery-shaped attempt takes, whatever happens: a real check (up to
/// [`CODE_COUNT`] Argon2 runs, ~0.3 s of CPU here) is padded to it, and an attempt that cannot
/// match anything (user unknown or not enrolled, locked out, impossible name) only *waits* it,
/// using no CPU. So the response time tells nothing, and the CPU an unauthenticated client can
/// burn is bounded by the throttle of enrolled users (docs/security.md "Costly input").
pub const CHECK_WALL: std::time::Duration = std::time::Duration::from_millis(600);

/// Waits until [`CHECK_WALL`] has passed since `started` (a check slower than that, on an
/// overloaded machine, is not padded further).
pub fn pace(started: std::time::Instant) {
    if let Some(left) = CHECK_WALL.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
}

/// For recovery-shaped input that cannot match anything: takes what a check takes, without
/// the CPU.
pub fn wait_like_a_check() {
    pace(std::time::Instant::now());
}

fn verify(input: &[u8], hash: &str) -> bool {
    let Ok(parsed) = checked_hash(hash) else {
        return false;
    };
    VERIFICATIONS.with(|n| n.set(n.get() + 1));
    hasher().verify_password(input, &parsed).is_ok()
}

thread_local! {
    /// Argon2 checks made by this thread: how tests see that every recovery-shaped attempt
    /// costs the same, without timing anything.
    static VERIFICATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Argon2 checks made so far by the calling thread (see `VERIFICATIONS`).
pub fn verifications() -> u64 {
    VERIFICATIONS.with(std::cell::Cell::get)
}

impl fmt::Display for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b) = self.0.split_at(CODE_LEN / 2);
        write!(f, "{a}-{b}")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([redacted])")
    }
}

/// A fresh set of [`CODE_COUNT`] codes and their hashes, in the same order.
pub fn generate() -> Result<(Vec<RecoveryCode>, Vec<String>), RecoveryError> {
    let codes = (0..CODE_COUNT)
        .map(|_| RecoveryCode::random())
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = codes
        .iter()
        .map(RecoveryCode::hash)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((codes, hashes))
}

/// Whether `hash` is an Argon2id PHC string with acceptable parameters (records are validated
/// with this when read).
pub fn is_valid_hash(hash: &str) -> bool {
    checked_hash(hash).is_ok()
}

fn checked_hash(hash: &str) -> Result<PasswordHash, ()> {
    let parsed = PasswordHash::new(hash).map_err(|_| ())?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(());
    }
    let params = Params::try_from(&parsed).map_err(|_| ())?;
    let within = params.m_cost() <= MAX_M_COST_KIB
        && params.t_cost() <= MAX_T_COST
        && params.p_cost() <= MAX_P_COST;
    if !within || parsed.hash.is_none() || parsed.salt.is_none() {
        return Err(());
    }
    Ok(parsed)
}

fn hasher() -> Argon2<'static> {
    // The constants are valid Argon2 parameters; `DEFAULT` is the fallback that cannot fail.
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Errors while making recovery codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryError {
    /// The OS random number generator failed.
    Randomness,
    /// Argon2 refused the input (cannot happen with valid codes).
    Hashing,
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Randomness => "no randomness from the OS for recovery codes",
            Self::Hashing => "could not hash a recovery code",
        })
    }
}

impl std::error::Error for RecoveryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_costs_one_argon2_run_per_stored_code_and_waiting_costs_none() {
        let (codes, hashes) = generate().unwrap();
        let wrong = RecoveryCode::parse(b"zzzzz-zzzzz").unwrap();
        let count = |f: &dyn Fn()| {
            let before = verifications();
            f();
            verifications() - before
        };
        assert_eq!(
            count(&|| assert_eq!(codes[3].find_in(&hashes), Some(3))),
            10
        );
        assert_eq!(count(&|| assert_eq!(wrong.find_in(&hashes), None)), 10);
        assert_eq!(count(&|| assert_eq!(wrong.find_in(&hashes[..2]), None)), 2);
        assert_eq!(count(&|| assert_eq!(wrong.find_in(&[]), None)), 0);
        let started = std::time::Instant::now();
        assert_eq!(count(&wait_like_a_check), 0);
        assert!(started.elapsed() >= CHECK_WALL);
    }

    #[test]
    fn generated_codes_are_distinct_well_formed_and_match_only_their_hash() {
        let (codes, hashes) = generate().unwrap();
        assert_eq!((codes.len(), hashes.len()), (CODE_COUNT, CODE_COUNT));
        for (i, code) in codes.iter().enumerate() {
            let shown = code.to_string();
            assert_eq!(shown.len(), 11);
            assert_eq!(&shown[5..6], "-");
            assert!(hashes[i].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
            assert!(is_valid_hash(&hashes[i]));
            assert_eq!(code.find_in(&hashes), Some(i));
        }
        let shown: std::collections::HashSet<String> =
            codes.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), CODE_COUNT);
    }

    #[test]
    fn typing_is_forgiving_but_exact() {
        let code = RecoveryCode::parse(b"ab2cd-ef3gh").unwrap();
        assert_eq!(code.to_string(), "ab2cd-ef3gh");
        for typed in [" AB2CD-EF3GH \n", "ab2cdef3gh", "ab2 cd ef3 gh"] {
            assert_eq!(
                RecoveryCode::parse(typed.as_bytes()).unwrap().to_string(),
                "ab2cd-ef3gh"
            );
        }
        // Look-alikes are read as what they look like.
        assert_eq!(
            RecoveryCode::parse(b"Oilo0-abcde").unwrap().to_string(),
            "01100-abcde"
        );
        for bad in [
            "",
            "123456",
            "12345678",
            "ab2cd-ef3g",
            "ab2cd-ef3ghx",
            "ab2cd-ef3gu",
            "ab2cd_ef3gh",
        ] {
            assert!(RecoveryCode::parse(bad.as_bytes()).is_none(), "{bad}");
        }
        assert!(RecoveryCode::parse("a".repeat(1_000_000).as_bytes()).is_none());
    }

    #[test]
    fn a_wrong_code_matches_nothing() {
        let (_, hashes) = generate().unwrap();
        let wrong = RecoveryCode::parse(b"zzzzz-zzzzz").unwrap();
        assert_eq!(wrong.find_in(&hashes), None);
    }

    #[test]
    fn hashes_with_other_algorithms_or_huge_costs_are_not_valid() {
        let code = RecoveryCode::parse(b"ab2cd-ef3gh").unwrap();
        let good = code.hash().unwrap();
        assert!(is_valid_hash(&good));
        for bad in [
            good.replace("argon2id", "argon2i"),
            good.replace("m=19456", "m=4194304"),
            good.replace("t=2", "t=1000"),
            "not a hash".to_string(),
            String::new(),
        ] {
            assert!(!is_valid_hash(&bad), "{bad}");
            assert_eq!(code.find_in(&[bad]), None);
        }
    }

    #[test]
    fn codes_are_redacted_in_debug_output() {
        let code = RecoveryCode::parse(b"ab2cd-ef3gh").unwrap();
        assert!(!format!("{code:?}").contains("ab2cd"));
    }
}
