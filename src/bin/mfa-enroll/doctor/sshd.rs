//! What sshd will really do: its effective settings (`sshd -T`, with `-C` for each user and
//! each client that a `Match` block singles out), and whether a login can complete without
//! both factors or never at all.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pam_file::StackKind;

/// `sshd -T` output: lower-case keyword -> value (first line of each keyword).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// Parses `sshd -T` output.
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.trim().split_once(' ') {
                map.entry(key.to_ascii_lowercase())
                    .or_insert_with(|| value.trim().to_string());
            }
        }
        Self(map)
    }

    /// The value of `key`, empty when sshd did not print it.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    fn is_yes(&self, key: &str) -> bool {
        self.get(key) == "yes"
    }

    /// Whether PAM can ask questions through keyboard-interactive. OpenSSH before 8.7 needs
    /// `ChallengeResponseAuthentication` too (and prints it in `sshd -T`); newer ones treat
    /// that name as an alias and print only `kbdinteractiveauthentication`.
    pub fn kbd_interactive_pam(&self) -> bool {
        self.is_yes("kbdinteractiveauthentication")
            && self.get("challengeresponseauthentication") != "no"
    }

    /// The method lists a login must complete one of. Without `AuthenticationMethods`
    /// (`any`), each enabled method alone is a list.
    pub fn method_lists(&self) -> Vec<Vec<String>> {
        let methods = self.get("authenticationmethods");
        if methods.is_empty() || methods == "any" {
            let mut lists = Vec::new();
            for (key, method) in [
                ("pubkeyauthentication", "publickey"),
                ("passwordauthentication", "password"),
                ("kbdinteractiveauthentication", "keyboard-interactive"),
                ("hostbasedauthentication", "hostbased"),
                ("gssapiauthentication", "gssapi-with-mic"),
            ] {
                let enabled = if method == "keyboard-interactive" {
                    self.kbd_interactive_pam()
                } else {
                    self.is_yes(key)
                };
                if enabled {
                    lists.push(vec![method.to_string()]);
                }
            }
            return lists;
        }
        methods
            .split_whitespace()
            .map(|list| {
                list.split(',')
                    // "keyboard-interactive:pam" names a submethod; the method is what counts.
                    .map(|m| m.split(':').next().unwrap_or(m).to_string())
                    .collect()
            })
            .collect()
    }
}

/// A client to evaluate `Match` blocks for (`sshd -T -C`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub user: String,
    pub addr: String,
    pub host: String,
    pub laddr: String,
    pub lport: String,
}

impl Client {
    /// How the client is named in findings: the user, and what differs from the default client.
    pub fn label(&self) -> String {
        let mut label = format!("user={}", self.user);
        for (name, value, default) in [
            ("addr", &self.addr, DEFAULT_ADDR),
            ("host", &self.host, DEFAULT_HOST),
            ("laddr", &self.laddr, DEFAULT_LADDR),
            ("lport", &self.lport, DEFAULT_LPORT),
        ] {
            if value != default {
                label.push_str(&format!(" {name}={value}"));
            }
        }
        label
    }
}

/// Which field of a [`Client`] a `Match` criterion sets.
type FieldOf = fn(&mut Client) -> &mut String;

/// Address, host and port patterns taken from `Match` lines: one representative each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchCriteria {
    /// Whether any `Match` line exists.
    pub any: bool,
    pub addrs: Vec<String>,
    pub hosts: Vec<String>,
    pub laddrs: Vec<String>,
    pub lports: Vec<String>,
}

/// A client address no Match pattern is likely to name (TEST-NET-2).
pub const DEFAULT_ADDR: &str = "198.51.100.23";
const DEFAULT_HOST: &str = "client.invalid";
const DEFAULT_LADDR: &str = "192.0.2.1";
const DEFAULT_LPORT: &str = "22";

impl MatchCriteria {
    /// Reads the `Match` lines of `sshd_config` and the files it includes.
    pub fn read(sshd_config: &Path) -> Self {
        let mut lines = Vec::new();
        collect_lines(sshd_config, 0, &mut lines);
        Self::from_lines(&lines)
    }

