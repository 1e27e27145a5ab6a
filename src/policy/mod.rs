//! The effective policy: built-in defaults, overridden by the config file
//! (`/etc/ecs-mfa/config.toml`, optional), overridden by module arguments.
//!
//! Anything unexpected (an unknown or repeated argument, an unknown key, a wrong type, a value
//! out of range, a config file with unsafe ownership) is an error, and the caller denies every
//! login with the reason logged: a typo must never open the door.
//!
//! The config file keys are listed once, in [`CONFIG_KEYS`] (and the `[fleet]` table's in
//! `crate::fleet::FLEET_KEYS`): the man page is generated from those tables, and unit tests
//! check that the parser accepts exactly them and that docs/config.md documents every one.
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exemption::Exemptions;
use crate::secure_fs::{self, FileRules, FsError};
use crate::state::{DEFAULT_STATE_DIR, ThrottlePolicy};
use crate::store::DEFAULT_STORE_DIR;
use crate::store::record::line_of;
use crate::totp::MAX_WINDOW;
use crate::user_name::UserName;

/// Default config file location.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ecs-mfa/config.toml";
/// Default prompt, as sshd users of other TOTP modules know it.
pub const DEFAULT_PROMPT: &str = "Verification code: ";
const MAX_CONFIG_BYTES: u64 = 64 * 1024;
const MAX_LOCKOUT_SECONDS: u64 = 86_400;

mod keys;
mod reference;

pub use keys::{AutomationKey, KeyBinding};

pub use reference::{CONFIG_KEYS, MODULE_ARGUMENTS};

/// Everything the authentication flow needs to know, fully validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Enrollment store directory.
    pub store_dir: PathBuf,
    /// Volatile state directory.
    pub state_dir: PathBuf,
    /// The config file that was read (or would have been, when absent).
    pub config_path: PathBuf,
    /// Unenrolled users get `PAM_IGNORE` without a prompt.
    pub nullok: bool,
    /// Log more (never codes or secrets).
    pub debug: bool,
    /// Steps accepted on each side of the current step.
    pub window: u8,
    /// Lockout rules.
    pub throttle: ThrottlePolicy,
    /// Prompt text.
    pub prompt: String,
    /// Who needs no MFA.
    pub exemptions: Exemptions,
    /// What must have happened before this module runs.
    pub first_factor: FirstFactor,
    /// Issuer for new enrollments (`mfa-enroll`, enrollment at login); `None`: the host name.
    pub issuer: Option<String>,
    /// Who may enroll at the first SSH login, if anyone.
    pub enroll_at_login: Option<LoginEnrollment>,
    /// Show the code while it is typed.
    pub echo_code: bool,
    /// `test_panic`: the hook panics on purpose, to prove that this build of the module
    /// catches a panic and denies (tests run it against every build that is shipped).
    pub test_panic: bool,
    /// Where the code comes from (google-authenticator's `forward_pass`, `use_first_pass`,
    /// `try_first_pass`).
    pub pass: PassMode,
    /// `grace_seconds` (with `grace_scope`), when not 0.
    pub grace: Option<GracePolicy>,
    /// HOTP tokens: how many counters from the next one on a code may match.
    pub hotp_window: u8,
    /// The fleet backend (`[fleet] backend = "etcd"`); `None`: local files.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// Shared accounts: which token a key may use (see [`KeyBinding`]).
    pub key_binding: KeyBinding,
    /// `automation_keys`: SSH keys that need no code (deploy jobs, backups): `reason=exempt`
    /// with the key in the audit line.
    pub automation_keys: Vec<AutomationKey>,
    /// `audit_format`: key=value (default) or JSON lines.
    pub audit_format: crate::audit::Format,
}

/// The rules for enrollment at the first SSH login (config `enroll_at_login = true`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginEnrollment {
    /// If not empty, only members of these groups may enroll at login.
    pub groups: Vec<String>,
    /// Unix time from which enrollment at login is over (the day after `enroll_until`, UTC).
    pub until: Option<u64>,
}

