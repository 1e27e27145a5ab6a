//! Opening, reading, locking and atomically replacing root-owned files.
//!
//! Every file is reached with `openat` relative to a directory descriptor whose ownership and
//! mode were checked on the opened descriptor, with `O_NOFOLLOW` (a symlink is refused, never
//! followed) and `O_NONBLOCK` (a FIFO planted in the directory cannot hang a login). The checks
//! then run on the opened descriptor (`fstat`), so a rename between check and use cannot swap
//! the file. Nothing here ever "fixes" a bad file: it is refused with a reason.
//!
//! The whole path is checked, like OpenSSH's StrictModes: every directory from `/` down to the
//! one opened must be owned by root and not writable by group or other (unless the sticky bit
//! is set, as on `/tmp`, where others cannot rename root's entries); symlinks on the way are
//! resolved and their targets checked the same way. A user who could rename a directory above
//! the store could otherwise put a store of their own in its place.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fsync, unlinkat};
use zeroize::Zeroizing;

/// The only owner accepted for store and state files and their directories.
const ROOT: u32 = 0;

/// The group new files and directories get: root's (the test user's in unit tests, see
/// [`owner`]).
fn group() -> Gid {
    if cfg!(test) {
        Gid::effective()
    } else {
        Gid::from_raw(0)
    }
}

/// The owner files and directories must have: root. In this crate's own unit tests, the user
/// running them (as sudo-rs does), so that `cargo test --lib` works without root; the real
/// module, the CLI and every integration test keep root.
fn owner() -> u32 {
    if cfg!(test) {
        Uid::effective().as_raw()
    } else {
        ROOT
    }
}

/// What a file may look like beyond "regular, root-owned, not a symlink".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRules {
    /// Secrets and state: no group/other bits at all, exactly one hard link.
    Private,
    /// Configuration: may be readable by all, but not writable by group/other.
    Config,
}

/// A directory that passed the ownership and mode checks, held open by descriptor.
#[derive(Debug)]
pub struct CheckedDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Opens `path` as a directory and checks it: a real directory (not a symlink), owned by root,
/// not writable by group or other. `Ok(None)` when it does not exist.
pub fn open_dir(path: &Path) -> Result<Option<CheckedDir>, FsError> {
    check_ancestors(path)?;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
            return Err(FsError::new(path, Problem::NotADirectory));
        }
        Err(e) => return Err(FsError::new(path, Problem::Io("open", e))),
    };
    let st = fstat(&fd).map_err(|e| FsError::new(path, Problem::Io("fstat", e)))?;
    if st.st_uid != owner() {
        return Err(FsError::new(path, Problem::NotRootOwned(st.st_uid)));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(FsError::new(
            path,
            Problem::WritableByOthers(st.st_mode & 0o7777),
        ));
    }
    Ok(Some(CheckedDir {
        fd,
        path: path.to_owned(),
    }))
}

/// Checks every directory above `path` (see the module documentation). Components that do not
/// exist yet end the walk: they will be created by root, or the path is simply absent.
pub fn check_ancestors(path: &Path) -> Result<(), FsError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    // The usual case, one lstat per component: a plain path of real directories.
    if plain_path_is_safe(parent)? {
        return Ok(());
    }
    // A symlink (or `..`) on the way: resolve every prefix and check what it really is.
    let mut checked: Vec<PathBuf> = Vec::new();
    let mut prefix = PathBuf::new();
    for component in parent.components() {
        prefix.push(component);
        // The prefix with every symlink resolved; its own ancestors are checked too, so a
        // symlink's target is held to the same rules as the path that led to it.
        let real = match std::fs::canonicalize(&prefix) {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(FsError::new(&prefix, Problem::Io("resolve", io_errno(&e)))),
        };
        for dir in real.ancestors() {
            if checked.iter().any(|c| c == dir) {
                continue;
            }
            check_ancestor(dir, &prefix)?;
            checked.push(dir.to_owned());
        }
    }
    Ok(())
}