    pub fn from_lines(lines: &[String]) -> Self {
        let mut c = Self::default();
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            if !words
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case("match"))
            {
                continue;
            }
            c.any = true;
            for pair in words[1..].chunks(2) {
                let [criterion, patterns] = pair else {
                    continue;
                };
                for pattern in patterns.split(',').filter(|p| !p.starts_with('!')) {
                    let list = match criterion.to_ascii_lowercase().as_str() {
                        "address" => &mut c.addrs,
                        "localaddress" => &mut c.laddrs,
                        "host" => &mut c.hosts,
                        "localport" => &mut c.lports,
                        _ => continue,
                    };
                    let rep = representative(pattern);
                    if !list.contains(&rep) {
                        list.push(rep);
                    }
                }
            }
        }
        c
    }

    /// The clients to evaluate for `user`: the default client, then one per pattern.
    pub fn clients(&self, user: &str) -> Vec<Client> {
        let base = Client {
            user: user.to_string(),
            addr: DEFAULT_ADDR.into(),
            host: DEFAULT_HOST.into(),
            laddr: DEFAULT_LADDR.into(),
            lport: DEFAULT_LPORT.into(),
        };
        let mut clients = vec![base.clone()];
        if !self.any {
            return clients;
        }
        // One client per pattern, differing from the default client in that field only.
        let fields: [(&Vec<String>, FieldOf); 4] = [
            (&self.addrs, |c| &mut c.addr),
            (&self.hosts, |c| &mut c.host),
            (&self.laddrs, |c| &mut c.laddr),
            (&self.lports, |c| &mut c.lport),
        ];
        for (values, field) in fields {
            for value in values {
                let mut client = base.clone();
                *field(&mut client) = value.clone();
                clients.push(client);
            }
        }
        clients
    }
}

/// One address (or name, or port) matched by an sshd pattern: a CIDR's first host, wildcards
/// filled in.
fn representative(pattern: &str) -> String {
    if let Some((net, _)) = pattern.split_once('/')
        && let Ok(addr) = net.parse::<IpAddr>()
    {
        return match addr {
            IpAddr::V4(v4) => IpAddr::from((u32::from(v4) | 1).to_be_bytes()).to_string(),
            IpAddr::V6(v6) => IpAddr::from((u128::from(v6) | 1).to_be_bytes()).to_string(),
        };
    }
    pattern.replace(['*', '?'], "1")
}

/// Lines of `path` and of the files its `Include` lines name (sshd's own rules: relative
/// paths are under /etc/ssh, `*` globs in the file name).
fn collect_lines(path: &Path, depth: u8, out: &mut Vec<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && depth < 8
        {
            for pattern in words {
                for file in expand_include(pattern) {
                    collect_lines(&file, depth + 1, out);
                }
            }
        } else if !line.is_empty() {
            out.push(line.to_string());
        }
    }
}

fn expand_include(pattern: &str) -> Vec<PathBuf> {
    let path = if pattern.starts_with('/') {
        PathBuf::from(pattern)
    } else {
        Path::new("/etc/ssh").join(pattern)
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![path];
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    files.sort();
    files
}

/// The config files whose change needs an sshd reload.
pub fn config_files(sshd_config: &Path) -> Vec<PathBuf> {
    let mut files = vec![sshd_config.to_path_buf()];
    if let Ok(text) = std::fs::read_to_string(sshd_config) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("include"))
            {
                for pattern in words {
                    files.extend(expand_include(pattern));
                }
            }
        }
    }
    files
}

/// Runs `sshd -T` (with `-C` for a client).
pub fn effective(sshd: &Path, client: Option<&Client>) -> Result<Settings, String> {
    let mut cmd = Command::new(sshd);
    cmd.arg("-T");
    if let Some(c) = client {
        cmd.arg("-C").arg(format!(
            "user={},host={},addr={},laddr={},lport={}",
            c.user, c.host, c.addr, c.laddr, c.lport
        ));
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(Settings::parse(&String::from_utf8_lossy(&o.stdout))),
        Ok(o) => Err(format!(
            "sshd -T failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{}: {e}", sshd.display())),
    }
}

/// The OpenSSH version (`OpenSSH_9.2p1` -> (9, 2)) from `sshd -V`, if it can be read.
pub fn version(sshd: &Path) -> Option<(u32, u32)> {
    let out = Command::new(sshd).arg("-V").output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let v = text.split("OpenSSH_").nth(1)?;
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Something wrong (or worth knowing) about one set of effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub problem: bool,
    pub message: String,
    pub fix: String,
}

fn problem(message: String, fix: &str) -> Issue {
    Issue {
        problem: true,
        message,
        fix: fix.to_string(),
    }
}

fn warning(message: String, fix: &str) -> Issue {
    Issue {
        problem: false,
        message,
        fix: fix.to_string(),
    }
}

const FIX_METHODS: &str = "AuthenticationMethods publickey,keyboard-interactive \
                           (examples/sshd_config.d/50-ecs-mfa.conf; in a Match block too), then \
                           reload sshd";

