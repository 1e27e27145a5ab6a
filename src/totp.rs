//! TOTP (RFC 6238 on RFC 4226): parameters, secrets, typed-code normalisation and verification.
//!
//! The clock is always a parameter (`unix_time`), never read here, so tests use fixed times and
//! the caller decides what a clock before the epoch means. Replay prevention needs the last
//! accepted time step, which the caller keeps (see [`crate::state`]); [`verify`] only says
//! whether the code matches a step that is *later* than that one.
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use zeroize::{Zeroize, Zeroizing};

/// Smallest secret accepted: 128 bits (RFC 4226 §4 requires at least that; 160 are generated).
pub const MIN_SECRET_BYTES: usize = 16;
/// Largest secret accepted: 1024 bits (128 bytes, the SHA-512 block size: longer HMAC keys are
/// hashed down anyway).
pub const MAX_SECRET_BYTES: usize = 128;
/// Largest window accepted (steps on each side). Wider windows mostly help attackers.
pub const MAX_WINDOW: u8 = 10;

/// The HMAC hash function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// HMAC-SHA1: the default, and the only one every authenticator app supports.
    #[default]
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The name used in records and otpauth URIs (`SHA1`, `SHA256`, `SHA512`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Secret length generated for this algorithm: the hash output size (RFC 4226 recommends
    /// at least 160 bits; matching the output size is what RFC 6238's test vectors use).
    pub fn secret_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn engine(self) -> totp_rs::Algorithm {
        match self {
            Self::Sha1 => totp_rs::Algorithm::SHA1,
            Self::Sha256 => totp_rs::Algorithm::SHA256,
            Self::Sha512 => totp_rs::Algorithm::SHA512,
        }
    }
}

impl FromStr for Algorithm {
    type Err = TotpError;

    /// Accepts `SHA1`, `SHA256`, `SHA512` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Ok(Self::Sha1),
            "SHA256" => Ok(Self::Sha256),
            "SHA512" => Ok(Self::Sha512),
            _ => Err(TotpError::UnknownAlgorithm),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Validated TOTP parameters: algorithm, 6 or 8 digits, 30 or 60 second period.
///
/// Only the values authenticator apps actually support are allowed, so a record can never ask
/// `totp-rs` for something it would panic on (such as 10 digits or a zero period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpParams {
    algorithm: Algorithm,
    digits: u8,
    period: u64,
}

impl TotpParams {
    /// The code lengths this project supports (RFC 4226 allows 6 to 8; apps show 6 or 8).
    pub const DIGITS: [u8; 2] = [6, 8];
    /// The step lengths this project supports, in seconds.
    pub const PERIODS: [u64; 2] = [30, 60];

    /// Checks and combines the three parameters.
    pub fn new(algorithm: Algorithm, digits: u8, period: u64) -> Result<Self, TotpError> {
        if !Self::DIGITS.contains(&digits) {
            return Err(TotpError::BadDigits);
        }
        if !Self::PERIODS.contains(&period) {
            return Err(TotpError::BadPeriod);
        }
        Ok(Self {
            algorithm,
            digits,
            period,
        })
    }

    /// The HMAC hash function.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of digits in a code.
    pub fn digits(&self) -> u8 {
        self.digits
    }

    /// Length of a time step in seconds.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// The time step that contains `unix_time`.
    pub fn step_at(&self, unix_time: u64) -> u64 {
        unix_time / self.period
    }

    /// The Unix time at which `step` starts (what the replay state stores, so that a change of
    /// period never makes an old mark look new).
    pub fn step_start(&self, step: u64) -> u64 {
        step.saturating_mul(self.period)
    }
}

impl Default for TotpParams {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
        }
    }
}

/// A shared TOTP secret. The bytes are wiped on drop and never formatted.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Zeroizing<Vec<u8>>);

