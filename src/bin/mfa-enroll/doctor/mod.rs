//! `doctor`: checks a live server and prints each finding with a fix.
//!
//! It reads what the module and sshd will really use: the sshd PAM file (our line, its control,
//! module path and arguments, parsed with the module's own parser), the config file those
//! arguments name, and sshd's effective settings for every user who needs MFA and every client
//! a `Match` block singles out (`sshd -T -C`). A finding is a *problem* when a login can
//! complete without both factors, when the right people are locked out, or when the running
//! sshd does not use the files checked.
//!
//! Exit status 0 when nothing is a problem (warnings allowed), 11 otherwise. `--json` prints
//! `{"findings": [{"level", "check", "message", "fix"}], "problems": N}`.

mod automation;
mod fleet;
mod pam_file;
mod sshd;
mod users;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pam_ecs_mfa::backend::Enrollments;
use pam_ecs_mfa::exemption::own_addresses;
use pam_ecs_mfa::policy::{FirstFactor, Policy, PolicyError};
use pam_ecs_mfa::secure_fs;
use pam_ecs_mfa::store::Store;
use pam_ecs_mfa::user_name::UserName;
use serde_json::json;

use crate::{Exit, Failure, Global};
use automation::check_automation_keys;
use pam_file::{PamStack, StackKind};
use sshd::{MatchCriteria, Settings};
use users::{Accounts, check_users};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The sshd PAM service file to check.
    #[arg(long, value_name = "FILE", default_value = "/etc/pam.d/sshd")]
    pam_file: PathBuf,
    /// The sshd binary whose effective settings (`sshd -T`) are checked.
    #[arg(long, value_name = "FILE", default_value = "/usr/sbin/sshd")]
    sshd: PathBuf,
    /// sshd's main config file (read for Match blocks, Include lines and change times).
    #[arg(long, value_name = "FILE", default_value = "/etc/ssh/sshd_config")]
    sshd_config: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warning,
    Problem,
}

#[derive(serde::Serialize)]
struct Finding {
    level: Level,
    check: &'static str,
    message: String,
    fix: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(
        &mut self,
        level: Level,
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            level,
            check,
            message: printable(&message.into()),
            fix: printable(&fix.into()),
        });
    }
    fn ok(&mut self, check: &'static str, message: impl Into<String>) {
        self.add(Level::Ok, check, message, "");
    }
    fn problem(&mut self, check: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Problem, check, message, fix);
    }
    fn warning(&mut self, check: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Warning, check, message, fix);
    }
}

/// Output from other programs (sshd's errors, chronyc) may hold control characters (a stray
/// carriage return garbles a terminal line): one line of plain text per finding.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

