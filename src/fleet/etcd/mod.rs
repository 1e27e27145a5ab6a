//! A small blocking client for etcd v3's JSON gateway (`POST /v3/...`), over mutual TLS.
//!
//! Why this shape (measured facts in docs/fleet.md): it runs inside sshd's authentication
//! child, so no async runtime and no thread per request (the HTTPS part, [`super::transport`],
//! is ureq with rustls under one global timeout per request and a resolver that takes IP
//! literals only, so no thread is spawned; endpoints are IP literals). etcd's own 7 s
//! server-side timeout is never waited for.
//!
//! Time (docs/fleet.md, "Deadlines and memory"): every operation has one deadline,
//! `timeout_ms`, for everything it does: every endpoint tried, every HTTP phase, a token
//! refresh, and (through [`Etcd::within`]) every compare-and-swap retry of a login's settle.
//! A login makes two operations (the read before the prompt, the settle after it), so its etcd
//! work is bounded by 2 × `timeout_ms`.
//!
//! Endpoint choice (a node that *hangs*: a stopped process still accepts TCP connections into
//! its kernel backlog but never answers TLS): the endpoints are tried in turn, and each attempt
//! gets an equal share of what is left of the deadline (with three endpoints, the first gets a
//! third), so a hung endpoint costs at most its share and the others still get theirs. Each
//! login is a new process, so the endpoint that answered is remembered in a root-only hint
//! file in the state directory (`etcd-endpoint.hint`), and the next login starts with it: a
//! hung node costs its share once per host, not once per login.
//!
//! Memory: answers are at most [`AnswerLimits::answer_bytes`] long (the transport stops
//! reading there) and their JSON is checked for size (at most
//! [`AnswerLimits::json_values`] values) and depth before it is parsed, so a hostile answer
//! cannot make the parser allocate more than a small multiple of the limits.
//!
//! Error classes, and what a login makes of them ([`FleetError`]):
//! - connection refused/reset, timeouts, 5xx (quorum lost: 503 code 14, 500 code 2):
//!   `Unavailable`, try the next endpoint; may fall back to the local copy.
//! - TLS verification failures (wrong CA, rejected client certificate), a connection the
//!   server closes under a request (how TLS 1.3 shows a rejected client certificate), 4xx,
//!   answers that are not etcd's: `Refused`, never a fallback (they may be an attack).
//!   The transport sorts network failures into these two classes; HTTP statuses are sorted
//!   here.
//! - A write whose answer timed out may or may not have been committed: every state write is a
//!   compare-and-swap on `mod_revision`, so trying it again (here, on the next endpoint, or at
//!   the next login) can never apply it twice.
//! - A compare that fails comes back *without* a `succeeded` field (proto3 omits false).
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::transport::{Connector, Failure, Transport};
use super::{Cause, EndpointFailure, Failures, FleetConfig, FleetError};
use crate::secure_fs::{self, FileRules};

mod credentials;
mod maintenance;
mod wire;

use credentials::{Credentials, read_password, transport};
pub use maintenance::{Alarm, DATABASE_FULL, MemberSpace, MemberStatus};
use wire::{clean, cmp_json, json_shape, kvs, op_json};

/// A cached RBAC token is reused for this long (etcd's default token TTL is 300 s).
const TOKEN_REUSE_SECONDS: u64 = 240;
const TOKEN_CACHE_FILE: &str = "etcd-token.cache";
/// The endpoint that answered the last login on this host (tried first by the next one).
pub const ENDPOINT_HINT_FILE: &str = "etcd-endpoint.hint";
/// Deepest JSON nesting accepted (etcd's answers nest 6 levels).
const MAX_JSON_DEPTH: usize = 20;

/// How large an answer may be, in bytes and in JSON values (objects, arrays, scalars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerLimits {
    /// Longest answer body.
    pub answer_bytes: usize,
    /// Most JSON values in it: what the parsed tree costs is about 32 to 100 bytes per value.
    pub json_values: usize,
}

impl AnswerLimits {
    /// A login reads one record and one state value (under 100 JSON values, a few KiB): this
    /// bounds the parsed tree to well under 1 MiB and the body to 1 MiB.
    pub const LOGIN: Self = Self {
        answer_bytes: ecs_mfa_etcd_transport::LOGIN_MAX_ANSWER_BYTES as usize,
        json_values: 4096,
    };
    /// `mfa-enroll` lists a whole fleet (about 10 values per user: 100 000 users fit).
    pub const ADMIN: Self = Self {
        answer_bytes: ecs_mfa_etcd_transport::MAX_ANSWER_BYTES as usize,
        json_values: 1 << 20,
    };
}