/// The first factor the module insists on before it asks for a code.
///
/// sshd runs the PAM `auth` stack for keyboard-interactive *and* for password authentication,
/// and a key + code stack has no password module in it; without this check the code alone
/// logs in whenever sshd reaches the stack without a key (`PasswordAuthentication yes`, an
/// `AuthenticationMethods` or `Match` block without `publickey` first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FirstFactor {
    /// No check (password + code stacks, where the password module comes first).
    #[default]
    None,
    /// `SSH_AUTH_INFO_0` must show a completed `publickey` method.
    PublicKey,
}

/// `grace_seconds`: a login without a code shortly after one with a code, from the same client
/// address with the same SSH key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracePolicy {
    /// How long a grace period lasts (1 to 43200 s).
    pub seconds: u64,
    /// `grace_scope = "fleet"`: one grace for every server of the fleet backend.
    pub fleet_wide: bool,
}

/// The longest grace period allowed (12 hours).
pub const MAX_GRACE_SECONDS: u64 = 43_200;

/// How the code reaches the module. Module arguments only (they describe the stack).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PassMode {
    /// Ask for the code.
    #[default]
    Prompt,
    /// `forward_pass`: ask for "Password & verification code" in one answer, take the code
    /// from its end and hand the rest to the next module as `PAM_AUTHTOK` (for clients that
    /// can only do password authentication; the next module needs `use_first_pass`).
    Forward,
    /// `use_first_pass`: the code is `PAM_AUTHTOK`, as an earlier module left it; never ask.
    UseFirst,
    /// `try_first_pass`: `PAM_AUTHTOK` if it is shaped like a code, else ask.
    TryFirst,
}

impl PassMode {
    /// The module argument.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::Forward => "forward_pass",
            Self::UseFirst => "use_first_pass",
            Self::TryFirst => "try_first_pass",
        }
    }
}

impl FirstFactor {
    /// The word used in the argument, the config file and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::PublicKey => "publickey",
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            store_dir: DEFAULT_STORE_DIR.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            config_path: DEFAULT_CONFIG_PATH.into(),
            nullok: false,
            debug: false,
            window: 1,
            throttle: ThrottlePolicy::default(),
            prompt: DEFAULT_PROMPT.into(),
            exemptions: Exemptions::default(),
            first_factor: FirstFactor::None,
            issuer: None,
            enroll_at_login: None,
            echo_code: false,
            test_panic: false,
            pass: PassMode::Prompt,
            grace: None,
            hotp_window: 3,
            fleet: None,
            key_binding: KeyBinding::IfBound,
            automation_keys: Vec::new(),
            audit_format: crate::audit::Format::KeyValue,
        }
    }
}

/// Module arguments as given on the pam.d line, before merging.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleArgs {
    store: Option<PathBuf>,
    state: Option<PathBuf>,
    config: Option<PathBuf>,
    nullok: bool,
    debug: bool,
    first_factor: bool,
    echo_code: bool,
    test_panic: bool,
    pass: Option<PassMode>,
}

