//! Fixtures for this crate's unit tests. They run as a normal user (`cargo test --lib`): the
//! ownership rules then expect the user running them (see `secure_fs`). Tests that must
//! hand files to *another* owner need root: they say so and return as a normal user, and fail
//! under CI (`CI=true`), which runs everything as root.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A private scratch directory (mode 0700) removed on drop.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ecs-mfa-unit-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this test can run: true as root. As a normal user it prints that the test needs
/// root and returns false, except under CI (`CI=true`), where a missing root fails the test.
pub(crate) fn needs_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (chown to another user); CI runs the suite as root"
    );
    eprintln!("{test}: needs root to hand files to another owner; not run as this user");
    false
}
