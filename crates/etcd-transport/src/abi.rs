//! The C interface between `pam_ecs_mfa.so` and `libecs_mfa_etcd.so`: one exported static
//! table, [`SYMBOL`], of type [`Api`]. Defined once, here, for both sides; the module refuses a
//! table whose `abi` is not [`ABI_VERSION`] or whose `size` differs (an older or newer helper
//! next to the module).
//!
//! Ownership: inputs are borrowed for the duration of a call ([`Bytes`]); every [`Answer`] the
//! helper fills is owned by the helper's allocator and must be given back with `answer_free`
//! (which wipes it). A client from `client_new` is given back with `client_free`.
//! Every entry point catches panics and reports them as [`CLASS_REFUSED`].

use std::ffi::c_void;

/// Name of the exported table (NUL-terminated for `dlsym`).
pub const SYMBOL: &[u8] = b"ECS_MFA_ETCD_API\0";
/// Version of [`Api`]; bumped on any change to these types.
pub const ABI_VERSION: u32 = 1;

/// `Answer::class`: the call succeeded (`status` and the body in `data`).
pub const CLASS_OK: u32 = 0;
/// `Answer::class`: `Failure::Unavailable`, the message in `data`.
pub const CLASS_UNAVAILABLE: u32 = 1;
/// `Answer::class`: `Failure::Refused` (or a bad argument, or a panic), the message in `data`.
pub const CLASS_REFUSED: u32 = 2;

/// A borrowed byte string (`ptr` may be null when `len` is 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl Bytes {
    /// Borrows `s` for a call.
    pub fn of(s: &[u8]) -> Self {
        Self {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// No bytes (an absent token).
    pub const NONE: Self = Self {
        ptr: std::ptr::null(),
        len: 0,
    };
}

/// What a call produced: a class, an HTTP status (for [`CLASS_OK`]) and bytes owned by the
/// helper (the body, or an error message).
#[repr(C)]
pub struct Answer {
    pub class: u32,
    pub status: u16,
    pub data: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Answer {
    /// An empty answer for the helper to fill.
    pub const EMPTY: Self = Self {
        class: CLASS_REFUSED,
        status: 0,
        data: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };
}

/// Makes a client. On failure returns null and fills `out` with the reason.
pub type ClientNew =
    unsafe extern "C" fn(ca: Bytes, cert: Bytes, key: Bytes, out: *mut Answer) -> *mut c_void;
/// `POST url` with `body` (`token`: the `Authorization` header, absent when `len` is 0),
/// within `timeout_ms`; fills `out`.
pub type ClientPost = unsafe extern "C" fn(
    client: *const c_void,
    url: Bytes,
    body: Bytes,
    token: Bytes,
    timeout_ms: u64,
    out: *mut Answer,
);
/// Frees a client.
pub type ClientFree = unsafe extern "C" fn(client: *mut c_void);
/// Wipes and frees the bytes of an answer (and empties it).
pub type AnswerFree = unsafe extern "C" fn(answer: *mut Answer);

/// The exported table.
#[repr(C)]
pub struct Api {
    /// [`ABI_VERSION`].
    pub abi: u32,
    /// `size_of::<Api>()` as the helper was built.
    pub size: u32,
    pub client_new: ClientNew,
    pub client_post: ClientPost,
    pub client_free: ClientFree,
    pub answer_free: AnswerFree,
}
