//! The fleet key and the sealed records.
//!
//! A record in etcd is the same TOML text as a local record file, encrypted with
//! XChaCha20-Poly1305 under the fleet key: etcd's data directory, its snapshots and backups, and
//! etcd operators without the key learn nothing about any secret. The associated data binds the
//! ciphertext to its etcd key (`<prefix>records/<user>`), so a sealed record copied to another
//! user's key does not open. The 24-byte nonce is random per write (safe at any volume).
//!
//! Value layout: `EMF1` | key id (8 bytes) | nonce (24) | ciphertext + tag (16).
//!
//! Key file (root-only, `0600`), written by `mfa-enroll fleet init`:
//! ```text
//! # ecs-mfa fleet key ...
//! ecs-mfa-fleet-key-v1 <base64 of 32 random bytes>
//! ```
//! Several key lines may be present during a rotation: the first seals, every one opens.
#![forbid(unsafe_code)]

use std::path::Path;

use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::FleetError;
use crate::secure_fs::{self, FileRules};

const MAGIC: &[u8; 4] = b"EMF1";
const KEY_LINE: &str = "ecs-mfa-fleet-key-v1 ";
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN + NONCE_LEN;

/// One 256-bit fleet key.
pub struct FleetKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetKey({})", self.id_hex())
    }
}

impl FleetKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let key = Zeroizing::new(bytes);
        let digest = Sha256::new()
            .chain_update(b"ecs-mfa fleet key id\0")
            .chain_update(key.as_slice())
            .finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Self { key, id }
    }

    /// A new random key (OS CSPRNG).
    pub fn generate() -> Result<Self, FleetError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut_slice())
            .map_err(|e| FleetError::LocalFile(format!("no randomness for a fleet key: {e}")))?;
        Ok(Self::from_bytes(*bytes))
    }

    /// The key's public identifier (not secret): shown by `fleet status` and `doctor`, and
    /// stored in every sealed value so a host with the wrong key says so.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// The key file line for this key.
    pub fn to_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{KEY_LINE}{}\n", Base64::encode_string(&*self.key)))
    }
}

/// The keys of a fleet key file: the first seals, all open.
#[derive(Debug)]
pub struct FleetKeys(Vec<FleetKey>);

impl FleetKeys {
    /// Reads the key file (root-owned, no group/other bits, one link).
    pub fn load(path: &Path) -> Result<Self, FleetError> {
        let bytes = secure_fs::read_file(path, FileRules::Private, 4096)
            .map_err(|e| FleetError::LocalFile(e.to_string()))?
            .ok_or_else(|| {
                FleetError::LocalFile(format!(
                    "{}: the fleet key file does not exist (mfa-enroll fleet init makes one; copy it to every host)",
                    path.display()
                ))
            })?;
        Self::parse(&bytes)
            .map_err(|why| FleetError::LocalFile(format!("{}: {why}", path.display())))
    }

