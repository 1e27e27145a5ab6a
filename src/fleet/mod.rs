//! The fleet backend: enrollment records and login state kept in an etcd v3 cluster, so one
//! enrollment serves every server and a code accepted on one server is refused on all of them.
//!
//! Local files stay the default (`[fleet] backend = "files"`, or no `[fleet]` table). With
//! `backend = "etcd"` the module and `mfa-enroll` talk to etcd's JSON gateway over mutual TLS:
//! - [`etcd`]: the small blocking etcd client (no async runtime, no threads inside sshd);
//! - [`transport`]: who carries its HTTPS requests (linked in, or `libecs_mfa_etcd.so`);
//! - [`seal`]: the fleet key and the AEAD that keeps secrets unreadable in etcd;
//! - [`state`]: the per-user state value (replay mark, failures, lockout, used recovery codes);
//! - [`login`]: what one login does (two round trips: read, then compare-and-swap);
//! - [`records`]: record reads and writes for `mfa-enroll` (admin credentials).
//!
//! Key layout under `prefix` (default `/ecs-mfa/v1/`): `records/<user>` (sealed record, written
//! by administrators only), `state/<user>` (plain text, written by hosts with compare-and-swap).
//! See docs/fleet.md for RBAC, TLS, rotation and failure modes.
#![forbid(unsafe_code)]

mod error;
pub mod etcd;
pub mod login;
pub mod records;
pub mod seal;
pub mod state;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use error::{Cause, EndpointFailure, Failures, FleetError};

/// Default key prefix in etcd.
pub const DEFAULT_PREFIX: &str = "/ecs-mfa/v1/";
/// Default budget for one backend operation (a login makes at most two).
pub const DEFAULT_TIMEOUT_MS: u64 = 1500;
const MAX_ENDPOINTS: usize = 16;
/// etcd's default space quota (`--quota-backend-bytes` unset): 2 GiB.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

/// What a login does when etcd cannot be reached. There is no "allow".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Deny (`reason=backend_unavailable`).
    #[default]
    Deny,
    /// Use this host's local copy of the records and local state; fleet-wide replay
    /// protection and lockout are off for that login (logged). Never after a TLS
    /// verification failure or an error answer from etcd.
    Local,
}

impl OnUnavailable {
    /// The word in the config file and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Local => "local",
        }
    }
}

/// The validated `[fleet]` table with `backend = "etcd"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `https://IP:PORT` base URLs (IP literals only), tried in turn.
    pub endpoints: Vec<String>,
    /// CA certificate(s) that signed the etcd servers' certificates (PEM).
    pub ca_file: PathBuf,
    /// This host's TLS client certificate (PEM; without a CN when etcd RBAC is on).
    pub cert_file: PathBuf,
    /// Its private key (PEM, root-only).
    pub key_file: PathBuf,
    /// The fleet key file (root-only): opens the sealed records.
    pub fleet_key_file: PathBuf,
    /// Key prefix, starts and ends with '/'.
    pub prefix: String,
    /// Budget for one backend operation; a login makes at most two.
    pub timeout: Duration,
    /// What a login does when etcd is unreachable.
    pub on_unavailable: OnUnavailable,
    /// etcd RBAC user and the root-only file holding its password, when RBAC is on.
    pub user: Option<(String, PathBuf)>,
    /// The cluster's `--quota-backend-bytes` (etcd 3.4 does not report it): `fleet status`
    /// and `doctor` measure the database against it. Logins do not use it.
    pub quota_backend_bytes: u64,
}

/// The `[fleet]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    backend: Option<String>,
    endpoints: Option<Vec<String>>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    fleet_key_file: Option<String>,
    prefix: Option<String>,
    timeout_ms: Option<u64>,
    on_unavailable: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
    quota_backend_bytes: Option<u64>,
}

/// The `[fleet]` keys, as documented (docs/fleet.md, docs/config.md).
pub const FLEET_KEYS: [(&str, &str); 12] = [
    ("backend", "\"files\" (default) or \"etcd\"."),
    (
        "endpoints",
        "etcd client URLs https://IP:PORT, IP addresses only (host names are refused), tried in turn.",
    ),
    (
        "ca_file",
        "CA certificate(s) of the etcd servers (PEM, root-owned).",
    ),
    (
        "cert_file",
        "This host's TLS client certificate (PEM, root-owned; no CN when etcd RBAC is on).",
    ),
    ("key_file", "Its private key (PEM, root-owned, 0600)."),
    (
        "fleet_key_file",
        "The fleet key (mfa-enroll fleet init; root-owned, 0600): opens the sealed records.",
    ),
    ("prefix", "Key prefix in etcd (default \"/ecs-mfa/v1/\")."),
    (
        "timeout_ms",
        "Budget of one backend operation, 100-10000 (default 1500); a login makes at most two.",
    ),
    (
        "on_unavailable",
        "\"deny\" (default) or \"local\": what a login does when etcd cannot be reached.",
    ),
    (
        "user",
        "etcd RBAC user of this host (optional; needs password_file).",
    ),
    (
        "password_file",
        "File holding that user's password (root-owned, 0600).",
    ),
    (
        "quota_backend_bytes",
        "etcd's --quota-backend-bytes, 1 MiB-8 GiB (default 2147483648, etcd's own): fleet status and doctor measure the database against it.",
    ),
];

