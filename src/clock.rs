//! The one place that reads the system clock. Everything else receives the time as a parameter
//! (so tests use a fixed clock); clippy's `disallowed-methods` (clippy.toml) refuses
//! `SystemTime::now` anywhere else.
#![forbid(unsafe_code)]

use std::time::SystemTime;

/// The current time.
#[allow(clippy::disallowed_methods)]
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// The current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