pub fn doctor(g: &Global, args: DoctorArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let mut findings = Findings::default();
    let stack = check_pam_stack(&mut findings, &args.pam_file);
    let policy = check_config(&mut findings, g, stack.as_ref());
    let module = check_module(&mut findings, stack.as_ref());
    let kind = stack.as_ref().map(|s| s.kind).unwrap_or(StackKind::Key);
    let first_factor = policy.first_factor == FirstFactor::PublicKey;
    let global = sshd::effective(&args.sshd, None);
    let accounts = Accounts::read(&policy, kind, global.as_ref().ok());
    let root_may_log_in = check_sshd(&mut findings, &args, &global, kind, first_factor, &accounts);
    if let Ok(settings) = &global {
        check_exemptions(&mut findings, &policy, settings);
        check_login_enrollment(&mut findings, &policy, settings);
    }
    check_groups(&mut findings, &policy);
    check_automation_keys(&mut findings, &policy, global.as_ref().ok());
    let records = match &policy.fleet {
        Some(config) => {
            fleet::check_helper(&mut findings, module.as_deref());
            fleet::check_fleet(&mut findings, &policy, config)
        }
        None => {
            check_dirs(&mut findings, &policy);
            Some(Enrollments::Files(Store::new(&policy.store_dir)))
        }
    };
    check_clock(&mut findings);
    if let Some(records) = &records {
        check_users(&mut findings, &policy, records, &accounts, root_may_log_in);
    }

    let problems = findings
        .0
        .iter()
        .filter(|f| f.level == Level::Problem)
        .count();
    if g.json {
        outln!(
            "{}",
            json!({ "findings": findings.0, "problems": problems })
        );
    } else {
        for f in &findings.0 {
            let tag = match f.level {
                Level::Ok => "ok     ",
                Level::Warning => "WARNING",
                Level::Problem => "PROBLEM",
            };
            outln!("{tag} [{}] {}", f.check, f.message);
            if !f.fix.is_empty() && f.level != Level::Ok {
                outln!("        fix: {}", f.fix);
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

fn check_pam_stack(findings: &mut Findings, pam_file: &Path) -> Option<PamStack> {
    let text = match std::fs::read_to_string(pam_file) {
        Ok(t) => t,
        Err(e) => {
            findings.problem(
                "pam",
                format!("{}: {e}", pam_file.display()),
                "install examples/debian/sshd or examples/rhel/sshd",
            );
            return None;
        }
    };
    let Some(stack) = PamStack::parse(&text) else {
        findings.problem(
            "pam",
            format!(
                "{} does not use pam_ecs_mfa.so: no MFA for SSH",
                pam_file.display()
            ),
            "replace it with examples/debian/sshd (or rhel/sshd)",
        );
        return None;
    };
    let control = stack.control.as_str();
    let bracket = control.starts_with('[');
    let advice = "use: auth [success=done ignore=ignore default=die] pam_ecs_mfa.so, then auth \
                  required pam_permit.so";
    if matches!(control, "sufficient" | "optional") {
        findings.problem(
            "pam",
            format!("pam_ecs_mfa.so is '{control}': a failed code does not deny"),
            advice,
        );
    } else if bracket && !control.contains("default=die") && !control.contains("default=bad") {
        findings.problem(
            "pam",
            format!("control {control} does not deny by default"),
            advice,
        );
    } else if matches!(control, "required" | "requisite")
        && stack.args.iter().any(|a| a == "nullok")
    {
        findings.warning(
            "pam",
            format!(
                "pam_ecs_mfa.so is '{control}' alone: nullok/exempt users (PAM_IGNORE) are \
                 denied, not let in"
            ),
            advice,
        );
    } else {
        let kind = match stack.kind {
            StackKind::Key => "key + code",
            StackKind::Password => "password + code",
        };
        findings.ok(
            "pam",
            format!(
                "{} runs pam_ecs_mfa.so ({control}; {kind} stack)",
                pam_file.display()
            ),
        );
    }
    for (line, why) in stack.dangerous_earlier_lines() {
        findings.problem(
            "pam",
            format!("'{line}' comes before pam_ecs_mfa.so: {why}"),
            "use the shipped file (examples/debian/sshd-password or rhel/sshd-password), which \
             stops at a wrong password",
        );
    }
    Some(stack)
}

/// The policy the module will build from its pam.d arguments and the config file they name;
/// `g`'s config when there is no module line. Refused arguments and a bad config are problems.
fn check_config(findings: &mut Findings, g: &Global, stack: Option<&PamStack>) -> Policy {
    let result = match stack {
        Some(stack) => Policy::from_module_args(stack.args.iter().map(String::as_str)),
        None => g
            .policy()
            .map_err(|f| PolicyError::UnknownArgument(f.message)),
    };
    match result {
        Ok(policy) => {
            findings.ok(
                "config",
                format!(
                    "{} is valid (or absent: defaults)",
                    policy.config_path.display()
                ),
            );
            policy
        }
        Err(
            e @ (PolicyError::UnknownArgument(_)
            | PolicyError::BadArgument { .. }
            | PolicyError::DuplicateArgument(_)),
        ) if stack.is_some() => {
            findings.problem(
                "pam",
                format!("the module refuses its arguments, so every login is denied: {e}"),
                "fix the pam_ecs_mfa.so line (arguments: see pam_ecs_mfa(8))",
            );
            g.policy().unwrap_or_default()
        }
        Err(e) => {
            findings.problem(
                "config",
                e.to_string(),
                "fix the file: every login is denied while it is invalid (see docs/config.md)",
            );
            Policy::default()
        }
    }
}

/// Checks the module file the PAM stack names; returns its path when it exists.
fn check_module(findings: &mut Findings, stack: Option<&PamStack>) -> Option<PathBuf> {
    let dirs = pam_module_dirs();
    let Some(dir) = dirs.first() else {
        findings.problem(
            "module",
            "no PAM module directory (no pam_unix.so found)",
            "install libpam-modules / pam",
        );
        return None;
    };
    let path = match stack {
        Some(stack) => stack.module_path(dir),
        None => dir.join("pam_ecs_mfa.so"),
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.uid() != 0 || m.mode() & 0o022 != 0 => findings.problem(
            "module",
            format!(
                "{} is owned by uid {} with mode {:04o}: others could replace the code that runs \
                 as root",
                path.display(),
                m.uid(),
                m.mode() & 0o7777
            ),
            format!("chown root:root {0} && chmod 0644 {0}", path.display()),
        ),
        Ok(_) => findings.ok("module", format!("{} present", path.display())),
        Err(e) => {
            findings.problem(
                "module",
                format!(
                    "{}: {e}: the PAM file names a module that cannot be loaded, so every SSH \
                     login is refused",
                    path.display()
                ),
                "install the package (or scripts/install), or correct the module path in the PAM file",
            );
            return None;
        }
    }
    Some(path)
}

/// Most `sshd -T -C` runs per doctor run (about 20 ms each).
const MAX_EVALUATIONS: usize = 400;

/// sshd's effective settings for every user who needs MFA (and every client a Match block
/// names): can a login skip a factor, or never succeed? Returns whether root may log in.
fn check_sshd(
    findings: &mut Findings,
    args: &DoctorArgs,
    global: &Result<Settings, String>,
    kind: StackKind,
    first_factor: bool,
    accounts: &Accounts,
) -> bool {
    let global = match global {
        Ok(s) => s,
        Err(e) => {
            findings.problem("sshd", e.clone(), "run 'sshd -t' and fix sshd_config");
            return true;
        }
    };
    check_version(findings, &args.sshd, kind, first_factor);
    let criteria = MatchCriteria::read(&args.sshd_config);
    // (problem, message, fix) -> the clients it applies to ("" = everyone).
    let mut issues: BTreeMap<(bool, String, String), Vec<String>> = BTreeMap::new();
    let mut note = |issue: sshd::Issue, label: String| {
        issues
            .entry((issue.problem, issue.message, issue.fix))
            .or_default()
            .push(label);
    };
    if !criteria.any {
        for issue in sshd::analyse(global, kind, first_factor, false) {
            note(issue, String::new());
        }
        if accounts.need_mfa.iter().any(|u| u.as_str() == "root") {
            for issue in sshd::analyse(global, kind, first_factor, true) {
                note(issue, "user=root".into());
            }
        }
    } else {
        let users: Vec<&str> = if accounts.need_mfa.is_empty() {
            vec!["root"]
        } else {
            accounts.need_mfa.iter().map(UserName::as_str).collect()
        };
        let checked =
            each_match_client(&args.sshd, &criteria, &users, kind, first_factor, &mut note);
        if !checked {
            findings.warning(
                "sshd",
                format!(
                    "Match blocks: only the first {MAX_EVALUATIONS} user/client combinations \
                     were checked"
                ),
                "check the rest with sshd -T -C user=NAME,addr=IP",
            );
        }
    }
    let clean = report_issues(findings, issues);
    if clean {
        let scope = if criteria.any {
            " (every user and Match block checked)"
        } else {
            ""
        };
        findings.ok(
            "sshd",
            format!(
                "AuthenticationMethods {}{scope}",
                global.get("authenticationmethods")
            ),
        );
    }
    check_reload(findings, &args.sshd_config, global);
    global.get("permitrootlogin") != "no"
}

/// sshd's effective settings for each user and each client the Match blocks name
/// (`sshd -T -C`), analysed; `note` gets every issue with the client it applies to. `false`
/// when [`MAX_EVALUATIONS`] stopped it early.
fn each_match_client(
    sshd_bin: &Path,
    criteria: &MatchCriteria,
    users: &[&str],
    kind: StackKind,
    first_factor: bool,
    note: &mut dyn FnMut(sshd::Issue, String),
) -> bool {
    let mut evaluations = 0;
    for user in users {
        for client in criteria.clients(user) {
            if evaluations == MAX_EVALUATIONS {
                return false;
            }
            evaluations += 1;
            let label = client.label();
            match sshd::effective(sshd_bin, Some(&client)) {
                Ok(s) => {
                    for issue in sshd::analyse(&s, kind, first_factor, *user == "root") {
                        note(issue, label.clone());
                    }
                }
                Err(e) => note(
                    sshd::Issue {
                        problem: true,
                        message: e,
                        fix: "run 'sshd -t' and fix the Match block".into(),
                    },
                    label,
                ),
            }
        }
    }
    true
}

/// One finding per distinct issue, naming (up to five of) the clients it applies to; whether
/// none was a problem.
fn report_issues(
    findings: &mut Findings,
    issues: BTreeMap<(bool, String, String), Vec<String>>,
) -> bool {
    let clean = !issues.keys().any(|(problem, _, _)| *problem);
    for ((problem, message, fix), labels) in issues {
        let message = if labels.iter().any(String::is_empty) {
            message
        } else {
            let mut shown: Vec<String> = labels.iter().take(5).cloned().collect();
            if labels.len() > 5 {
                shown.push(format!("and {} more", labels.len() - 5));
            }
            format!("{message} (for {})", shown.join(", "))
        };
        if problem {
            findings.problem("sshd", message, fix);
        } else {
            findings.warning("sshd", message, fix);
        }
    }
    clean
}

fn check_version(findings: &mut Findings, sshd: &Path, kind: StackKind, first_factor: bool) {
    let Some((major, minor)) = sshd::version(sshd) else {
        return;
    };
    let old = (major, minor) < (7, 8);
    match (old, kind, first_factor) {
        (true, _, true) => findings.problem(
            "sshd",
            format!(
                "OpenSSH {major}.{minor} does not report the SSH key to PAM (SSH_AUTH_INFO_0, \
                 7.8+): first_factor=publickey denies every login"
            ),
            "remove first_factor=publickey and make sure sshd requires the key: \
             AuthenticationMethods publickey,keyboard-interactive, PasswordAuthentication no, no \
             Match block that drops publickey",
        ),
        (false, StackKind::Key, false) => findings.problem(
            "pam",
            "the key + code stack has no first_factor=publickey: if sshd ever runs it without a \
             key (PasswordAuthentication yes, a Match block, a drop-in not yet loaded) the code \
             alone logs in",
            "add first_factor=publickey to the pam_ecs_mfa.so line (as in examples/debian/sshd)",
        ),
        (true, StackKind::Key, false) => findings.warning(
            "pam",
            format!(
                "OpenSSH {major}.{minor}: the module cannot check the key itself \
                 (first_factor=publickey needs 7.8+), sshd_config alone must require it"
            ),
            "keep AuthenticationMethods publickey,keyboard-interactive and PasswordAuthentication \
             no everywhere",
        ),
        _ => {}
    }
}

/// sshd reads its configuration when it starts (and on reload, which rewrites its pid file):
/// a config file changed after that is not in force yet, whatever `sshd -T` says.
fn check_reload(findings: &mut Findings, sshd_config: &Path, settings: &Settings) {
    let pidfile = Path::new(settings.get("pidfile"));
    let Ok(started) = std::fs::metadata(pidfile).and_then(|m| m.modified()) else {
        return;
    };
    let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap_or_default();
    if !comm.starts_with("sshd") {
        return;
    }
    let newer: Vec<String> = sshd::config_files(sshd_config)
        .into_iter()
        .filter(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > started)
        })
        .map(|f| f.display().to_string())
        .collect();
    if !newer.is_empty() {
        findings.problem(
            "sshd",
            format!(
                "the running sshd (pid {}) started before {} changed: it still uses the old \
                 settings, which were not checked here",
                pid.trim(),
                newer.join(", ")
            ),
            "sshd -t && systemctl reload ssh (Debian/Ubuntu) or systemctl reload sshd (RHEL \
             family), then run doctor again",
        );
    }
}

fn check_exemptions(findings: &mut Findings, policy: &Policy, settings: &Settings) {
    let local = policy.exemptions.local_networks(&own_addresses());
    if !local.is_empty() {
        let list: Vec<String> = local.iter().map(ToString::to_string).collect();
        let forwarding = settings.get("allowtcpforwarding") != "no";
        let message = format!(
            "exempt_networks {} contain loopback or this host's own addresses: the module never \
             applies them there{}",
            list.join(", "),
            if forwarding {
                " (AllowTcpForwarding lets any user relay a login through this host)"
            } else {
                ""
            }
        );
        let fix = "remove them from exempt_networks (exempt the real client networks only)";
        if forwarding {
            findings.problem("exemptions", message, fix);
        } else {
            findings.warning("exemptions", message, fix);
        }
    }
    if !policy.exemptions.exempt_networks.is_empty() && settings.get("usedns") == "yes" {
        findings.warning(
            "exemptions",
            "UseDNS yes: sshd passes the client's host name, and exempt_networks never match a \
             name",
            "UseDNS no, or exempt by group",
        );
    }
}

/// Enrollment at login needs a key first; say when sshd lets keyboard-interactive come without
/// one (those logins are treated as unenrolled: safe, but nobody enrolls that way) and when
/// the deadline is over.
fn check_login_enrollment(findings: &mut Findings, policy: &Policy, settings: &Settings) {
    let Some(rules) = &policy.enroll_at_login else {
        return;
    };
    let without_key: Vec<String> = settings
        .method_lists()
        .into_iter()
        .filter(|list| {
            list.iter()
                .position(|m| m == "keyboard-interactive")
                .is_some_and(|at| !list[..at].iter().any(|m| m == "publickey"))
        })
        .map(|list| list.join(","))
        .collect();
    if !without_key.is_empty() {
        findings.warning(
            "enroll",
            format!(
                "enroll_at_login is on, but sshd allows keyboard-interactive without a key first \
                 ({}): such logins never enroll (a key must be proven first) and are denied",
                without_key.join(" ")
            ),
            "AuthenticationMethods publickey,keyboard-interactive",
        );
    }
    let now = crate::unix_now().unwrap_or(0);
    match rules.until {
        Some(until) if now >= until => findings.warning(
            "enroll",
            format!(
                "enroll_until ({}) has passed: users who are not enrolled yet are denied again",
                crate::admin::iso_date(until.saturating_sub(1))
            ),
            "enroll the rest with mfa-enroll enroll --user NAME, or move enroll_until",
        ),
        _ => findings.ok(
            "enroll",
            "enroll_at_login is on: users with a key and no enrollment enroll at their next SSH \
             login",
        ),
    }
}

fn check_groups(findings: &mut Findings, policy: &Policy) {
    for (key, groups) in [
        ("require_groups", &policy.exemptions.require_groups),
        ("exempt_groups", &policy.exemptions.exempt_groups),
    ] {
        for group in groups {
            if nix::unistd::Group::from_name(group)
                .ok()
                .flatten()
                .is_none()
            {
                let effect = if key == "require_groups" {
                    "nobody in it needs MFA"
                } else {
                    "a typo here exempts nobody now and someone unintended later"
                };
                findings.problem(
                    "config",
                    format!("{key}: group '{group}' does not exist ({effect})"),
                    "correct the group name in the config file",
                );
            }
        }
    }
}

fn check_dirs(findings: &mut Findings, policy: &Policy) {
    for (what, dir) in [("store", &policy.store_dir), ("state", &policy.state_dir)] {
        match secure_fs::open_dir(dir) {
            Ok(Some(_)) => findings.ok(what, format!("{} is root-only", dir.display())),
            Ok(None) if what == "store" => findings.problem(
                what,
                format!(
                    "{} does not exist: the module denies every login (also with nullok)",
                    dir.display()
                ),
                "mfa-enroll enroll creates it; or correct store= / mount the volume",
            ),
            Ok(None) => findings.warning(
                what,
                format!("{} does not exist yet", dir.display()),
                "it is created on the first login",
            ),
            Err(e) => findings.problem(
                what,
                format!("{e}: every login is denied"),
                format!("chown root:root {0} && chmod 0700 {0}", dir.display()),
            ),
        }
    }
}

/// The server's clock offset: TOTP compares the phone's clock with this one.
fn check_clock(findings: &mut Findings) {
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let fix = "enable NTP (timedatectl set-ntp true, or chrony): codes fail when the server's \
               clock is off by more than ~30 s";
    if let Some(tracking) = run("chronyc", &["tracking"]) {
        match tracking.lines().find(|l| l.starts_with("System time")) {
            Some(line) => findings.ok(
                "clock",
                format!(
                    "server clock offset (chrony): {}",
                    line.split_once(':').map(|x| x.1).unwrap_or(line).trim()
                ),
            ),
            None => findings.warning("clock", "chrony runs but reports no offset", fix),
        }
    } else if let Some(status) = run("timedatectl", &["timesync-status"])
        && let Some(offset) = status
            .lines()
            .find_map(|l| l.trim().strip_prefix("Offset:"))
    {
        findings.ok(
            "clock",
            format!("server clock offset (systemd-timesyncd): {}", offset.trim()),
        );
    } else if let Some(sync) = run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"]) {
        if sync == "yes" {
            findings.ok("clock", "synchronised (timedatectl; offset not reported)");
        } else {
            findings.warning(
                "clock",
                "not synchronised: the server's offset is unknown",
                fix,
            );
        }
    } else {
        findings.warning(
            "clock",
            "cannot tell the server's clock offset (no chronyc, no timedatectl)",
            fix,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_are_one_printable_line() {
        assert_eq!(printable("bad\r\nthing\u{1b}[1m "), "bad  thing [1m");
    }
}
