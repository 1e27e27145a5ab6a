//! `import`: migrate from google-authenticator-libpam (`~/.google_authenticator`) and from
//! pam_oath usersfiles. TOTP entries only; everything that cannot be carried over faithfully
//! (HOTP counters, PINs, short secrets, odd periods) is reported, never guessed.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pam_ecs_mfa::backend::Enrollments;
use pam_ecs_mfa::recovery::RecoveryCode;
use pam_ecs_mfa::store::{SaveMode, UserRecord};
use pam_ecs_mfa::totp::{Algorithm, SecretKey, TotpParams};
use pam_ecs_mfa::user_name::UserName;
use zeroize::Zeroizing;

use crate::{Exit, Failure, Global, log_change, unix_now};

/// Largest foreign file read: a pam_oath users file holds every user of a server (about 60
/// bytes each), so 64 MiB is about a million users. A larger file is refused whole, never
/// read in part.
const MAX_FILE: u64 = 64 << 20;

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// From google-authenticator-libpam: each user's ~/.google_authenticator (TOTP); its
    /// scratch codes become recovery codes.
    GoogleAuthenticator(GaArgs),
    /// From a pam_oath usersfile (lines "HOTP/T30[/6] user - hexsecret ..."): the TOTP lines.
    Oath(OathArgs),
}

#[derive(clap::Args)]
pub struct GaArgs {
    /// Users to import (repeatable; default: every local account with a login shell that has
    /// a ~/.google_authenticator file).
    #[arg(long, value_name = "NAME")]
    user: Vec<String>,
    /// Read this file instead of ~USER/.google_authenticator (needs exactly one --user).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// A shared account: import the file as this person's token (needs exactly one --user;
    /// the person's own file, given with --file).
    #[arg(long, value_name = "NAME", requires = "file")]
    person: Option<String>,
    /// With --person: bind the token to this SSH key (a public key file, an authorized_keys
    /// line or a fingerprint; repeatable). --force keeps the keys bound to the token it
    /// replaces unless --key is given.
    #[arg(long, value_name = "KEY", requires = "person")]
    key: Vec<String>,
    /// Report what would be imported; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace existing ecs-mfa enrollments.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct OathArgs {
    /// The usersfile (often /etc/users.oath or /etc/liboath/users.oath).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Report what would be imported; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace existing ecs-mfa enrollments.
    #[arg(long)]
    force: bool,
}

/// One user's secret and parameters, as read from a foreign file.
struct Found {
    user: UserName,
    secret: SecretKey,
    params: TotpParams,
    scratch: Vec<RecoveryCode>,
    /// HOTP tokens: the next counter.
    hotp: Option<u64>,
    /// `--person`: the token of this person on a shared account.
    person: Option<pam_ecs_mfa::user_name::Person>,
    /// `--key`: the SSH keys it is bound to.
    keys: Vec<String>,
}

/// `import --json`: one object (field names are an interface).
#[derive(serde::Serialize)]
struct Report<'a> {
    dry_run: bool,
    imported: &'a [Imported],
    skipped: Vec<SkippedEntry<'a>>,
}

/// An entry that was (or, with --dry-run, would be) imported.
#[derive(serde::Serialize)]
struct Imported {
    user: String,
    summary: String,
}

/// An entry that was not imported, and why.
#[derive(serde::Serialize)]
struct SkippedEntry<'a> {
    user: &'a str,
    reason: &'a str,
}

pub fn run(g: &Global, cmd: ImportCommand) -> Result<(), Failure> {
    crate::require_root()?;
    let policy = g.policy()?;
    let store = g.enrollments(&policy)?;
    let issuer = pam_ecs_mfa::otpauth::clean_name(
        &policy
            .issuer
            .clone()
            .unwrap_or_else(pam_ecs_mfa::otpauth::host_name),
    );
    let (found, mut skipped, dry_run, force) = match cmd {
        ImportCommand::GoogleAuthenticator(args) => {
            let person = crate::admin::parse_person(args.person.as_deref())?;
            let keys = crate::people::parse_keys(&args.key)?;
            let (mut found, skipped) = read_google_authenticator(&args)?;
            for f in &mut found {
                f.person.clone_from(&person);
                f.keys.clone_from(&keys);
            }
            (found, skipped, args.dry_run, args.force)
        }
        ImportCommand::Oath(args) => {
            let text = read_bounded(&args.file, None).map_err(|e| {
                Failure::new(Exit::Failure, format!("{}: {e}", args.file.display()))
            })?;
            let (found, skipped) = parse_oath(&text);
            (found, skipped, args.dry_run, args.force)
        }
    };
    let mut imported = Vec::new();
    for f in found {
        match save(&store, &policy, &issuer, f, dry_run, force) {
            Ok(summary) => imported.push(summary),
            Err((user, why)) => skipped.push((user, why)),
        }
    }
    if g.json {
        let report = Report {
            dry_run,
            imported: &imported,
            skipped: skipped
                .iter()
                .map(|(user, reason)| SkippedEntry { user, reason })
                .collect(),
        };
        outln!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        let verb = if dry_run { "would import" } else { "imported" };
        for i in &imported {
            outln!("{}: {verb} ({})", i.user, i.summary);
        }
        for (user, why) in &skipped {
            outln!("{user}: NOT imported: {why}");
        }
        outln!("{} {verb}, {} not imported", imported.len(), skipped.len());
    }
    if skipped.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            Exit::Partial,
            format!("{} entries not imported (see above)", skipped.len()),
        ))
    }
}

