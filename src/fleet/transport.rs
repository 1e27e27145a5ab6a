//! The seam between the etcd client ([`super::etcd`]) and the HTTPS code that carries its
//! requests. Two implementations, chosen by the caller:
//! - [`native`]: the client linked in (`mfa-enroll`, tests);
//! - `pam::etcd_helper::connect`: the same client in `libecs_mfa_etcd.so`, loaded next to the
//!   module only when `[fleet]` is configured, so that `pam_ecs_mfa.so` itself carries no TLS
//!   or HTTP code (every sshd connection maps the module afresh: docs/performance.md).
//!
//! Nothing in the module's code path names [`native`], so the linker leaves the client out of
//! the `.so` (tests/package_module_object.rs checks that the module holds no rustls or ureq code).
#![forbid(unsafe_code)]

use std::time::Duration;

pub use ecs_mfa_etcd_transport::{Failure, TlsPem};
use zeroize::Zeroizing;

/// Carries one request to one endpoint.
pub trait Transport {
    /// `POST url` with `body` (and `Authorization: token`), all within `timeout`: the HTTP
    /// status and the answer's body.
    fn post(
        &self,
        url: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure>;
}

/// Makes a transport from the TLS material.
pub type Connector = fn(&TlsPem<'_>) -> Result<Box<dyn Transport>, ConnectError>;

/// Why no transport could be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The client itself could not be loaded (`libecs_mfa_etcd.so` missing, unsafe, of
    /// another version); the text names the file.
    Load(String),
    /// The TLS material is unusable; the text names which part.
    Tls(String),
}

impl Transport for ecs_mfa_etcd_transport::Client {
    fn post(
        &self,
        url: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
        ecs_mfa_etcd_transport::Client::post(self, url, body, token, timeout)
    }
}

/// The client linked into this program (`mfa-enroll`: answers up to
/// [`ecs_mfa_etcd_transport::MAX_ANSWER_BYTES`], for listings of a whole fleet).
pub fn native(tls: &TlsPem<'_>) -> Result<Box<dyn Transport>, ConnectError> {
    let client = ecs_mfa_etcd_transport::Client::new(tls, ecs_mfa_etcd_transport::MAX_ANSWER_BYTES)
        .map_err(ConnectError::Tls)?;
    Ok(Box::new(client))
}
