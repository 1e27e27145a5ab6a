//! `enroll`, `reset` and `show`: new secret, QR code, confirmation, atomic save.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use pam_ecs_mfa::backend::States;
use pam_ecs_mfa::recovery::{self, RecoveryCode};
use pam_ecs_mfa::store::{SaveMode, UserRecord};
use pam_ecs_mfa::totp::{self, Algorithm, SecretKey, TotpParams, Verification};
use pam_ecs_mfa::user_name::UserName;
use zeroize::Zeroizing;

use crate::qr::QrStyle;
use crate::{Exit, Failure, Global, log_change, store_failure, target_user, unix_now};

/// Confirmation attempts before giving up (nothing is written then).
const CONFIRM_ATTEMPTS: u32 = 3;

/// `enroll` creates, `reset` replaces an existing enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enroll,
    Reset,
}

#[derive(clap::Args)]
pub struct EnrollArgs {
    /// Account to enroll (default: SUDO_USER when run through sudo; root is never implied).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A shared account (root, deploy): the person this token is for; each person has their
    /// own secret, recovery codes and lockout (README "Shared accounts").
    #[arg(long, value_name = "NAME")]
    person: Option<String>,
    /// Bind the token to this SSH key: a login with it uses this token and no other. A public
    /// key file, an authorized_keys line, or a fingerprint (`ssh-keygen -l`). Repeat for
    /// several. reset keeps the keys bound unless --key is given.
    #[arg(long, value_name = "KEY")]
    key: Vec<String>,
    /// Issuer shown in the authenticator app (default: `issuer` in the config file, else this
    /// host's name).
    #[arg(long, value_name = "TEXT")]
    issuer: Option<String>,
    /// HMAC algorithm. Only SHA1 works with every app.
    #[arg(long, value_name = "ALG", default_value = "SHA1", value_parser = parse_algorithm)]
    algorithm: Algorithm,
    /// Digits per code: 6 or 8.
    #[arg(long, default_value_t = 6, value_parser = parse_digits)]
    digits: u8,
    /// Seconds per code: 30 or 60.
    #[arg(long, default_value_t = 30, value_parser = parse_period)]
    period: u64,
    /// QR code style (default: utf8 on a terminal, none otherwise).
    #[arg(long, value_enum, value_name = "STYLE")]
    qr: Option<QrStyle>,
    /// Also write the QR code as a PNG image (mode 0600) a phone can scan from a screen.
    #[arg(long, value_name = "FILE")]
    qr_png: Option<PathBuf>,
    /// Save without asking for a first code from the app.
    #[arg(long)]
    no_confirm: bool,
    /// Replace an existing enrollment (the old secret stops working at once).
    #[arg(long)]
    force: bool,
    /// A counter-based token (HOTP, RFC 4226: hardware tokens such as YubiKey OATH-HOTP, and
    /// apps that support it) instead of a time-based one; --period does not apply.
    #[arg(long)]
    hotp: bool,
    /// With --no-confirm, accept parameters other than SHA1/6/30 that many apps ignore.
    #[arg(long)]
    force_params: bool,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// Account to show (default: SUDO_USER).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A shared account: whose token to show.
    #[arg(long, value_name = "NAME")]
    person: Option<String>,
    /// QR code style (default: utf8 on a terminal, none otherwise).
    #[arg(long, value_enum, value_name = "STYLE")]
    qr: Option<QrStyle>,
    /// Also write the QR code as a PNG image (mode 0600).
    #[arg(long, value_name = "FILE")]
    qr_png: Option<PathBuf>,
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse()
        .map_err(|_| "expected SHA1, SHA256 or SHA512".to_string())
}

fn parse_digits(s: &str) -> Result<u8, String> {
    s.parse()
        .ok()
        .filter(|d| TotpParams::DIGITS.contains(d))
        .ok_or_else(|| format!("expected {}", one_of(&TotpParams::DIGITS)))
}

fn parse_period(s: &str) -> Result<u64, String> {
    s.parse()
        .ok()
        .filter(|p| TotpParams::PERIODS.contains(p))
        .ok_or_else(|| format!("expected {}", one_of(&TotpParams::PERIODS)))
}

/// `6 or 8` for the values a parameter may take.
fn one_of<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