/// What these settings let a login do, for a user who needs MFA (`is_root`: the user is root).
pub fn analyse(s: &Settings, kind: StackKind, first_factor: bool, is_root: bool) -> Vec<Issue> {
    let mut issues = Vec::new();
    if s.get("usepam") != "yes" {
        issues.push(problem(
            "UsePAM is not yes: the module never runs".into(),
            FIX_METHODS,
        ));
        return issues;
    }
    let lists = s.method_lists();
    let is_pam = |m: &str| m == "keyboard-interactive" || m == "password";
    // With first_factor=publickey the module refuses a list without a key before PAM; when no
    // list has one, nobody can log in.
    let key_before_pam = |list: &Vec<String>| {
        list.iter()
            .position(|m| is_pam(m))
            .is_some_and(|at| list[..at].iter().any(|m| m == "publickey"))
    };
    if kind == StackKind::Key
        && first_factor
        && !lists.is_empty()
        && !lists.iter().any(key_before_pam)
        && lists.iter().all(|l| l.iter().any(|m| is_pam(m)))
    {
        issues.push(problem(
            format!(
                "AuthenticationMethods '{}' has no list with publickey before \
                 keyboard-interactive, and first_factor=publickey refuses every login without a \
                 key: locked out",
                s.get("authenticationmethods")
            ),
            FIX_METHODS,
        ));
    }
    for list in &lists {
        analyse_list(s, list, kind, first_factor, &mut issues);
    }
    if kind == StackKind::Key && s.is_yes("passwordauthentication") {
        issues.push(problem(
            "PasswordAuthentication yes with the key + code stack: sshd hands passwords to this \
             stack, which has no password module (the code typed as a password)"
                .into(),
            "PasswordAuthentication no (examples/sshd_config.d/50-ecs-mfa.conf)",
        ));
    }
    // sshd -T prints prohibit-password under its old name.
    let root_setting = match s.get("permitrootlogin") {
        "without-password" => "prohibit-password",
        other => other,
    };
    if is_root
        && matches!(root_setting, "prohibit-password" | "forced-commands-only")
        && lists
            .iter()
            .any(|l| l.iter().any(|m| m == "keyboard-interactive"))
    {
        issues.push(problem(
            format!(
                "PermitRootLogin {root_setting}: sshd replaces root's keyboard-interactive \
                 answers, so root can never pass the code"
            ),
            "PermitRootLogin yes (safe with AuthenticationMethods publickey,keyboard-interactive: \
             key and code are both required), or PermitRootLogin no",
        ));
    }
    issues
}

