//! `doctor`: checks a live server and prints each finding with a fix.
//!
//! Exit status 0 when nothing is a problem (warnings allowed), 11 otherwise. `--json` prints
//! `{"findings": [{"level", "check", "message", "fix"}], "problems": N}`.

use std::path::{Path, PathBuf};
use std::process::Command;

use pam_ecs_mfa::exemption::nss_groups;
use pam_ecs_mfa::policy::Policy;
use pam_ecs_mfa::store::{Store, StoreError, secure_fs};
use serde_json::json;

use crate::admin::all_accounts;
use crate::{Exit, Failure, Global};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The sshd PAM service file to check.
    #[arg(long, value_name = "FILE", default_value = "/etc/pam.d/sshd")]
    pam_file: PathBuf,
    /// The sshd binary whose effective settings (`sshd -T`) are checked.
    #[arg(long, value_name = "FILE", default_value = "/usr/sbin/sshd")]
    sshd: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warning,
    Problem,
}

struct Finding {
    level: Level,
    check: &'static str,
    message: String,
    fix: String,
}

fn finding(
    level: Level,
    check: &'static str,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        level,
        check,
        message: message.into(),
        fix: fix.into(),
    }
}

pub fn doctor(g: &Global, args: DoctorArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let mut findings = Vec::new();
    let policy = match g.policy() {
        Ok(p) => {
            findings.push(finding(
                Level::Ok,
                "config",
                format!("{} is valid (or absent: defaults)", p.config_path.display()),
                "",
            ));
            Some(p)
        }
        Err(e) => {
            findings.push(finding(
                Level::Problem,
                "config",
                e.message,
                "fix the file: every login is denied while it is invalid (see docs/config.md)",
            ));
            None
        }
    };
    let policy = policy.unwrap_or_default();
    check_module(&mut findings);
    check_pam_stack(&mut findings, &args.pam_file, &policy);
    let permit_root = check_sshd(&mut findings, &args.sshd);
    check_dirs(&mut findings, &policy);
    check_clock(&mut findings);
    check_users(&mut findings, &policy, permit_root);

    let problems = findings
        .iter()
        .filter(|f| f.level == Level::Problem)
        .count();
    if g.json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| json!({ "level": format!("{:?}", f.level).to_lowercase(), "check": f.check, "message": f.message, "fix": f.fix }))
            .collect();
        println!("{}", json!({ "findings": list, "problems": problems }));
    } else {
        for f in &findings {
            let tag = match f.level {
                Level::Ok => "ok     ",
                Level::Warning => "WARNING",
                Level::Problem => "PROBLEM",
            };
            println!("{tag} [{}] {}", f.check, f.message);
            if !f.fix.is_empty() && f.level != Level::Ok {
                println!("        fix: {}", f.fix);
            }
        }
    }
    if problems > 0 {
        return Err(Failure::new(
            Exit::Doctor,
            format!("{problems} problem(s) found"),
        ));
    }
    Ok(())
}

fn pam_module_dirs() -> Vec<PathBuf> {
    [
        "/lib/x86_64-linux-gnu/security",
        "/usr/lib/x86_64-linux-gnu/security",
        "/usr/lib64/security",
        "/lib64/security",
        "/lib/security",
    ]
    .iter()
    .map(PathBuf::from)
    .filter(|d| d.join("pam_unix.so").exists())
    .collect()
}

fn check_module(findings: &mut Vec<Finding>) {
    use std::os::unix::fs::MetadataExt;
    let dirs = pam_module_dirs();
    let Some(path) = dirs
        .iter()
        .map(|d| d.join("pam_ecs_mfa.so"))
        .find(|p| p.exists())
    else {
        let dir = dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the PAM module directory".into());
        findings.push(finding(
            Level::Problem,
            "module",
            format!("pam_ecs_mfa.so is not in {dir}"),
            "install the package or run scripts/install",
        ));
        return;
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.uid() != 0 || m.mode() & 0o022 != 0 => findings.push(finding(
            Level::Problem,
            "module",
            format!("{} is owned by uid {} with mode {:04o}: others could replace the code that runs as root", path.display(), m.uid(), m.mode() & 0o7777),
            format!("chown root:root {0} && chmod 0644 {0}", path.display()),
        )),
        Ok(_) => findings.push(finding(Level::Ok, "module", format!("{} present", path.display()), "")),
        Err(e) => findings.push(finding(Level::Problem, "module", format!("{}: {e}", path.display()), "reinstall")),
    }
}