pub fn run(g: &Global, args: EnrollArgs, mode: Mode) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let policy = g.policy()?;
    let store = g.enrollments(&policy)?;
    let person = crate::admin::parse_person(args.person.as_deref())?;
    let keys = crate::people::parse_keys(&args.key)?;
    let (enrolled, existing) = may_write(&store, &user, person.as_ref(), mode, args.force)?;
    let params = TotpParams::new(args.algorithm, args.digits, args.period)
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    check_app_support(params, args.no_confirm, args.force_params)?;
    let (codes, hashes) =
        recovery::generate().map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
    let mut record = new_record(&policy, &args, &user, params, hashes)?;
    // A reset keeps the token's person and keys (unless --key gives new ones): the keys it
    // is bound to when the reset is written, which may be after a long wait at the prompt.
    let save_mode = match mode {
        Mode::Reset => SaveMode::Reset {
            keep_keys: keys.is_empty(),
        },
        // `enroll --force` over a token that is there: a reset of it.
        Mode::Enroll if args.force && existing.is_some() => SaveMode::Reset {
            keep_keys: keys.is_empty(),
        },
        Mode::Enroll => SaveMode::replacing(args.force),
    };
    record.person = existing.as_ref().map_or(person, |t| t.person.clone());
    record.keys = match (keys.is_empty(), &existing) {
        (true, Some(token)) => token.keys.clone(),
        _ => keys,
    };
    refuse_before_showing(&store, &record)?;
    let uri = uri_of(&record);
    if let Some(path) = &args.qr_png {
        crate::qr::write_png(&uri, path)?;
    }
    // --json is one object (scripts use it with --no-confirm); on a terminal the recovery codes
    // come only after the first code is confirmed, so none are shown that could be void.
    if g.json {
        print_json(&record, &uri, Some(&codes));
    } else {
        print_human("Enrolling", &record, &uri, pick_style(args.qr))?;
    }
    let confirmed_step = match (args.no_confirm, record.hotp) {
        (true, _) => None,
        (false, None) => Some(confirm(&record)?),
        // HOTP: the confirmed code's counter is used; the record starts after it.
        (false, Some(_)) => {
            record.hotp = Some(confirm_hotp(&record, policy.hotp_window)?);
            None
        }
    };
    if !g.json {
        print_recovery_codes(&codes);
    }
    store
        .save(&policy, &record, save_mode)
        .map_err(|e| store_failure(&user, e))?;
    reset_state(&store.states(&policy), &record.owner(), confirmed_step);
    let action = match (mode, enrolled) {
        (Mode::Reset, _) | (Mode::Enroll, true) => "reset",
        (Mode::Enroll, false) => "enroll",
    };
    let who = record.person.as_ref().map_or_else(String::new, |p| {
        format!("person={p} keys={} ", record.keys.len())
    });
    log_change(
        action,
        &user,
        &format!(
            "{who}algorithm={} digits={} period={} confirmed={}",
            params.algorithm(),
            params.digits(),
            params.period(),
            confirmed_step.is_some()
        ),
    );
    if !g.json {
        match &record.person {
            Some(p) => outln!(
                "Enrolled {p} on {user} (bound to {} key(s)). Record: {}",
                record.keys.len(),
                store.location(&user)
            ),
            None => outln!("Enrolled {user}. Record: {}", store.location(&user)),
        }
    }
    Ok(())
}

/// The rules of shared accounts (a key bound to another person, a second token bound to no
/// key), checked before the secret is shown: a token the save would refuse must not be
/// scanned into a phone and confirmed first. The save checks again under the lock.
fn refuse_before_showing(
    store: &pam_ecs_mfa::backend::Enrollments,
    record: &UserRecord,
) -> Result<(), Failure> {
    let Ok(mut account) = store.load_account(&record.user) else {
        return Ok(()); // no record (or an invalid one, which a reset replaces): nothing to check
    };
    account.put(record.clone()).map_err(|e| {
        let why = pam_ecs_mfa::store::refusal(e);
        store_failure(&record.user, pam_ecs_mfa::store::StoreError::Refused(why))
    })
}

