//! `fleet init | push | sync | status`: setting up and looking after the etcd backend.

use std::path::{Path, PathBuf};

use pam_ecs_mfa::backend::{self, Enrollments};
use pam_ecs_mfa::fleet::FleetConfig;
use pam_ecs_mfa::fleet::seal::{FleetKey, FleetKeys};
use pam_ecs_mfa::secure_fs;
use pam_ecs_mfa::store::{SaveMode, Store, StoreError};
use serde_json::json;

use crate::{Exit, Failure, Global, backend_failure, log_change};

mod space;
mod status;

pub(crate) use space::{Judged, space};
use status::status;

#[derive(clap::Subcommand)]
pub enum FleetCommand {
    /// Create the fleet key (encrypts every secret stored in etcd) and print how to
    /// distribute it, the TLS files and the config to every server.
    Init(InitArgs),
    /// Copy this server's local enrollments into etcd (existing fleet records are kept unless
    /// --force). Needs administrator credentials when etcd RBAC is on.
    Push(PushArgs),
    /// Refresh this server's local copy of the fleet's records (used only when etcd is
    /// unreachable and on_unavailable = "local"); local records the fleet no longer has are
    /// removed.
    Sync,
    /// Endpoints, leader, latency, record count, which fleet key sealed the records, and the
    /// database: size against the quota, compaction, alarms (docs/fleet.md, Space and
    /// compaction).
    Status,
    /// Seal every record with the current (first) fleet key: the last step of a rotation,
    /// after the new key file is on every server. Needs administrator credentials.
    Rekey,
    /// Fold the fleet state into every record: recovery codes used since the record was
    /// written leave it, HOTP counters move to where logins left them. Hosts cannot write
    /// records, so until this runs a compromised host that erases a user's state revives the
    /// codes used since the last fold: run it daily (a systemd timer or cron) with
    /// administrator credentials. Every command that writes a record folds it too.
    Fold,
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write the key [default: fleet_key_file from the config file, else
    /// /etc/ecs-mfa/fleet.key].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Add a new key in front of the existing one(s) (rotation: new records are sealed with
    /// it, old ones still open; see docs/fleet.md).
    #[arg(long)]
    rotate: bool,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// Replace records that already exist in etcd.
    #[arg(long)]
    force: bool,
    /// Show what would be pushed, change nothing.
    #[arg(long)]
    dry_run: bool,
}

const DEFAULT_KEY_FILE: &str = "/etc/ecs-mfa/fleet.key";

pub fn run(g: &Global, cmd: FleetCommand) -> Result<(), Failure> {
    crate::require_root()?;
    match cmd {
        FleetCommand::Init(args) => init(g, args),
        FleetCommand::Push(args) => push(g, args),
        FleetCommand::Sync => sync(g),
        FleetCommand::Status => status(g),
        FleetCommand::Rekey => rekey(g),
        FleetCommand::Fold => fold(g),
    }
}

fn fleet_config(g: &Global) -> Result<(pam_ecs_mfa::policy::Policy, FleetConfig), Failure> {
    let policy = g.policy()?;
    let Some(config) = policy.fleet.clone() else {
        return Err(Failure::new(
            Exit::Config,
            format!(
                "{} has no [fleet] table with backend = \"etcd\" (see docs/fleet.md)",
                policy.config_path.display()
            ),
        ));
    };
    Ok((policy, config))
}

fn init(g: &Global, args: InitArgs) -> Result<(), Failure> {
    // The config may not exist yet (init comes first): only read it if it is there.
    let configured = g
        .policy()
        .ok()
        .and_then(|p| p.fleet)
        .map(|f| f.fleet_key_file);
    let path = args
        .key_file
        .or(configured)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_FILE));
    let (dir, name) = split(&path)?;
    let dir =
        secure_fs::open_or_create_dir(dir).map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    let existing = dir
        .read(name, secure_fs::FileRules::Private, 4096)
        .map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    let key = FleetKey::generate().map_err(backend_failure)?;
    let mut text = zeroize::Zeroizing::new(String::from(
        "# ecs-mfa fleet key: opens every enrollment stored in etcd. Keep root-only (0600) and\n\
         # copy it to every server over a secure channel. The first key seals new records;\n\
         # all keys open (rotation: docs/fleet.md).\n",
    ));
    match (&existing, args.rotate) {
        (Some(_), false) => {
            return Err(Failure::new(
                Exit::AlreadyEnrolled,
                format!(
                    "{} exists: it opens the fleet's records, so it is never replaced. To rotate, \
                     use fleet init --rotate (docs/fleet.md)",
                    path.display()
                ),
            ));
        }
        (None, true) => {
            return Err(Failure::new(
                Exit::Usage,
                format!("--rotate: {} does not exist yet", path.display()),
            ));
        }
        (Some(old), true) => {
            let old_keys = FleetKeys::parse(old)
                .map_err(|why| Failure::new(Exit::Store, format!("{}: {why}", path.display())))?;
            text.push_str(&key.to_line());
            for k in old_keys.all() {
                text.push_str(&k.to_line());
            }
        }
        (None, false) => text.push_str(&key.to_line()),
    }
    dir.write_atomic(name, text.as_bytes(), true)
        .map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    log_fleet_change(
        "fleet-init",
        &format!("key_id={} rotate={}", key.id_hex(), args.rotate),
    );
    if g.json {
        outln!(
            "{}",
            json!({ "key_file": path.display().to_string(), "key_id": key.id_hex(), "rotated": args.rotate })
        );
        return Ok(());
    }
    outln!(
        "Fleet key {} written to {} (0600 root).",
        key.id_hex(),
        path.display()
    );
    outln!();
    outln!("Next, on every server (details and the openssl/etcdctl commands: docs/fleet.md):");
    outln!("  1. Copy this key file to the same path, root-only:");
    outln!(
        "       install -m 0600 -o root -g root fleet.key {}",
        path.display()
    );
    outln!("     over a secure channel (scp from here, your configuration management's secrets).");
    outln!("  2. Give the server a TLS client certificate signed by the etcd CA (no CN when etcd");
    outln!(
        "     RBAC is on) and the CA certificate: /etc/ecs-mfa/etcd/{{ca.pem,host.pem,host.key}}."
    );
    outln!("  3. Add to /etc/ecs-mfa/config.toml:");
    outln!("       [fleet]");
    outln!("       backend = \"etcd\"");
    outln!(
        "       endpoints = [\"https://10.0.0.11:2379\", \"https://10.0.0.12:2379\", \"https://10.0.0.13:2379\"]"
    );
    outln!("       ca_file = \"/etc/ecs-mfa/etcd/ca.pem\"");
    outln!("       cert_file = \"/etc/ecs-mfa/etcd/host.pem\"");
    outln!("       key_file = \"/etc/ecs-mfa/etcd/host.key\"");
    outln!("       fleet_key_file = \"{}\"", path.display());
    outln!("  4. mfa-enroll doctor, then (once, from one server) mfa-enroll fleet push.");
    if args.rotate {
        outln!();
        outln!("Rotation: copy this file to every server first (it opens old and new records),");
        outln!("then run mfa-enroll fleet rekey, then remove the old key line everywhere.");
    }
    Ok(())
}

