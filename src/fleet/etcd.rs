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

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::transport::{ConnectError, Connector, Failure, TlsPem, Transport};
use super::{Cause, EndpointFailure, Failures, FleetConfig, FleetError};
use crate::secure_fs::{self, FileRules};
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

/// What one endpoint said.
#[derive(Debug)]
pub struct MemberStatus {
    /// etcd's version.
    pub version: String,
    /// This member's id and the leader's (hex).
    pub member: String,
    pub leader: String,
    /// Size of the database in bytes.
    pub db_size: u64,
    /// Space, history and alarms as this member sees them ([`MemberSpace`]).
    pub space: MemberSpace,
}

/// RBAC credentials.
struct Credentials {
    user: String,
    password: Zeroizing<String>,
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

    /// `POST /v3/maintenance/status` on one endpoint (for `fleet status`), and how long it took.
    pub fn member_status(&self, endpoint: &str) -> Result<(MemberStatus, Duration), FleetError> {
        let start = Instant::now();
        let deadline = start + self.budget;
        let path = "/v3/maintenance/status";
        let mut result = self.attempt(endpoint, path, &json!({}), deadline);
        if matches!(result, Err(AttemptError::Token)) {
            result = self
                .refresh_token(endpoint, deadline)
                .and_then(|()| self.attempt(endpoint, path, &json!({}), deadline));
        }
        let answer = result.map_err(AttemptError::into_fleet)?;
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let id = |v: Option<&Value>| {
            text(v)
                .parse::<u64>()
                .map(|n| format!("{n:x}"))
                .unwrap_or_default()
        };
        Ok((
            MemberStatus {
                version: text(answer.get("version")),
                member: id(answer.get("header").and_then(|h| h.get("member_id"))),
                leader: id(answer.get("leader")),
                db_size: text(answer.get("dbSize")).parse().unwrap_or(0),
                space: MemberSpace::from_status(&answer),
            },
            start.elapsed(),
        ))
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

    /// `POST /v3/auth/authenticate` and keep the token (in memory, and in the cache file).
    fn refresh_token(&self, endpoint: &str, deadline: Instant) -> Result<(), AttemptError> {
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

    fn load_cached_token(&self) {
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

/// Checks, without allocating, that `text` holds at most `max_values` JSON values nested at
/// most `max_depth` deep (an upper bound on what parsing it costs). Not a validator: the
/// parser still refuses malformed JSON.
fn json_shape(text: &[u8], max_values: usize, max_depth: usize) -> Result<(), String> {
    let (mut values, mut depth) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > max_depth {
                    return Err(format!("the answer nests deeper than {max_depth} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            // Every further element or member.
            b',' | b':' => values += 1,
            _ => {}
        }
        if values > max_values {
            return Err(format!(
                "the answer holds more than {max_values} JSON values"
            ));
        }
    }
    Ok(())
}

/// Error text from the server, made safe for one log line.
fn clean(text: &str) -> String {
    crate::text::ascii_printable(text.trim(), 200)
}

fn b64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// The key just after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn cmp_json(c: &Cmp) -> Value {
    match c {
        Cmp::ModRevision(key, rev) => json!({
            "key": b64(key.as_bytes()),
            "target": "MOD",
            "result": "EQUAL",
            "mod_revision": rev.to_string(),
        }),
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Get(key) => json!({ "request_range": { "key": b64(key.as_bytes()) } }),
        Op::Prefix { prefix, keys_only } => json!({ "request_range": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix)),
            "keys_only": keys_only,
        }}),
        Op::Put(key, value) => json!({ "request_put": {
            "key": b64(key.as_bytes()),
            "value": b64(value),
        }}),
        Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key.as_bytes()) } }),
    }
}

/// The `kvs` of a range answer (absent: none).
fn kvs(range: &Value) -> Result<Vec<Kv>, FleetError> {
    let bad = |what: &str| {
        FleetError::refused(Cause::NotEtcd {
            status: None,
            why: format!("a range answer has a bad {what}"),
        })
    };
    let Some(list) = range.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("key"))?;
            let key = Base64::decode_vec(key).map_err(|_| bad("key"))?;
            let key = String::from_utf8(key).map_err(|_| bad("key"))?;
            let value = match kv.get("value").and_then(Value::as_str) {
                Some(v) => Base64::decode_vec(v).map_err(|_| bad("value"))?,
                None => Vec::new(),
            };
            let mod_revision = match kv.get("mod_revision") {
                Some(Value::String(s)) => s.parse().map_err(|_| bad("mod_revision"))?,
                Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad("mod_revision"))?,
                _ => 0,
            };
            Ok(Kv {
                key,
                value: Zeroizing::new(value),
                mod_revision,
            })
        })
        .collect()
}