/// One key-value pair as read.
#[derive(Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key (UTF-8; ecs-mfa writes only ASCII keys).
    pub key: String,
    /// The value (may be a sealed record: wiped on drop).
    pub value: Zeroizing<Vec<u8>>,
    /// Revision of the last change of this key (the compare-and-swap token).
    pub mod_revision: i64,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Kv({} @{}, {} bytes)",
            self.key,
            self.mod_revision,
            self.value.len()
        )
    }
}

/// A condition of a transaction.
#[derive(Debug, Clone)]
pub enum Cmp {
    /// The key's `mod_revision` equals this (0: the key does not exist).
    ModRevision(String, i64),
}

/// One operation of a transaction branch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Read one key.
    Get(String),
    /// Read every key under a prefix (values omitted when `keys_only`).
    Prefix { prefix: String, keys_only: bool },
    /// Write a key.
    Put(String, Vec<u8>),
    /// Delete a key.
    Delete(String),
}

/// The answer to a transaction.
#[derive(Debug)]
pub struct TxnAnswer {
    /// Whether every compare held (the success branch ran).
    pub succeeded: bool,
    /// For each operation of the branch that ran: the pairs it read (empty for writes).
    pub reads: Vec<Vec<Kv>>,
}

/// A client for one cluster.
pub struct Etcd {
    endpoints: Vec<String>,
    transport: Box<dyn Transport>,
    budget: Duration,
    credentials: Option<Credentials>,
    token: RefCell<Option<Zeroizing<String>>>,
    /// Root-only directory for the token cache and the endpoint hint (logins only).
    token_cache: Option<PathBuf>,
    /// The endpoint that answered last (tried first next time); `None` until the hint file
    /// was read.
    preferred: Cell<Option<usize>>,
    /// The endpoint the hint file names (rewritten only when another one answers).
    hinted: Cell<Option<usize>>,
    /// The deadline of the operation under way ([`Etcd::within`]).
    deadline: Cell<Option<Instant>>,
    limits: AnswerLimits,
}

/// How one attempt at one endpoint ended, when it did not succeed.
enum AttemptError {
    Unavailable(Cause),
    Refused(Cause),
    /// The RBAC token was rejected (expired): get a new one and try again once.
    Token,
}

impl Etcd {
    /// A client with the TLS files and credentials named in `config`, its requests carried by
    /// what `connect` makes. `token_cache`: a root-only directory where an RBAC token and the
    /// endpoint hint are kept between logins (each login is a new process; authenticating
    /// costs a bcrypt on the server, ~70-100 ms; a hung endpoint costs its share of the
    /// deadline). Given by logins only, which also bound answers to [`AnswerLimits::LOGIN`].
    pub fn new(
        config: &FleetConfig,
        token_cache: Option<&Path>,
        connect: Connector,
    ) -> Result<Self, FleetError> {
        let transport = transport(config, connect)?;
        let credentials = match &config.user {
            None => None,
            Some((user, file)) => Some(Credentials {
                user: user.clone(),
                password: read_password(file)?,
            }),
        };
        let mut etcd = Self::with_transport(
            config.endpoints.clone(),
            transport,
            config.timeout,
            credentials,
            token_cache.map(Path::to_owned),
        );
        if token_cache.is_some() {
            etcd.limits = AnswerLimits::LOGIN;
        }
        Ok(etcd)
    }

    /// Like [`Etcd::new`], with other RBAC credentials than the host's (an administrator's,
    /// from `mfa-enroll --etcd-user`) and no token cache.
    pub fn with_user(
        config: &FleetConfig,
        user: &str,
        password: Zeroizing<String>,
        connect: Connector,
    ) -> Result<Self, FleetError> {
        let transport = transport(config, connect)?;
        Ok(Self::with_transport(
            config.endpoints.clone(),
            transport,
            config.timeout,
            Some(Credentials {
                user: user.to_string(),
                password,
            }),
            None,
        ))
    }

    fn with_transport(
        endpoints: Vec<String>,
        transport: Box<dyn Transport>,
        budget: Duration,
        credentials: Option<Credentials>,
        token_cache: Option<PathBuf>,
    ) -> Self {
        Self {
            endpoints,
            transport,
            budget,
            credentials,
            token: RefCell::new(None),
            token_cache,
            preferred: Cell::new(None),
            hinted: Cell::new(None),
            deadline: Cell::new(None),
            limits: AnswerLimits::ADMIN,
        }
    }

