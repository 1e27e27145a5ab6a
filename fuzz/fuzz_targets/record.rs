//! The enrollment record parser never panics, and a record it accepts renders back to a file
//! it parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pam_ecs_mfa::store::UserRecord;
use pam_ecs_mfa::user_name::UserName;

fuzz_target!(|data: &[u8]| {
    let user = UserName::parse("alice").expect("valid name");
    if let Ok(record) = UserRecord::parse(data, &user) {
        let text = record.to_toml().expect("an accepted record renders");
        let again = UserRecord::parse(text.as_bytes(), &user).expect("rendered record parses");
        assert_eq!(again, record);
    }
});
