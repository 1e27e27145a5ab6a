//! Shared accounts: SSH keys given on the command line (`--key`), and `bind` / `unbind`, which
//! add a key to a person's token, move it from another person, or take it away.

use std::path::Path;

use pam_ecs_mfa::authorized_keys;
use pam_ecs_mfa::backend;
use pam_ecs_mfa::policy::KeyBinding;
use pam_ecs_mfa::state::Owner;
use pam_ecs_mfa::store::record::is_fingerprint;
use pam_ecs_mfa::store::{AccountRecord, StoreError};
use pam_ecs_mfa::user_name::Person;
use serde_json::json;

use crate::admin::parse_person;
use crate::{Exit, Failure, Global, log_change, store_failure, target_user};

#[derive(clap::Args)]
pub struct BindArgs {
    /// The shared account (default: SUDO_USER when run through sudo).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// The person whose token the key is (un)bound to.
    #[arg(long, value_name = "NAME")]
    person: String,
    /// The SSH key: a public key file (`id_ed25519.pub`), an `authorized_keys` line, or a
    /// fingerprint as `ssh-keygen -l` prints it (`SHA256:...`). Repeat for several.
    #[arg(long, value_name = "KEY", required = true)]
    key: Vec<String>,
    /// bind: take the key away from the person it is bound to now (without it, a key bound to
    /// another person of the account is an error).
    #[arg(long = "move")]
    move_key: bool,
}

/// The `SHA256:` fingerprint of `--key VALUE`: a fingerprint, an `authorized_keys` (or `.pub`)
/// line, or a file holding exactly one key.
pub fn parse_key(value: &str) -> Result<String, Failure> {
    let bad = |why: String| Failure::new(Exit::Usage, format!("--key: {why}"));
    if is_fingerprint(value) {
        // A typo or a cut-off paste would bind a fingerprint no key has.
        return match is_whole_sha256(value) {
            true => Ok(value.to_string()),
            false => Err(bad(format!(
                "{value}: not a whole SHA256: fingerprint (43 characters after SHA256:, as ssh-keygen -l prints it)"
            ))),
        };
    }
    if let Some(line) = authorized_keys::parse_line(value) {
        return Ok(line.fingerprint);
    }
    let path = Path::new(value);
    if !path.exists() {
        return Err(bad(
            "not a SHA256: fingerprint, a public key line, or an existing file".into(),
        ));
    }
    // The name may be anyone's (`--key /home/bob/.ssh/*.pub`): never raw on the terminal.
    let name: String = value
        .chars()
        .take(200)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    let text = read_small(path).map_err(|e| bad(format!("{name}: {e}")))?;
    let keys: Vec<_> = text
        .lines()
        .filter_map(authorized_keys::parse_line)
        .collect();
    match keys.as_slice() {
        [one] => Ok(one.fingerprint.clone()),
        [] => Err(bad(format!("{name}: no public key in it"))),
        many => Err(bad(format!(
            "{name}: {} keys in it; give one line, or its fingerprint (ssh-keygen -lf FILE)",
            many.len()
        ))),
    }
}

/// `SHA256:` and the unpadded base64 of 32 bytes.
fn is_whole_sha256(fingerprint: &str) -> bool {
    use base64ct::{Base64Unpadded, Encoding};
    fingerprint
        .strip_prefix("SHA256:")
        .and_then(|b64| Base64Unpadded::decode_vec(b64).ok())
        .is_some_and(|bytes| bytes.len() == 32)
}

