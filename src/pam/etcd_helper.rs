//! Loads `libecs_mfa_etcd.so`, the fleet backend's HTTPS client, for a login that needs etcd.
//!
//! Why a second object: TLS and HTTP are about 60% of what the module would otherwise map and
//! relocate on *every* login (sshd loads the PAM stack afresh for each connection), while only
//! hosts with `[fleet] backend = "etcd"` use them (docs/performance.md, "Module load cost").
//!
//! Where: the file `libecs_mfa_etcd.so` in the directory this module was loaded from (the PAM
//! module directory of a package, `target/<profile>/` of a cargo build). It must pass the
//! rules of a configuration file (regular, root-owned, not writable by group or other, every
//! directory above root-owned and not writable by others): a writable helper would be code
//! running as root. The checked descriptor itself is loaded (`/proc/self/fd/N`), so the file
//! that was checked is the file that runs. Loaded for the login and unloaded after it.
//!
//! The interface is the table in `ecs_mfa_etcd_transport::abi`, checked for its version and
//! size before use. Every failure to load is a `backend_error` denial that names the file.

use std::ffi::{CStr, CString, c_void};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecs_mfa_etcd_transport::abi::{self, Answer, Api, Bytes};
use zeroize::Zeroizing;

use crate::fleet::transport::{ConnectError, Failure, TlsPem, Transport};
use crate::secure_fs::{self, FileRules};

/// The helper's file name, next to the module.
pub const HELPER_FILE: &str = "libecs_mfa_etcd.so";
/// Larger than any build of the helper (about 2 MB): refuses to map a runaway file.
const MAX_HELPER_BYTES: u64 = 64 << 20;

/// A [`crate::fleet::transport::Connector`]: loads the helper and makes a client with `tls`.
pub fn connect(tls: &TlsPem<'_>) -> Result<Box<dyn Transport>, ConnectError> {
    let path = helper_path().map_err(ConnectError::Load)?;
    let lib = Library::open(&path).map_err(ConnectError::Load)?;
    let mut answer = Answer::EMPTY;
    // SAFETY: `lib.api` was checked by Library::open (version and size); the PEM slices live
    // across the call; `answer` is a valid, exclusive Answer.
    let client = unsafe {
        ((*lib.api).client_new)(
            Bytes::of(tls.ca),
            Bytes::of(tls.cert),
            Bytes::of(tls.key),
            &mut answer,
        )
    };
    let message = take(&lib, &mut answer);
    if client.is_null() {
        let why = String::from_utf8_lossy(&message);
        return Err(ConnectError::Tls(message_text(&why, 500)));
    }
    Ok(Box::new(Helper { client, lib }))
}

/// Where the helper is: next to the object this function is in.
fn helper_path() -> Result<PathBuf, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let here = connect as *const c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    let found = unsafe { libc::dladdr(here, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot tell where pam_ecs_mfa.so was loaded from (dladdr)".into());
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader, valid while the
    // module is loaded (for the whole call).
    let module = unsafe { CStr::from_ptr(info.dli_fname) };
    let module =
        Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(module.to_bytes()));
    let dir = match module.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir()
            .map_err(|e| format!("current directory: {e}"))?
            .join(dir)
    };
    Ok(dir.join(HELPER_FILE))
}

/// The helper, loaded: the `dlopen` handle and its checked table.
struct Library {
    handle: *mut c_void,
    api: *const Api,
}