/// Whether the token `person` names on `user` exists (no person: whether the account has a
/// record), and that token (to keep its person and keys on a reset), when `mode` may write
/// it: `enroll` needs none (or `--force`), `reset` needs one. Warns when no local account has
/// that name.
fn may_write(
    store: &pam_ecs_mfa::backend::Enrollments,
    user: &UserName,
    person: Option<&pam_ecs_mfa::user_name::Person>,
    mode: Mode,
    force: bool,
) -> Result<(bool, Option<UserRecord>), Failure> {
    let existing = match store.load_token(user, person) {
        Ok(token) => Some(token),
        Err(pam_ecs_mfa::backend::Error::Store(
            pam_ecs_mfa::store::StoreError::NotEnrolled
            | pam_ecs_mfa::store::StoreError::NoSuchPerson(_),
        )) => None,
        // Several people and none named: enroll adds one (named by --person), reset must name.
        Err(
            e @ pam_ecs_mfa::backend::Error::Store(pam_ecs_mfa::store::StoreError::PersonNeeded(_)),
        ) if mode == Mode::Reset || person.is_none() => {
            return Err(store_failure(user, e));
        }
        Err(_) => None,
    };
    let enrolled = match person {
        Some(_) => existing.is_some(),
        None => store
            .is_enrolled(user)
            .map_err(|e| store_failure(user, e))?,
    };
    match mode {
        Mode::Enroll if enrolled && !force => {
            return Err(store_failure(
                user,
                pam_ecs_mfa::store::StoreError::AlreadyEnrolled,
            ));
        }
        Mode::Reset if !enrolled => {
            return Err(store_failure(
                user,
                pam_ecs_mfa::store::StoreError::NotEnrolled,
            ));
        }
        _ => {}
    }
    if nix::unistd::User::from_name(user.as_str())
        .ok()
        .flatten()
        .is_none()
    {
        errln!("mfa-enroll: warning: no local account named '{user}' (enrolling anyway)");
    }
    Ok((enrolled, existing))
}

/// Parameters many apps ignore: a warning, or without a confirmation (which would catch wrong
/// codes) a usage error unless `--force-params`.
fn check_app_support(
    params: TotpParams,
    no_confirm: bool,
    force_params: bool,
) -> Result<(), Failure> {
    let Some((honour, ignore)) = crate::apps::support_for(params) else {
        return Ok(());
    };
    let chosen = format!(
        "{}, {} digits, {} s",
        params.algorithm(),
        params.digits(),
        params.period()
    );
    let known = if honour.is_empty() {
        "no app is known to honour all of them".to_string()
    } else {
        format!("known to honour them: {}", honour.join(", "))
    };
    if no_confirm && !force_params {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "{chosen}: many apps ignore these parameters ({}) and would show codes that never work; \
                 {known}. Without a confirmation nothing would catch that: drop --no-confirm, or add \
                 --force-params (docs/authenticator-apps.md)",
                ignore.join(", ")
            ),
        ));
    }
    errln!(
        "mfa-enroll: warning: {chosen}: {} ignore these parameters and would show wrong codes; {known} (docs/authenticator-apps.md)",
        ignore.join(", ")
    );
    Ok(())
}

/// A new record for `user` with a fresh secret (not saved).
fn new_record(
    policy: &pam_ecs_mfa::policy::Policy,
    args: &EnrollArgs,
    user: &UserName,
    params: TotpParams,
    hashes: Vec<String>,
) -> Result<UserRecord, Failure> {
    let secret = new_secret(args.algorithm)?;
    let default_issuer = policy
        .issuer
        .clone()
        .unwrap_or_else(pam_ecs_mfa::otpauth::host_name);
    let issuer =
        pam_ecs_mfa::otpauth::clean_name(args.issuer.as_deref().unwrap_or(&default_issuer));
    if args.hotp {
        errln!(
            "mfa-enroll: note: HOTP (counter) tokens work with hardware tokens and apps that support them (Google Authenticator, FreeOTP); Microsoft Authenticator does not"
        );
    }
    Ok(UserRecord {
        user: user.clone(),
        secret,
        params,
        created: unix_now()?,
        issuer,
        recovery_codes: hashes,
        origin: pam_ecs_mfa::store::record::Origin::Admin,
        hotp: args.hotp.then_some(0),
        generation: 0,
        person: None,
        keys: Vec::new(),
    })
}