fn save(
    store: &Enrollments,
    policy: &pam_ecs_mfa::policy::Policy,
    issuer: &str,
    f: Found,
    dry_run: bool,
    force: bool,
) -> Result<Imported, (String, String)> {
    let user = match &f.person {
        Some(p) => format!("{} (person {p})", f.user),
        None => f.user.to_string(),
    };
    let fail = |why: String| (user.clone(), why);
    let kind = match f.hotp {
        Some(counter) => format!("HOTP counter {counter}"),
        None => format!("TOTP {} s", f.params.period()),
    };
    let summary = format!(
        "{kind}, {}, {} digits, {} scratch codes as recovery codes",
        f.params.algorithm(),
        f.params.digits(),
        f.scratch.len()
    );
    // The token replaced, if any: like `reset` and `enroll --force`, a replacing import keeps
    // the keys bound to it unless --key gives new ones (dropping them silently would leave the
    // person's token bound to no key: no login would use it).
    let existing = store.load_token(&f.user, f.person.as_ref()).ok();
    let enrolled = match &f.person {
        Some(_) => existing.is_some(),
        None => store
            .is_enrolled(&f.user)
            .map_err(|e| fail(e.to_string()))?,
    };
    if !force && enrolled {
        return Err(fail(
            "already enrolled in ecs-mfa (use --force to replace)".into(),
        ));
    }
    if !dry_run {
        let hashes = f
            .scratch
            .iter()
            .map(RecoveryCode::hash)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        let record = UserRecord {
            user: f.user.clone(),
            secret: f.secret,
            params: f.params,
            created: unix_now().map_err(|e| fail(e.message))?,
            issuer: issuer.to_string(),
            recovery_codes: hashes,
            origin: pam_ecs_mfa::store::record::Origin::Import,
            hotp: f.hotp,
            generation: 0,
            person: f.person.clone(),
            keys: match (f.keys.is_empty(), &existing) {
                (true, Some(token)) => token.keys.clone(),
                _ => f.keys.clone(),
            },
        };
        // Replacing a token that is there: like `reset`, onto the token there when written,
        // with the keys it has then (a key bound meanwhile stays; a person removed meanwhile
        // stays removed).
        let mode = match &existing {
            Some(_) if force => SaveMode::Reset {
                keep_keys: f.keys.is_empty(),
            },
            _ => SaveMode::replacing(force),
        };
        store
            .save(policy, &record, mode)
            .map_err(|e| fail(e.to_string()))?;
        let person = f
            .person
            .as_ref()
            .map_or_else(String::new, |p| format!("person={p} "));
        log_change(
            "import",
            &f.user,
            &format!("{person}scratch_codes={}", f.scratch.len()),
        );
    }
    Ok(Imported { user, summary })
}

type Skipped = Vec<(String, String)>;

fn read_google_authenticator(args: &GaArgs) -> Result<(Vec<Found>, Skipped), Failure> {
    if args.file.is_some() && args.user.len() != 1 {
        return Err(Failure::new(Exit::Usage, "--file needs exactly one --user"));
    }
    let users: Vec<String> = if args.user.is_empty() {
        login_accounts()?
    } else {
        args.user.clone()
    };
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    let explicit = !args.user.is_empty();
    for name in users {
        let Ok(user) = UserName::parse(&name) else {
            skipped.push((name, "not a valid user name".into()));
            continue;
        };
        let account = nix::unistd::User::from_name(&name).ok().flatten();
        let (path, owner) = match (&args.file, &account) {
            (Some(file), _) => (file.clone(), None),
            (None, Some(acc)) => (
                acc.dir.join(".google_authenticator"),
                Some(acc.uid.as_raw()),
            ),
            (None, None) => {
                skipped.push((name, "no such local account".into()));
                continue;
            }
        };
        let text = match read_bounded(&path, owner) {
            Ok(text) => text,
            // Scanning all accounts: no file means "not using google-authenticator".
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                skipped.push((name, format!("{}: {e}", path.display())));
                continue;
            }
        };
        match parse_google_authenticator(&text) {
            Ok((secret, params, scratch, hotp)) => found.push(Found {
                user,
                secret,
                params,
                scratch,
                hotp,
                person: None,
                keys: Vec::new(),
            }),
            Err(why) => skipped.push((name, why)),
        }
    }
    Ok((found, skipped))
}