fn split(path: &Path) -> Result<(&Path, &str), Failure> {
    let dir = path.parent().filter(|d| d.is_absolute());
    let name = path.file_name().and_then(|n| n.to_str());
    match (dir, name) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(Failure::new(
            Exit::Usage,
            format!("{}: need an absolute file path", path.display()),
        )),
    }
}

fn push(g: &Global, args: PushArgs) -> Result<(), Failure> {
    let (policy, _) = fleet_config(g)?;
    let local = Store::new(&policy.store_dir);
    let fleet = g.enrollments(&policy)?;
    let users = Enrollments::Files(local.clone())
        .enrolled_users()
        .map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    let (mut pushed, mut kept, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for user in users {
        // Every token: a shared account is pushed with all its people (one token at a time,
        // each an administrator's write).
        let account = match local.load_account(&user) {
            Ok(account) => account,
            Err(e) => {
                errln!("mfa-enroll: {user}: not pushed: {e}");
                failed.push(user.to_string());
                continue;
            }
        };
        if args.dry_run {
            let exists = fleet
                .is_enrolled(&user)
                .map_err(|e| crate::store_failure(&user, e))?;
            if exists && !args.force {
                kept.push(user.to_string());
            } else {
                pushed.push(user.to_string());
            }
            continue;
        }
        match push_account(&fleet, &policy, &account, args.force) {
            Ok(()) => {
                log_change("fleet-push", &user, "");
                pushed.push(user.to_string());
            }
            Err(backend::Error::Store(StoreError::AlreadyEnrolled)) => kept.push(user.to_string()),
            Err(e) => return Err(crate::store_failure(&user, e)),
        }
    }
    if g.json {
        outln!(
            "{}",
            json!({ "pushed": pushed, "kept": kept, "failed": failed, "dry_run": args.dry_run })
        );
    } else {
        let verb = if args.dry_run { "Would push" } else { "Pushed" };
        outln!(
            "{verb} {} record(s) to etcd: {}",
            pushed.len(),
            pushed.join(" ")
        );
        if !kept.is_empty() {
            outln!(
                "Kept {} record(s) already in etcd (the fleet's enrollment wins; --force replaces): {}",
                kept.len(),
                kept.join(" ")
            );
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Partial,
            format!("{} local record(s) could not be read", failed.len()),
        ))
    }
}