impl Library {
    fn open(path: &Path) -> Result<Self, String> {
        let fd = open_checked_helper(path)?;
        let by_fd = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| "descriptor path".to_string())?;
        // SAFETY: dlopen with a valid C string; RTLD_LOCAL keeps the helper's symbols (its own
        // copy of std) out of the global scope.
        let handle = unsafe { libc::dlopen(by_fd.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        drop(fd);
        if handle.is_null() {
            return Err(format!("{}: cannot load it: {}", path.display(), dlerror()));
        }
        // Owned from here on: every early return below unloads it again.
        let mut lib = Self {
            handle,
            api: std::ptr::null(),
        };
        // SAFETY: a live handle and a NUL-terminated symbol name.
        let symbol = unsafe { libc::dlsym(handle, abi::SYMBOL.as_ptr().cast()) };
        if symbol.is_null() {
            return Err(format!(
                "{}: not the ecs-mfa etcd helper (no table)",
                path.display()
            ));
        }
        let api = symbol.cast::<Api>();
        // The two leading u32 fields are read first: they are at the same place in every
        // version of the table, whatever follows them.
        // SAFETY: the symbol is at least the size of those fields in any helper build.
        let (version, size) = unsafe {
            (
                std::ptr::addr_of!((*api).abi).read(),
                std::ptr::addr_of!((*api).size).read(),
            )
        };
        if version != abi::ABI_VERSION || size as usize != size_of::<Api>() {
            return Err(format!(
                "{}: helper interface version {version} (size {size}), this module needs {} \
                 (size {}): install the module and the helper from the same build",
                path.display(),
                abi::ABI_VERSION,
                size_of::<Api>()
            ));
        }
        lib.api = api;
        Ok(lib)
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: a handle from dlopen, closed once; nothing from it is used afterwards
        // (Helper drops its client before its Library).
        unsafe { libc::dlclose(self.handle) };
    }
}

/// The helper file at `path`, opened after the checks of a configuration file; the error says
/// what is wrong with it. `mfa-enroll doctor` runs the same check.
pub fn open_checked_helper(path: &Path) -> Result<OwnedFd, String> {
    let missing = || {
        format!(
            "{} is missing: the etcd client that [fleet] needs is installed next to \
             pam_ecs_mfa.so (packages do; scripts/install does)",
            path.display()
        )
    };
    let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
    else {
        return Err(missing());
    };
    let dir = secure_fs::open_dir(parent)
        .map_err(|e| e.to_string())?
        .ok_or_else(missing)?;
    match dir.open_checked(name, FileRules::Config, MAX_HELPER_BYTES) {
        Ok(Some((fd, _))) => Ok(fd),
        Ok(None) => Err(missing()),
        Err(e) => Err(e.to_string()),
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl call.
    let text = unsafe { libc::dlerror() };
    if text.is_null() {
        return "unknown error".into();
    }
    // SAFETY: as above.
    message_text(&unsafe { CStr::from_ptr(text) }.to_string_lossy(), 300)
}

/// A message from the helper made safe for a log line: printable ASCII and spaces (the
/// messages are sentences), at most `max` characters.
fn message_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Copies the answer's bytes out and gives the answer back to the helper (which wipes it).
fn take(lib: &Library, answer: &mut Answer) -> Zeroizing<Vec<u8>> {
    let bytes = if answer.data.is_null() || answer.len == 0 {
        Zeroizing::new(Vec::new())
    } else {
        // SAFETY: the helper filled data/len with a live allocation it owns until answer_free.
        Zeroizing::new(unsafe { std::slice::from_raw_parts(answer.data, answer.len) }.to_vec())
    };
    // SAFETY: an Answer the helper filled, given back once.
    unsafe { ((*lib.api).answer_free)(answer) };
    bytes
}

/// A client inside the loaded helper.
struct Helper {
    client: *mut c_void,
    // Declared after `client`: dropped (unloaded) after the client is freed.
    lib: Library,
}

impl Transport for Helper {
    fn post(
        &self,
        url: &str,
        body: &[u8],
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), Failure> {
        let mut answer = Answer::EMPTY;
        let token = token.map_or(Bytes::NONE, |t| Bytes::of(t.as_bytes()));
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: a live client from client_new; borrowed inputs outlive the call; `answer`
        // is valid and exclusive.
        unsafe {
            ((*self.lib.api).client_post)(
                self.client,
                Bytes::of(url.as_bytes()),
                Bytes::of(body),
                token,
                timeout_ms,
                &mut answer,
            )
        };
        let (class, status) = (answer.class, answer.status);
        let bytes = take(&self.lib, &mut answer);
        let message = || message_text(&String::from_utf8_lossy(&bytes), 500);
        match class {
            abi::CLASS_OK => Ok((status, bytes)),
            abi::CLASS_UNAVAILABLE => Err(Failure::Unavailable(message())),
            _ => Err(Failure::Refused(message())),
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: the client from client_new, freed once, before the library is unloaded.
        unsafe { ((*self.lib.api).client_free)(self.client) };
    }
}
