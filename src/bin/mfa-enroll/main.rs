//! `mfa-enroll`: creates and administers ecs-mfa enrollments.
//!
//! A thin front end over the library: argument parsing, terminal output and exit codes live
//! here; records, secrets and file safety live in `pam_ecs_mfa`.
#![forbid(unsafe_code)]

mod enroll;
mod otpauth;
mod qr;
mod recovery_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit statuses, one per kind of failure (documented in README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Anything not listed below.
    Failure = 1,
    /// Bad command line (also what clap uses).
    Usage = 2,
    /// Must run as root.
    NotRoot = 3,
    /// The user already has an enrollment (use --force).
    AlreadyEnrolled = 4,
    /// The user has no enrollment.
    NotEnrolled = 5,
    /// The store (or state) directory or a record is unsafe or unreadable.
    Store = 6,
    /// The confirmation code was not entered correctly; nothing was written.
    NotConfirmed = 7,
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
    after_help = "Run as root. Via sudo, the invoking user (SUDO_USER) is enrolled by default."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a user's TOTP secret, show it as a QR code, confirm a first code, save it.
    Enroll(enroll::EnrollArgs),
    /// Replace a user's recovery codes with a new set (the old ones stop working at once).
    Recovery(recovery_cmd::RecoveryArgs),
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

/// Default store, shared by subcommands.
pub fn default_store() -> PathBuf {
    PathBuf::from(pam_ecs_mfa::store::DEFAULT_STORE_DIR)
}

fn main() -> ExitCode {
    // Never show a Rust panic message or backtrace to an administrator; say what happened.
    std::panic::set_hook(Box::new(|_| {
        eprintln!("mfa-enroll: internal error; please report it (no secret was logged)");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Enroll(args) => enroll::run(args),
        Command::Recovery(args) => recovery_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mfa-enroll: {}", failure.message);
            ExitCode::from(failure.exit as u8)
        }
    }
}