/// Parses a `~/.google_authenticator` file: secret on line 1, `" OPTION` lines, then 8-digit
/// scratch codes. `" HOTP_COUNTER n"` makes it a counter-based token whose next code is `n`.
#[allow(clippy::type_complexity)]
fn parse_google_authenticator(
    text: &str,
) -> Result<(SecretKey, TotpParams, Vec<RecoveryCode>, Option<u64>), String> {
    let mut lines = text.lines();
    let secret = lines.next().unwrap_or("").trim();
    let secret = SecretKey::from_base32(secret).map_err(|e| match e {
        pam_ecs_mfa::totp::TotpError::SecretTooShort => {
            "secret is shorter than 128 bits (RFC 4226 minimum); enroll this user anew".to_string()
        }
        e => e.to_string(),
    })?;
    let mut period = 30;
    let mut hotp = None;
    let mut scratch = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some(option) = line.strip_prefix('"') {
            let mut words = option.split_whitespace();
            match words.next() {
                Some("HOTP_COUNTER") => {
                    let counter = words
                        .next()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or("HOTP_COUNTER without a counter")?;
                    hotp = Some(counter);
                }
                Some("STEP_SIZE") => {
                    period = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        } else if !line.is_empty() {
            let code = RecoveryCode::from_scratch_code(line.as_bytes())
                .ok_or("a scratch code is not 8 digits")?;
            scratch.push(code);
        }
    }
    let params = TotpParams::new(Algorithm::Sha1, 6, period)
        .map_err(|_| format!("step size {period} s is not supported (30 or 60)"))?;
    scratch.truncate(pam_ecs_mfa::recovery::CODE_COUNT);
    Ok((secret, params, scratch, hotp))
}

/// Parses a pam_oath usersfile. Returns the TOTP entries and what was skipped, and why.
fn parse_oath(text: &str) -> (Vec<Found>, Skipped) {
    let (mut found, mut skipped): (Vec<Found>, Skipped) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields.get(1).copied().unwrap_or("?").to_string();
        let skip = |why: String| (name.clone(), format!("line {}: {why}", n + 1));
        let entry = (|| {
            let [kind, user, password, hex, ..] = fields[..] else {
                return Err(skip("needs at least: type user password secret".into()));
            };
            let user = UserName::parse(user).map_err(|e| skip(e.to_string()))?;
            let (params, counter_based) = oath_params(kind).map_err(skip)?;
            // HOTP lines: the moving factor (5th field, 0 when absent) is the next counter.
            let hotp = match (counter_based, fields.get(4)) {
                (false, _) => None,
                (true, None) => Some(0),
                (true, Some(c)) => Some(
                    c.parse::<u64>()
                        .map_err(|_| skip(format!("bad counter '{c}'")))?,
                ),
            };
            if password != "-" {
                return Err(skip(
                    "has a PIN/password, which ecs-mfa does not combine with codes".into(),
                ));
            }
            let bytes = decode_hex(hex).ok_or_else(|| skip("secret is not hex".into()))?;
            let secret = SecretKey::from_bytes(bytes).map_err(|e| skip(e.to_string()))?;
            if found.iter().any(|f| f.user == user) {
                return Err(skip(
                    "second token for this user (only the first is imported)".into(),
                ));
            }
            Ok(Found {
                user,
                secret,
                params,
                scratch: Vec::new(),
                hotp,
                person: None,
                keys: Vec::new(),
            })
        })();
        match entry {
            Ok(f) => found.push(f),
            Err(s) => skipped.push(s),
        }
    }
    (found, skipped)
}