/// Walks `dir` from `/` with `lstat`: `Ok(true)` when every component exists, is a real
/// directory (no symlink) and passes [`check_ancestor`]'s rules, or when the walk reaches a
/// component that does not exist yet; `Ok(false)` when a symlink or `..` needs the slow path.
fn plain_path_is_safe(dir: &Path) -> Result<bool, FsError> {
    use std::path::Component;
    let mut prefix = PathBuf::new();
    for component in dir.components() {
        match component {
            Component::RootDir | Component::Normal(_) => prefix.push(component),
            Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => return Ok(false),
        }
        let st = match nix::sys::stat::lstat(&prefix) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(true),
            Err(e) => return Err(FsError::new(&prefix, Problem::Io("stat", e))),
        };
        if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() {
            return Ok(false);
        }
        check_stat(&prefix, &prefix, &st)?;
    }
    Ok(true)
}

fn check_ancestor(dir: &Path, via: &Path) -> Result<(), FsError> {
    let st = nix::sys::stat::stat(dir).map_err(|e| FsError::new(dir, Problem::Io("stat", e)))?;
    check_stat(dir, via, &st)
}

/// The rules for a directory above: a directory, owned by root, not writable by group/other
/// unless sticky.
fn check_stat(dir: &Path, via: &Path, st: &FileStat) -> Result<(), FsError> {
    let shown = if dir == via {
        dir.to_owned()
    } else {
        PathBuf::from(format!("{} (via {})", dir.display(), via.display()))
    };
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFDIR.bits() {
        return Err(FsError::new(&shown, Problem::NotADirectory));
    }
    if st.st_uid != ROOT && st.st_uid != owner() {
        return Err(FsError::new(
            &shown,
            Problem::AncestorNotRootOwned(st.st_uid),
        ));
    }
    if st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0 {
        return Err(FsError::new(
            &shown,
            Problem::AncestorWritableByOthers(st.st_mode & 0o7777),
        ));
    }
    Ok(())
}

/// Opens `path` like [`open_dir`], first creating it with mode `0700` (and missing parents with
/// the usual `0755`) when it does not exist. An existing directory is checked, never changed.
pub fn open_or_create_dir(path: &Path) -> Result<CheckedDir, FsError> {
    if let Some(dir) = open_dir(path)? {
        return Ok(dir);
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent)
        .map_err(|e| FsError::new(parent, Problem::Io("mkdir", io_errno(&e))))?;
    let name = path
        .file_name()
        .ok_or_else(|| FsError::new(path, Problem::NotADirectory))?;
    let parent_fd = open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::new(parent, Problem::Io("open", e)))?;
    match mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(FsError::new(path, Problem::Io("mkdir", e))),
    }
    let dir =
        open_dir(path)?.ok_or_else(|| FsError::new(path, Problem::Io("open", Errno::ENOENT)))?;
    // A new directory gets root:root and exactly 0700, whatever the umask or a setgid parent.
    fchown(&dir.fd, Some(Uid::from_raw(owner())), Some(group()))
        .map_err(|e| FsError::new(path, Problem::Io("fchown", e)))?;
    fchmod(&dir.fd, Mode::from_bits_truncate(0o700))
        .map_err(|e| FsError::new(path, Problem::Io("fchmod", e)))?;
    Ok(dir)
}

/// Reads the regular file at `path` with the same checks as [`CheckedDir::read`], its parent
/// directory checked first. `Ok(None)` when the file or its directory does not exist.
pub fn read_file(
    path: &Path,
    rules: FileRules,
    max_len: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, FsError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FsError::new(path, Problem::NotRegular("no file name")))?;
    match open_dir(parent)? {
        Some(dir) => dir.read(name, rules, max_len),
        None => Ok(None),
    }
}

