//! One user's fleet-wide login state, the value of `<prefix>state/<user>`.
//!
//! The same replay and throttle fields as the local state file, plus the recovery codes used
//! since the record was written: hosts may not write records (RBAC), so a recovery code is used
//! up by naming it here, in the same compare-and-swap that records the login. Not secret
//! (hosts write it); no code or hash appears, only a short digest of the used code's hash.
//!
//! ```toml
//! version = 1
//! last_accepted = 1764300030
//! failures = 0
//! locked_until = 0
//! used_recovery = ["3f1c0a9b2e7d4c51"]
//! generation = 3      # highest record generation a login has seen (absent: 0)
//! ```
#![forbid(unsafe_code)]

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::FleetError;
use crate::state::UserState;
/// Defined with the state it tags (`crate::state`), named here too for the fleet code.
use crate::state::hotp_tag;
use crate::store::UserRecord;

const VERSION: u32 = 1;
const MAX_USED: usize = 64;
/// Largest state value parsed, like the local state file's cap: what ecs-mfa writes stays far
/// below it (64 used recovery codes and every grace mark: under 2 KiB). A bigger value is not
/// ecs-mfa's (a hostile host can write up to etcd's request limit): refused before parsing.
pub const MAX_STATE_BYTES: usize = 4096;

/// The fleet state of one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetState {
    /// Replay mark, failures, lockout.
    pub login: UserState,
    /// Digests ([`recovery_id`]) of the recovery codes used since the record was written.
    pub used_recovery: Vec<String>,
    /// HOTP tokens: the next counter, with a 64-bit tag of the token's secret (a reset to a
    /// new token makes it stale; hosts cannot write the record's counter).
    pub hotp: Option<(u64, u64)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: u32,
    last_accepted: u64,
    failures: u32,
    locked_until: u64,
    #[serde(default)]
    used_recovery: Vec<String>,
    #[serde(default)]
    grace: Vec<String>,
    #[serde(default)]
    hotp_resync: u64,
    #[serde(default)]
    hotp: Option<String>,
    #[serde(default)]
    generation: u64,
}