/// `HOTP/T30`, `HOTP/T30/6`, `HOTP/T60/8` -> TOTP parameters; `HOTP`, `HOTP/6`, `HOTP/8` ->
/// counter-based (the `bool`).
fn oath_params(kind: &str) -> Result<(TotpParams, bool), String> {
    let mut parts = kind.split('/');
    if parts.next() != Some("HOTP") {
        return Err(format!("token type {kind} is not supported"));
    }
    let next = parts.next();
    let Some(period) = next.and_then(|p| p.strip_prefix('T')) else {
        let digits: u8 = match next {
            None => 6,
            Some(d) => d.parse().map_err(|_| format!("bad digits in {kind}"))?,
        };
        if parts.next().is_some() {
            return Err(format!("token type {kind} is not supported"));
        }
        return TotpParams::new(Algorithm::Sha1, digits, 30)
            .map(|p| (p, true))
            .map_err(|e| format!("{kind}: {e}"));
    };
    let period: u64 = period
        .parse()
        .map_err(|_| format!("bad time step in {kind}"))?;
    let digits: u8 = match parts.next() {
        None => 6,
        Some(d) => d.parse().map_err(|_| format!("bad digits in {kind}"))?,
    };
    TotpParams::new(Algorithm::Sha1, digits, period)
        .map(|p| (p, false))
        .map_err(|e| format!("{kind}: {e}"))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Reads a file of someone else's secrets (a pam_oath users file, a ~/.google_authenticator)
/// into a buffer that is wiped on drop, without following a symlink, refusing non-regular
/// files, files over [`MAX_FILE`] (whole: a file cut at the limit would import some users and
/// silently drop the rest) and, for a home-directory file, one not owned by its user.
fn read_bounded(path: &Path, owner: Option<u32>) -> std::io::Result<Zeroizing<String>> {
    use std::io::{Error, ErrorKind};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if owner.is_some_and(|uid| meta.uid() != uid) {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            "not owned by its user",
        ));
    }
    let too_big = || {
        Error::new(
            ErrorKind::InvalidData,
            format!(
                "larger than {} MiB: refused, nothing imported (split the file)",
                MAX_FILE >> 20
            ),
        )
    };
    if meta.len() > MAX_FILE {
        return Err(too_big());
    }
    // Reserved up front (the size plus one byte to see growth), so that reading never
    // reallocates and leaves copies of the secrets behind.
    let mut text = Zeroizing::new(String::with_capacity(meta.len() as usize + 1));
    file.take(MAX_FILE + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(too_big());
    }
    Ok(text)
}

fn login_accounts() -> Result<Vec<String>, Failure> {
    Ok(pam_ecs_mfa::accounts::system_login_accounts()
        .map_err(|e| Failure::new(Exit::Failure, format!("/etc/passwd: {e}")))?
        .into_iter()
        .map(|a| a.name.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_authenticator_files_parse() {
        let text = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\
                    \" DISALLOW_REUSE\n\" TOTP_AUTH\n12345678\n87654321\n";
        let (secret, params, scratch, hotp) = parse_google_authenticator(text).unwrap();
        assert_eq!(secret.as_bytes(), b"12345678901234567890");
        assert_eq!(params, TotpParams::default());
        assert_eq!((scratch.len(), hotp), (2, None));
        let counter = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 7\n12345678\n";
        let (_, _, scratch, hotp) = parse_google_authenticator(counter).unwrap();
        assert_eq!((scratch.len(), hotp), (1, Some(7)));
        let bad = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER x\n";
        assert!(
            parse_google_authenticator(bad)
                .unwrap_err()
                .contains("HOTP_COUNTER")
        );
        let short = "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n";
        assert!(
            parse_google_authenticator(short)
                .unwrap_err()
                .contains("128 bits")
        );
        let step = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n\" STEP_SIZE 45\n";
        assert!(parse_google_authenticator(step).unwrap_err().contains("45"));
    }

    #[test]
    fn oath_usersfiles_parse_totp_lines_and_report_the_rest() {
        let text = "# comment\n\
                    HOTP/T30/6 alice - 3132333435363738393031323334353637383930\n\
                    HOTP/T60/8 bob - 3132333435363738393031323334353637383930 0 123 2020-01-01T00:00:00L\n\
                    HOTP carol - 3132333435363738393031323334353637383930 42\n\
                    HOTP/8 frank - 3132333435363738393031323334353637383930\n\
                    HOTP/T30 dave 1234 3132333435363738393031323334353637383930\n\
                    HOTP/T30 erin - 31323334\n\
                    HOTP/T30 alice - 3132333435363738393031323334353637383930\n";
        let (found, skipped) = parse_oath(text);
        let names: Vec<&str> = found.iter().map(|f| f.user.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "frank"]);
        assert_eq!(found[1].params.period(), 60);
        assert_eq!(found[1].params.digits(), 8);
        assert_eq!((found[0].hotp, found[1].hotp), (None, None), "TOTP lines");
        assert_eq!(
            found[2].hotp,
            Some(42),
            "HOTP: the moving factor is the next counter"
        );
        assert_eq!((found[3].hotp, found[3].params.digits()), (Some(0), 8));
        let reasons: Vec<String> = skipped.iter().map(|(u, r)| format!("{u}: {r}")).collect();
        assert_eq!(reasons.len(), 3, "{reasons:#?}");
        assert!(reasons[0].contains("dave") && reasons[0].contains("PIN"));
        assert!(reasons[1].contains("erin") && reasons[1].contains("128 bits"));
        assert!(reasons[2].contains("second token"));
    }
}
