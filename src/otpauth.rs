//! The `otpauth://` URI that authenticator apps import (Google's Key Uri Format).
//!
//! Built by hand rather than with `totp-rs`'s `to_url`, which omits default parameters and
//! rejects `:` in names: every URI here carries `secret`, `issuer`, `algorithm`, `digits` and
//! `period`, and names are cleaned instead of refused. Used by `mfa-enroll` and by the module
//! when a user enrolls at the first login.
#![forbid(unsafe_code)]

use crate::totp::{SecretKey, TotpParams};
use zeroize::Zeroizing;

/// The URI for `account` (label `issuer:account`). Holds the secret: wiped on drop.
pub fn uri(
    issuer: &str,
    account: &str,
    secret: &SecretKey,
    params: TotpParams,
) -> Zeroizing<String> {
    let issuer = encode(issuer);
    let secret = secret.to_base32();
    Zeroizing::new(format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={}&digits={}&period={}",
        params.algorithm(),
        params.digits(),
        params.period(),
        account = encode(account),
        secret = secret.as_str(),
    ))
}

/// Makes free text usable as an issuer or account name: `:` separates the two in the label
/// and control characters have no business in an app's list, so both become `-`; the rest is
/// kept (percent-encoded in the URI). Empty input becomes `ecs-mfa`.
pub fn clean_name(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .take(64)
        .map(|c| if c == ':' || c.is_control() { '-' } else { c })
        .collect();
    if cleaned.is_empty() {
        "ecs-mfa".to_string()
    } else {
        cleaned
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host name, for default issuers and account labels (`localhost` when unknown).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The URI of `record`: labelled `issuer:user@host` when the issuer is the host name (one
/// server), `issuer:user` otherwise (a configured issuer names a fleet, and one app entry then
/// serves every server of it).
pub fn record_uri(record: &crate::store::UserRecord) -> Zeroizing<String> {
    let (issuer, account) = label(record);
    match record.hotp {
        None => uri(&issuer, &account, &record.secret, record.params),
        Some(counter) => hotp_uri(&issuer, &account, &record.secret, record.params, counter),
    }
}

/// The `otpauth://hotp/` URI of a counter-based token (no period; `counter` is where the app
/// starts).
pub fn hotp_uri(
    issuer: &str,
    account: &str,
    secret: &SecretKey,
    params: TotpParams,
    counter: u64,
) -> Zeroizing<String> {
    let issuer = encode(issuer);
    let secret = secret.to_base32();
    Zeroizing::new(format!(
        "otpauth://hotp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm={}&digits={}&counter={counter}",
        params.algorithm(),
        params.digits(),
        account = encode(account),
        secret = secret.as_str(),
    ))
}

/// Like [`record_uri`], without the parameters when they are the defaults every app assumes
/// (SHA1, 6 digits, 30 s): a shorter URI gives a smaller QR code, which at a first-login
/// enrollment has to fit an 80x24 terminal.
pub fn compact_record_uri(record: &crate::store::UserRecord) -> Zeroizing<String> {
    let full = record_uri(record);
    if record.params != TotpParams::default() || record.hotp.is_some() {
        return full;
    }
    let defaults = format!(
        "&algorithm={}&digits={}&period={}",
        record.params.algorithm(),
        record.params.digits(),
        record.params.period()
    );
    Zeroizing::new(full.replace(&defaults, ""))
}

/// The app's label. A person's token on a shared account names both: `alice (root@web-01)`.
fn label(record: &crate::store::UserRecord) -> (String, String) {
    let host = clean_name(&host_name());
    let (issuer, account) = if record.issuer.is_empty() || record.issuer == host {
        (host.clone(), format!("{}@{host}", record.user))
    } else {
        (record.issuer.clone(), record.user.to_string())
    };
    match &record.person {
        Some(person) => (issuer, clean_name(&format!("{person} ({account})"))),
        None => (issuer, clean_name(&account)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::Algorithm;

    #[test]
    fn uri_carries_every_parameter() {
        let secret = SecretKey::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        let params = TotpParams::new(Algorithm::Sha256, 8, 60).unwrap();
        let uri = uri("web 01", "alice@web-01", &secret, params);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/web%2001:alice%40web-01?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=web%2001&algorithm=SHA256&digits=8&period=60"
        );
    }

    #[test]
    fn names_are_cleaned_not_rejected() {
        assert_eq!(clean_name("corp:prod"), "corp-prod");
        assert_eq!(clean_name("a\nb"), "a-b");
        assert_eq!(clean_name("  "), "ecs-mfa");
        assert_eq!(clean_name("Ünïcode ok"), "Ünïcode ok");
    }
}