impl RawFleet {
    /// `Ok(None)` for the files backend. `bad` builds the caller's error for a key.
    pub(crate) fn validate<E>(
        self,
        bad: impl Fn(&'static str, &'static str) -> E,
    ) -> Result<Option<FleetConfig>, E> {
        match self.backend.as_deref() {
            None | Some("files") => return Ok(None),
            Some("etcd") => {}
            Some(_) => return Err(bad("fleet.backend", "must be \"files\" or \"etcd\"")),
        }
        let endpoints = self.endpoints.unwrap_or_default();
        if endpoints.is_empty() || endpoints.len() > MAX_ENDPOINTS {
            return Err(bad("fleet.endpoints", "must list 1 to 16 https URLs"));
        }
        let endpoints = endpoints
            .iter()
            .map(|e| endpoint(e).map_err(|why| bad("fleet.endpoints", why)))
            .collect::<Result<Vec<_>, _>>()?;
        let path = |key: &'static str, v: Option<String>| -> Result<PathBuf, E> {
            let v = v.ok_or_else(|| bad(key, "is required with backend = \"etcd\""))?;
            if !v.starts_with('/') || v.chars().any(char::is_control) || v.contains("/../") {
                return Err(bad(key, "must be an absolute path"));
            }
            Ok(PathBuf::from(v))
        };
        let prefix = self.prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        if !(prefix.starts_with('/') && prefix.ends_with('/'))
            || prefix.len() < 2
            || prefix.len() > 100
            || !prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(
                "fleet.prefix",
                "must start and end with '/', printable ASCII without spaces, at most 100",
            ));
        }
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(100..=10_000).contains(&timeout_ms) {
            return Err(bad("fleet.timeout_ms", "must be 100 to 10000"));
        }
        let on_unavailable = match self.on_unavailable.as_deref() {
            None | Some("deny") => OnUnavailable::Deny,
            Some("local") => OnUnavailable::Local,
            Some("allow") => {
                return Err(bad(
                    "fleet.on_unavailable",
                    "\"allow\" does not exist: a second factor that an outage switches off is not one; use \"deny\" or \"local\"",
                ));
            }
            Some(_) => return Err(bad("fleet.on_unavailable", "must be \"deny\" or \"local\"")),
        };
        let user = match (self.user, self.password_file) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                if u.is_empty() || u.len() > 64 || !u.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad("fleet.user", "must be 1 to 64 printable characters"));
                }
                Some((u, path("fleet.password_file", Some(p))?))
            }
            _ => {
                return Err(bad(
                    "fleet.user",
                    "user and password_file go together (etcd RBAC)",
                ));
            }
        };
        let quota_backend_bytes = self
            .quota_backend_bytes
            .unwrap_or(DEFAULT_QUOTA_BACKEND_BYTES);
        if !((1 << 20)..=(8 << 30)).contains(&quota_backend_bytes) {
            return Err(bad(
                "fleet.quota_backend_bytes",
                "must be 1048576 (1 MiB) to 8589934592 (8 GiB), as etcd's --quota-backend-bytes",
            ));
        }
        Ok(Some(FleetConfig {
            endpoints,
            ca_file: path("fleet.ca_file", self.ca_file)?,
            cert_file: path("fleet.cert_file", self.cert_file)?,
            key_file: path("fleet.key_file", self.key_file)?,
            fleet_key_file: path("fleet.fleet_key_file", self.fleet_key_file)?,
            prefix,
            timeout: Duration::from_millis(timeout_ms),
            on_unavailable,
            user,
            quota_backend_bytes,
        }))
    }
}

