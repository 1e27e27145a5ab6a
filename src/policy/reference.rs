//! The documented module arguments and config keys: the man page (`mfa-enroll man`), the
//! README tables and the parser all follow these lists, and tests keep them in step.
#![forbid(unsafe_code)]

/// The module arguments, as documented (man page, README). [`ModuleArgs::parse`] refuses any
/// argument whose name is not in this table.
pub const MODULE_ARGUMENTS: [(&str, &str); 11] = [
    (
        "store=DIR",
        "Enrollment store (default /var/lib/ecs-mfa/users).",
    ),
    (
        "state=DIR",
        "Volatile replay and lockout state (default /run/ecs-mfa; created 0700 root:root).",
    ),
    (
        "config=FILE",
        "Config file (default /etc/ecs-mfa/config.toml; absent means defaults).",
    ),
    (
        "nullok",
        "Users with no enrollment get PAM_IGNORE without a prompt instead of a denial. A broken enrollment is still a denial.",
    ),
    (
        "debug",
        "One extra log line with the effective settings (never codes or secrets).",
    ),
    (
        "first_factor=publickey",
        "Deny (before any prompt, also for nullok and exempt users) unless sshd reports in SSH_AUTH_INFO_0 that a public key was accepted earlier in this connection. Use it with every key + code stack; needs OpenSSH >= 7.8.",
    ),
    (
        "echo_code",
        "Show the code while it is typed (PAM_PROMPT_ECHO_ON), like google-authenticator's echo_verification_code.",
    ),
    (
        "forward_pass",
        "Ask once for \"Password & verification code: \", take the code from the end of the answer (6 or 8 digits by the user's record, or a recovery code) and give the rest to the next module as PAM_AUTHTOK (it needs use_first_pass). For clients that can only do password authentication.",
    ),
    (
        "use_first_pass",
        "Take the code from PAM_AUTHTOK as an earlier module left it; never ask.",
    ),
    (
        "try_first_pass",
        "Take the code from PAM_AUTHTOK if it is shaped like one, else ask.",
    ),
    (
        "test_panic",
        "For tests only: the module panics on purpose and must deny (reason=internal, \"caught panic\"), proving that this build catches a panic at the PAM boundary instead of crashing the application. Never use it in production: every login is denied.",
    ),
];

/// The config file keys, as documented. Every key [`ConfigFile`] accepts is here (tested).
pub const CONFIG_KEYS: [(&str, &str); 24] = [
    ("store", "Enrollment store directory (absolute path)."),
    ("state", "Volatile state directory (absolute path)."),
    (
        "nullok",
        "true: users with no enrollment pass with PAM_IGNORE (default false).",
    ),
    ("debug", "true: extra log line (default false)."),
    (
        "window",
        "Time steps accepted on each side of the current one, 0-10 (default 1).",
    ),
    (
        "max_failures",
        "Consecutive failures before a lockout, 1-100 (default 5).",
    ),
    (
        "lockout_seconds",
        "First lockout in seconds, 1-86400 (default 30); each further failure doubles it.",
    ),
    (
        "lockout_max_seconds",
        "Longest lockout in seconds, lockout_seconds-86400 (default 900).",
    ),
    (
        "prompt",
        "Prompt text, 1-80 printable characters (default \"Verification code: \").",
    ),
    (
        "require_groups",
        "If not empty, only members of these groups need MFA; other existing accounts get PAM_IGNORE (default []).",
    ),
    (
        "exempt_groups",
        "Members of these groups never need MFA: PAM_IGNORE without a prompt (default []).",
    ),
    (
        "exempt_networks",
        "CIDR networks (\"10.0.0.0/8\", \"2001:db8::/32\") whose logins need no MFA; matched against PAM_RHOST, a host name never matches, loopback and this host's own addresses are never exempt (default []).",
    ),
    (
        "first_factor",
        "\"publickey\": like the module argument first_factor=publickey; \"none\": no check (default \"none\"; the argument wins).",
    ),
    (
        "issuer",
        "Issuer shown in the authenticator app for every enrollment made by mfa-enroll or at login, 1-64 printable characters (default: the host name; --issuer wins). One issuer for a fleet gives one app entry for every server.",
    ),
    (
        "enroll_at_login",
        "true: a user with no enrollment who logged in with an SSH key first enrolls during that login (QR code, confirmation code, recovery codes) instead of being denied (default false).",
    ),
    (
        "enroll_groups",
        "If not empty, only members of these groups may enroll at login; others are treated as unenrolled (default []).",
    ),
    (
        "enroll_until",
        "\"YYYY-MM-DD\": the last day (UTC) users may enroll at login; after it they are treated as unenrolled (default: no end).",
    ),
    (
        "echo_code",
        "true: show the code while it is typed (default false; the module argument echo_code does the same).",
    ),
    (
        "grace_seconds",
        "0-43200 (default 0 = off): after a code was accepted, the same user through the same PAM service, requesting user and client address with the same SSH key (when sshd reports one) logs in without a code for this long; with forward_pass/use_first_pass/try_first_pass only once the whole stack succeeded (pam_setcred); never after a failure or during a lockout (reason=grace).",
    ),
    (
        "hotp_window",
        "HOTP (counter) tokens: how many counters from the next expected one a code may match, 1-100 (default 3: as many valid codes at a time as TOTP's window of ±1); codes further ahead resynchronise with two in a row.",
    ),
    (
        "key_binding",
        "Shared accounts (a token per person, chosen by the SSH key): what a key bound to no token gets. \"if-bound\" (default): the account's token if no token of the account is bound to a key, else nothing (denied with reason=unbound_key, or a new person enrolls with enroll_at_login); \"fallback\": the account's unbound token; \"required\": never an unbound token.",
    ),
    (
        "automation_keys",
        "SSH keys (\"SHA256:...\" as ssh-keygen -l prints, or \"account:SHA256:...\" for one account) that log in without a code: deploy jobs, backups. PAM_IGNORE with reason=exempt and key= in the audit line; doctor warns when such a key has no from= restriction (default []).",
    ),
    (
        "audit_format",
        "\"kv\" (default): one key=value audit line per decision; \"json\": one JSON object per line with Elastic Common Schema fields (event.category authentication, event.outcome, user.name, source.ip, ecs_mfa.reason, ...), same information and never-log rules (docs/monitoring.md).",
    ),
    (
        "grace_scope",
        "\"host\" (default): a grace period spares codes on this server only; \"fleet\": on every server of the fleet backend.",
    ),
];
