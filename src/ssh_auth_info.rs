//! sshd's `SSH_AUTH_INFO_0` (the PAM environment, OpenSSH >= 7.8): one `method [details]` line
//! per authentication method completed earlier in this connection. For `publickey` the details
//! are the accepted key as `authorized_keys` writes it (`ssh-ed25519 AAAA...`), or, when the
//! client logged in with an OpenSSH user certificate, the certificate
//! (`ssh-ed25519-cert-v01@openssh.com AAAA...`).
//!
//! A key is named by its `SHA256:` fingerprint exactly as `ssh-keygen -l` prints it. For a
//! certificate that is the fingerprint of the certified key inside it (ssh-keygen hashes the
//! plain key, not the certificate), so a key and every certificate issued for it are one key to
//! whatever binds to keys (enrollment at login, grace). The certificate's key id, serial,
//! principals and signing CA go to the audit line only.
//!
//! The text comes from sshd, but it describes what a client sent, so it is parsed as hostile:
//! bounded sizes, checked lengths, no panics (see PROTOCOL.certkeys in OpenSSH for the format).
#![forbid(unsafe_code)]

use base64ct::{Base64, Base64Unpadded, Encoding};
use sha2::{Digest, Sha256};

/// Longest base64 key text read (an RSA-16384 certificate is about 5 KiB).
const MAX_KEY_TEXT: usize = 16 * 1024;
/// Lines of `SSH_AUTH_INFO_0` read (one per completed method; sshd allows few methods).
const MAX_LINES: usize = 32;
/// Longest key id or principals list shown in the audit line.
const MAX_SHOWN: usize = 64;

/// The methods sshd reports as completed, as far as this module uses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshAuthInfo {
    /// The keys of the `publickey` lines, in order (sshd may require two).
    pub keys: Vec<AcceptedKey>,
    /// A `publickey` method completed (a `publickey` line is there, even one whose key this
    /// module cannot read): what `first_factor = publickey` asks for.
    pub publickey: bool,
}

/// A key sshd accepted in this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedKey {
    /// `SHA256:...` as `ssh-keygen -l` prints it (of the certified key for a certificate).
    pub fingerprint: String,
    /// Present when the client logged in with a certificate of a type this module knows.
    pub certificate: Option<Certificate>,
}

/// What an OpenSSH certificate says about itself, cleaned for a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The key id the CA wrote, printable ASCII without quotes or spaces, at most 64 chars.
    pub key_id: String,
    /// The CA's serial number of this certificate.
    pub serial: u64,
    /// The principals, comma-separated, cleaned like `key_id`; empty: valid for any user.
    pub principals: String,
    /// `SHA256:` fingerprint of the signing CA key.
    pub ca_fingerprint: String,
}

impl SshAuthInfo {
    /// Reads the `publickey` lines of `info` (the first [`MAX_LINES`]); keys it cannot read
    /// are skipped. The hook parses the variable once; everything else uses the result.
    pub fn parse(info: &str) -> Self {
        let lines: Vec<&str> = info
            .lines()
            .take(MAX_LINES)
            .filter_map(|l| l.strip_prefix("publickey "))
            .collect();
        Self {
            publickey: !lines.is_empty(),
            keys: lines.into_iter().filter_map(AcceptedKey::parse).collect(),
        }
    }

    /// The first accepted key (the one grace and enrollment at login bind to).
    pub fn first_key(&self) -> Option<&AcceptedKey> {
        self.keys.first()
    }

    /// The audit note of the first key when it is a certificate (see
    /// [`AcceptedKey::certificate_note`]).
    pub fn certificate_note(&self) -> Option<String> {
        self.first_key()?.certificate_note()
    }
}

impl AcceptedKey {
    /// Parses `type base64-blob [comment]` (the rest of a `publickey ` line). A certificate of
    /// a type this module does not know, or one it cannot read, is named by the hash of its
    /// whole blob (the former behaviour: still one name per certificate, just not ssh-keygen's).
    pub fn parse(key_text: &str) -> Option<Self> {
        let blob = key_text.split_whitespace().nth(1)?;
        if blob.len() > MAX_KEY_TEXT {
            return None;
        }
        let bytes = Base64::decode_vec(blob).ok()?;
        Some(match parse_certificate(&bytes) {
            Some((plain, certificate)) => Self {
                fingerprint: fingerprint_of(&plain),
                certificate: Some(certificate),
            },
            None => Self {
                fingerprint: fingerprint_of(&bytes),
                certificate: None,
            },
        })
    }