impl CheckedDir {
    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads `name` after checking it: regular file, owner root, mode per `rules`, no
    /// setuid/setgid/sticky bits, at most `max_len` bytes. `Ok(None)` if it does not exist.
    ///
    /// The type is checked with `fstatat(AT_SYMLINK_NOFOLLOW)` before opening, so a device
    /// node is never opened (opening some devices has side effects), and again on the opened
    /// descriptor, which must be the same inode.
    pub fn read(
        &self,
        name: &str,
        rules: FileRules,
        max_len: u64,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, FsError> {
        let path = self.path.join(name);
        let Some((fd, st)) = self.open_checked(name, rules, max_len)? else {
            return Ok(None);
        };
        let mut contents = Zeroizing::new(Vec::with_capacity(st.st_size as usize));
        File::from(fd)
            .take(max_len + 1)
            .read_to_end(&mut contents)
            .map_err(|e| FsError::new(&path, Problem::Io("read", io_errno(&e))))?;
        if contents.len() as u64 > max_len {
            return Err(FsError::new(
                &path,
                Problem::TooLarge(contents.len() as u64),
            ));
        }
        Ok(Some(contents))
    }

    /// Opens `name` for reading after the checks [`CheckedDir::read`] describes, and returns the
    /// descriptor with its (checked) status. `Ok(None)` if it does not exist.
    pub fn open_checked(
        &self,
        name: &str,
        rules: FileRules,
        max_len: u64,
    ) -> Result<Option<(OwnedFd, FileStat)>, FsError> {
        let path = self.path.join(name);
        let before = match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(FsError::new(&path, Problem::Io("stat", e))),
        };
        check_file(&path, &before, rules, max_len)?;
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(FsError::new(&path, Problem::NotRegular("symlink"))),
            Err(e) => return Err(FsError::new(&path, Problem::Io("open", e))),
        };
        let st = fstat(&fd).map_err(|e| FsError::new(&path, Problem::Io("fstat", e)))?;
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino) {
            return Err(FsError::new(&path, Problem::Changed));
        }
        check_file(&path, &st, rules, max_len)?;
        Ok(Some((fd, st)))
    }

    /// Replaces `name` with `contents` atomically: a temporary file created with `O_EXCL`,
    /// mode `0600`, owner root in the same directory, written, renamed over `name`. With
    /// `durable` the file is fsynced before and the directory after the rename, so a crash
    /// leaves the old or the new file; without it (tmpfs state) the rename alone guarantees a
    /// reader never sees a partial file.
    pub fn write_atomic(&self, name: &str, contents: &[u8], durable: bool) -> Result<(), FsError> {
        let path = self.path.join(name);
        let (tmp_name, fd) = self.create_temp(name)?;
        let result = (|| {
            let mut file = File::from(fd);
            file.write_all(contents)
                .map_err(|e| FsError::new(&path, Problem::Io("write", io_errno(&e))))?;
            if durable {
                fsync(&file).map_err(|e| FsError::new(&path, Problem::Io("fsync", e)))?;
            }
            drop(file);
            renameat(&self.fd, tmp_name.as_str(), &self.fd, name)
                .map_err(|e| FsError::new(&path, Problem::Io("rename", e)))?;
            if durable {
                fsync(&self.fd).map_err(|e| FsError::new(&self.path, Problem::Io("fsync", e)))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = unlinkat(&self.fd, tmp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result
    }

    /// Removes temporary files left by [`CheckedDir::write_atomic`] for `name` when a writer was
    /// killed mid-write. Call only while holding the lock every writer of `name` holds, so no
    /// live writer's temporary file is removed.
    pub fn remove_stale_temps(&self, name: &str) -> Result<(), FsError> {
        let prefix = format!(".{name}.tmp-");
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| FsError::new(&self.path, Problem::Io("readdir", io_errno(&e))))?;
        for entry in entries.flatten() {
            let file = entry.file_name();
            if file.to_str().is_some_and(|f| f.starts_with(&prefix)) {
                self.remove(&file.to_string_lossy())?;
            }
        }
        Ok(())
    }

    /// Flushes the directory itself (after a removal, so it survives a crash).
    pub fn sync(&self) -> Result<(), FsError> {
        fsync(&self.fd).map_err(|e| FsError::new(&self.path, Problem::Io("fsync", e)))
    }

    /// Removes `name`; `Ok(false)` if it did not exist.
    pub fn remove(&self, name: &str) -> Result<bool, FsError> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(FsError::new(
                &self.path.join(name),
                Problem::Io("unlink", e),
            )),
        }
    }

    /// Opens (creating if needed, mode `0600`) the lock file `name` and takes an exclusive
    /// `flock` on it. The lock is released when the returned file is dropped (closed), so no
    /// unlock can fail or be forgotten on an error path. The lock file is never renamed or
    /// rewritten, so every process locks the same inode.
    pub fn lock_file(&self, name: &str) -> Result<File, FsError> {
        let path = self.path.join(name);
        let flags = OFlag::O_RDWR
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| {
            let problem = if e == Errno::ELOOP {
                Problem::NotRegular("symlink")
            } else {
                Problem::Io("open", e)
            };
            FsError::new(&path, problem)
        })?;
        let st = fstat(&fd).map_err(|e| FsError::new(&path, Problem::Io("fstat", e)))?;
        check_file(&path, &st, FileRules::Private, 0)?;
        let file = File::from(fd);
        file.lock()
            .map_err(|e| FsError::new(&path, Problem::Io("flock", io_errno(&e))))?;
        Ok(file)
    }

    /// Takes an exclusive `flock` on the directory itself (serialises writers of the store).
    /// The lock is held by a fresh open file description of the directory, so it is released
    /// exactly when the returned file is dropped.
    pub fn lock_dir(&self) -> Result<File, FsError> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = openat(&self.fd, ".", flags, Mode::empty())
            .map_err(|e| FsError::new(&self.path, Problem::Io("open", e)))?;
        let file = File::from(fd);
        file.lock()
            .map_err(|e| FsError::new(&self.path, Problem::Io("flock", io_errno(&e))))?;
        Ok(file)
    }

    fn create_temp(&self, name: &str) -> Result<(String, OwnedFd), FsError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let path = self.path.join(name);
        for _ in 0..16 {
            let nonce = COUNTER.fetch_add(1, Ordering::Relaxed);
            // Starts with '.', which no valid user name does, so it never shadows a record.
            let tmp = format!(".{name}.tmp-{}-{nonce}", std::process::id());
            match openat(
                &self.fd,
                tmp.as_str(),
                flags,
                Mode::from_bits_truncate(0o600),
            ) {
                Ok(fd) => {
                    let owned = fchown(&fd, Some(Uid::from_raw(owner())), Some(group()))
                        .and_then(|()| fchmod(&fd, Mode::from_bits_truncate(0o600)));
                    if let Err(e) = owned {
                        let _ = unlinkat(&self.fd, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
                        return Err(FsError::new(&path, Problem::Io("fchown", e)));
                    }
                    return Ok((tmp, fd));
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(FsError::new(&path, Problem::Io("create", e))),
            }
        }
        Err(FsError::new(&path, Problem::Io("create", Errno::EEXIST)))
    }
}