/// `show`: the same QR code, URI and secret as at enrollment (recovery codes cannot be shown:
/// only their hashes exist).
pub fn show(g: &Global, args: ShowArgs) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let person = crate::admin::parse_person(args.person.as_deref())?;
    let record = g
        .enrollments(&g.policy()?)?
        .load_token(&user, person.as_ref())
        .map_err(|e| store_failure(&user, e))?;
    let uri = uri_of(&record);
    if let Some(path) = &args.qr_png {
        crate::qr::write_png(&uri, path)?;
    }
    if g.json {
        print_json(&record, &uri, None);
    } else {
        print_human("Enrollment of", &record, &uri, pick_style(args.qr))?;
    }
    log_change("show", &user, "");
    Ok(())
}

fn pick_style(explicit: Option<QrStyle>) -> QrStyle {
    explicit.unwrap_or(if std::io::stdout().is_terminal() {
        QrStyle::Utf8
    } else {
        QrStyle::None
    })
}

/// The otpauth URI of `record`, labelled `issuer:user@host`.
fn uri_of(record: &UserRecord) -> Zeroizing<String> {
    pam_ecs_mfa::otpauth::record_uri(record)
}

fn new_secret(algorithm: Algorithm) -> Result<SecretKey, Failure> {
    let mut bytes = Zeroizing::new(vec![0u8; algorithm.secret_len()]);
    getrandom::fill(&mut bytes)
        .map_err(|e| Failure::new(Exit::Failure, format!("no randomness from the OS: {e}")))?;
    SecretKey::from_bytes(bytes.to_vec()).map_err(|e| Failure::new(Exit::Failure, e.to_string()))
}

/// Asks for the current code until one verifies (at most [`CONFIRM_ATTEMPTS`] times).
/// Returns the start time of the confirmed step, so that code cannot be replayed for a login.
fn confirm(record: &UserRecord) -> Result<u64, Failure> {
    ask_until_valid(
        record,
        "app",
        "Check the phone's clock and try again.",
        |code, now| match totp::verify(&record.secret, record.params, code, now, 1, 0) {
            Verification::Accepted { step, .. } => Some(record.params.step_start(step)),
            _ => None,
        },
    )
}

/// Like [`confirm`] for an HOTP token: the first code from it (any of the first `window`
/// counters); returns the counter after it.
fn confirm_hotp(record: &UserRecord, window: u8) -> Result<u64, Failure> {
    let from = record.hotp.unwrap_or(0);
    ask_until_valid(
        record,
        "token",
        "Press the token (or refresh the app) and try again.",
        |code, _| {
            totp::hotp_verify(&record.secret, record.params, code, from, u64::from(window))
                .map(|counter| counter + 1)
        },
    )
}

/// The confirmation prompt: reads a code from stdin until `check` accepts it (at most
/// [`CONFIRM_ATTEMPTS`] times); what `check` returned.
fn ask_until_valid(
    record: &UserRecord,
    device: &str,
    retry_hint: &str,
    check: impl Fn(&totp::TypedCode, u64) -> Option<u64>,
) -> Result<u64, Failure> {
    let stdin = std::io::stdin();
    for attempt in 1..=CONFIRM_ATTEMPTS {
        crate::out::warn(format_args!(
            "Enter the {}-digit code shown by the {device} to confirm: ",
            record.params.digits()
        ));
        let _ = std::io::stderr().flush();
        let mut line = Zeroizing::new(String::new());
        let read = stdin.lock().read_line(&mut line).map_err(|e| {
            Failure::new(
                Exit::NotConfirmed,
                format!("cannot read the code: {e}; nothing was written"),
            )
        })?;
        if read == 0 {
            return Err(Failure::new(
                Exit::NotConfirmed,
                "no code entered; nothing was written (use --no-confirm to skip this step)",
            ));
        }
        let now = unix_now()?;
        if let Some(code) = totp::normalize_code(line.as_bytes(), record.params.digits())
            && let Some(confirmed) = check(&code, now)
        {
            return Ok(confirmed);
        }
        if attempt < CONFIRM_ATTEMPTS {
            errln!("That code is not valid. {retry_hint}");
        }
    }
    Err(Failure::new(
        Exit::NotConfirmed,
        "no valid code after 3 attempts; nothing was written",
    ))
}