impl SecretKey {
    /// Wraps raw key bytes (128 to 1024 bits).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, TotpError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(TotpError::SecretTooShort);
        }
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(TotpError::SecretTooLong);
        }
        Ok(Self(bytes))
    }

    /// Parses base32 (RFC 4648) as people and apps write it: any letter case, spaces or dashes
    /// between groups, optional `=` padding.
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let mut clean = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            match c {
                ' ' | '-' | '=' => {}
                c if c.is_ascii_alphanumeric() => clean.push(c.to_ascii_uppercase()),
                _ => return Err(TotpError::BadBase32),
            }
        }
        let secret =
            totp_rs::Secret::try_from_base32(clean.as_str()).map_err(|_| TotpError::BadBase32)?;
        Self::from_bytes(secret.as_bytes().to_vec())
    }

    /// Unpadded upper-case base32, as authenticator apps expect it.
    pub fn to_base32(&self) -> Zeroizing<String> {
        let secret = totp_rs::Secret::from(self.0.as_slice());
        Zeroizing::new(secret.to_base32())
    }

    /// [`SecretKey::to_base32`] in groups of four (`ABCD EFGH ...`), for typing the secret
    /// into an app by hand (apps ignore the spaces).
    pub fn to_grouped_base32(&self) -> Zeroizing<String> {
        let secret = self.to_base32();
        let mut grouped = Zeroizing::new(String::with_capacity(secret.len() * 5 / 4 + 1));
        for (i, c) in secret.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        grouped
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// A typed code after normalisation: exactly `digits` ASCII digits. Wiped on drop.
pub struct TypedCode(Zeroizing<String>);

impl TypedCode {
    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TypedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedCode([redacted])")
    }
}

/// Longest input that is even looked at. Anything longer is a wrong code without further
/// processing, so a megabyte of input costs nothing.
pub const MAX_INPUT_LEN: usize = 64;

/// Normalises what the user typed: surrounding white space is dropped and inner spaces (as in
/// `123 456`) are removed. Anything that is not then exactly `digits` ASCII digits is `None`,
/// which the caller treats as a wrong code.
pub fn normalize_code(input: &[u8], digits: u8) -> Option<TypedCode> {
    if input.len() > MAX_INPUT_LEN {
        return None;
    }
    let trimmed = input.trim_ascii();
    let mut code = Zeroizing::new(String::with_capacity(usize::from(digits)));
    for &b in trimmed {
        match b {
            b' ' => {}
            b'0'..=b'9' if code.len() < usize::from(digits) => code.push(char::from(b)),
            _ => return None,
        }
    }
    (code.len() == usize::from(digits)).then(|| TypedCode(code))
}

/// The outcome of checking a code against a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The code matches `step`, which is later than the last accepted one. `skew` is `step`
    /// minus the current step (negative: the phone is behind).
    Accepted { step: u64, skew: i64 },
    /// The code matches a step inside the window, but not a later one than the last accepted
    /// step: a replay (RFC 6238 §5.2).
    Replayed { skew: i64 },
    /// The code matches no step inside the window.
    Rejected,
}

/// Checks `code` against the steps `current - window ..= current + window`.
///
/// A step only counts as fresh when its start time is later than `last_accepted_time` (the
/// start time of the last accepted step, 0 if none). Comparing times rather than step numbers
/// keeps replay state meaningful when an enrollment changes its period.
///
/// Every step of the window is computed and compared in constant time (no early exit), so the
/// time taken does not tell which step matched.
pub fn verify(
    secret: &SecretKey,
    params: TotpParams,
    code: &TypedCode,
    unix_time: u64,
    window: u8,
    last_accepted_time: u64,
) -> Verification {
    let engine = engine(secret, params);
    let current = params.step_at(unix_time);
    let first = current.saturating_sub(u64::from(window));
    let last = current.saturating_add(u64::from(window));
    let mut fresh: Option<u64> = None;
    let mut replayed: Option<u64> = None;
    for step in first..=last {
        let Some(start) = step.checked_mul(params.period) else {
            break;
        };
        let expected = CodeBuf::from_token(&engine.generate(start));
        if constant_time_eq(expected.as_bytes(), code.0.as_bytes()) {
            if start > last_accepted_time {
                fresh.get_or_insert(step);
            } else {
                replayed = Some(step);
            }
        }
    }
    let skew = |step: u64| step as i64 - current as i64;
    match (fresh, replayed) {
        (Some(step), _) => Verification::Accepted {
            step,
            skew: skew(step),
        },
        (None, Some(step)) => Verification::Replayed { skew: skew(step) },
        (None, None) => Verification::Rejected,
    }
}