/// A regular file's first [`authorized_keys::MAX_FILE_BYTES`]; never waits on a FIFO or a
/// device (opened non-blocking, then checked).
fn read_small(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(authorized_keys::MAX_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Every `--key`, as fingerprints, each once.
pub fn parse_keys(values: &[String]) -> Result<Vec<String>, Failure> {
    let mut keys: Vec<String> = Vec::new();
    for value in values {
        let key = parse_key(value)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// `bind` (`unbind: false`) and `unbind`.
pub fn run(g: &Global, args: BindArgs, unbind: bool) -> Result<(), Failure> {
    crate::require_root()?;
    let user = target_user(args.user.as_deref())?;
    let person = parse_person(Some(&args.person))?
        .ok_or_else(|| Failure::new(Exit::Usage, "--person is required"))?;
    let keys = parse_keys(&args.key)?;
    let policy = g.policy()?;
    let store = g.enrollments(&policy)?;
    let target = Some(&person).filter(|p| p.as_str() != user.as_str());
    let moved = store
        .update_account(&policy, &user, |account| {
            if account.token(target).is_none() {
                return Err(StoreError::NoSuchPerson(person.to_string()).into());
            }
            let mut moved = Vec::new();
            for key in &keys {
                if unbind {
                    let token = account.token_mut(target).ok_or(backend::Error::Store(
                        StoreError::NoSuchPerson(person.to_string()),
                    ))?;
                    if !token.keys.contains(key) {
                        return Err(usage(format!("{key} is not bound to {person}")));
                    }
                    token.keys.retain(|k| k != key);
                    continue;
                }
                if let Some(holder) = account.bound_to(key) {
                    let holder = holder.person.clone();
                    if holder.as_ref() == target {
                        continue;
                    }
                    let name = holder
                        .as_ref()
                        .map_or(user.as_str(), Person::as_str)
                        .to_string();
                    if !args.move_key {
                        return Err(usage(format!(
                            "{key} is bound to {name}; add --move to move it to {person}"
                        )));
                    }
                    if let Some(from) = account.token_mut(holder.as_ref()) {
                        from.keys.retain(|k| k != key);
                    }
                    moved.push((key.clone(), name, holder));
                }
                if let Some(token) = account.token_mut(target) {
                    token.keys.push(key.clone());
                }
            }
            account
                .check()
                .map_err(|error| usage(pam_ecs_mfa::store::refusal(error)))?;
            Ok(moved)
        })
        .map_err(|e| store_failure(&user, e))?;
    // A key taken from a token ends that token's grace periods (they may have been earned
    // with that key): the key given back later does not bring one back.
    let losers: Vec<Owner> = match unbind {
        true => vec![Owner::new(&user, target)],
        false => moved
            .iter()
            .map(|m| Owner::new(&user, m.2.as_ref()))
            .collect(),
    };
    let states = store.states(&policy);
    for owner in &losers {
        if let Err(e) = states.transact(owner, |st| st.grace.clear()) {
            errln!("mfa-enroll: {}: grace periods not ended: {e}", owner.stem());
        }
    }
    if let Ok(account) = store.load_account(&user) {
        note_keyless(&account, &losers, policy.key_binding);
    }
    let action = if unbind { "unbind" } else { "bind" };
    log_change(
        action,
        &user,
        &format!("person={person} keys={}", keys.join(",")),
    );
    if g.json {
        let moved: Vec<_> = moved
            .iter()
            .map(|(key, from, _)| json!({ "key": key, "from": from }))
            .collect();
        outln!(
            "{}",
            json!({ "user": user.as_str(), "person": person.as_str(), action: keys, "moved": moved })
        );
    } else {
        for (key, from, _) in &moved {
            outln!("Moved {key} from {from} to {person} on {user}.");
        }
        let verb = if unbind { "Unbound from" } else { "Bound to" };
        outln!("{verb} {person} on {user}: {}", keys.join(", "));
    }
    Ok(())
}

/// Names each token of `losers` that has no key left, with what it is used for now.
fn note_keyless(account: &AccountRecord, losers: &[Owner], binding: KeyBinding) {
    for owner in losers {
        if let Some(token) = account.token(owner.person())
            && token.keys.is_empty()
        {
            let user = owner.user();
            let name = owner.person().map_or(user.as_str(), Person::as_str);
            errln!(
                "mfa-enroll: note: {name} on {user} is now bound to no key: {}",
                keyless_token_use(binding, account, owner.person().is_none())
            );
        }
    }
}

/// What a token left without a key is used for (the account's only unbound token: see
/// `login::choose`), so that taking a person's last key never silently opens or closes a door.
fn keyless_token_use(binding: KeyBinding, account: &AccountRecord, own: bool) -> &'static str {
    let others_bound = account.tokens.iter().any(|t| !t.keys.is_empty());
    match binding {
        KeyBinding::Required => {
            "with key_binding = \"required\" no login uses it (bind a key, or remove it)"
        }
        KeyBinding::Fallback if own || !others_bound => {
            "with key_binding = \"fallback\" its code is asked of every login whose key is bound to no token (bind a key, or remove it)"
        }
        _ if others_bound => {
            "no login uses it while another token of the account is bound to a key (bind a key, or remove it)"
        }
        _ => {
            "no token of the account is bound to a key, so its code is asked of every login of the account"
        }
    }
}

fn usage(why: String) -> backend::Error {
    backend::Error::Refused(why)
}
