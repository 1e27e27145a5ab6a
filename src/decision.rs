//! The decision of one authentication: what PAM is told ([`Outcome`]), why ([`Reason`]), and
//! what the audit line reports ([`Decision`]). Formatting that line is `audit`'s job.
#![forbid(unsafe_code)]

/// What the module returns to PAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `PAM_SUCCESS`: a verified code.
    Success,
    /// `PAM_IGNORE`: MFA is not required for this user (documented cases only).
    Ignore,
    /// `PAM_AUTH_ERR`: everything else.
    Deny,
}

/// Why: the `reason=` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A fresh, correct code.
    Ok,
    /// A valid recovery code, now used up (`remaining=` tells how many are left).
    RecoveryCode,
    /// `grace_seconds`: a code was accepted recently for this user from this client address
    /// with this SSH key, and nothing failed since; no code was asked.
    Grace,
    /// The user enrolled during this login (key first, then a confirmed code); `detail=` has
    /// the SSH key fingerprint.
    EnrolledAtLogin,
    /// A wrong code, or input that is not a code at all.
    BadCode,
    /// A correct code for a step that was already used.
    Replay,
    /// The user is locked out after too many failures.
    Throttled,
    /// No enrollment for this user.
    NotEnrolled,
    /// A shared account: the SSH key is bound to none of its tokens and `key_binding` gives
    /// it no unbound one (`key=` names the key).
    UnboundKey,
    /// MFA not required: exempt network or group, or not in `require_groups`.
    Exempt,
    /// The user name cannot be valid (path characters, too long, ...).
    BadUser,
    /// NSS knows no account of that name (denied after a prompt, never ignored).
    UnknownAccount,
    /// The enrollment record or its directory is unsafe or invalid.
    BadFile,
    /// Module arguments or the config file are invalid.
    BadConfig,
    /// The client gave no answer to the prompt (conversation failed).
    NoCode,
    /// `first_factor=publickey` is set and sshd reports no accepted SSH key for this
    /// connection (password or keyboard-interactive alone). Denied before any prompt.
    NoFirstFactor,
    /// The user's replay mark lies ahead of the server's clock (the clock was ahead, or was set
    /// back): no code can pass until real time catches up. Not counted; `mfa-enroll unlock`.
    StateInFuture,
    /// sshd replaced the typed answer with its fixed bad string (root under
    /// `PermitRootLogin prohibit-password`, or an account sshd itself refuses). Not counted.
    SshdReplacedAnswer,
    /// The fleet backend (etcd) could not be reached within the budget and
    /// `on_unavailable = "deny"` (or the local copy could not be used either).
    BackendUnavailable,
    /// The fleet backend refused (TLS verification, permission, not etcd) or this host's
    /// fleet files (certificates, fleet key, password) are missing or unsafe. Never falls
    /// back to the local copy.
    BackendError,
    /// Anything else: state I/O failure, clock error, caught panic.
    Internal,
}

impl Reason {
    /// Every reason, in the order the docs list them.
    pub const ALL: [Reason; 21] = [
        Self::Ok,
        Self::RecoveryCode,
        Self::Grace,
        Self::EnrolledAtLogin,
        Self::BadCode,
        Self::Replay,
        Self::Throttled,
        Self::NotEnrolled,
        Self::UnboundKey,
        Self::Exempt,
        Self::BadUser,
        Self::UnknownAccount,
        Self::BadFile,
        Self::BadConfig,
        Self::NoCode,
        Self::NoFirstFactor,
        Self::SshdReplacedAnswer,
        Self::StateInFuture,
        Self::BackendUnavailable,
        Self::BackendError,
        Self::Internal,
    ];

    /// One line for the man page: what the administrator reads the reason as.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => "success: a fresh, correct code.",
            Self::RecoveryCode => "success: a recovery code, now used up (remaining= codes left).",
            Self::Grace => {
                "success without a code: grace_seconds, a code was accepted recently for this user through the same service from the same client address and SSH key (password logins: the address), and nothing failed since."
            }
            Self::EnrolledAtLogin => {
                "success: the user enrolled during this login (SSH key first, then a confirmed code); detail= has the key fingerprint."
            }
            Self::BadCode => "denied: a wrong code, or input that is not a code.",
            Self::Replay => "denied: a correct code for a time step already used.",
            Self::Throttled => "denied: locked out after too many failures (locked_for=).",
            Self::NotEnrolled => "denied after a prompt, or ignored with nullok: no enrollment.",
            Self::UnboundKey => {
                "denied after a prompt, counted nowhere: a shared account whose tokens are bound to SSH keys, and the key (key=) is bound to none of them (key_binding)."
            }
            Self::Exempt => "ignored: exempt network or group, or not in require_groups.",
            Self::BadUser => "denied: a user name that cannot be valid.",
            Self::UnknownAccount => {
                "denied after a prompt, never ignored (not even with nullok): NSS knows no account of that name."
            }
            Self::BadFile => "denied: the record or the store is unsafe or invalid.",
            Self::BadConfig => "denied: bad module argument or config file.",
            Self::NoCode => "denied: the client gave no answer.",
            Self::NoFirstFactor => {
                "denied before any prompt, not counted: first_factor=publickey and sshd accepted no SSH key in this connection (detail= names the sshd setting to fix)."
            }
            Self::SshdReplacedAnswer => {
                "denied, not counted: the answer is sshd's fixed bad string, for root (sshd replaces the typed code without PermitRootLogin yes; the client may also have typed it) or an account NSS cannot resolve. For any other account the client typed it: bad_code, counted."
            }
            Self::StateInFuture => {
                "denied, not counted: the last accepted code lies ahead of the server's clock (it was ahead, or was set back); fix the clock, then mfa-enroll unlock."
            }
            Self::BackendUnavailable => {
                "denied: [fleet] etcd could not be reached within timeout_ms and on_unavailable = \"deny\" (detail= has each endpoint's error)."
            }
            Self::BackendError => {
                "denied, never falls back to the local copy: etcd refused (TLS verification, permission, an answer that is not etcd's), or this host's fleet certificate, key, fleet key or password file is missing or unsafe."
            }
            Self::Internal => "denied: state unusable, clock before 1970, caught panic.",
        }
    }

    /// The word used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RecoveryCode => "recovery_code",
            Self::Grace => "grace",
            Self::EnrolledAtLogin => "enrolled_at_login",
            Self::BadCode => "bad_code",
            Self::Replay => "replay",
            Self::Throttled => "throttled",
            Self::NotEnrolled => "not_enrolled",
            Self::UnboundKey => "unbound_key",
            Self::Exempt => "exempt",
            Self::BadUser => "bad_user",
            Self::UnknownAccount => "unknown_account",
            Self::BadFile => "bad_file",
            Self::BadConfig => "bad_config",
            Self::NoCode => "no_code",
            Self::NoFirstFactor => "no_first_factor",
            Self::SshdReplacedAnswer => "sshd_replaced_answer",
            Self::StateInFuture => "state_in_future",
            Self::BackendUnavailable => "backend_unavailable",
            Self::BackendError => "backend_error",
            Self::Internal => "internal",
        }
    }
}