    /// Parses key file text (never quoted in errors).
    pub fn parse(bytes: &[u8]) -> Result<Self, &'static str> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not a fleet key file")?;
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let b64 = line
                .strip_prefix(KEY_LINE)
                .ok_or("not a fleet key file (lines must start with ecs-mfa-fleet-key-v1)")?;
            let raw = Zeroizing::new(
                Base64::decode_vec(b64.trim()).map_err(|_| "a key line is not base64")?,
            );
            let bytes: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| "a key is not 32 bytes")?;
            keys.push(FleetKey::from_bytes(bytes));
        }
        if keys.is_empty() {
            return Err("no key in the fleet key file");
        }
        Ok(Self(keys))
    }

    /// A key set of one key.
    pub fn single(key: FleetKey) -> Self {
        Self(vec![key])
    }

    /// The key that seals new values.
    pub fn current(&self) -> &FleetKey {
        &self.0[0]
    }

    /// All keys, current first.
    pub fn all(&self) -> &[FleetKey] {
        &self.0
    }

    /// Seals `plain` for the etcd key `etcd_key`, with the current key and a random nonce.
    pub fn seal(&self, plain: &[u8], etcd_key: &str) -> Result<Vec<u8>, FleetError> {
        let key = self.current();
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| FleetError::LocalFile(format!("no randomness for a nonce: {e}")))?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.key.as_slice())
            .map_err(|_| FleetError::LocalFile("bad fleet key length".into()))?;
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad(etcd_key),
                },
            )
            .map_err(|_| FleetError::BadValue("sealing failed".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value read from `etcd_key`. Fails (never panics) on anything that is not a value
    /// sealed for exactly this key with one of these fleet keys.
    pub fn open(&self, value: &[u8], etcd_key: &str) -> Result<Zeroizing<Vec<u8>>, FleetError> {
        if value.len() < HEADER_LEN + 16 || &value[..MAGIC.len()] != MAGIC {
            return Err(FleetError::BadValue(format!(
                "{etcd_key}: not a sealed ecs-mfa record (written by something else?)"
            )));
        }
        let id = &value[MAGIC.len()..MAGIC.len() + ID_LEN];
        let Some(key) = self.0.iter().find(|k| k.id == id) else {
            return Err(FleetError::BadValue(format!(
                "{etcd_key}: sealed with fleet key {}, this host has {}: copy the fleet's current key file here",
                hex(id),
                self.0
                    .iter()
                    .map(FleetKey::id_hex)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let nonce: [u8; NONCE_LEN] = value[MAGIC.len() + ID_LEN..HEADER_LEN]
            .try_into()
            .map_err(|_| FleetError::BadValue("nonce".into()))?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.key.as_slice())
            .map_err(|_| FleetError::LocalFile("bad fleet key length".into()))?;
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &value[HEADER_LEN..],
                    aad: &aad(etcd_key),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                FleetError::BadValue(format!(
                    "{etcd_key}: the sealed record does not open (tampered with, or copied from another user's key)"
                ))
            })
    }
}

/// The fleet key id a sealed value names, if it is one.
pub fn sealed_with(value: &[u8]) -> Option<String> {
    (value.len() >= HEADER_LEN && &value[..MAGIC.len()] == MAGIC)
        .then(|| hex(&value[MAGIC.len()..MAGIC.len() + ID_LEN]))
}

fn aad(etcd_key: &str) -> Vec<u8> {
    let mut aad = b"ecs-mfa record v1\0".to_vec();
    aad.extend_from_slice(etcd_key.as_bytes());
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_key_and_fleet_key() {
        let keys = FleetKeys::single(FleetKey::generate().unwrap());
        let sealed = keys
            .seal(b"secret = \"JBSWY3DP\"", "/p/records/alice")
            .unwrap();
        assert!(
            !sealed.windows(8).any(|w| w == b"JBSWY3DP"),
            "no clear text"
        );
        assert_eq!(
            &*keys.open(&sealed, "/p/records/alice").unwrap(),
            b"secret = \"JBSWY3DP\""
        );
        assert!(matches!(
            keys.open(&sealed, "/p/records/mallory"),
            Err(FleetError::BadValue(_))
        ));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(keys.open(&flipped, "/p/records/alice").is_err());
        let other = FleetKeys::single(FleetKey::generate().unwrap());
        let err = other.open(&sealed, "/p/records/alice").unwrap_err();
        assert!(err.to_string().contains(&keys.current().id_hex()));
        assert!(keys.open(b"garbage", "/p/records/alice").is_err());
        assert!(keys.open(&[], "/p/records/alice").is_err());
    }

    #[test]
    fn a_key_file_round_trips_and_rotation_opens_old_values() {
        let old = FleetKey::generate().unwrap();
        let new = FleetKey::generate().unwrap();
        let old_line = old.to_line();
        let sealed_old = FleetKeys::parse(old_line.as_bytes())
            .unwrap()
            .seal(b"x", "/k")
            .unwrap();
        let both = format!("# rotation\n{}{}", &*new.to_line(), &*old_line);
        let keys = FleetKeys::parse(both.as_bytes()).unwrap();
        assert_eq!(keys.current().id_hex(), new.id_hex());
        assert_eq!(&*keys.open(&sealed_old, "/k").unwrap(), b"x");
        assert_eq!(sealed_with(&sealed_old), Some(old.id_hex()));
        for bad in [
            "",
            "# only\n",
            "ecs-mfa-fleet-key-v1 !!\n",
            "ecs-mfa-fleet-key-v1 AAAA\n",
            "key\n",
        ] {
            assert!(FleetKeys::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }
}
