//! The HTTPS part of ecs-mfa's fleet backend: one blocking POST to one etcd endpoint over
//! mutual TLS, with a deadline, and the class of every failure.
//!
//! Why a crate of its own: TLS and HTTP are most of the code a fleet login needs, and a PAM
//! module pays for every byte it maps on every login (sshd loads the module afresh for each
//! connection). `pam_ecs_mfa.so` therefore does not contain this code; it loads
//! `libecs_mfa_etcd.so` (crates/etcd-helper: this crate behind the C table described in [`abi`],
//! found next to the module) only when `[fleet] backend = "etcd"` is configured.
//! `mfa-enroll` and the tests link the same code directly ([`Client`]).
//!
//! Failure classes ([`Failure`]), which decide whether a login may fall back to its local copy:
//! - connection refused/reset at connect, timeouts: [`Failure::Unavailable`];
//! - TLS verification failures (wrong CA, rejected client certificate), a connection the server
//!   closes under a request (how TLS 1.3 shows a rejected client certificate), anything else:
//!   [`Failure::Refused`] (may be an attack: never a fallback).
//!
//! HTTP status codes are not judged here: the caller knows what etcd means by them.
//!
//! Time and memory (docs/fleet.md, "Deadlines and memory"): one request never outlasts the
//! `timeout` it is given, whatever the server does (connect, TLS handshake, request, headers
//! and body are all under ureq's *global* timeout, measured from the start of the request),
//! and its answer is read up to a fixed size ([`Client::new`]'s `max_answer`). Endpoints must
//! be IP literals ([`IpLiteralResolver`]): a host name would need a resolver, and a resolver
//! that can be timed out needs a thread (ureq spawns one per request when any timeout is set),
//! which has no place inside sshd's authentication child.

pub mod abi;

use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};
use zeroize::Zeroizing;

/// Largest answer `mfa-enroll` reads (a `fleet sync` of a big fleet reads every record).
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;
/// Largest answer a login reads (the helper's limit): a login reads one record and one state
/// value, a few KiB; 1 MiB is far above any legitimate answer and bounds what a hostile
/// server can make the PAM process hold.
pub const LOGIN_MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Why a request did not get an HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The endpoint could not be reached in time: try another; a login may use its local copy.
    Unavailable(String),
    /// The endpoint answered in a way that must not be taken for an outage.
    Refused(String),
}

/// The TLS material, as PEM text read by the caller (who checks the files' owners and modes).
pub struct TlsPem<'a> {
    /// CA certificate(s) that signed the servers' certificates: the only trusted roots.
    pub ca: &'a [u8],
    /// This host's client certificate (chain).
    pub cert: &'a [u8],
    /// Its private key.
    pub key: &'a [u8],
}

/// A client for one cluster's endpoints (connections are not kept between requests).
pub struct Client {
    agent: ureq::Agent,
    max_answer: u64,
}

