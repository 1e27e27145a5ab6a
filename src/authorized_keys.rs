//! OpenSSH public key lines (`authorized_keys`, `*.pub` files; sshd(8) "AUTHORIZED_KEYS FILE
//! FORMAT"): `[options] type base64 [comment]`. Shared accounts name a person after the key's
//! comment, `mfa-enroll --key` takes a line or a file, and `doctor` looks for `from=` on
//! automation keys. Hostile input: lines are bounded, comments are returned raw and must be
//! cleaned by the caller ([`crate::user_name::Person::from_label`]).
#![forbid(unsafe_code)]

use std::path::Path;

use crate::ssh_auth_info::AcceptedKey;

/// Longest line looked at (an RSA-16384 certificate line is about 5 KiB).
const MAX_LINE: usize = 16 * 1024;
/// Largest `authorized_keys` file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// One key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// The options field (`from="10.0.0.0/8",no-pty`), empty when none.
    pub options: String,
    /// `SHA256:` fingerprint as `ssh-keygen -l` prints it (a certificate: the certified key).
    pub fingerprint: String,
    /// The comment (everything after the key), possibly empty.
    pub comment: String,
}

impl KeyLine {
    /// Whether the options restrict the source address (`from=`).
    pub fn has_from(&self) -> bool {
        split_options(&self.options)
            .iter()
            .any(|o| o.to_ascii_lowercase().starts_with("from="))
    }
}

/// Parses one line; `None` for blank lines, comments and anything that is not a key.
pub fn parse_line(line: &str) -> Option<KeyLine> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.len() > MAX_LINE {
        return None;
    }
    let (options, rest) = if is_key_type(line.split_whitespace().next()?) {
        ("", line)
    } else {
        let end = options_end(line);
        (&line[..end], line[end..].trim_start())
    };
    let mut parts = rest.splitn(3, char::is_whitespace);
    let kind = parts.next()?;
    let blob = parts.next()?;
    if !is_key_type(kind) || !blob_is_of_type(blob, kind) {
        return None;
    }
    let key = AcceptedKey::parse(&format!("{kind} {blob}"))?;
    Some(KeyLine {
        options: options.to_string(),
        fingerprint: key.fingerprint,
        comment: parts.next().unwrap_or("").trim().to_string(),
    })
}

/// The line of `path` whose key has `fingerprint` (first match). Files that cannot be read,
/// are not regular, or are larger than [`MAX_FILE_BYTES`] give `None`; symbolic links are not
/// followed at the last component.
pub fn find_in_file(path: &Path, fingerprint: &str) -> Option<KeyLine> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES).read_to_string(&mut text).ok()?;
    text.lines()
        .filter_map(parse_line)
        .find(|k| k.fingerprint == fingerprint)
}

/// sshd's default `AuthorizedKeysFile` entries, relative to the home directory.
pub const DEFAULT_FILES: [&str; 2] = [".ssh/authorized_keys", ".ssh/authorized_keys2"];

/// The line of `fingerprint` in `home`'s default `authorized_keys` files.
pub fn find_for_home(home: &Path, fingerprint: &str) -> Option<KeyLine> {
    DEFAULT_FILES
        .iter()
        .find_map(|f| find_in_file(&home.join(f), fingerprint))
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-")
        || word.starts_with("ecdsa-sha2-")
        || word.starts_with("sk-ssh-")
        || word.starts_with("sk-ecdsa-")
}

/// Whether the key blob starts with its own type name (an SSH string: 4-byte length, then
/// the name), as sshd checks: a truncated or mistyped key pasted by an administrator (`ssh-ed25519
/// AAAA`) is no key, rather than a fingerprint no login will ever have.
fn blob_is_of_type(blob: &str, kind: &str) -> bool {
    use base64ct::{Base64, Encoding};
    let Ok(bytes) = Base64::decode_vec(blob) else {
        return false;
    };
    let name = kind.as_bytes();
    bytes.len() > 4 + name.len()
        && bytes[..4] == u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes()
        && &bytes[4..4 + name.len()] == name
}

/// Where the options field ends: the first white space outside double quotes.
fn options_end(line: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return i,
            _ => {}
        }
    }
    line.len()
}

/// The options, split at commas outside double quotes.
fn split_options(options: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in options.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    // ssh-keygen -t ed25519; `ssh-keygen -l` prints this fingerprint for it.
    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn lines_with_and_without_options_give_the_key_and_comment() {
        let plain = parse_line(&format!("{KEY} alice@laptop")).unwrap();
        assert!(plain.fingerprint.starts_with("SHA256:"));
        assert_eq!(
            (plain.options.as_str(), plain.comment.as_str()),
            ("", "alice@laptop")
        );
        assert!(!plain.has_from());
        let line =
            format!("from=\"10.0.0.0/8,192.0.2.1\",command=\"echo a b\",no-pty {KEY} deploy job 7");
        let with = parse_line(&line).unwrap();
        assert_eq!(with.fingerprint, plain.fingerprint);
        assert_eq!(with.comment, "deploy job 7");
        assert!(with.has_from());
        assert_eq!(parse_line(KEY).unwrap().comment, "");
    }

    #[test]
    fn only_regular_files_are_read_never_a_fifo_or_a_symlink() {
        let dir = std::env::temp_dir().join(format!("ecs-mfa-ak-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = format!("{KEY} alice@laptop\n");
        std::fs::write(dir.join("keys"), &line).unwrap();
        let fingerprint = parse_line(&line).unwrap().fingerprint;
        assert!(find_in_file(&dir.join("keys"), &fingerprint).is_some());
        // A FIFO nobody writes to would block a reader forever: never opened for reading.
        nix::unistd::mkfifo(
            &dir.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(find_in_file(&dir.join("fifo"), &fingerprint), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        std::os::unix::fs::symlink(dir.join("keys"), dir.join("link")).unwrap();
        assert_eq!(find_in_file(&dir.join("link"), &fingerprint), None);
        assert_eq!(find_in_file(&dir.join("absent"), &fingerprint), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn junk_is_not_a_key() {
        for junk in [
            "",
            "# comment",
            "ssh-ed25519",
            "ssh-ed25519 !!!",
            "ssh-ed25519 AAAA",
            // A valid blob under another type's name.
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "hello world",
            "no-pty",
        ] {
            assert_eq!(parse_line(junk), None, "{junk:?}");
        }
        assert_eq!(parse_line(&format!("{KEY} {}", "x".repeat(MAX_LINE))), None);
    }
}
