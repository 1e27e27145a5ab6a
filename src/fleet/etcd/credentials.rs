//! What the client presents: the TLS files (checked like the store), the RBAC password, and
//! the RBAC token (renewed on refusal, cached between logins in a root-only file).
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{AttemptError, Etcd, TOKEN_CACHE_FILE, TOKEN_REUSE_SECONDS};
use crate::fleet::transport::{ConnectError, Connector, TlsPem, Transport};
use crate::fleet::{Cause, FleetConfig, FleetError};
use crate::secure_fs::{self, FileRules};

/// RBAC credentials.
pub(super) struct Credentials {
    pub(super) user: String,
    pub(super) password: Zeroizing<String>,
}

impl Etcd {
    /// `POST /v3/auth/authenticate` and keep the token (in memory, and in the cache file).
    pub(super) fn refresh_token(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> Result<(), AttemptError> {
        let Some(c) = &self.credentials else {
            return Ok(());
        };
        let body = json!({ "name": c.user, "password": c.password.as_str() });
        let answer = self.post(endpoint, "/v3/auth/authenticate", &body, None, deadline)?;
        let token = answer
            .get("token")
            .and_then(Value::as_str)
            .ok_or(AttemptError::Refused(Cause::NoToken))?;
        let token = Zeroizing::new(token.to_string());
        self.store_cached_token(&token);
        *self.token.borrow_mut() = Some(token);
        Ok(())
    }

    pub(super) fn load_cached_token(&self) {
        let (Some(dir), Some(c)) = (&self.token_cache, &self.credentials) else {
            return;
        };
        let Ok(Some(dir)) = secure_fs::open_dir(dir) else {
            return;
        };
        let Ok(Some(bytes)) = dir.read(TOKEN_CACHE_FILE, FileRules::Private, 4096) else {
            return;
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return;
        };
        let mut parts = text.trim().splitn(3, ' ');
        let (Some(at), Some(user), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let now = crate::clock::unix_now();
        match at.parse::<u64>() {
            Ok(at) if user == c.user && at <= now && now - at < TOKEN_REUSE_SECONDS => {
                *self.token.borrow_mut() = Some(Zeroizing::new(token.to_string()));
            }
            _ => {}
        }
    }

    fn store_cached_token(&self, token: &str) {
        let (Some(dir), Some(c)) = (&self.token_cache, &self.credentials) else {
            return;
        };
        // Best effort: without the cache the next login authenticates again.
        if let Ok(dir) = secure_fs::open_or_create_dir(dir) {
            let line = Zeroizing::new(format!("{} {} {token}\n", crate::clock::unix_now(), c.user));
            let _ = dir.write_atomic(TOKEN_CACHE_FILE, line.as_bytes(), false);
        }
    }
}

/// The transport for `config`'s TLS files, checked like the store (root-owned; the key
/// root-only): only the configured CA is trusted, the host's certificate is presented.
pub(super) fn transport(
    config: &FleetConfig,
    connect: Connector,
) -> Result<Box<dyn Transport>, FleetError> {
    let read = |path: &Path, rules: FileRules, what: &str| {
        secure_fs::read_file(path, rules, 1 << 20)
            .map_err(|e| FleetError::LocalFile(format!("{what}: {e}")))?
            .ok_or_else(|| {
                FleetError::LocalFile(format!("{what} {} does not exist", path.display()))
            })
    };
    let ca = read(&config.ca_file, FileRules::Config, "ca_file")?;
    let cert = read(&config.cert_file, FileRules::Config, "cert_file")?;
    let key = Zeroizing::new(read(&config.key_file, FileRules::Private, "key_file")?);
    let tls = TlsPem {
        ca: &ca,
        cert: &cert,
        key: &key,
    };
    connect(&tls).map_err(|e| match e {
        ConnectError::Load(why) => FleetError::LocalFile(why),
        ConnectError::Tls(why) => FleetError::LocalFile(format!(
            "{why} (ca_file {}, cert_file {}, key_file {})",
            config.ca_file.display(),
            config.cert_file.display(),
            config.key_file.display()
        )),
    })
}

pub(super) fn read_password(path: &Path) -> Result<Zeroizing<String>, FleetError> {
    let bytes = secure_fs::read_file(path, FileRules::Private, 4096)
        .map_err(|e| FleetError::LocalFile(format!("password_file: {e}")))?
        .ok_or_else(|| {
            FleetError::LocalFile(format!("password_file {} does not exist", path.display()))
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| FleetError::LocalFile("password_file is not UTF-8".into()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() || password.contains('\n') {
        return Err(FleetError::LocalFile(
            "password_file must hold the password on one line".into(),
        ));
    }
    Ok(Zeroizing::new(password.to_string()))
}