fn check_pam_stack(findings: &mut Vec<Finding>, pam_file: &Path, policy: &Policy) {
    let text = match std::fs::read_to_string(pam_file) {
        Ok(t) => t,
        Err(e) => {
            findings.push(finding(
                Level::Problem,
                "pam",
                format!("{}: {e}", pam_file.display()),
                "install examples/debian/sshd or examples/rhel/sshd",
            ));
            return;
        }
    };
    let auth: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.starts_with('#') && (l.starts_with("auth") || l.starts_with("@include common-auth"))
        })
        .collect();
    let Some(pos) = auth.iter().position(|l| l.contains("pam_ecs_mfa.so")) else {
        findings.push(finding(
            Level::Problem,
            "pam",
            format!(
                "{} does not use pam_ecs_mfa.so: no MFA for SSH",
                pam_file.display()
            ),
            "replace it with examples/debian/sshd (or rhel/sshd)",
        ));
        return;
    };
    let line = auth[pos];
    let control = line.split_whitespace().nth(1).unwrap_or("");
    let bracket = line
        .find('[')
        .zip(line.find(']'))
        .map(|(a, b)| &line[a..=b]);
    let ignores_possible =
        policy.nullok || !policy.exemptions.is_empty() || line.contains("nullok");
    match (control, bracket) {
        ("sufficient" | "optional", _) => findings.push(finding(Level::Problem, "pam", format!("pam_ecs_mfa.so is '{control}': a failed code does not deny"), "use: auth [success=done ignore=ignore default=die] pam_ecs_mfa.so, then auth required pam_permit.so")),
        (_, Some(b)) if !b.contains("default=die") && !b.contains("default=bad") => findings.push(finding(Level::Problem, "pam", format!("control {b} does not deny by default"), "use [success=done ignore=ignore default=die]")),
        ("required" | "requisite", _) if ignores_possible => findings.push(finding(Level::Warning, "pam", format!("pam_ecs_mfa.so is '{control}' alone: nullok/exempt users (PAM_IGNORE) are denied, not let in"), "use [success=done ignore=ignore default=die] followed by auth required pam_permit.so")),
        _ => findings.push(finding(Level::Ok, "pam", format!("{} runs pam_ecs_mfa.so ({control})", pam_file.display()), "")),
    }
    for earlier in &auth[..pos] {
        let words: Vec<&str> = earlier.split_whitespace().collect();
        if words.get(1) == Some(&"include")
            || words.get(1) == Some(&"sufficient")
            || earlier.contains("success=done")
        {
            findings.push(finding(Level::Problem, "pam", format!("'{earlier}' comes before pam_ecs_mfa.so and can end the stack with success before the code is asked"), "use 'auth substack password-auth' (RHEL) or remove the line"));
        }
    }
}

/// Checks `sshd -T`; returns whether root may log in.
fn check_sshd(findings: &mut Vec<Finding>, sshd: &Path) -> bool {
    let out = match Command::new(sshd).arg("-T").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            findings.push(finding(
                Level::Problem,
                "sshd",
                format!(
                    "sshd -T failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                "run 'sshd -t' and fix sshd_config",
            ));
            return true;
        }
        Err(e) => {
            findings.push(finding(
                Level::Problem,
                "sshd",
                format!("{}: {e}", sshd.display()),
                "install openssh-server",
            ));
            return true;
        }
    };
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or("")
            .to_string()
    };
    let dropin = "copy examples/sshd_config.d/50-ecs-mfa.conf to /etc/ssh/sshd_config.d/ (and check sshd_config includes it)";
    if get("usepam") != "yes" {
        findings.push(finding(
            Level::Problem,
            "sshd",
            "UsePAM is not yes: the module never runs",
            dropin,
        ));
    }
    if get("kbdinteractiveauthentication") != "yes" {
        findings.push(finding(
            Level::Problem,
            "sshd",
            "KbdInteractiveAuthentication is not yes: the code cannot be asked",
            dropin,
        ));
    }
    let methods = get("authenticationmethods");
    let lists: Vec<&str> = methods.split_whitespace().collect();
    if methods.is_empty()
        || methods == "any"
        || lists
            .iter()
            .any(|l| !l.split(',').any(|m| m.starts_with("keyboard-interactive")))
    {
        findings.push(finding(Level::Problem, "sshd", format!("AuthenticationMethods '{methods}' lets a login skip keyboard-interactive: MFA can be bypassed"), "AuthenticationMethods publickey,keyboard-interactive (check Match blocks with sshd -T -C user=NAME,addr=IP)"));
    } else {
        findings.push(finding(
            Level::Ok,
            "sshd",
            format!("AuthenticationMethods {methods}"),
            "",
        ));
    }
    if get("passwordauthentication") == "yes" {
        findings.push(finding(
            Level::Warning,
            "sshd",
            "PasswordAuthentication yes: not needed (PAM asks through keyboard-interactive)",
            "PasswordAuthentication no",
        ));
    }
    let root = get("permitrootlogin");
    if root == "yes" {
        findings.push(finding(
            Level::Warning,
            "sshd",
            "PermitRootLogin yes",
            "PermitRootLogin no (or prohibit-password and enroll root)",
        ));
    }
    root != "no"
}

