//! What a login starts from: who is asking and how far they got ([`Attempt`], input only),
//! and where the time comes from ([`Clock`]).
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use crate::ssh_auth_info::SshAuthInfo;

/// Who is logging in and how far they got, as the PAM application reports it. All of it is
/// untrusted input except `ssh_auth_info`, which only sshd sets. Nothing in here is an output
/// or a dependency: the password `forward_pass` passes on comes back in
/// [`super::flow::Finished`], the storage is the [`super::backend::Backend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Attempt<'a> {
    /// `PAM_USER`.
    pub user: &'a str,
    /// `PAM_RHOST`.
    pub rhost: Option<&'a str>,
    /// `PAM_SERVICE` (`sshd`, `su`, ...): grace is per service.
    pub service: Option<&'a str>,
    /// `PAM_RUSER`: who asked (`su` sets the invoking user): grace is per requesting user.
    pub ruser: Option<&'a str>,
    /// `SSH_AUTH_INFO_0` from the PAM environment, parsed once (`crate::ssh_auth_info`):
    /// `None` when absent (password authentication, OpenSSH < 7.8, another service); no
    /// `publickey` line for keyboard-interactive alone.
    pub ssh_auth_info: Option<&'a SshAuthInfo>,
    /// `PAM_AUTHTOK` as an earlier module left it (`use_first_pass`, `try_first_pass`).
    pub authtok: Option<&'a [u8]>,
    /// An earlier module left a password in `PAM_AUTHTOK` (whatever the mode): a password
    /// module ran before this one, and its verdict is unknown here (see `super::grace`).
    pub earlier_password: bool,
}

impl<'a> Attempt<'a> {
    /// An attempt by `user` with no other information (the CLI's `verify`, tests).
    pub fn user(user: &'a str) -> Self {
        Self {
            user,
            ..Self::default()
        }
    }

    /// The fingerprint of the key sshd accepted before this login, if any (grace and
    /// enrollment at login bind to it; a certificate counts as the key it certifies).
    pub fn accepted_key(&self) -> Option<&'a str> {
        self.ssh_auth_info
            .and_then(SshAuthInfo::first_key)
            .map(|k| k.fingerprint.as_str())
    }
}

/// Where the flow reads the time: [`crate::clock::now`] in production, a script in tests.
/// It is read when each moment comes, not once: a client may sit at the prompt for as long as
/// sshd's `LoginGraceTime` (or forever with 0).
pub type Clock<'a> = &'a dyn Fn() -> SystemTime;

/// `clock` in Unix seconds (0 before 1970: nothing is in grace then).
pub fn unix_at(clock: Clock<'_>) -> u64 {
    clock()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This server, for grace periods of `grace_scope = "server"`: its host name and machine id
/// (cloned images may share either one). Read once per process: both are fixed while sshd
/// runs a connection.
pub fn host_identity() -> &'static str {
    static IDENTITY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        format!("{host}\0{}", machine.trim())
    })
}