/// Clears the user's failures and lockout and, when a code was confirmed, marks its step as
/// used. The replay mark is kept (a code used before must never work again). Best effort:
/// enrollment succeeded already, and missing state only means the confirmation code could be
/// used once more within its 30 seconds.
fn reset_state(state: &States<'_>, owner: &pam_ecs_mfa::state::Owner, confirmed: Option<u64>) {
    let result = state.transact(owner, |st| {
        st.forget_failures();
        // A new secret: no login made with the old one spares anyone a code.
        st.grace.clear();
        if let Some(step_start) = confirmed {
            st.record_success(step_start);
        }
    });
    if let Err(e) = result {
        errln!("mfa-enroll: warning: could not reset login state: {e}");
    }
}

fn print_json(record: &UserRecord, uri: &str, codes: Option<&[RecoveryCode]>) {
    let secret = record.secret.to_base32();
    let mut value = serde_json::json!({
        "user": record.user.as_str(),
        "person": record.person.as_ref().map(|p| p.as_str()),
        "keys": record.keys,
        "secret": secret.as_str(),
        "otpauth_uri": uri,
        "algorithm": record.params.algorithm().as_str(),
        "digits": record.params.digits(),
        "period": record.params.period(),
        "issuer": record.issuer,
        "type": if record.hotp.is_some() { "hotp" } else { "totp" },
    });
    if let Some(counter) = record.hotp {
        value["counter"] = counter.into();
    }
    if let Some(codes) = codes {
        value["recovery_codes"] = codes.iter().map(ToString::to_string).collect();
    }
    let text = Zeroizing::new(value.to_string());
    drop(value);
    outln!("{}", text.as_str());
}

/// The QR code, URI and secret under a heading: "Enrolling" (enroll, reset) or
/// "Enrollment of" (show, which changes nothing).
fn print_human(
    heading: &str,
    record: &UserRecord,
    uri: &str,
    style: QrStyle,
) -> Result<(), Failure> {
    let p = record.params;
    outln!(
        "{heading} {} for {} ({}, {} digits, {} s)\n",
        record.person.as_ref().map_or_else(
            || record.user.to_string(),
            |p| format!("{p} on {}", record.user)
        ),
        record.issuer,
        p.algorithm(),
        p.digits(),
        p.period()
    );
    if style != QrStyle::None {
        let code = crate::qr::render(uri, style)
            .map_err(|e| Failure::new(Exit::Failure, format!("cannot draw the QR code: {e}")))?;
        out!("{code}");
        outln!();
        outln!("Scan the QR code with {},", apps_for(p));
        outln!("or add the account by hand:");
    } else {
        outln!("Add the account in {}:", apps_for(p));
    }
    let grouped = record.secret.to_grouped_base32();
    outln!("  URI:    {uri}");
    outln!("  Secret: {}", grouped.as_str());
    match record.hotp {
        None => outln!(
            "  Type:   time-based, {}, {} digits, {} seconds",
            p.algorithm(),
            p.digits(),
            p.period()
        ),
        Some(counter) => outln!(
            "  Type:   counter-based (HOTP), {}, {} digits, counter {counter}",
            p.algorithm(),
            p.digits()
        ),
    }
    outln!();
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Prints the codes once, two per line, with what they are for.
pub fn print_recovery_codes(codes: &[RecoveryCode]) {
    outln!("Recovery codes: each works once in place of a verification code, for when the");
    outln!("phone is lost. Keep them offline; they are stored only as hashes and not shown again.");
    for pair in codes.chunks(2) {
        let line: Vec<String> = pair.iter().map(ToString::to_string).collect();
        outln!("  {}", line.join("    "));
    }
    outln!();
}

/// Which apps to name: any common one for SHA1/6/30, else those known to honour the parameters.
fn apps_for(params: TotpParams) -> String {
    match crate::apps::support_for(params) {
        None => "Google Authenticator, Microsoft Authenticator or Authy".to_string(),
        Some((honour, _)) if honour.is_empty() => {
            "an app that honours these parameters (docs/authenticator-apps.md)".to_string()
        }
        Some((honour, _)) => format!(
            "an app that honours these parameters ({})",
            honour.join(", ")
        ),
    }
}