impl AsFd for CheckedDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn check_file(path: &Path, st: &FileStat, rules: FileRules, max_len: u64) -> Result<(), FsError> {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        let what = match kind {
            SFlag::S_IFLNK => "symlink",
            SFlag::S_IFDIR => "directory",
            SFlag::S_IFIFO => "FIFO",
            SFlag::S_IFSOCK => "socket",
            SFlag::S_IFCHR => "character device",
            SFlag::S_IFBLK => "block device",
            _ => "not a regular file",
        };
        return Err(FsError::new(path, Problem::NotRegular(what)));
    }
    if st.st_uid != owner() {
        return Err(FsError::new(path, Problem::NotRootOwned(st.st_uid)));
    }
    let mode = st.st_mode & 0o7777;
    let forbidden = match rules {
        FileRules::Private => 0o7077,
        FileRules::Config => 0o7022,
    };
    if mode & forbidden != 0 {
        return Err(FsError::new(path, Problem::BadMode(mode, rules)));
    }
    if rules == FileRules::Private && st.st_nlink != 1 {
        return Err(FsError::new(path, Problem::HardLinked(st.st_nlink)));
    }
    if max_len > 0 && st.st_size as u64 > max_len {
        return Err(FsError::new(path, Problem::TooLarge(st.st_size as u64)));
    }
    Ok(())
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A file or directory that could not be used, with the path and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A system call failed (name of the operation, errno).
    Io(&'static str, Errno),
    /// Expected a directory; found something else or a symlink.
    NotADirectory,
    /// Expected a regular file; found the named kind of object.
    NotRegular(&'static str),
    /// Owned by this uid instead of root.
    NotRootOwned(u32),
    /// A directory writable by group or other (mode shown).
    WritableByOthers(u32),
    /// A directory above the store, state or config is owned by this uid instead of root.
    AncestorNotRootOwned(u32),
    /// A directory above is writable by group or other without the sticky bit (mode shown).
    AncestorWritableByOthers(u32),
    /// File mode with forbidden bits (group/other access or setuid/setgid/sticky), and the
    /// rules the file is held to (which say what is allowed).
    BadMode(u32, FileRules),
    /// The file has this many hard links (another name may point at it).
    HardLinked(u64),
    /// The file is larger than allowed (size in bytes).
    TooLarge(u64),
    /// The file was replaced between the check and the open.
    Changed,
}

impl FsError {
    fn new(path: &Path, problem: Problem) -> Self {
        Self {
            path: path.to_owned(),
            problem,
        }
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Io(op, errno) => write!(f, "{path}: {op} failed: {}", errno.desc()),
            Problem::NotADirectory => write!(f, "{path}: not a directory (or a symlink)"),
            Problem::NotRegular(what) => write!(f, "{path}: is a {what}, not a regular file"),
            Problem::NotRootOwned(uid) => write!(f, "{path}: owned by uid {uid}, not root"),
            Problem::WritableByOthers(mode) => {
                write!(
                    f,
                    "{path}: directory mode {mode:04o} is writable by group/other"
                )
            }
            Problem::AncestorNotRootOwned(uid) => write!(
                f,
                "{path}: a directory on the way is owned by uid {uid}, not root (that user could swap what lies below it)"
            ),
            Problem::AncestorWritableByOthers(mode) => write!(
                f,
                "{path}: a directory on the way has mode {mode:04o}, writable by group/other without the sticky bit"
            ),
            Problem::BadMode(mode, FileRules::Private) => write!(
                f,
                "{path}: mode {mode:04o} is too open (expected 0600: no group/other access)"
            ),
            Problem::BadMode(mode, FileRules::Config) => write!(
                f,
                "{path}: mode {mode:04o} is too open (expected 0644 or stricter: not writable by group/other, no setuid/setgid/sticky)"
            ),
            Problem::HardLinked(n) => write!(f, "{path}: has {n} hard links (expected 1)"),
            Problem::TooLarge(n) => write!(f, "{path}: {n} bytes is larger than allowed"),
            Problem::Changed => write!(f, "{path}: replaced while being opened"),
        }
    }
}