/// The name a used recovery code goes by in the state: 16 hex digits of SHA-256 of its
/// Argon2 hash string (which has its own random salt).
pub fn recovery_id(hash: &str) -> String {
    let digest = Sha256::digest(hash.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl FleetState {
    /// Parses a stored value; an absent key is the default state.
    pub fn parse(bytes: &[u8], key: &str) -> Result<Self, FleetError> {
        let bad =
            |why: String| FleetError::BadValue(format!("{key}: not an ecs-mfa state ({why})"));
        if bytes.len() > MAX_STATE_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_STATE_BYTES} ecs-mfa ever writes",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8".into()))?;
        let raw: Raw = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        if raw.version != VERSION {
            return Err(bad(format!("version {}", raw.version)));
        }
        if raw.used_recovery.len() > MAX_USED
            || raw
                .used_recovery
                .iter()
                .any(|id| id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("bad used_recovery".into()));
        }
        let mut login = UserState::default();
        login.last_accepted = raw.last_accepted;
        login.failures = raw.failures;
        login.locked_until = raw.locked_until;
        login.grace = crate::state::Grace::from_strings(&raw.grace).map_err(bad)?;
        login.hotp_resync = raw.hotp_resync;
        login.generation = raw.generation;
        let hotp = match raw.hotp {
            None => None,
            Some(text) => {
                let (tag, next) = text.split_once(':').ok_or_else(|| bad("bad hotp".into()))?;
                Some((
                    u64::from_str_radix(tag, 16).map_err(|_| bad("bad hotp".into()))?,
                    next.parse().map_err(|_| bad("bad hotp".into()))?,
                ))
            }
        };
        Ok(Self {
            login,
            used_recovery: raw.used_recovery,
            hotp,
        })
    }

    /// The stored text.
    pub fn to_text(&self) -> String {
        let used: Vec<String> = self
            .used_recovery
            .iter()
            .map(|id| format!("\"{id}\""))
            .collect();
        format!(
            "version = {VERSION}\nlast_accepted = {}\nfailures = {}\nlocked_until = {}\nused_recovery = [{}]\ngrace = {}\nhotp_resync = {}\n{}{}",
            self.login.last_accepted,
            self.login.failures,
            self.login.locked_until,
            used.join(", "),
            self.login.grace.to_toml_array(),
            self.login.hotp_resync,
            // Only when set: servers from before it can still read the value until then.
            match self.login.generation {
                0 => String::new(),
                g => format!("generation = {g}\n"),
            },
            match self.hotp {
                Some((tag, next)) => format!("hotp = \"{tag:016x}:{next}\"\n"),
                None => String::new(),
            }
        )
    }

    /// Removes the used recovery codes from `record` (what the user can still use), forgets
    /// used codes that are no longer in the record (regenerated since), and moves an HOTP
    /// record's counter to where the fleet's logins left it.
    pub fn apply_to(&mut self, record: &mut UserRecord) {
        if let (Some(counter), Some((tag, next))) = (&mut record.hotp, self.hotp)
            && tag == hotp_tag(record.secret.as_bytes())
        {
            *counter = (*counter).max(next);
        }
        let ids: Vec<String> = record
            .recovery_codes
            .iter()
            .map(|h| recovery_id(h))
            .collect();
        self.used_recovery.retain(|id| ids.contains(id));
        let used = &self.used_recovery;
        let mut i = 0;
        record.recovery_codes.retain(|_| {
            let keep = !used.contains(&ids[i]);
            i += 1;
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::totp::{SecretKey, TotpParams};
    use crate::user_name::UserName;

    #[test]
    fn state_round_trips_and_rejects_junk() {
        let mut st = FleetState::default();
        st.login.record_success(90);
        st.used_recovery.push(recovery_id("$argon2id$x"));
        let text = st.to_text();
        assert_eq!(FleetState::parse(text.as_bytes(), "k").unwrap(), st);
        for junk in [
            "",
            "version = 2\nlast_accepted = 0\nfailures = 0\nlocked_until = 0\n",
            "x = 1",
            "version = 1\nlast_accepted = 0\nfailures = 0\nlocked_until = 0\nused_recovery = [\"zz\"]\n",
        ] {
            assert!(FleetState::parse(junk.as_bytes(), "k").is_err(), "{junk:?}");
        }
    }

    #[test]
    fn an_oversize_state_value_is_refused_before_parsing() {
        let st = FleetState {
            used_recovery: (0..MAX_USED).map(|i| format!("{i:016x}")).collect(),
            ..FleetState::default()
        };
        let full = st.to_text();
        assert!(full.len() < MAX_STATE_BYTES / 2, "{} bytes", full.len());
        let padded = format!("{full}{}", "#".repeat(MAX_STATE_BYTES));
        let err = FleetState::parse(padded.as_bytes(), "k").unwrap_err();
        assert!(
            matches!(&err, FleetError::BadValue(why) if why.contains("more than the 4096")),
            "{err}"
        );
    }

    #[test]
    fn used_codes_leave_the_record_and_stale_ones_are_forgotten() {
        let mut record = UserRecord {
            user: UserName::parse("alice").unwrap(),
            secret: SecretKey::from_bytes(vec![1; 20]).unwrap(),
            params: TotpParams::default(),
            created: 1,
            issuer: "t".into(),
            recovery_codes: vec!["h1".into(), "h2".into(), "h3".into()],
            origin: crate::store::record::Origin::Admin,
            hotp: None,
            generation: 0,
            person: None,
            keys: Vec::new(),
        };
        let mut st = FleetState {
            used_recovery: vec![recovery_id("h2"), recovery_id("gone")],
            ..FleetState::default()
        };
        st.apply_to(&mut record);
        assert_eq!(
            record.recovery_codes,
            vec!["h1".to_string(), "h3".to_string()]
        );
        assert_eq!(st.used_recovery, vec![recovery_id("h2")]);
    }
}