/// Checks one endpoint URL and returns it without a trailing '/'.
fn endpoint(url: &str) -> Result<String, &'static str> {
    if url.starts_with("http://") {
        return Err(
            "plain http is refused: etcd traffic carries every user's login state; use https with client certificates",
        );
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err("must be https://HOST:PORT");
    };
    let host_port = rest.strip_suffix('/').unwrap_or(rest);
    if host_port.is_empty()
        || host_port.len() > 255
        || host_port.contains(['/', '@', '?', '#'])
        || !host_port.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err("must be https://HOST:PORT (no path, user or query)");
    }
    // The host must be an IP literal: a name needs a resolver, and getaddrinfo cannot be
    // bounded in time without a thread (a resolver that does not answer would hold every
    // login beyond its deadline).
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest),
            None => return Err("must be https://HOST:PORT (an IPv6 address goes in [ ])"),
        },
        None => match host_port.split_once(':') {
            Some((host, _)) => (host, &host_port[host.len()..]),
            None => (host_port, ""),
        },
    };
    let ip_ok = if host_port.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        host.parse::<std::net::Ipv4Addr>().is_ok()
    };
    if !ip_ok {
        return Err(
            "must name the node by IP address (https://192.0.2.10:2379 or https://[2001:db8::10]:2379): host names are refused, because resolving one cannot be bounded in time inside sshd; put the IP address in the node's certificate (subjectAltName IP:...)",
        );
    }
    match port {
        "" => {}
        p => match p.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(n)) if n > 0 => {}
            _ => return Err("must be https://IP:PORT with a port from 1 to 65535"),
        },
    }
    Ok(format!("https://{host_port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_keys_are_documented_in_fleet_md_and_config_md() {
        for doc in [
            include_str!("../../docs/fleet.md"),
            include_str!("../../docs/config.md"),
        ] {
            for (key, help) in FLEET_KEYS {
                assert!(
                    doc.contains(&format!("| `{key}` | {help} |")),
                    "{key} not documented as in FLEET_KEYS"
                );
            }
        }
        let example = include_str!("../../pam-config/config.toml.example");
        for (key, _) in FLEET_KEYS {
            assert!(
                example.contains(&format!("#  {key} = ")),
                "{key} not in the example config"
            );
        }
    }

    fn parse(text: &str) -> Result<Option<FleetConfig>, String> {
        #[derive(Deserialize)]
        struct W {
            fleet: RawFleet,
        }
        let w: W = toml::from_str(text).map_err(|e| e.to_string())?;
        w.fleet.validate(|k, why| format!("{k}: {why}"))
    }

    const GOOD: &str = r#"[fleet]
backend = "etcd"
endpoints = ["https://10.0.0.11:2379", "https://10.0.0.12:2379/"]
ca_file = "/etc/ecs-mfa/etcd/ca.pem"
cert_file = "/etc/ecs-mfa/etcd/host.pem"
key_file = "/etc/ecs-mfa/etcd/host.key"
fleet_key_file = "/etc/ecs-mfa/fleet.key"
"#;

    #[test]
    fn a_complete_table_gives_safe_defaults() {
        let c = parse(GOOD).unwrap().unwrap();
        assert_eq!(c.endpoints[1], "https://10.0.0.12:2379");
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.on_unavailable, OnUnavailable::Deny);
        assert_eq!(c.user, None);
        assert_eq!(c.quota_backend_bytes, 2_147_483_648);
        assert_eq!(parse("[fleet]\nbackend = \"files\"\n").unwrap(), None);
    }

    #[test]
    fn plain_http_allow_and_half_rbac_are_refused() {
        let http = GOOD.replace("https://10.0.0.11", "http://10.0.0.11");
        assert!(parse(&http).unwrap_err().contains("plain http is refused"));
        let allow = format!("{GOOD}on_unavailable = \"allow\"\n");
        assert!(parse(&allow).unwrap_err().contains("does not exist"));
        let half = format!("{GOOD}user = \"host\"\n");
        assert!(parse(&half).unwrap_err().contains("go together"));
        let missing = GOOD.replace("fleet_key_file", "#");
        assert!(parse(&missing).is_err());
        let path = GOOD.replace("https://10.0.0.11:2379\"", "https://10.0.0.11:2379/v3\"");
        assert!(parse(&path).unwrap_err().contains("no path"));
        let slow = format!("{GOOD}timeout_ms = 60000\n");
        assert!(parse(&slow).unwrap_err().contains("100 to 10000"));
        let prefix = format!("{GOOD}prefix = \"ecs\"\n");
        assert!(parse(&prefix).unwrap_err().contains("prefix"));
        let quota = format!("{GOOD}quota_backend_bytes = 1000\n");
        assert!(parse(&quota).unwrap_err().contains("quota_backend_bytes"));
        let typo = format!("{GOOD}endpoint = []\n");
        assert!(parse(&typo).is_err(), "unknown keys are errors");
    }

    #[test]
    fn endpoints_must_be_ip_literals_not_host_names() {
        for name in [
            "https://etcd1.example.com:2379",
            "https://localhost:2379",
            "https://10.0.0.11.nip.io:2379",
            "https://[::1:2379",
            "https://10.0.0.11:0",
            "https://10.0.0.11:http",
        ] {
            let text = GOOD.replace("https://10.0.0.11:2379", name);
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with("fleet.endpoints: "), "{name}: {err}");
        }
        let err = parse(&GOOD.replace("https://10.0.0.11:2379", "https://etcd1:2379")).unwrap_err();
        assert!(err.contains("host names are refused"), "{err}");
        for ip in [
            "https://[2001:db8::10]:2379",
            "https://127.0.0.1",
            "https://[::1]",
        ] {
            let text = GOOD.replace("https://10.0.0.11:2379", ip);
            assert!(parse(&text).is_ok(), "{ip}");
        }
    }
}
