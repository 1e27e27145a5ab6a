//! `mfa-enroll`: creates and administers ecs-mfa enrollments.
//!
//! A thin front end over the library: argument parsing, terminal output, exit codes and the
//! syslog trail live here; records, secrets and file safety live in `pam_ecs_mfa`.
#![forbid(unsafe_code)]

#[macro_use]
mod out;

mod admin;
mod apps;
mod docs;
mod doctor;
mod enroll;
mod fleet;
mod import;
mod metrics;
mod people;
mod qr;
mod report;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pam_ecs_mfa::backend;
use pam_ecs_mfa::backend::Enrollments;
use pam_ecs_mfa::policy::{DEFAULT_CONFIG_PATH, Policy};
use pam_ecs_mfa::store::StoreError;
use pam_ecs_mfa::user_name::UserName;

/// The exit statuses and their help, written once: the `Exit` enum (one variant per kind of
/// failure) and [`EXIT_STATUSES`], from which `--help`, the man page ([`exit_status_help`])
/// and a test of README.md's list follow.
macro_rules! exit_statuses {
    ($($(#[doc = $doc:literal])* $name:ident = $code:literal, $help:literal;)*) => {
        /// Exit statuses, one per kind of failure (documented in the man page and README.md).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Exit {
            $($(#[doc = $doc])* $name = $code,)*
        }

        /// Every status with its help text, in order (0 and 141 are not failures of a
        /// command, so they are not `Exit` variants).
        pub const EXIT_STATUSES: &[(i32, &str)] = &[
            (0, "success"),
            $(($code, $help),)*
            (out::CLOSED_STDOUT, "standard output closed early (e.g. piped into head; nothing was saved after that point)"),
        ];
    };
}

exit_statuses! {
    /// Anything not listed below.
    Failure = 1, "other failure";
    /// Bad command line (also what clap uses).
    Usage = 2, "usage error";
    /// Must run as root.
    NotRoot = 3, "not root";
    /// The user already has an enrollment (use --force).
    AlreadyEnrolled = 4, "already enrolled";
    /// The user has no enrollment.
    NotEnrolled = 5, "not enrolled";
    /// The store (or state) directory or a record is unsafe or unreadable.
    Store = 6, "store problem (unsafe permissions, unreadable)";
    /// The confirmation code was not entered correctly; nothing was written.
    NotConfirmed = 7, "confirmation failed (nothing written)";
    /// `verify`: the code was not accepted.
    CodeRejected = 8, "verify: code not accepted";
    /// The config file is invalid.
    Config = 9, "config file invalid";
    /// `import`: some entries could not be imported (the others were).
    Partial = 10, "import: some entries not imported";
    /// `doctor`: at least one problem found.
    Doctor = 11, "doctor: problems found";
    /// The fleet backend (etcd) is unreachable, refused, or this host's fleet files are bad.
    Backend = 12, "fleet backend (etcd) unreachable or refused";
}

/// Text for `--help` and the man page, from [`EXIT_STATUSES`].
pub fn exit_status_help() -> String {
    let list: Vec<String> = EXIT_STATUSES
        .iter()
        .map(|(code, help)| format!("{code} {help}"))
        .collect();
    format!("Exit status: {}.", list.join(", "))
}

/// A failure: exit status plus the one line shown on stderr.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

#[derive(Parser)]
#[command(
    name = "mfa-enroll",
    version,
    about = "Enroll users for ecs-mfa TOTP SSH logins and administer their enrollments",
    long_about = "Enroll users for ecs-mfa TOTP SSH logins and administer their enrollments.\n\n\
Runs as root. Via sudo, commands act on the invoking user (SUDO_USER) unless --user is given; \
root is never chosen implicitly. Every change is logged to syslog (authpriv, ident mfa-enroll) \
without secrets.",
    after_help = exit_status_help()
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

/// Options every subcommand takes.
#[derive(clap::Args, Clone)]
pub struct Global {
    /// Enrollment store directory [default: from the config file, else /var/lib/ecs-mfa/users].
    #[arg(long, value_name = "DIR", global = true)]
    store: Option<PathBuf>,
    /// Volatile state directory [default: from the config file, else /run/ecs-mfa].
    #[arg(long, value_name = "DIR", global = true)]
    state: Option<PathBuf>,
    /// The module's config file, read for the store, state and window settings.
    #[arg(long, value_name = "FILE", global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Machine-readable output: one JSON object on stdout and nothing else.
    #[arg(long, global = true)]
    pub json: bool,
    /// Fleet backend: the etcd RBAC user to act as (an administrator; writing records needs
    /// one when RBAC is on). Default: the host's user from the config file, if any.
    #[arg(
        long,
        value_name = "NAME",
        global = true,
        requires = "etcd_password_file"
    )]
    etcd_user: Option<String>,
    /// File holding that user's password (one line; `-` reads it from standard input).
    #[arg(long, value_name = "FILE", global = true, requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a user's TOTP secret, show it as a QR code, confirm a first code, save it.
    Enroll(enroll::EnrollArgs),
    /// Replace an enrolled user's secret (the old one stops working at once).
    Reset(enroll::EnrollArgs),
    /// Show an enrolled user's QR code, URI and secret again (for a new phone).
    Show(enroll::ShowArgs),
    /// Show enrollment, parameters, recovery codes left and lockout, for one user or all.
    Status(status::StatusArgs),
    /// Remove a user's enrollment and login state.
    Remove(admin::RemoveArgs),
    /// Clear a user's lockout (replay protection is kept).
    Unlock(admin::UnlockArgs),
    /// Ask for a code and check it exactly like a login would (counted like one).
    Verify(admin::UserArgs),
    /// Replace a user's recovery codes with a new set (the old ones stop working at once).
    Recovery(admin::UserArgs),
    /// Who failed, from where, how often; lockouts, drifting phones, recovery codes left,
    /// automation and grace logins, unused enrollments: from the audit lines and the state.
    Report(report::ReportArgs),
    /// Write Prometheus metrics (enrolled, locked, recovery codes, decisions, fleet health) for
    /// node_exporter's textfile collector, atomically.
    Metrics(metrics::MetricsArgs),
    /// Shared accounts: bind SSH keys to a person's token (--move takes them from another).
    Bind(people::BindArgs),
    /// Shared accounts: take SSH keys away from a person's token.
    Unbind(people::BindArgs),
    /// Migrate enrollments from google-authenticator-libpam or pam_oath.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// The etcd fleet backend: fleet init, push, sync, status (docs/fleet.md).
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Check this server: module, sshd PAM stack, sshd settings, permissions, config, clock,
    /// users who need MFA but are not enrolled. Each finding comes with a fix.
    Doctor(doctor::DoctorArgs),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions(docs::CompletionsArgs),
    /// Write the man pages mfa-enroll.1 and pam_ecs_mfa.8 to a directory.
    Man(docs::ManArgs),
}

fn main() -> ExitCode {
    // Never show a Rust panic message or backtrace to an administrator; say what happened.
    std::panic::set_hook(Box::new(|_| {
        errln!("mfa-enroll: internal error; please report it (no secret was logged)");
    }));
    let cli = Cli::parse();
    let g = cli.global;
    let result = match cli.command {
        Command::Enroll(args) => enroll::run(&g, args, enroll::Mode::Enroll),
        Command::Reset(args) => enroll::run(&g, args, enroll::Mode::Reset),
        Command::Show(args) => enroll::show(&g, args),
        Command::Status(args) => status::status(&g, args),
        Command::Remove(args) => admin::remove(&g, args),
        Command::Unlock(args) => admin::unlock(&g, args),
        Command::Verify(args) => admin::verify(&g, args),
        Command::Recovery(args) => admin::recovery(&g, args),
        Command::Report(args) => report::run(&g, args),
        Command::Metrics(args) => metrics::run(&g, args),
        Command::Bind(args) => people::run(&g, args, false),
        Command::Unbind(args) => people::run(&g, args, true),
        Command::Import(cmd) => import::run(&g, cmd),
        Command::Fleet(cmd) => fleet::run(&g, cmd),
        Command::Doctor(args) => doctor::doctor(&g, args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            errln!("mfa-enroll: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}

impl Global {
    /// The effective policy: the config file (as the module reads it) with --store/--state
    /// applied on top, so the CLI and the module always agree on where things are.
    pub fn policy(&self) -> Result<Policy, Failure> {
        let mut policy =
            Policy::load(&self.config).map_err(|e| Failure::new(Exit::Config, e.to_string()))?;
        if let Some(store) = &self.store {
            policy.store_dir = store.clone();
        }
        if let Some(state) = &self.state {
            policy.state_dir = state.clone();
        }
        Ok(policy)
    }

    /// The enrollment records `policy` names: the local store, or the fleet (etcd) with the
    /// administrator credentials given on the command line, else the host's.
    pub fn enrollments(&self, policy: &Policy) -> Result<Enrollments, Failure> {
        let admin = match (&self.etcd_user, &self.etcd_password_file) {
            (Some(user), Some(file)) => Some((user.as_str(), read_password(file)?)),
            _ => None,
        };
        if policy.fleet.is_none() && admin.is_some() {
            return Err(Failure::new(
                Exit::Usage,
                "--etcd-user: the config file does not use the etcd backend ([fleet] backend = \"etcd\")",
            ));
        }
        Enrollments::for_policy(policy, admin).map_err(backend_failure)
    }
}

/// Reads an etcd password from a file or, for `-`, standard input (one line).
fn read_password(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, Failure> {
    use std::io::Read;
    let mut text = zeroize::Zeroizing::new(String::new());
    let result = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    result.map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("--etcd-password-file {}: {e}", path.display()),
        )
    })?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            "--etcd-password-file: empty password",
        ));
    }
    Ok(zeroize::Zeroizing::new(password.to_string()))
}