impl ModuleArgs {
    /// Parses `store=DIR state=DIR config=FILE nullok debug first_factor=publickey echo_code`. Paths must be absolute; every
    /// argument may appear once.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, PolicyError> {
        let mut parsed = Self::default();
        for arg in args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            let bad = |why: &'static str| PolicyError::BadArgument {
                arg: printable(arg),
                why,
            };
            match (key, value) {
                ("store", Some(v)) => set_once(&mut parsed.store, absolute(v).map_err(bad)?, arg)?,
                ("state", Some(v)) => set_once(&mut parsed.state, absolute(v).map_err(bad)?, arg)?,
                ("config", Some(v)) => {
                    set_once(&mut parsed.config, absolute(v).map_err(bad)?, arg)?
                }
                ("nullok", None) => set_flag(&mut parsed.nullok, arg)?,
                ("debug", None) => set_flag(&mut parsed.debug, arg)?,
                ("echo_code", None) => set_flag(&mut parsed.echo_code, arg)?,
                ("test_panic", None) => set_flag(&mut parsed.test_panic, arg)?,
                ("forward_pass" | "use_first_pass" | "try_first_pass", None) => {
                    let mode = match key {
                        "forward_pass" => PassMode::Forward,
                        "use_first_pass" => PassMode::UseFirst,
                        _ => PassMode::TryFirst,
                    };
                    if parsed.pass.replace(mode).is_some() {
                        return Err(bad(
                            "forward_pass, use_first_pass and try_first_pass exclude each other",
                        ));
                    }
                }
                ("forward_pass" | "use_first_pass" | "try_first_pass", Some(_)) => {
                    return Err(bad("takes no value"));
                }
                ("first_factor", Some("publickey")) => set_flag(&mut parsed.first_factor, arg)?,
                ("first_factor", _) => return Err(bad("the only value is first_factor=publickey")),
                ("nullok" | "debug" | "echo_code" | "test_panic", Some(_)) => {
                    return Err(bad("takes no value"));
                }
                ("store" | "state" | "config", None) => return Err(bad("needs =/absolute/path")),
                _ => return Err(PolicyError::UnknownArgument(printable(arg))),
            }
            // The documented table and the parser must agree (tested); belt and braces.
            if !MODULE_ARGUMENTS
                .iter()
                .any(|(n, _)| n.split('=').next() == Some(key))
            {
                return Err(PolicyError::UnknownArgument(printable(arg)));
            }
        }
        Ok(parsed)
    }

    /// The config file these arguments point at.
    pub fn config_path(&self) -> &Path {
        self.config
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_CONFIG_PATH))
    }
}

impl Policy {
    /// Parses module arguments, reads the config file they name (absent = defaults) and merges
    /// arguments > config file > defaults.
    pub fn from_module_args<'a>(
        args: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, PolicyError> {
        let args = ModuleArgs::parse(args)?;
        let config = ConfigFile::load(args.config_path())?;
        Self::merge(&args, config.unwrap_or_default())
    }

    /// The policy of the config file at `path` alone (no module arguments): what `mfa-enroll`
    /// reads, so that the tool and the module agree on where things are.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let args = ModuleArgs {
            config: Some(path.to_owned()),
            ..ModuleArgs::default()
        };
        let config = ConfigFile::load(path)?;
        Self::merge(&args, config.unwrap_or_default())
    }

    /// Checks config file *text* as if it were at `path`, with no module arguments: what the
    /// module would make of it. For `doctor`-style checks and the fuzzer.
    pub fn from_config_text(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let args = ModuleArgs {
            config: Some(path.to_owned()),
            ..ModuleArgs::default()
        };
        Self::merge(&args, ConfigFile::parse(text, path)?)
    }

    /// Defaults, then the config file, then the arguments; one section of the file at a time.
    fn merge(args: &ModuleArgs, mut config: ConfigFile) -> Result<Self, PolicyError> {
        let defaults = Self::default();
        let bad = Bad(args.config_path());
        let (window, throttle, hotp_window) = bad.codes(&config, &defaults)?;
        let prompt = bad.prompt(config.prompt.take(), defaults.prompt)?;
        let exemptions = bad.exemptions(&config)?;
        let first_factor = match bad.first_factor(config.first_factor.as_deref())? {
            // The stricter setting wins: an argument can only turn the check on.
            _ if args.first_factor => FirstFactor::PublicKey,
            from_file => from_file,
        };
        let issuer = bad.issuer(config.issuer.take())?;
        let fleet = config
            .fleet
            .take()
            .unwrap_or_default()
            .validate(|k, w| bad.value(k, w))?;
        let enroll_at_login = bad.enroll_at_login(&config, fleet.is_some())?;
        let grace = bad.grace(&config, fleet.is_some())?;
        let (key_binding, automation_keys) = bad.keys(&config)?;
        let audit_format = match config.audit_format.as_deref() {
            None | Some("kv") => crate::audit::Format::KeyValue,
            Some("json") => crate::audit::Format::Json,
            Some(_) => return Err(bad.value("audit_format", "must be \"kv\" or \"json\"")),
        };
        // Validated even when an argument overrides them: a bad value is a bad file.
        let config_store = bad.dir("store", config.store)?;
        let config_state = bad.dir("state", config.state)?;
        Ok(Self {
            store_dir: args
                .store
                .clone()
                .or(config_store)
                .unwrap_or(defaults.store_dir),
            state_dir: args
                .state
                .clone()
                .or(config_state)
                .unwrap_or(defaults.state_dir),
            nullok: args.nullok || config.nullok.unwrap_or(false),
            debug: args.debug || config.debug.unwrap_or(false),
            window,
            throttle,
            prompt,
            exemptions,
            first_factor,
            issuer,
            enroll_at_login,
            echo_code: args.echo_code || config.echo_code.unwrap_or(false),
            test_panic: args.test_panic,
            pass: args.pass.unwrap_or_default(),
            grace,
            hotp_window,
            fleet,
            key_binding,
            automation_keys,
            audit_format,
            config_path: args.config_path().to_owned(),
        })
    }
}

