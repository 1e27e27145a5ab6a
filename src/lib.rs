//! ecs-mfa: a TOTP second factor for SSH logins.
//!
//! The crate builds two artefacts from one library:
//! - `pam_ecs_mfa.so` (the `cdylib`), whose only unsafe code lives in [`pam`];
//! - the logic used by `mfa-enroll` and by the tests (the `rlib`).
//!
//! Everything outside [`pam`] is plain Rust with `#![forbid(unsafe_code)]` and can be tested
//! without PAM: [`login::Login`] talks through a [`login::Conversation`], the clock is a
//! parameter, and all paths come from a [`policy::Policy`].

pub mod accounts;
pub mod audit;
pub mod authorized_keys;
pub mod backend;
pub mod clock;
pub mod decision;
pub mod exemption;
pub mod fleet;
pub mod hook;
pub mod login;
pub mod otpauth;
pub mod policy;
pub mod qr;
pub mod recovery;
pub mod secure_fs;
pub mod ssh_auth_info;
pub mod sshd_answer;
pub mod state;
pub mod store;
pub mod text;
pub mod totp;
pub mod user_name;

#[allow(unsafe_code)]
pub mod pam;

#[cfg(test)]
mod test_util;