/// Maps a fleet error to exit status 12 with its message.
pub fn backend_failure(e: pam_ecs_mfa::fleet::FleetError) -> Failure {
    let hint = match &e {
        e if e.is_permission_denied() => {
            " (writing records needs administrator credentials: --etcd-user NAME --etcd-password-file FILE)"
        }
        _ => "",
    };
    Failure::new(Exit::Backend, format!("{e}{hint}"))
}

/// Fails with [`Exit::NotRoot`] unless running as root.
pub fn require_root() -> Result<(), Failure> {
    if nix::unistd::Uid::effective().is_root() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::NotRoot,
            "must run as root (the store is root-only); try sudo",
        ))
    }
}

/// The explicit `--user`, else `SUDO_USER`; never root by default.
pub fn target_user(explicit: Option<&str>) -> Result<UserName, Failure> {
    let name = match explicit {
        Some(name) => name.to_owned(),
        None => match std::env::var("SUDO_USER") {
            Ok(name) if !name.is_empty() && name != "root" => name,
            _ => {
                return Err(Failure::new(
                    Exit::Usage,
                    "name the account with --user NAME (root is never chosen implicitly)",
                ));
            }
        },
    };
    let user =
        UserName::parse(&name).map_err(|e| Failure::new(Exit::Usage, format!("--user: {e}")))?;
    // The module keys everything on the account as NSS names it; so does the tool.
    match pam_ecs_mfa::user_name::nss_account(&user) {
        Some(account) if account != user => {
            errln!("mfa-enroll: '{user}' is the account '{account}' (NSS); acting on '{account}'");
            Ok(account)
        }
        _ => Ok(user),
    }
}