/// The checks of one config file's values: each refusal names the file, the key and why.
struct Bad<'a>(&'a Path);

impl Bad<'_> {
    fn value(&self, key: &'static str, why: &'static str) -> PolicyError {
        PolicyError::BadValue {
            path: self.0.to_owned(),
            key,
            why,
        }
    }

    /// `value` of `key` unless it lies outside `range`; `why` is the documented range.
    fn within<T: PartialOrd>(
        &self,
        key: &'static str,
        value: T,
        range: std::ops::RangeInclusive<T>,
        why: &'static str,
    ) -> Result<T, PolicyError> {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.value(key, why))
        }
    }

    fn dir(&self, key: &'static str, v: Option<String>) -> Result<Option<PathBuf>, PolicyError> {
        v.map(|v| absolute(&v).map_err(|why| self.value(key, why)))
            .transpose()
    }

    /// `window`, the lockout rules and `hotp_window`.
    fn codes(
        &self,
        config: &ConfigFile,
        defaults: &Policy,
    ) -> Result<(u8, ThrottlePolicy, u8), PolicyError> {
        let window = config.window.unwrap_or(defaults.window);
        let window = self.within("window", window, 0..=MAX_WINDOW, "must be 0 to 10")?;
        let d = &defaults.throttle;
        let max_failures = config.max_failures.unwrap_or(d.max_failures);
        let max_failures =
            self.within("max_failures", max_failures, 1..=100, "must be 1 to 100")?;
        let first = config.lockout_seconds.unwrap_or(d.lockout_seconds);
        let first = self.within(
            "lockout_seconds",
            first,
            1..=MAX_LOCKOUT_SECONDS,
            "must be 1 to 86400",
        )?;
        let longest = config
            .lockout_max_seconds
            .unwrap_or(d.lockout_max_seconds.max(first));
        let longest = self.within(
            "lockout_max_seconds",
            longest,
            first..=MAX_LOCKOUT_SECONDS,
            "must be lockout_seconds to 86400",
        )?;
        let hotp_window = config.hotp_window.unwrap_or(defaults.hotp_window);
        let hotp_window = self.within("hotp_window", hotp_window, 1..=100, "must be 1 to 100")?;
        let throttle = ThrottlePolicy {
            max_failures,
            lockout_seconds: first,
            lockout_max_seconds: longest,
        };
        Ok((window, throttle, hotp_window))
    }

    fn prompt(&self, prompt: Option<String>, default: String) -> Result<String, PolicyError> {
        let prompt = prompt.unwrap_or(default);
        if prompt.is_empty() || prompt.chars().count() > 80 || prompt.chars().any(char::is_control)
        {
            return Err(self.value("prompt", "must be 1 to 80 printable characters"));
        }
        Ok(prompt)
    }

    fn groups(
        &self,
        key: &'static str,
        v: Option<&Vec<String>>,
    ) -> Result<Vec<String>, PolicyError> {
        let v = v.cloned().unwrap_or_default();
        if v.iter().any(|g| UserName::parse(g).is_err()) {
            return Err(self.value(key, "must be a list of group names"));
        }
        Ok(v)
    }

    fn exemptions(&self, config: &ConfigFile) -> Result<Exemptions, PolicyError> {
        Ok(Exemptions {
            require_groups: self.groups("require_groups", config.require_groups.as_ref())?,
            exempt_groups: self.groups("exempt_groups", config.exempt_groups.as_ref())?,
            exempt_networks: config
                .exempt_networks
                .iter()
                .flatten()
                .map(|n| n.parse().map_err(|why| self.value("exempt_networks", why)))
                .collect::<Result<_, _>>()?,
        })
    }

    fn first_factor(&self, value: Option<&str>) -> Result<FirstFactor, PolicyError> {
        match value {
            None | Some("none") => Ok(FirstFactor::None),
            Some("publickey") => Ok(FirstFactor::PublicKey),
            Some(_) => Err(self.value("first_factor", "must be \"publickey\" or \"none\"")),
        }
    }

    /// Cosmetic for logins, but still a value in a file that denies everything when wrong:
    /// kept lenient (':' is replaced when the URI is built, as for --issuer).
    fn issuer(&self, issuer: Option<String>) -> Result<Option<String>, PolicyError> {
        match issuer {
            Some(i)
                if i.trim().is_empty()
                    || i.chars().count() > 64
                    || i.chars().any(char::is_control) =>
            {
                Err(self.value("issuer", "must be 1 to 64 printable characters"))
            }
            other => Ok(other),
        }
    }

    fn enroll_at_login(
        &self,
        config: &ConfigFile,
        fleet: bool,
    ) -> Result<Option<LoginEnrollment>, PolicyError> {
        let groups = self.groups("enroll_groups", config.enroll_groups.as_ref())?;
        let until = config
            .enroll_until
            .as_deref()
            .map(|d| {
                end_of_day(d).ok_or_else(|| self.value("enroll_until", "must be a date YYYY-MM-DD"))
            })
            .transpose()?;
        let enroll = config.enroll_at_login.unwrap_or(false);
        if fleet && enroll {
            return Err(self.value(
                "enroll_at_login",
                "is not available with the etcd backend: hosts may only read records (enroll once with mfa-enroll, from any host)",
            ));
        }
        Ok(enroll.then_some(LoginEnrollment { groups, until }))
    }

    fn grace(&self, config: &ConfigFile, fleet: bool) -> Result<Option<GracePolicy>, PolicyError> {
        let seconds = self.within(
            "grace_seconds",
            config.grace_seconds.unwrap_or(0),
            0..=MAX_GRACE_SECONDS,
            "must be 0 to 43200 (12 hours)",
        )?;
        let fleet_wide = match config.grace_scope.as_deref() {
            None | Some("host") => false,
            Some("fleet") if fleet => true,
            Some("fleet") => {
                return Err(self.value(
                    "grace_scope",
                    "\"fleet\" needs the etcd backend ([fleet] backend = \"etcd\")",
                ));
            }
            Some(_) => return Err(self.value("grace_scope", "must be \"host\" or \"fleet\"")),
        };
        Ok((seconds > 0).then_some(GracePolicy {
            seconds,
            fleet_wide,
        }))
    }
}