/// The code for the step containing `unix_time` (for confirmation prompts and tests).
pub fn code_at(secret: &SecretKey, params: TotpParams, unix_time: u64) -> Zeroizing<String> {
    let token = engine(secret, params).generate(unix_time);
    Zeroizing::new(CodeBuf::from_token(&token).as_str().to_owned())
}

/// The HOTP (RFC 4226) code for `counter`. The TOTP engine computes HOTP of `time / period`,
/// so the counter is passed as a time; `None` when that time does not fit (a counter near
/// 2^64 / 60, which no token reaches).
pub fn hotp_code(
    secret: &SecretKey,
    params: TotpParams,
    counter: u64,
) -> Option<Zeroizing<String>> {
    let time = counter.checked_mul(params.period)?;
    Some(code_at(secret, params, time))
}

/// Checks an HOTP `code` against the counters `from .. from + count`, every one computed and
/// compared in constant time (no early exit); the first matching counter.
pub fn hotp_verify(
    secret: &SecretKey,
    params: TotpParams,
    code: &TypedCode,
    from: u64,
    count: u64,
) -> Option<u64> {
    let engine = engine(secret, params);
    let mut matched = None;
    for counter in from..from.saturating_add(count) {
        let Some(time) = counter.checked_mul(params.period) else {
            break;
        };
        let expected = CodeBuf::from_token(&engine.generate(time));
        if constant_time_eq(expected.as_bytes(), code.0.as_bytes()) {
            matched.get_or_insert(counter);
        }
    }
    matched
}

/// Builds the `totp-rs` engine. `build_noncompliant` skips only checks that [`TotpParams`] and
/// [`SecretKey`] already enforce (digits 6/8, period non-zero, secret >= 128 bits); the
/// validated types make the generate calls below panic-free.
fn engine(secret: &SecretKey, params: TotpParams) -> totp_rs::Totp {
    totp_rs::Builder::new()
        .with_algorithm(params.algorithm.engine())
        .with_digits(params.digits)
        .with_step_duration(params.period)
        .with_skew(0)
        .with_secret(secret.as_bytes())
        .build_noncompliant()
}

/// A formatted code on the stack (at most 8 digits), wiped on drop.
struct CodeBuf {
    bytes: [u8; 10],
    len: usize,
}

impl CodeBuf {
    fn from_token(token: &totp_rs::Token) -> Self {
        use std::fmt::Write;
        let mut buf = Self {
            bytes: [0; 10],
            len: 0,
        };
        // Cannot fail: a token has at most 8 digits and the buffer holds 10.
        let _ = write!(buf, "{token}");
        buf
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl fmt::Write for CodeBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Drop for CodeBuf {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Errors in TOTP parameters or secrets. None carries secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpError {
    /// The algorithm is not SHA1, SHA256 or SHA512.
    UnknownAlgorithm,
    /// Digits other than 6 or 8.
    BadDigits,
    /// A period other than 30 or 60 seconds.
    BadPeriod,
    /// The secret is not valid base32.
    BadBase32,
    /// The secret has fewer than 128 bits.
    SecretTooShort,
    /// The secret has more than 1024 bits.
    SecretTooLong,
}

impl fmt::Display for TotpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UnknownAlgorithm => "algorithm must be SHA1, SHA256 or SHA512",
            Self::BadDigits => "digits must be 6 or 8",
            Self::BadPeriod => "period must be 30 or 60 seconds",
            Self::BadBase32 => "secret is not valid base32",
            Self::SecretTooShort => "secret is shorter than 128 bits",
            Self::SecretTooLong => "secret is longer than 1024 bits",
        })
    }
}