/// Maps store errors to exit statuses and one-line messages (fleet errors: [`backend_failure`]).
pub fn store_failure(user: &UserName, e: impl Into<backend::Error>) -> Failure {
    match e.into() {
        backend::Error::Store(StoreError::NotEnrolled) => {
            Failure::new(Exit::NotEnrolled, format!("{user} is not enrolled"))
        }
        backend::Error::Store(StoreError::AlreadyEnrolled) => Failure::new(
            Exit::AlreadyEnrolled,
            format!("{user} is already enrolled; use --force to replace the enrollment"),
        ),
        backend::Error::Fleet(e) | backend::Error::FleetState(e) => backend_failure(e),
        // Shared accounts: a person to name, or a change a rule refuses.
        e @ (backend::Error::Refused(_)
        | backend::Error::Store(
            StoreError::PersonNeeded(_) | StoreError::NoSuchPerson(_) | StoreError::Refused(_),
        )) => Failure::new(Exit::Usage, format!("{user}: {e}")),
        e => Failure::new(Exit::Store, e.to_string()),
    }
}

/// Unix time now.
pub fn unix_now() -> Result<u64, Failure> {
    pam_ecs_mfa::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Failure::new(Exit::Failure, "the system clock is before 1970"))
}

/// Writes one line to syslog (authpriv, ident `mfa-enroll`): who changed what for whom.
/// Never a secret. A logging failure (no syslog socket: containers, minimal systems) is
/// ignored: the change happened either way.
pub fn log_change(action: &str, user: &UserName, detail: &str) {
    let by = match std::env::var("SUDO_USER") {
        Ok(sudo) if !sudo.is_empty() => format!("{sudo}(sudo)"),
        _ => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid{}", nix::unistd::getuid())),
    };
    let by = pam_ecs_mfa::text::ascii_printable(&by, 64);
    let message = format!("action={action} user={user} by={by} {detail}");
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "mfa-enroll".into(),
        pid: std::process::id(),
    };
    // No syslog daemon (containers, minimal systems): the change still happened.
    if let Ok(mut logger) = syslog::unix(formatter) {
        let _ = logger.notice(message.trim_end());
    }
}

#[cfg(test)]
mod tests {
    /// README.md's list is the one `--help` prints (backticks and line breaks aside).
    #[test]
    fn the_readme_lists_the_exit_statuses_of_the_enum() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("Exit status: `0`")
            .expect("README lists exit statuses");
        let text: String = readme[start..]
            .replace('`', "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let help = super::exit_status_help();
        assert!(
            text.starts_with(&help),
            "README.md:\n{text:.600}\n--help:\n{help}"
        );
    }
}