impl Bad<'_> {
    /// `key_binding` and `automation_keys`.
    fn keys(&self, config: &ConfigFile) -> Result<(KeyBinding, Vec<AutomationKey>), PolicyError> {
        let binding = match config.key_binding.as_deref() {
            None | Some("if-bound") => KeyBinding::IfBound,
            Some("fallback") => KeyBinding::Fallback,
            Some("required") => KeyBinding::Required,
            Some(_) => {
                return Err(self.value(
                    "key_binding",
                    "must be \"if-bound\", \"fallback\" or \"required\"",
                ));
            }
        };
        let keys = config
            .automation_keys
            .iter()
            .flatten()
            .map(|entry| {
                AutomationKey::parse(entry).ok_or_else(|| {
                    self.value(
                        "automation_keys",
                        "must be a list of \"SHA256:...\" or \"account:SHA256:...\" (ssh-keygen -l fingerprints)",
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((binding, keys))
    }
}

/// The config file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    store: Option<String>,
    state: Option<String>,
    nullok: Option<bool>,
    debug: Option<bool>,
    window: Option<u8>,
    max_failures: Option<u32>,
    lockout_seconds: Option<u64>,
    lockout_max_seconds: Option<u64>,
    prompt: Option<String>,
    require_groups: Option<Vec<String>>,
    exempt_groups: Option<Vec<String>>,
    exempt_networks: Option<Vec<String>>,
    first_factor: Option<String>,
    issuer: Option<String>,
    enroll_at_login: Option<bool>,
    enroll_groups: Option<Vec<String>>,
    enroll_until: Option<String>,
    echo_code: Option<bool>,
    grace_seconds: Option<u64>,
    grace_scope: Option<String>,
    hotp_window: Option<u8>,
    key_binding: Option<String>,
    automation_keys: Option<Vec<String>>,
    audit_format: Option<String>,
    fleet: Option<crate::fleet::RawFleet>,
}

impl ConfigFile {
    /// Reads and parses `path`; `Ok(None)` when it does not exist. The file must be a regular
    /// root-owned file not writable by group/other, in a root-owned directory.
    fn load(path: &Path) -> Result<Option<Self>, PolicyError> {
        let Some(bytes) = secure_fs::read_file(path, FileRules::Config, MAX_CONFIG_BYTES)? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| PolicyError::ConfigSyntax {
            path: path.to_owned(),
            line: None,
            message: "not UTF-8".to_string(),
        })?;
        Self::parse(text, path).map(Some)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, PolicyError> {
        let syntax = |line: Option<usize>, message: String| PolicyError::ConfigSyntax {
            path: path.to_owned(),
            line,
            message,
        };
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            syntax(line, e.message().trim().to_string())
        })
    }
}

/// The Unix time at which the UTC day `YYYY-MM-DD` ends (midnight after it).
fn end_of_day(date: &str) -> Option<u64> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let days_in_month = [
        31,
        28 + i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || d < 1
        || d > days_in_month[(m - 1) as usize]
    {
        return None;
    }
    // Days from civil (proleptic Gregorian), as in mfa-enroll's iso_date, inverted.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from((days + 1) * 86_400).ok()
}

fn absolute(value: &str) -> Result<PathBuf, &'static str> {
    if value.is_empty() || !value.starts_with('/') {
        return Err("path must be absolute");
    }
    if value.chars().any(char::is_control) || value.split('/').any(|c| c == "..") {
        return Err("path must not contain control characters or '..'");
    }
    Ok(PathBuf::from(value))
}

