//! `mfa-enroll recovery`: a new set of recovery codes for an enrolled user.

use std::path::PathBuf;

use pam_ecs_mfa::recovery;
use pam_ecs_mfa::store::{Store, StoreError};

use crate::enroll::{print_recovery_codes, store_failure, target_user};
use crate::{Exit, Failure};

#[derive(clap::Args)]
pub struct RecoveryArgs {
    /// Account whose codes to replace (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Enrollment store directory.
    #[arg(long, value_name = "DIR", default_value_os_t = crate::default_store())]
    store: PathBuf,
    /// Print {"user": ..., "recovery_codes": [...]} on stdout and nothing else.
    #[arg(long)]
    json: bool,
}

pub fn run(args: RecoveryArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let (codes, hashes) =
        recovery::generate().map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
    Store::new(&args.store)
        .update(&user, |record| record.recovery_codes = hashes)
        .map_err(|e| match e {
            StoreError::NotEnrolled => {
                Failure::new(Exit::NotEnrolled, format!("{user} is not enrolled"))
            }
            e => store_failure(e),
        })?;
    if args.json {
        let value = serde_json::json!({
            "user": user.as_str(),
            "recovery_codes": codes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{value}");
    } else {
        println!("New recovery codes for {user}; the previous ones no longer work.\n");
        print_recovery_codes(&codes);
    }
    Ok(())
}