    /// For the audit line: the certificate's key id, serial, principals, CA and the key it
    /// certifies; `None` for a plain key.
    pub fn certificate_note(&self) -> Option<String> {
        let c = self.certificate.as_ref()?;
        Some(format!(
            "certificate id={} serial={} principals={} ca={} key={}",
            c.key_id,
            c.serial,
            if c.principals.is_empty() {
                "(any)"
            } else {
                &c.principals
            },
            c.ca_fingerprint,
            self.fingerprint
        ))
    }
}

/// `SHA256:<unpadded base64>` of a key blob, as `ssh-keygen -l` prints it.
fn fingerprint_of(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&Sha256::digest(blob))
    )
}

/// The certificate types this module reads: certificate type, plain key type, and how many
/// length-prefixed public fields follow the nonce (`string` and `mpint` are both a u32 length
/// and bytes, and the plain key blob holds the same fields in the same encoding).
const CERT_TYPES: [(&str, &str, usize); 8] = [
    ("ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", 1),
    (
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256",
        2,
    ),
    (
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384",
        2,
    ),
    (
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521",
        2,
    ),
    ("ssh-rsa-cert-v01@openssh.com", "ssh-rsa", 2),
    ("ssh-dss-cert-v01@openssh.com", "ssh-dss", 4),
    (
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        3,
    ),
    (
        "sk-ssh-ed25519-cert-v01@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        2,
    ),
];

/// The plain public key blob inside an OpenSSH certificate blob, and the certificate's details;
/// `None` when `blob` is not a complete certificate of a known type.
fn parse_certificate(blob: &[u8]) -> Option<(Vec<u8>, Certificate)> {
    let mut r = Reader(blob);
    let cert_type = r.string()?;
    let &(_, plain_type, fields) = CERT_TYPES
        .iter()
        .find(|(name, _, _)| name.as_bytes() == cert_type)?;
    r.string()?; // nonce
    let public_start = r.0;
    for _ in 0..fields {
        r.string()?;
    }
    let public = public_start.get(..public_start.len() - r.0.len())?;
    let serial = r.u64()?;
    let _cert_kind = r.u32()?;
    let key_id = r.string()?;
    let mut principals = Reader(r.string()?);
    let mut names = Vec::new();
    while !principals.0.is_empty() {
        names.push(principals.string()?);
    }
    r.u64()?; // valid after
    r.u64()?; // valid before
    r.string()?; // critical options
    r.string()?; // extensions
    r.string()?; // reserved
    let ca_key = r.string()?;
    r.string()?; // signature
    if !r.0.is_empty() {
        return None; // trailing bytes: not a certificate ssh-keygen would read
    }
    let mut plain = Vec::with_capacity(4 + plain_type.len() + public.len());
    plain.extend_from_slice(&u32::try_from(plain_type.len()).ok()?.to_be_bytes());
    plain.extend_from_slice(plain_type.as_bytes());
    plain.extend_from_slice(public);
    let principals = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    Some((
        plain,
        Certificate {
            key_id: shown(&String::from_utf8_lossy(key_id)),
            serial,
            principals: shown(&principals),
            ca_fingerprint: fingerprint_of(ca_key),
        },
    ))
}