fn check_dirs(findings: &mut Vec<Finding>, policy: &Policy) {
    for (what, dir) in [("store", &policy.store_dir), ("state", &policy.state_dir)] {
        match secure_fs::open_dir(dir) {
            Ok(Some(_)) => findings.push(finding(
                Level::Ok,
                what,
                format!("{} is root-only", dir.display()),
                "",
            )),
            Ok(None) => findings.push(finding(
                Level::Warning,
                what,
                format!("{} does not exist yet", dir.display()),
                "it is created on first use (mfa-enroll enroll / first login)",
            )),
            Err(e) => findings.push(finding(
                Level::Problem,
                what,
                format!("{e}: every login is denied"),
                format!("chown root:root {0} && chmod 0700 {0}", dir.display()),
            )),
        }
    }
}

fn check_clock(findings: &mut Vec<Finding>) {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(tracking) = run("chronyc", &["tracking"]) {
        let offset = tracking
            .lines()
            .find(|l| l.starts_with("System time"))
            .unwrap_or("offset unknown");
        findings.push(finding(Level::Ok, "clock", format!("chrony: {offset}"), ""));
    } else if let Some(sync) = run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]) {
        if sync == "yes" {
            findings.push(finding(
                Level::Ok,
                "clock",
                "synchronised (timedatectl)",
                "",
            ));
        } else {
            findings.push(finding(
                Level::Warning,
                "clock",
                "not synchronised: codes fail when the clock drifts",
                "enable NTP: timedatectl set-ntp true (or chrony)",
            ));
        }
    } else {
        findings.push(finding(
            Level::Warning,
            "clock",
            "cannot tell whether the clock is synchronised (no chronyc, no timedatectl)",
            "run an NTP client; TOTP needs the time within ~30 s",
        ));
    }
}

fn check_users(findings: &mut Vec<Finding>, policy: &Policy, root_may_log_in: bool) {
    let store = Store::new(&policy.store_dir);
    let Ok(accounts) = all_accounts(&store) else {
        return;
    };
    let mut missing = Vec::new();
    for (user, local) in accounts {
        if local != Some(true) || (user.as_str() == "root" && !root_may_log_in) {
            continue;
        }
        if policy
            .exemptions
            .check(&user, None, nss_groups, |_| false)
            .exempt
            .is_some()
        {
            continue;
        }
        match store.load(&user) {
            Ok(_) => {}
            Err(StoreError::NotEnrolled) => missing.push(user.to_string()),
            Err(e) => findings.push(finding(
                Level::Problem,
                "users",
                format!("{user}: {e}"),
                format!("mfa-enroll reset --user {user}"),
            )),
        }
    }
    if missing.is_empty() {
        findings.push(finding(
            Level::Ok,
            "users",
            "every account with a login shell that needs MFA is enrolled",
            "",
        ));
    } else {
        let level = if policy.nullok {
            Level::Warning
        } else {
            Level::Problem
        };
        let effect = if policy.nullok {
            "log in without MFA (nullok)"
        } else {
            "cannot log in by SSH"
        };
        findings.push(finding(
            level,
            "users",
            format!("not enrolled, so they {effect}: {}", missing.join(", ")),
            "mfa-enroll enroll --user NAME (or exempt_groups / require_groups in the config)",
        ));
    }
}