/// The transport for `config`'s TLS files, checked like the store (root-owned; the key
/// root-only): only the configured CA is trusted, the host's certificate is presented.
fn transport(config: &FleetConfig, connect: Connector) -> Result<Box<dyn Transport>, FleetError> {
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

fn read_password(path: &Path) -> Result<Zeroizing<String>, FleetError> {
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

/// The start of what a login's audit line (`reason=backend_error`), `fleet status` and
/// `doctor` say when etcd refuses writes because its database reached its space quota.
pub use super::error::DATABASE_FULL;

/// Database size, history and alarms of one member, from `POST /v3/maintenance/status`
/// (etcd 3.4 answers these to any authenticated user; the quota itself is not in the answer:
/// `[fleet] quota_backend_bytes` says it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpace {
    /// Bytes in use inside the database file (`dbSizeInUse`): what compaction frees.
    pub db_size_in_use: u64,
    /// The cluster's current revision as this member has applied it.
    pub revision: i64,
    /// Active alarms as etcd lists them (`errors`, e.g. "memberID:… alarm:NOSPACE").
    pub alarms: Vec<String>,
}

impl MemberSpace {
    fn from_status(answer: &Value) -> Self {
        let number = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.parse().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        Self {
            db_size_in_use: number(answer.get("dbSizeInUse"))
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            revision: number(answer.get("header").and_then(|h| h.get("revision"))).unwrap_or(0),
            alarms: answer
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .take(16)
                        .map(clean)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// One active alarm (`POST /v3/maintenance/alarm {"action":"GET"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// The member that raised it (hex).
    pub member: String,
    /// `NOSPACE` (the database reached its quota: writes refused) or `CORRUPT`.
    pub alarm: String,
}

/// Space and history (docs/fleet.md, "Space and compaction"): what `fleet status` and
/// `doctor` need to tell a cluster that compacts from one that will fill up.
impl Etcd {
    /// The cluster's active alarms (any authenticated user may list them in etcd 3.4).
    pub fn alarms(&self) -> Result<Vec<Alarm>, FleetError> {
        let answer = self.call("/v3/maintenance/alarm", &json!({ "action": "GET" }))?;
        let list = answer
            .get("alarms")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .take(64)
            .map(|a| Alarm {
                member: match a.get("memberID") {
                    Some(Value::String(s)) => s
                        .parse::<u64>()
                        .map(|n| format!("{n:x}"))
                        .unwrap_or_else(|_| clean(s)),
                    _ => String::new(),
                },
                // proto3 omits the zero value (NONE).
                alarm: a
                    .get("alarm")
                    .and_then(Value::as_str)
                    .map(clean)
                    .unwrap_or_else(|| "NONE".into()),
            })
            .collect())
    }

    /// The oldest revision `endpoint` can still read under `prefix` (a key range the caller
    /// may read), found by bisection between 1 and `current` with count-only ranges: 1 means
    /// the history was never compacted. etcd 3.4 does not report the compacted revision
    /// itself; a range below it is refused ("required revision has been compacted"). The
    /// reads are serializable (this member's own view: a display, never a login decision) and
    /// the whole search gets four budgets.
    pub fn oldest_revision(
        &self,
        endpoint: &str,
        prefix: &str,
        current: i64,
    ) -> Result<i64, FleetError> {
        let give_up = Instant::now() + self.budget * 4;
        let readable = |revision: i64| -> Result<bool, FleetError> {
            if Instant::now() >= give_up {
                return Err(FleetError::Unavailable(Failures(vec![EndpointFailure {
                    endpoint: Some(endpoint.to_string()),
                    cause: Cause::HistorySearchTooLong,
                }])));
            }
            let body = json!({
                "key": b64(prefix.as_bytes()),
                "range_end": b64(&prefix_end(prefix)),
                "count_only": true,
                "serializable": true,
                "revision": revision.to_string(),
            });
            match self.post_one(endpoint, "/v3/kv/range", &body) {
                Ok(_) => Ok(true),
                Err(FleetError::Refused(Failures(why)))
                    if why.iter().any(|f| f.cause.is_compacted()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        };
        if current <= 1 || readable(1)? {
            return Ok(1);
        }
        // Invariant: `low` is compacted, `high` is readable (the current revision always is).
        let (mut low, mut high) = (1, current);
        for _ in 0..64 {
            if high - low <= 1 {
                break;
            }
            let mid = low + (high - low) / 2;
            if readable(mid)? {
                high = mid;
            } else {
                low = mid;
            }
        }
        Ok(high)
    }

    /// One POST to one endpoint within the budget (RBAC token renewed once), for the
    /// per-member maintenance calls.
    fn post_one(&self, endpoint: &str, path: &str, body: &Value) -> Result<Value, FleetError> {
        let deadline = Instant::now() + self.budget;
        let mut result = self.attempt(endpoint, path, body, deadline);
        if matches!(result, Err(AttemptError::Token)) {
            result = self
                .refresh_token(endpoint, deadline)
                .and_then(|()| self.attempt(endpoint, path, body, deadline));
        }
        result.map_err(AttemptError::into_fleet)
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
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_just_after_the_prefix() {
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), vec![b'a', 0x80]);
    }

    /// Endpoint 0 never answers (it takes all the time it is given); the others answer.
    struct Scripted {
        calls: RefCell<Vec<(String, Duration)>>,
    }

    impl Transport for std::rc::Rc<Scripted> {
        fn post(
            &self,
            url: &str,
            _body: &[u8],
            _token: Option<&str>,
            timeout: Duration,
        ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
            self.calls.borrow_mut().push((url.to_string(), timeout));
            if url.starts_with("https://10.0.0.1:") {
                std::thread::sleep(timeout);
                return Err(Failure::Unavailable("timeout".into()));
            }
            let answer = br#"{"header":{},"succeeded":true,"responses":[]}"#;
            Ok((200, Zeroizing::new(answer.to_vec())))
        }
    }

    #[test]
    fn a_hung_endpoint_gets_its_share_and_the_next_login_starts_with_the_one_that_answered() {
        let scratch = crate::test_util::Scratch::new("etcd-hint");
        let endpoints: Vec<String> = (1..=3)
            .map(|i| format!("https://10.0.0.{i}:2379"))
            .collect();
        let script = std::rc::Rc::new(Scripted {
            calls: RefCell::new(Vec::new()),
        });
        let budget = Duration::from_millis(300);
        let etcd = |dir: &Path| {
            Etcd::with_transport(
                endpoints.clone(),
                Box::new(script.clone()),
                budget,
                None,
                Some(dir.to_owned()),
            )
        };
        let first = etcd(&scratch.0);
        first.txn(&[], &[], &[]).unwrap();
        let calls = script.calls.borrow().clone();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(
            calls[0].1 <= budget / 3,
            "the hung endpoint gets a third: {calls:?}"
        );
        // What is left is shared again between the two endpoints not yet tried.
        assert!(
            calls[1].1 >= budget / 3 - Duration::from_millis(20),
            "{calls:?}"
        );
        // The same process goes on with the endpoint that answered ...
        first.txn(&[], &[], &[]).unwrap();
        assert_eq!(
            script.calls.borrow()[2].0,
            format!("{}/v3/kv/txn", endpoints[1])
        );
        // ... and so does the next login, through the hint file.
        script.calls.borrow_mut().clear();
        etcd(&scratch.0).txn(&[], &[], &[]).unwrap();
        let calls = script.calls.borrow().clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].0.starts_with(&endpoints[1]), "{calls:?}");
        // A hint naming no configured endpoint is ignored.
        std::fs::write(
            scratch.0.join(ENDPOINT_HINT_FILE),
            "https://192.0.2.1:2379\n",
        )
        .unwrap();
        script.calls.borrow_mut().clear();
        etcd(&scratch.0).txn(&[], &[], &[]).unwrap();
        assert!(script.calls.borrow()[0].0.starts_with(&endpoints[0]));
    }

    #[test]
    fn huge_and_deep_json_is_refused_before_parsing() {
        let ok = json!({"header": {"revision": "3"}, "responses": [{"response_range": {"kvs": [{"key": "YQ==", "value": "Yg==", "mod_revision": "7"}], "count": "1"}}]});
        assert_eq!(json_shape(ok.to_string().as_bytes(), 100, 20), Ok(()));
        let wide = format!("[{}0]", "0,".repeat(5000));
        assert!(
            json_shape(wide.as_bytes(), 4096, 20)
                .unwrap_err()
                .contains("4096")
        );
        let deep = "[".repeat(21);
        assert!(
            json_shape(deep.as_bytes(), 4096, 20)
                .unwrap_err()
                .contains("deeper")
        );
        // Brackets, commas and escaped quotes inside strings are not structure.
        let text = format!("{{\"a\": \"{}\\\"[[[,\"}}", ",[{".repeat(5000));
        assert_eq!(json_shape(text.as_bytes(), 10, 2), Ok(()));
    }

    #[test]
    fn range_answers_decode_and_a_missing_kvs_is_empty() {
        let answer = json!({"header": {"revision": "3"}});
        assert!(kvs(&answer).unwrap().is_empty());
        let answer = json!({"kvs": [{"key": b64(b"/p/state/alice"), "value": b64(b"x"), "mod_revision": "7"}], "count": "1"});
        let got = kvs(&answer).unwrap();
        assert_eq!(
            (got[0].key.as_str(), got[0].mod_revision, &got[0].value[..]),
            ("/p/state/alice", 7, &b"x"[..])
        );
        assert!(kvs(&json!({"kvs": [{"key": "!!"}]})).is_err());
    }

    #[test]
    fn a_full_database_is_named_and_status_gives_size_history_and_alarms() {
        let status = json!({"header": {"revision": "26"}, "dbSize": "1171456",
            "errors": ["memberID:10276657743932975437 alarm:NOSPACE "], "dbSizeInUse": "1044480"});
        let space = MemberSpace::from_status(&status);
        assert_eq!((space.db_size_in_use, space.revision), (1_044_480, 26));
        assert!(space.alarms[0].contains("alarm:NOSPACE"), "{space:?}");
        assert_eq!(MemberSpace::from_status(&json!({})), MemberSpace::default());
    }
}