/// Writes every token of `account` to the fleet: a record already there is kept
/// ([`StoreError::AlreadyEnrolled`]) unless `force`, which replaces the tokens of the same people
/// (people only the fleet has stay).
fn push_account(
    fleet: &Enrollments,
    policy: &pam_ecs_mfa::policy::Policy,
    account: &pam_ecs_mfa::store::AccountRecord,
    force: bool,
) -> Result<(), backend::Error> {
    // Without --force an account the fleet has is kept whole (as --dry-run says); each token
    // is still created exclusively, so an enrollment made meanwhile is never replaced.
    if !force && fleet.is_enrolled(&account.user)? {
        return Err(StoreError::AlreadyEnrolled.into());
    }
    // Every token must fit the fleet's record, in the order they are written, before the
    // first is: a push refused for one person (a key the fleet binds to someone else) writes
    // nobody, rather than leave the people before it written.
    if let Ok(mut merged) = fleet.load_account(&account.user) {
        for token in &account.tokens {
            merged
                .put(token.clone())
                .map_err(|e| StoreError::Refused(pam_ecs_mfa::store::refusal(e)))?;
        }
    }
    for token in &account.tokens {
        fleet.save(policy, token, SaveMode::replacing(force))?;
    }
    Ok(())
}

fn sync(g: &Global) -> Result<(), Failure> {
    let (policy, _) = fleet_config(g)?;
    let fleet = g.enrollments(&policy)?;
    let local = Store::new(&policy.store_dir);
    let users = fleet
        .enrolled_users()
        .map_err(|e| Failure::new(Exit::Backend, e.to_string()))?;
    let (mut written, mut same, mut removed) = (0usize, 0usize, 0usize);
    let mut problems = Vec::new();
    for user in &users {
        // The whole record, every person's token (as the logins' refresh writes it): a
        // person removed in the fleet leaves the copy too.
        match fleet.load_account(user) {
            Ok(record) => match local.load_account(user) {
                Ok(copy) if copy == record => same += 1,
                _ => match local.save_account(&record) {
                    Ok(()) => written += 1,
                    Err(e) => problems.push(format!("{user}: {e}")),
                },
            },
            Err(backend::Error::Store(StoreError::NotEnrolled)) => {}
            Err(e) => problems.push(format!("{user}: {e}")),
        }
    }
    let stale = Enrollments::Files(local.clone())
        .enrolled_users()
        .unwrap_or_default();
    for user in stale.iter().filter(|u| !users.contains(u)) {
        match local.remove(user) {
            Ok(()) => removed += 1,
            Err(e) => problems.push(format!("{user}: {e}")),
        }
    }
    log_fleet_change(
        "fleet-sync",
        &format!("written={written} same={same} removed={removed}"),
    );
    if g.json {
        outln!(
            "{}",
            json!({ "written": written, "unchanged": same, "removed": removed, "problems": problems })
        );
    } else {
        outln!(
            "Local copy in {}: {written} written, {same} unchanged, {removed} removed.",
            policy.store_dir.display()
        );
        for p in &problems {
            outln!("  problem: {p}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Partial,
            format!("{} record(s) not synced", problems.len()),
        ))
    }
}

fn fold(g: &Global) -> Result<(), Failure> {
    let (policy, _) = fleet_config(g)?;
    let records = g.enrollments(&policy)?;
    let users = records
        .enrolled_users()
        .map_err(|e| Failure::new(Exit::Store, e.to_string()))?;
    let (mut folded, mut unchanged, mut failed) = (Vec::new(), 0usize, Vec::new());
    for user in users {
        match records.fold(&policy, &user) {
            Ok(true) => {
                log_change("fleet-fold", &user, "");
                folded.push(user.to_string());
            }
            Ok(false) => unchanged += 1,
            Err(e) => {
                errln!("mfa-enroll: {user}: not folded: {e}");
                failed.push(user.to_string());
            }
        }
    }
    if g.json {
        outln!(
            "{}",
            json!({ "folded": folded, "unchanged": unchanged, "failed": failed })
        );
    } else {
        outln!(
            "Folded the state into {} record(s) ({unchanged} unchanged, {} failed).",
            folded.len(),
            failed.len()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Partial,
            format!("{} record(s) not folded (see above)", failed.len()),
        ))
    }
}

fn rekey(g: &Global) -> Result<(), Failure> {
    let (policy, _) = fleet_config(g)?;
    let records = g.enrollments(&policy)?;
    let Some(fleet) = records.fleet() else {
        unreachable!("fleet_config checked the backend");
    };
    let (resealed, current) = fleet.reseal_all().map_err(backend_failure)?;
    let key = fleet.keys.current().id_hex();
    log_fleet_change("fleet-rekey", &format!("key_id={key} resealed={resealed}"));
    if g.json {
        outln!(
            "{}",
            json!({ "key_id": key, "resealed": resealed, "already_current": current })
        );
    } else {
        outln!("Sealed {resealed} record(s) with fleet key {key} ({current} already were).");
        outln!(
            "Run it again until it reseals 0, then remove the old key line from every server's key file."
        );
    }
    Ok(())
}

/// The syslog line of a change to the whole fleet (not to one user's enrollment): logged
/// under the pseudo-user name `fleet`, which is a valid user name.
fn log_fleet_change(action: &str, detail: &str) {
    if let Ok(fleet) = pam_ecs_mfa::user_name::UserName::parse("fleet") {
        log_change(action, &fleet, detail);
    }
}