impl std::error::Error for FsError {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use crate::test_util::{Scratch, needs_root};

    fn write(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn problem(dir: &CheckedDir, name: &str) -> Problem {
        dir.read(name, FileRules::Private, 1024)
            .unwrap_err()
            .problem
    }

    #[test]
    fn a_private_root_file_is_read() {
        let s = Scratch::new("read");
        write(&s.0.join("f"), b"hello", 0o600);
        let dir = open_dir(&s.0).unwrap().unwrap();
        assert_eq!(
            dir.read("f", FileRules::Private, 1024)
                .unwrap()
                .unwrap()
                .as_slice(),
            b"hello"
        );
        assert_eq!(dir.read("missing", FileRules::Private, 1024).unwrap(), None);
    }

    #[test]
    fn files_readable_by_group_or_other_are_refused() {
        let s = Scratch::new("mode");
        let dir = open_dir(&s.0).unwrap().unwrap();
        for mode in [0o640, 0o644, 0o666, 0o604, 0o4600, 0o2600, 0o1600] {
            write(&s.0.join("f"), b"x", mode);
            assert_eq!(
                problem(&dir, "f"),
                Problem::BadMode(mode, FileRules::Private),
                "{mode:o}"
            );
        }
        write(&s.0.join("c"), b"x", 0o644);
        assert!(dir.read("c", FileRules::Config, 1024).unwrap().is_some());
        write(&s.0.join("c"), b"x", 0o664);
        assert_eq!(
            dir.read("c", FileRules::Config, 1024).unwrap_err().problem,
            Problem::BadMode(0o664, FileRules::Config)
        );
    }

    #[test]
    fn every_directory_on_the_way_must_be_root_owned_and_not_writable_by_others() {
        use std::os::unix::fs::chown;
        let s = Scratch::new("path");
        let mkdir = |p: &Path, mode: u32| {
            std::fs::create_dir(p).unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let parent = s.0.join("parent");
        mkdir(&parent, 0o755);
        let store = parent.join("store");
        mkdir(&store, 0o700);
        assert!(open_dir(&store).unwrap().is_some());
        let refused = |p: &Path| open_dir(p).unwrap_err().problem;

        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(refused(&store), Problem::AncestorWritableByOthers(0o777));
        assert!(
            read_file(&store.join("x"), FileRules::Config, 10).is_err(),
            "config too"
        );
        // Sticky, like /tmp: others cannot rename root's entries.
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(open_dir(&store).unwrap().is_some());
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert_eq!(refused(&store), Problem::AncestorWritableByOthers(0o775));
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        if needs_root("every_directory_on_the_way: another owner") {
            chown(&parent, Some(1000), None).unwrap();
            assert_eq!(refused(&store), Problem::AncestorNotRootOwned(1000));
            assert!(
                FsError::new(&store, refused(&store))
                    .to_string()
                    .contains("owned by uid 1000")
            );
            chown(&parent, Some(owner()), None).unwrap();

            // A symlink on the way is resolved and its target held to the same rules.
            let user_dir = s.0.join("userdir");
            mkdir(&user_dir, 0o755);
            mkdir(&user_dir.join("store"), 0o700);
            chown(&user_dir, Some(1000), None).unwrap();
            symlink(&user_dir, s.0.join("link")).unwrap();
            assert_eq!(
                refused(&s.0.join("link/store")),
                Problem::AncestorNotRootOwned(1000)
            );
        }
        symlink(&parent, s.0.join("good")).unwrap();
        assert!(open_dir(&s.0.join("good/store")).unwrap().is_some());
        // Not there yet: absent, not an error.
        assert!(open_dir(&s.0.join("none/store")).unwrap().is_none());
    }

    #[test]
    fn files_not_owned_by_root_are_refused() {
        if !needs_root("files_not_owned_by_root_are_refused") {
            return;
        }
        let s = Scratch::new("owner");
        let path = s.0.join("f");
        write(&path, b"x", 0o600);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let dir = open_dir(&s.0).unwrap().unwrap();
        assert_eq!(problem(&dir, "f"), Problem::NotRootOwned(65534));
    }

    #[test]
    fn symlinks_fifos_sockets_and_directories_are_refused_without_hanging() {
        let s = Scratch::new("kinds");
        write(&s.0.join("target"), b"x", 0o600);
        symlink(s.0.join("target"), s.0.join("link")).unwrap();
        nix::unistd::mkfifo(&s.0.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::net::UnixListener::bind(s.0.join("sock")).unwrap();
        std::fs::create_dir(s.0.join("dir")).unwrap();
        let dir = open_dir(&s.0).unwrap().unwrap();
        assert_eq!(problem(&dir, "link"), Problem::NotRegular("symlink"));
        assert_eq!(problem(&dir, "fifo"), Problem::NotRegular("FIFO"));
        assert_eq!(problem(&dir, "sock"), Problem::NotRegular("socket"));
        assert_eq!(problem(&dir, "dir"), Problem::NotRegular("directory"));
    }

    #[test]
    fn hard_linked_and_oversized_files_are_refused() {
        let s = Scratch::new("links");
        write(&s.0.join("a"), b"x", 0o600);
        std::fs::hard_link(s.0.join("a"), s.0.join("b")).unwrap();
        let dir = open_dir(&s.0).unwrap().unwrap();
        assert_eq!(problem(&dir, "b"), Problem::HardLinked(2));
        let big = File::create(s.0.join("big")).unwrap();
        big.set_len(1 << 30).unwrap();
        drop(big);
        std::fs::set_permissions(s.0.join("big"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(problem(&dir, "big"), Problem::TooLarge(1 << 30));
    }

    #[test]
    fn directories_writable_by_others_or_not_root_owned_are_refused() {
        let s = Scratch::new("dirs");
        let sub = s.0.join("sub");
        std::fs::create_dir(&sub).unwrap();
        for mode in [0o770, 0o707, 0o777, 0o1777] {
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(
                open_dir(&sub).unwrap_err().problem,
                Problem::WritableByOthers(_)
            ));
        }
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        if needs_root("directories_not_root_owned") {
            std::os::unix::fs::chown(&sub, Some(65534), None).unwrap();
            assert_eq!(
                open_dir(&sub).unwrap_err().problem,
                Problem::NotRootOwned(65534)
            );
        }
        symlink(&s.0, s.0.join("dirlink")).unwrap();
        assert_eq!(
            open_dir(&s.0.join("dirlink")).unwrap_err().problem,
            Problem::NotADirectory
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temp() {
        let s = Scratch::new("write");
        let dir = open_or_create_dir(&s.0.join("new")).unwrap();
        let meta = std::fs::metadata(s.0.join("new")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        dir.write_atomic("f", b"one", true).unwrap();
        dir.write_atomic("f", b"two", false).unwrap();
        assert_eq!(
            dir.read("f", FileRules::Private, 100)
                .unwrap()
                .unwrap()
                .as_slice(),
            b"two"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
        let meta = std::fs::metadata(dir.path().join("f")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    }
}
