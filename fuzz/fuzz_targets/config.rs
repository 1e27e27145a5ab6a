//! Module arguments and config file text never panic; accepted values are within range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_ecs_mfa::policy::{ModuleArgs, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ModuleArgs::parse(text.split([' ', '\t', '\n']));
    if let Ok(policy) = Policy::from_config_text(text, std::path::Path::new("/fuzz/config.toml")) {
        assert!(policy.window <= 10);
        assert!(policy.throttle.max_failures >= 1);
        assert!(policy.throttle.lockout_seconds <= policy.throttle.lockout_max_seconds);
        assert!(policy.store_dir.is_absolute() && policy.state_dir.is_absolute());
    }
});