fn set_once(slot: &mut Option<PathBuf>, value: PathBuf, arg: &str) -> Result<(), PolicyError> {
    if slot.replace(value).is_some() {
        return Err(PolicyError::DuplicateArgument(printable(arg)));
    }
    Ok(())
}

fn set_flag(flag: &mut bool, arg: &str) -> Result<(), PolicyError> {
    if std::mem::replace(flag, true) {
        return Err(PolicyError::DuplicateArgument(printable(arg)));
    }
    Ok(())
}

/// Arguments are admin input but end up in logs: keep them short and printable.
fn printable(s: &str) -> String {
    crate::text::ascii_printable(s, 100)
}

/// Why the policy could not be built. Every variant denies all logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// An argument on the pam.d line that the module does not know.
    UnknownArgument(String),
    /// A known argument with a bad value.
    BadArgument { arg: String, why: &'static str },
    /// The same argument twice.
    DuplicateArgument(String),
    /// The config file is unsafe or unreadable.
    ConfigFile(FsError),
    /// The config file is not valid TOML, or has an unknown key or a wrong type.
    ConfigSyntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A config value out of range.
    BadValue {
        path: PathBuf,
        key: &'static str,
        why: &'static str,
    },
}

impl From<FsError> for PolicyError {
    fn from(e: FsError) -> Self {
        Self::ConfigFile(e)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownArgument(arg) => write!(f, "unknown module argument '{arg}'"),
            Self::BadArgument { arg, why } => write!(f, "bad module argument '{arg}': {why}"),
            Self::DuplicateArgument(arg) => write!(f, "module argument '{arg}' given twice"),
            Self::ConfigFile(e) => write!(f, "config file: {e}"),
            Self::ConfigSyntax {
                path,
                line: Some(line),
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            Self::ConfigSyntax {
                path,
                line: None,
                message,
            } => write!(f, "{}: {message}", path.display()),
            Self::BadValue { path, key, why } => {
                write!(f, "{}: {key} {why}", path.display())
            }
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests;