impl Client {
    /// A client that trusts only `tls.ca` and presents `tls.cert`, and reads answers of at most
    /// `max_answer` bytes. The error says which part is unusable (it names the part, never the
    /// key's bytes).
    pub fn new(tls: &TlsPem<'_>, max_answer: u64) -> Result<Self, String> {
        let certs = |bytes: &[u8], what: &str| -> Result<Vec<Certificate<'static>>, String> {
            let list: Vec<_> = ureq::tls::parse_pem(bytes)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if list.is_empty() {
                return Err(format!("{what}: no PEM certificate in it"));
            }
            Ok(list)
        };
        let ca = certs(tls.ca, "ca_file")?;
        let cert = certs(tls.cert, "cert_file")?;
        let key = PrivateKey::from_pem(tls.key).map_err(|e| format!("key_file: {e}"))?;
        check_client_cert(tls.cert, tls.key)
            .map_err(|why| format!("cert_file with key_file: {why}"))?;
        // The crypto provider is given here (ring) so that ureq needs neither a default
        // provider nor its bundled public root certificates: only ca_file is trusted.
        let config = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::new_with_certs(&ca))
            .client_cert(Some(ClientCert::new_with_certs(&cert, key)))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(config)
            .http_status_as_error(false)
            .max_redirects(0)
            .https_only(true)
            // Never a proxy from the environment (sshd's, or an administrator's shell).
            .proxy(None)
            // Headers of an etcd answer are a few hundred bytes.
            .max_response_header_size(16 * 1024)
            .user_agent("ecs-mfa")
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            IpLiteralResolver,
        );
        Ok(Self { agent, max_answer })
    }

    /// `POST url` with a JSON `body` (and `Authorization: token` when given), all of it within
    /// `timeout` (one deadline for connect, handshake, request, headers and body). Returns the
    /// HTTP status and the body (at most the client's `max_answer` bytes; a longer one is
    /// [`Failure::Refused`]).
    pub fn post(
        &self,
        url: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
        if timeout.is_zero() {
            return Err(Failure::Unavailable("budget spent".into()));
        }
        let mut request = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        // The global timeout runs from the start of this request and bounds every phase;
        // with IpLiteralResolver it spawns no thread (ureq's own resolver would).
        let sent = request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body);
        let mut response = sent.map_err(classify)?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(self.max_answer)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => Failure::Refused(format!(
                    "the answer is larger than {limit} bytes (not etcd?)"
                )),
                other => classify(other),
            })?;
        Ok((status, Zeroizing::new(answer)))
    }
}

/// Resolves only IP literals, at once and without a thread; a host name is refused (the
/// config check refuses names in `endpoints` already: a resolver that does not answer would
/// hold a login, and bounding it takes a thread).
#[derive(Debug)]
pub struct IpLiteralResolver;

impl ureq::unversioned::resolver::Resolver for IpLiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let authority = uri.authority().ok_or(ureq::Error::HostNotFound)?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip: std::net::IpAddr = host.parse().map_err(|_| ureq::Error::HostNotFound)?;
        let port = authority.port_u16().unwrap_or(443);
        let mut addrs = self.empty();
        addrs.push(std::net::SocketAddr::new(ip, port));
        Ok(addrs)
    }
}

/// Maps a transport error to its class.
fn classify(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Io(io) => {
            let tls = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|t| t.to_string());
            use std::io::ErrorKind::*;
            match (tls, io.kind()) {
                (Some(t), _) => Failure::Refused(format!("TLS: {t}")),
                // With TLS 1.3 a server that rejects the client certificate sends its alert
                // after the client considers the handshake done, and closes: the client sees
                // its request write fail. A node that is down refuses the connection instead,
                // so a connection closed under us is never taken for an outage.
                (None, BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof) => {
                    Failure::Refused(format!(
                        "the server closed the TLS connection ({io}): TLS client certificate rejected?"
                    ))
                }
                (None, _) => Failure::Unavailable(format!("{io}")),
            }
        }
        ureq::Error::Timeout(t) => Failure::Unavailable(format!("timeout ({t})")),
        ureq::Error::ConnectionFailed => Failure::Unavailable(e.to_string()),
        ureq::Error::HostNotFound => {
            Failure::Refused("the endpoint is not an IP address (host names are refused)".into())
        }
        ureq::Error::Rustls(t) => Failure::Refused(format!("TLS: {t}")),
        ureq::Error::Tls(t) => Failure::Refused(format!("TLS: {t}")),
        other => Failure::Refused(format!("{other}")),
    }
}

/// What rustls will make of the client certificate and key, checked here because ureq panics
/// on a pair rustls refuses (a key that does not match, an X.509 v1 certificate).
fn check_client_cert(cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map(|_| ())
        .map_err(|e| format!("not a usable client certificate and key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_pem_is_named_not_panicked_on() {
        let tls = TlsPem {
            ca: b"not pem",
            cert: b"",
            key: b"",
        };
        let err = Client::new(&tls, MAX_ANSWER_BYTES).err().unwrap();
        assert!(err.contains("ca_file"), "{err}");
    }
}