    /// Runs `f` with one deadline, `timeout_ms` from now, for every call it makes (an operation
    /// of several round trips: a settle with its compare-and-swap retries). Nested: the outer
    /// deadline holds.
    pub fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.deadline.get().is_some() {
            return f();
        }
        self.deadline.set(Some(Instant::now() + self.budget));
        let result = f();
        self.deadline.set(None);
        result
    }

    /// [`Etcd::within`] with the deadline `until` when that comes sooner than `timeout_ms`
    /// from now (what is left of a login's time, for the grace commit of `pam_sm_setcred`).
    pub fn within_until<R>(&self, until: Instant, f: impl FnOnce() -> R) -> R {
        if self.deadline.get().is_some() {
            return f();
        }
        self.deadline
            .set(Some(until.min(Instant::now() + self.budget)));
        let result = f();
        self.deadline.set(None);
        result
    }

    /// Whether the deadline of the operation under way has passed.
    pub fn deadline_passed(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }

    /// The endpoints, as configured.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Reads one key (linearizable: a minority node never answers it).
    pub fn get(&self, key: &str) -> Result<Option<Kv>, FleetError> {
        let answer = self.txn(&[], &[Op::Get(key.to_string())], &[])?;
        Ok(answer.reads.into_iter().flatten().next())
    }

    /// Runs one transaction: `success` if every compare holds, else `failure`.
    pub fn txn(
        &self,
        compare: &[Cmp],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnAnswer, FleetError> {
        let body = json!({
            "compare": compare.iter().map(cmp_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let answer = self.call("/v3/kv/txn", &body)?;
        // Absent when false (proto3 JSON omits defaults).
        let succeeded = answer
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let branch = if succeeded { success } else { failure };
        let responses = answer
            .get("responses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if responses.len() != branch.len() {
            return Err(FleetError::refused(Cause::NotEtcd {
                status: None,
                why: format!(
                    "a transaction answer has {} responses for {} operations",
                    responses.len(),
                    branch.len()
                ),
            }));
        }
        let reads = responses
            .iter()
            .map(|r| match r.get("response_range") {
                Some(range) => kvs(range),
                None => Ok(Vec::new()),
            })
            .collect::<Result<_, _>>()?;
        Ok(TxnAnswer { succeeded, reads })
    }

    /// One gateway call, endpoints tried in turn within the operation's deadline, each given
    /// an equal share of what is left (the last one all of it).
    fn call(&self, path: &str, body: &Value) -> Result<Value, FleetError> {
        let deadline = self
            .deadline
            .get()
            .unwrap_or_else(|| Instant::now() + self.budget);
        let n = self.endpoints.len();
        let first = self.first_endpoint() % n;
        let mut errors = Vec::new();
        let mut refused = false;
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.endpoints[index];
            let now = Instant::now();
            if now >= deadline {
                errors.push(EndpointFailure {
                    endpoint: Some(endpoint.clone()),
                    cause: Cause::NotTried {
                        budget_ms: self.budget.as_millis(),
                    },
                });
                continue;
            }
            let share = deadline.saturating_duration_since(now) / (n - i) as u32;
            let until = (now + share).min(deadline);
            let mut result = self.attempt(endpoint, path, body, until);
            if matches!(result, Err(AttemptError::Token)) {
                result = match self.refresh_token(endpoint, until) {
                    Ok(()) => self.attempt(endpoint, path, body, until),
                    Err(e) => Err(e),
                };
            }
            match result {
                Ok(value) => {
                    self.answered(index);
                    return Ok(value);
                }
                Err(e) => {
                    let cause = match e {
                        AttemptError::Unavailable(cause) => cause,
                        AttemptError::Refused(cause) => {
                            refused = true;
                            cause
                        }
                        AttemptError::Token => {
                            refused = true;
                            Cause::TokenRefused { twice: true }
                        }
                    };
                    errors.push(EndpointFailure {
                        endpoint: Some(endpoint.clone()),
                        cause,
                    });
                }
            }
        }
        let all = Failures(errors);
        Err(if refused {
            FleetError::Refused(all)
        } else {
            FleetError::Unavailable(all)
        })
    }

    /// The endpoint to try first: the one that answered last in this process, else the one the
    /// hint file names, else the first.
    fn first_endpoint(&self) -> usize {
        if let Some(i) = self.preferred.get() {
            return i;
        }
        let hinted = self.load_hint();
        self.hinted.set(hinted);
        let first = hinted.unwrap_or(0);
        self.preferred.set(Some(first));
        first
    }

    /// Remembers that endpoint `index` answered (in the hint file when it is news).
    fn answered(&self, index: usize) {
        self.preferred.set(Some(index));
        if self.hinted.get() != Some(index) {
            self.hinted.set(Some(index));
            self.store_hint(index);
        }
    }

    /// The configured endpoint the hint file names, if it is one (the file is root-only in a
    /// root-only directory, like the token cache; anything else is ignored).
    fn load_hint(&self) -> Option<usize> {
        let dir = secure_fs::open_dir(self.token_cache.as_deref()?).ok()??;
        let bytes = dir
            .read(ENDPOINT_HINT_FILE, FileRules::Private, 512)
            .ok()??;
        let text = std::str::from_utf8(&bytes).ok()?.trim();
        self.endpoints.iter().position(|e| e == text)
    }

    fn store_hint(&self, index: usize) {
        let Some(dir) = &self.token_cache else {
            return;
        };
        // Best effort: without the hint the next login starts with the first endpoint.
        if let Ok(dir) = secure_fs::open_or_create_dir(dir) {
            let line = format!("{}\n", self.endpoints[index]);
            let _ = dir.write_atomic(ENDPOINT_HINT_FILE, line.as_bytes(), false);
        }
    }

    /// One POST to one endpoint, with whatever budget is left.
    fn attempt(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, AttemptError> {
        if self.credentials.is_some() && self.token.borrow().is_none() {
            self.load_cached_token();
            if self.token.borrow().is_none() {
                self.refresh_token(endpoint, deadline)?;
            }
        }
        let token = self.token.borrow().clone();
        self.post(
            endpoint,
            path,
            body,
            token.as_deref().map(String::as_str),
            deadline,
        )
    }

    fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Value, AttemptError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AttemptError::Unavailable(Cause::BudgetSpent));
        }
        let body = Zeroizing::new(body.to_string());
        let (status, answer) = self
            .transport
            .post(&format!("{endpoint}{path}"), body.as_bytes(), token, left)
            .map_err(|f| match f {
                Failure::Unavailable(why) => AttemptError::Unavailable(Cause::Transport(why)),
                Failure::Refused(why) => AttemptError::Refused(Cause::Transport(why)),
            })?;
        if answer.len() > self.limits.answer_bytes {
            return Err(not_etcd(
                Some(status),
                format!(
                    "the answer is larger than {} bytes",
                    self.limits.answer_bytes
                ),
            ));
        }
        let Ok(text) = std::str::from_utf8(&answer) else {
            return Err(not_etcd(Some(status), "the answer is not UTF-8".into()));
        };
        // Checked before parsing: the parsed tree costs up to ~50 times the text.
        json_shape(text.as_bytes(), self.limits.json_values, MAX_JSON_DEPTH)
            .map_err(|why| not_etcd(Some(status), why.to_string()))?;
        let json: Option<Value> = serde_json::from_str(text).ok();
        let message = || match &json {
            Some(v) => v
                .get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .map(clean)
                .unwrap_or_else(|| clean(text)),
            None => clean(text),
        };
        let code = json
            .as_ref()
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64);
        match status {
            200 => json.ok_or_else(|| not_etcd(None, "the answer is not JSON".into())),
            // Unauthenticated: the token expired or the server restarted.
            401 if token.is_some() && self.credentials.is_some() => {
                *self.token.borrow_mut() = None;
                Err(AttemptError::Token)
            }
            _ if code == Some(16) && token.is_some() => {
                *self.token.borrow_mut() = None;
                Err(AttemptError::Token)
            }
            // Quota reached (NOSPACE) or overloaded: never a fallback (a host can cause it).
            // `message` is [`clean`]ed: spaces came back as '?'.
            429 => Err(AttemptError::Refused(Cause::Http {
                status,
                message: message().replace('?', " "),
            })),
            500..=599 => Err(AttemptError::Unavailable(Cause::Http {
                status,
                message: message(),
            })),
            _ => Err(AttemptError::Refused(Cause::Http {
                status,
                message: message(),
            })),
        }
    }
}

impl AttemptError {
    /// The error of a call to one endpoint (no endpoint named in the text).
    fn into_fleet(self) -> FleetError {
        let one = |cause| {
            Failures(vec![EndpointFailure {
                endpoint: None,
                cause,
            }])
        };
        match self {
            Self::Unavailable(cause) => FleetError::Unavailable(one(cause)),
            Self::Refused(cause) => FleetError::Refused(one(cause)),
            Self::Token => FleetError::Refused(one(Cause::TokenRefused { twice: false })),
        }
    }
}

/// An answer that is not what etcd sends: refused, never a fallback.
fn not_etcd(status: Option<u16>, why: String) -> AttemptError {
    AttemptError::Refused(Cause::NotEtcd { status, why })
}

#[cfg(test)]
mod tests;