/// Text from a certificate (anyone with a CA key chose it) made safe for a `key=value` log
/// field: printable ASCII without spaces or quotes (anything else becomes `?`), bounded.
fn shown(text: &str) -> String {
    crate::text::ascii_printable(text, MAX_SHOWN)
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\'' | '\\') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// SSH wire format reader (RFC 4251): every read checks the remaining length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn fingerprints_match_ssh_keygen() {
        // ssh-keygen -l -f on this public key prints this fingerprint.
        let line =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3 x";
        let fingerprint = |l: &str| AcceptedKey::parse(l).map(|k| k.fingerprint);
        assert_eq!(
            fingerprint(line).as_deref(),
            Some("SHA256:zK1Kn26Ep1Pqkrc2MIOvr+LMslEBx/CjKOzxYyYUEIo")
        );
        assert_eq!(fingerprint("ssh-ed25519"), None);
        assert_eq!(fingerprint("ssh-ed25519 not*base64"), None);
    }

    /// A fresh directory for ssh-keygen's files.
    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ecs-mfa-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn keygen(args: &[&str]) -> String {
        let out = Command::new("ssh-keygen").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The `SHA256:` field of `ssh-keygen -l -f file`.
    fn keygen_fingerprint(file: &Path) -> String {
        keygen(&["-l", "-f", file.to_str().unwrap()])
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    fn text(file: &Path) -> String {
        std::fs::read_to_string(file).unwrap().trim().to_string()
    }

    /// Writes a public key line built from raw fields (security-key types cannot be generated
    /// without a token, but ssh-keygen signs and fingerprints their public halves).
    fn write_raw_key(file: &Path, key_type: &str, fields: &[&[u8]]) {
        let mut blob = Vec::new();
        for f in std::iter::once(key_type.as_bytes()).chain(fields.iter().copied()) {
            blob.extend_from_slice(&(f.len() as u32).to_be_bytes());
            blob.extend_from_slice(f);
        }
        std::fs::write(
            file,
            format!("{key_type} {} raw\n", Base64::encode_string(&blob)),
        )
        .unwrap();
    }

    #[test]
    fn certificate_fingerprints_equal_ssh_keygen_for_the_key_and_the_certificate() {
        let dir = scratch("types");
        let d = |name: &str| dir.join(name).to_str().unwrap().to_string();
        keygen(&["-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", &d("ca")]);
        let ca_fingerprint = keygen_fingerprint(&dir.join("ca.pub"));
        let mut names = Vec::new();
        for (name, args) in [
            ("ed25519", vec!["-t", "ed25519"]),
            ("ecdsa256", vec!["-t", "ecdsa", "-b", "256"]),
            ("ecdsa384", vec!["-t", "ecdsa", "-b", "384"]),
            ("ecdsa521", vec!["-t", "ecdsa", "-b", "521"]),
            ("rsa", vec!["-t", "rsa", "-b", "2048"]),
        ] {
            let mut all = vec!["-q", "-N", "", "-C", name];
            all.extend(args);
            let path = d(name);
            all.extend(["-f", &path]);
            keygen(&all);
            names.push(name.to_string());
        }
        // DSA where this OpenSSH still makes it (9.8 and later are built without).
        if Command::new("ssh-keygen")
            .args(["-q", "-t", "dsa", "-N", "", "-f", &d("dsa")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            names.push("dsa".into());
        }
        // Security keys: the public half of a real ECDSA key as the point, any application.
        let ec = Base64::decode_vec(
            text(&dir.join("ecdsa256.pub"))
                .split_whitespace()
                .nth(1)
                .unwrap(),
        )
        .unwrap();
        let mut r = Reader(&ec);
        let (_, curve, point) = (r.string(), r.string().unwrap(), r.string().unwrap());
        write_raw_key(
            &dir.join("sk-ecdsa.pub"),
            "sk-ecdsa-sha2-nistp256@openssh.com",
            &[curve, point, b"ssh:"],
        );
        write_raw_key(
            &dir.join("sk-ed25519.pub"),
            "sk-ssh-ed25519@openssh.com",
            &[&[0x11; 32], b"ssh:"],
        );
        names.extend(["sk-ecdsa".to_string(), "sk-ed25519".to_string()]);

        for name in &names {
            let public = dir.join(format!("{name}.pub"));
            keygen(&[
                "-q",
                "-s",
                &d("ca"),
                "-I",
                "alice@corp \"ops\"",
                "-n",
                "alice,deploy",
                "-z",
                "42",
                public.to_str().unwrap(),
            ]);
            let cert = dir.join(format!("{name}-cert.pub"));
            let of_key = keygen_fingerprint(&public);
            assert_eq!(of_key, keygen_fingerprint(&cert), "{name}");
            let plain = AcceptedKey::parse(&text(&public)).unwrap();
            assert_eq!(plain.fingerprint, of_key, "{name}");
            assert_eq!(plain.certificate, None);
            let certified = AcceptedKey::parse(&text(&cert)).unwrap();
            assert_eq!(certified.fingerprint, of_key, "{name} certificate");
            assert_eq!(
                certified.certificate,
                Some(Certificate {
                    key_id: "alice@corp??ops?".into(),
                    serial: 42,
                    principals: "alice,deploy".into(),
                    ca_fingerprint: ca_fingerprint.clone(),
                }),
                "{name}"
            );
            let info = format!("password\npublickey {}\n", text(&cert));
            let parsed = SshAuthInfo::parse(&info);
            assert_eq!(parsed.first_key(), Some(&certified));
            let note = certified.certificate_note().unwrap();
            assert_eq!(
                note,
                format!(
                    "certificate id=alice@corp??ops? serial=42 principals=alice,deploy ca={ca_fingerprint} key={of_key}"
                )
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A small valid certificate blob to cut and bend.
    fn sample_certificate() -> Vec<u8> {
        let s = |b: &[u8]| {
            let mut v = (b.len() as u32).to_be_bytes().to_vec();
            v.extend_from_slice(b);
            v
        };
        let mut blob = Vec::new();
        blob.extend(s(b"ssh-ed25519-cert-v01@openssh.com"));
        blob.extend(s(&[1; 32])); // nonce
        blob.extend(s(&[2; 32])); // key
        blob.extend(7u64.to_be_bytes());
        blob.extend(1u32.to_be_bytes());
        blob.extend(s(b"id\n\x1b[31mforged line"));
        blob.extend(s(&[s(b"alice"), s(b"b ob")].concat()));
        blob.extend(0u64.to_be_bytes());
        blob.extend(u64::MAX.to_be_bytes());
        blob.extend(s(b""));
        blob.extend(s(b""));
        blob.extend(s(b""));
        blob.extend(s(&[s(b"ssh-ed25519"), s(&[3; 32])].concat()));
        blob.extend(s(&[4; 83]));
        blob
    }

    #[test]
    fn hostile_certificate_blobs_are_refused_or_named_by_their_hash_without_panic() {
        let blob = sample_certificate();
        let (plain, cert) = parse_certificate(&blob).unwrap();
        assert_eq!(
            plain,
            [
                &11u32.to_be_bytes()[..],
                b"ssh-ed25519",
                &32u32.to_be_bytes(),
                &[2; 32]
            ]
            .concat()
        );
        // Control characters, spaces and quotes never reach the log line.
        assert_eq!(cert.key_id, "id??[31mforged?line");
        assert_eq!(cert.principals, "alice,b?ob");
        // Every truncation is refused (and then named by the hash of what was sent).
        for cut in 0..blob.len() {
            assert_eq!(parse_certificate(&blob[..cut]), None, "cut at {cut}");
            let line = format!("x {}", Base64::encode_string(&blob[..cut]));
            if let Some(k) = AcceptedKey::parse(&line) {
                assert_eq!(k.fingerprint, fingerprint_of(&blob[..cut]));
                assert_eq!(k.certificate, None);
            }
        }
        // Every length field set to huge values, every byte flipped: no panic.
        for at in 0..blob.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut bent = blob.clone();
                bent[at] = value;
                let _ = parse_certificate(&bent);
            }
        }
        let mut huge = blob.clone();
        huge[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_certificate(&huge), None);
        // Trailing bytes: refused.
        assert_eq!(parse_certificate(&[&blob[..], &[0; 3]].concat()), None);
        // Oversized, empty, not base64, unknown certificate type.
        let big = format!("x {}", "A".repeat(MAX_KEY_TEXT + 4));
        assert_eq!(AcceptedKey::parse(&big), None);
        assert_eq!(AcceptedKey::parse(""), None);
        assert_eq!(AcceptedKey::parse("ssh-ed25519"), None);
        assert_eq!(AcceptedKey::parse("ssh-ed25519 not*base64"), None);
        let mut other = blob.clone();
        other[4..11].copy_from_slice(b"ssh-foo");
        let k = AcceptedKey::parse(&format!("x {}", Base64::encode_string(&other))).unwrap();
        assert_eq!(k.fingerprint, fingerprint_of(&other));
        // Only publickey lines count, and only so many lines are read.
        let line = format!("publickey x {}\n", Base64::encode_string(&blob));
        assert_eq!(
            SshAuthInfo::parse("keyboard-interactive\n").first_key(),
            None
        );
        let many = "password\n".repeat(MAX_LINES) + &line;
        assert_eq!(SshAuthInfo::parse(&many).first_key(), None);
        assert!(SshAuthInfo::parse(&line).first_key().is_some());
    }
}