impl std::error::Error for TotpError {}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED20: &[u8] = b"12345678901234567890";
    const SEED32: &[u8] = b"12345678901234567890123456789012";
    const SEED64: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn key(bytes: &[u8]) -> SecretKey {
        SecretKey::from_bytes(bytes.to_vec()).unwrap()
    }

    fn typed(code: &str, digits: u8) -> TypedCode {
        normalize_code(code.as_bytes(), digits).unwrap()
    }

    /// RFC 6238 Appendix B, every row: (time, SHA1, SHA256, SHA512), 8 digits, 30 s.
    const APPENDIX_B: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];

    #[test]
    fn rfc6238_appendix_b_vectors_are_generated() {
        for (time, sha1, sha256, sha512) in APPENDIX_B {
            for (alg, seed, expected) in [
                (Algorithm::Sha1, SEED20, sha1),
                (Algorithm::Sha256, SEED32, sha256),
                (Algorithm::Sha512, SEED64, sha512),
            ] {
                let params = TotpParams::new(alg, 8, 30).unwrap();
                assert_eq!(
                    code_at(&key(seed), params, time).as_str(),
                    expected,
                    "{alg} at {time}"
                );
            }
        }
    }

    #[test]
    fn rfc6238_appendix_b_vectors_verify_at_their_own_step() {
        for (time, sha1, sha256, sha512) in APPENDIX_B {
            for (alg, seed, code) in [
                (Algorithm::Sha1, SEED20, sha1),
                (Algorithm::Sha256, SEED32, sha256),
                (Algorithm::Sha512, SEED64, sha512),
            ] {
                let params = TotpParams::new(alg, 8, 30).unwrap();
                let result = verify(&key(seed), params, &typed(code, 8), time, 1, 0);
                assert_eq!(
                    result,
                    Verification::Accepted {
                        step: time / 30,
                        skew: 0
                    }
                );
            }
        }
    }

    #[test]
    fn six_digit_codes_are_the_last_six_digits() {
        let params = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
        assert_eq!(code_at(&key(SEED20), params, 59).as_str(), "287082");
    }

    #[test]
    fn sixty_second_period_uses_sixty_second_steps() {
        let params = TotpParams::new(Algorithm::Sha1, 8, 60).unwrap();
        // Step 1 of a 60 s period is step 2 (time 60..89) of a 30 s period.
        let thirty = TotpParams::new(Algorithm::Sha1, 8, 30).unwrap();
        assert_eq!(
            code_at(&key(SEED20), params, 61).as_str(),
            code_at(&key(SEED20), thirty, 30).as_str()
        );
        assert_eq!(params.step_at(119), 1);
    }

    #[test]
    fn window_accepts_one_step_either_side_and_reports_skew() {
        let params = TotpParams::default();
        let secret = key(SEED20);
        let now = 1_700_000_000;
        let step = now / 30;
        let before = code_at(&secret, params, now - 30);
        let after = code_at(&secret, params, now + 30);
        assert_eq!(
            verify(&secret, params, &typed(&before, 6), now, 1, 0),
            Verification::Accepted {
                step: step - 1,
                skew: -1
            }
        );
        assert_eq!(
            verify(&secret, params, &typed(&after, 6), now, 1, 0),
            Verification::Accepted {
                step: step + 1,
                skew: 1
            }
        );
    }

    #[test]
    fn codes_outside_the_window_are_rejected() {
        let params = TotpParams::default();
        let secret = key(SEED20);
        let now = 1_700_000_000;
        let old = code_at(&secret, params, now - 60);
        assert_eq!(
            verify(&secret, params, &typed(&old, 6), now, 1, 0),
            Verification::Rejected
        );
        assert!(matches!(
            verify(&secret, params, &typed(&old, 6), now, 2, 0),
            Verification::Accepted { skew: -2, .. }
        ));
        let current = code_at(&secret, params, now);
        assert!(matches!(
            verify(&secret, params, &typed(&current, 6), now, 0, 0),
            Verification::Accepted { skew: 0, .. }
        ));
        assert_eq!(
            verify(&secret, params, &typed(&old, 6), now, 0, 0),
            Verification::Rejected
        );
    }

    #[test]
    fn replayed_code_is_rejected() {
        let params = TotpParams::default();
        let secret = key(SEED20);
        let now = 1_700_000_000;
        let code = typed(&code_at(&secret, params, now), 6);
        let Verification::Accepted { step, .. } = verify(&secret, params, &code, now, 1, 0) else {
            panic!("fresh code must be accepted");
        };
        let last = step * 30;
        assert_eq!(
            verify(&secret, params, &code, now, 1, last),
            Verification::Replayed { skew: 0 }
        );
        // An older code (previous step) after a newer one was accepted is a replay too.
        let older = typed(&code_at(&secret, params, now - 30), 6);
        assert_eq!(
            verify(&secret, params, &older, now, 1, last),
            Verification::Replayed { skew: -1 }
        );
        // The next step's code is still fresh.
        let next = typed(&code_at(&secret, params, now + 30), 6);
        assert!(matches!(
            verify(&secret, params, &next, now, 1, last),
            Verification::Accepted { skew: 1, .. }
        ));
    }

    #[test]
    fn wrong_code_is_rejected() {
        let params = TotpParams::default();
        let secret = key(SEED20);
        let now = 1_700_000_000;
        let right = code_at(&secret, params, now);
        let wrong: String = right
            .chars()
            .map(|c| char::from(b'0' + ((c as u8 - b'0' + 1) % 10)))
            .collect();
        assert_eq!(
            verify(&secret, params, &typed(&wrong, 6), now, 1, 0),
            Verification::Rejected
        );
    }

    #[test]
    fn time_at_the_epoch_and_far_future_do_not_panic() {
        let params = TotpParams::default();
        let secret = key(SEED20);
        let code = typed("000000", 6);
        let _ = verify(&secret, params, &code, 0, MAX_WINDOW, 0);
        let _ = verify(&secret, params, &code, u64::MAX, MAX_WINDOW, 0);
        let _ = verify(&secret, params, &code, u64::MAX - 1, MAX_WINDOW, u64::MAX);
    }

    #[test]
    fn typed_codes_are_normalised() {
        assert_eq!(typed(" 123456\n", 6).0.as_str(), "123456");
        assert_eq!(typed("123 456", 6).0.as_str(), "123456");
        assert_eq!(typed("\t12 34 56 \r\n", 6).0.as_str(), "123456");
        assert_eq!(typed("1234 5678", 8).0.as_str(), "12345678");
    }

    #[test]
    fn anything_but_exactly_the_digits_is_not_a_code() {
        let too_long = "1".repeat(1_000_000);
        let cases: [&[u8]; 14] = [
            b"",
            b"   ",
            b"12345",
            b"1234567",
            b"12345a",
            b"+12345",
            b"-12345",
            b"123-456",
            b"12\x003456",
            b"123\x1b456",
            "١٢٣٤٥٦".as_bytes(),
            "１２３４５６".as_bytes(),
            b"\xff\xfe123456",
            too_long.as_bytes(),
        ];
        for input in cases {
            assert!(normalize_code(input, 6).is_none(), "{input:?}");
        }
        assert!(normalize_code(b"123456", 8).is_none());
    }

    #[test]
    fn parameters_outside_what_apps_support_are_refused() {
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 7, 30),
            Err(TotpError::BadDigits)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 10, 30),
            Err(TotpError::BadDigits)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 0),
            Err(TotpError::BadPeriod)
        );
        assert_eq!(
            TotpParams::new(Algorithm::Sha1, 6, 45),
            Err(TotpError::BadPeriod)
        );
        assert_eq!("sha256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("MD5".parse::<Algorithm>(), Err(TotpError::UnknownAlgorithm));
    }

    #[test]
    fn base32_secrets_round_trip_and_are_normalised() {
        let secret = key(SEED20);
        let text = secret.to_base32();
        assert_eq!(text.as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(SecretKey::from_base32(&text).unwrap(), secret);
        let spaced = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq";
        assert_eq!(SecretKey::from_base32(spaced).unwrap(), secret);
        let grouped = secret.to_grouped_base32();
        assert_eq!(grouped.as_str(), spaced.to_uppercase());
        // 21 bytes: 34 characters, the last group short.
        let odd = key(b"123456789012345678901").to_grouped_base32();
        assert_eq!(odd.as_str(), "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ GE");
        assert_eq!(
            SecretKey::from_base32("GEZDGNBV"),
            Err(TotpError::SecretTooShort)
        );
        assert_eq!(
            SecretKey::from_base32("GEZDGNBV!"),
            Err(TotpError::BadBase32)
        );
    }

    #[test]
    fn secrets_and_codes_are_redacted_in_debug_output() {
        let secret = key(SEED20);
        let shown = format!("{secret:?} {:?}", typed("287082", 6));
        assert!(!shown.contains("GEZDGNBV") && !shown.contains("1234567890"));
        assert!(!shown.contains("287082"));
    }
}