/// The result of one authentication, with everything the audit line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What PAM is told.
    pub outcome: Outcome,
    /// Why.
    pub reason: Reason,
    /// Observed clock skew in steps (code step minus server step), when a code matched.
    pub skew: Option<i64>,
    /// Consecutive failures after this attempt, when it failed.
    pub failures: Option<u32>,
    /// Seconds of lockout remaining (or just started).
    pub locked_for: Option<u64>,
    /// Recovery codes left after one was used.
    pub remaining: Option<usize>,
    /// Shared accounts and automation keys: the person and the key (see [`Who`]); boxed, as
    /// most decisions have none.
    pub who: Option<Box<Who>>,
    /// Free text for the administrator (file paths, error causes). Never a code or secret.
    pub detail: Option<String>,
    /// A grace period to start only if the whole PAM stack succeeds (`pam_sm_setcred`; see
    /// `crate::login::grace`).
    pub grace_pending: Option<Box<PendingGrace>>,
}

/// Who logged in, beyond the name the client gave: for the audit line's `account=`,
/// `person=` and `key=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// The canonical account name from NSS, when it differs from the name the client gave
    /// (`Alice`, `alice@corp.example` -> `alice`): the record, state and groups used are its.
    pub account: Option<String>,
    /// Shared accounts: whose token was used (its person; never the account's own token).
    pub person: Option<String>,
    /// The SSH key fingerprint that chose the token (shared accounts), or the automation key.
    pub key: Option<String>,
}

impl Decision {
    /// The canonical account, when it differs from the name the client gave (see [`Who`]).
    pub fn account(&self) -> Option<&str> {
        self.who.as_ref()?.account.as_deref()
    }

    /// Names the canonical account (see [`Who`]).
    pub fn with_account(mut self, account: String) -> Self {
        self.who.get_or_insert_with(Default::default).account = Some(account);
        self
    }

    /// The person whose token was used, on a shared account.
    pub fn person(&self) -> Option<&str> {
        self.who.as_ref()?.person.as_deref()
    }

    /// The SSH key named in the audit line (shared accounts, automation keys).
    pub fn key(&self) -> Option<&str> {
        self.who.as_ref()?.key.as_deref()
    }

    /// Names the person and key, keeping any already named.
    pub fn with_who(mut self, person: Option<String>, key: Option<String>) -> Self {
        let who = self.who.get_or_insert_with(Default::default);
        if who.person.is_none() {
            who.person = person;
        }
        if who.key.is_none() {
            who.key = key;
        }
        self
    }
}

/// A grace period to write once the whole stack has succeeded (see `crate::login::grace`):
/// what a decision carries to `pam_sm_setcred`. Plain data, so that decisions (and the audit
/// line) depend on nothing of the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingGrace {
    /// The login's grace digest (`crate::login::grace::grace_id`).
    pub id: u64,
    /// Unix time the grace ends.
    pub until: u64,
}

impl Decision {
    /// A verified code.
    pub fn success(skew: i64) -> Self {
        Self {
            skew: Some(skew),
            ..Self::new(Outcome::Success, Reason::Ok)
        }
    }

    /// A successful login for another reason than a TOTP code (a recovery code).
    pub fn new_success(reason: Reason) -> Self {
        Self::new(Outcome::Success, reason)
    }

    /// MFA not required for this user.
    pub fn ignore(reason: Reason) -> Self {
        Self::new(Outcome::Ignore, reason)
    }

    /// A denial.
    pub fn deny(reason: Reason) -> Self {
        Self::new(Outcome::Deny, reason)
    }

    /// Adds administrator detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    fn new(outcome: Outcome, reason: Reason) -> Self {
        Self {
            outcome,
            reason,
            skew: None,
            failures: None,
            locked_for: None,
            remaining: None,
            who: None,
            detail: None,
            grace_pending: None,
        }
    }
}