/// The issues of one `AuthenticationMethods` list (`list`, one of `s`'s).
fn analyse_list(
    s: &Settings,
    list: &[String],
    kind: StackKind,
    first_factor: bool,
    issues: &mut Vec<Issue>,
) {
    let is_pam = |m: &str| m == "keyboard-interactive" || m == "password";
    let text = list.join(",");
    let Some(pam_at) = list.iter().position(|m| is_pam(m)) else {
        issues.push(problem(
            format!(
                "AuthenticationMethods '{}' lets '{text}' log in without \
                 keyboard-interactive: the code is never asked, MFA can be bypassed",
                s.get("authenticationmethods")
            ),
            FIX_METHODS,
        ));
        return;
    };
    match kind {
        StackKind::Key if !list[..pam_at].iter().any(|m| m == "publickey") => {
            if first_factor {
                issues.push(warning(
                    format!(
                        "'{text}' has no key before PAM: first_factor=publickey refuses every \
                         such login"
                    ),
                    FIX_METHODS,
                ));
            } else {
                issues.push(problem(
                    format!(
                        "'{text}' reaches the key + code stack without a key and the module \
                         has no first_factor=publickey: the code alone logs in"
                    ),
                    "add first_factor=publickey to the pam_ecs_mfa.so line and set \
                     AuthenticationMethods publickey,keyboard-interactive",
                ));
            }
        }
        StackKind::Password if list[pam_at] == "password" => issues.push(warning(
            format!(
                "'{text}': with password authentication sshd answers every PAM prompt with \
                 the password, so no code can be typed"
            ),
            "use keyboard-interactive (examples/sshd_config.d/50-ecs-mfa-password.conf)",
        )),
        _ => {}
    }
    if list.iter().any(|m| m == "keyboard-interactive") && !s.kbd_interactive_pam() {
        issues.push(problem(
            "KbdInteractiveAuthentication (before OpenSSH 8.7 also \
             ChallengeResponseAuthentication) is not yes: the code cannot be asked (those \
             users are locked out)"
                .into(),
            FIX_METHODS,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        let base = "usepam yes\npubkeyauthentication yes\nkbdinteractiveauthentication \
                    yes\npasswordauthentication no\npermitrootlogin no\n";
        Settings::parse(&format!("{text}\n{base}"))
    }

    fn problems(s: &Settings, kind: StackKind, ff: bool, root: bool) -> Vec<String> {
        analyse(s, kind, ff, root)
            .into_iter()
            .filter(|i| i.problem)
            .map(|i| i.message)
            .collect()
    }

    #[test]
    fn the_shipped_settings_are_clean_for_both_stacks() {
        let key = settings("authenticationmethods publickey,keyboard-interactive");
        assert!(analyse(&key, StackKind::Key, true, false).is_empty());
        let pw = settings("authenticationmethods keyboard-interactive");
        assert!(analyse(&pw, StackKind::Password, false, false).is_empty());
        // A second list ending in password is no bypass.
        let both =
            settings("authenticationmethods publickey,keyboard-interactive publickey,password");
        assert!(problems(&both, StackKind::Key, true, false).is_empty());
    }

    #[test]
    fn every_way_around_a_factor_is_a_problem() {
        let stock = settings("passwordauthentication yes");
        let p = problems(&stock, StackKind::Key, false, false);
        assert!(
            p.iter()
                .any(|m| m.contains("'publickey' log in without keyboard-interactive")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|m| m.contains("the code alone logs in")),
            "{p:#?}"
        );
        assert!(
            p.iter().any(|m| m.contains("PasswordAuthentication yes")),
            "{p:#?}"
        );
        let kbd_only = settings("authenticationmethods keyboard-interactive");
        assert!(problems(&kbd_only, StackKind::Key, false, false)[0].contains("code alone"));
        // With first_factor the module refuses them: no door, but nobody gets in either.
        let p = problems(&kbd_only, StackKind::Key, true, false);
        assert!(p.len() == 1 && p[0].contains("locked out"), "{p:#?}");
        let wrong_order = settings("authenticationmethods keyboard-interactive,publickey");
        assert!(problems(&wrong_order, StackKind::Key, true, false)[0].contains("locked out"));
        // One good list besides: the other is only a warning.
        let mixed =
            settings("authenticationmethods publickey,keyboard-interactive keyboard-interactive");
        assert!(problems(&mixed, StackKind::Key, true, false).is_empty());
        assert_eq!(analyse(&mixed, StackKind::Key, true, false).len(), 1);
        let key_only = settings("authenticationmethods publickey");
        assert!(
            problems(&key_only, StackKind::Key, true, false)[0].contains("MFA can be bypassed")
        );
        let no_pam = Settings::parse("usepam no\n");
        assert!(problems(&no_pam, StackKind::Key, true, false)[0].contains("UsePAM"));
        let no_kbd = settings(
            "authenticationmethods publickey,keyboard-interactive\nkbdinteractiveauthentication no",
        );
        assert!(problems(&no_kbd, StackKind::Key, true, false)[0].contains("KbdInteractive"));
        // OpenSSH < 8.7 (Debian 11, Ubuntu 20.04, RHEL 8): kbd-int on, challenge-response off
        // means PAM never runs.
        let old_sshd = settings(
            "authenticationmethods publickey,keyboard-interactive\nchallengeresponseauthentication no",
        );
        assert!(
            problems(&old_sshd, StackKind::Key, true, false)[0]
                .contains("ChallengeResponseAuthentication")
        );
        let old_ok = settings(
            "authenticationmethods publickey,keyboard-interactive\nchallengeresponseauthentication yes",
        );
        assert!(problems(&old_ok, StackKind::Key, true, false).is_empty());
    }

    #[test]
    fn root_under_prohibit_password_cannot_pass_and_yes_is_fine() {
        let prohibit = settings(
            "authenticationmethods publickey,keyboard-interactive\npermitrootlogin \
             prohibit-password",
        );
        assert!(
            problems(&prohibit, StackKind::Key, true, true)[0]
                .contains("PermitRootLogin prohibit-password")
        );
        assert!(
            problems(&prohibit, StackKind::Key, true, false).is_empty(),
            "only root"
        );
        let yes =
            settings("authenticationmethods publickey,keyboard-interactive\npermitrootlogin yes");
        assert!(analyse(&yes, StackKind::Key, true, true).is_empty());
    }

    #[test]
    fn match_patterns_give_one_client_each() {
        let lines: Vec<String> = [
            "Match Group admins Address 10.0.0.0/8,!10.1.0.0/16",
            "Match Address 192.168.*.* Host *.corp.example",
            "match LocalPort 2222",
            "PermitRootLogin no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = MatchCriteria::from_lines(&lines);
        assert!(c.any);
        assert_eq!(c.addrs, vec!["10.0.0.1", "192.168.1.1"]);
        assert_eq!(c.hosts, vec!["1.corp.example"]);
        assert_eq!(c.lports, vec!["2222"]);
        let clients = c.clients("bob");
        assert_eq!(clients.len(), 5);
        assert_eq!(clients[0].addr, DEFAULT_ADDR);
        assert!(MatchCriteria::from_lines(&[]).clients("bob").len() == 1);
    }
}
