//! `libecs_mfa_etcd.so`: the fleet backend's HTTPS client ([`ecs_mfa_etcd_transport::Client`])
//! behind the C table of [`ecs_mfa_etcd_transport::abi`], for `pam_ecs_mfa.so` to load with
//! `dlopen` only when `[fleet] backend = "etcd"` is configured. A module without `[fleet]`
//! then never maps the TLS and HTTP code (about 60% of what it used to map on every login).
//!
//! All of this file is FFI: every entry point checks its pointers, catches panics (a panic
//! must not unwind into the module's frames, which belong to another copy of std) and reports
//! them as `CLASS_REFUSED`, which a login never takes for an outage.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use ecs_mfa_etcd_transport::abi::{
    ABI_VERSION, Answer, Api, Bytes, CLASS_OK, CLASS_REFUSED, CLASS_UNAVAILABLE,
};
use ecs_mfa_etcd_transport::{Client, Failure, LOGIN_MAX_ANSWER_BYTES, TlsPem};
use zeroize::Zeroize;

/// The table the module looks up (`abi::SYMBOL`).
#[unsafe(no_mangle)]
pub static ECS_MFA_ETCD_API: Api = Api {
    abi: ABI_VERSION,
    size: size_of::<Api>() as u32,
    client_new,
    client_post,
    client_free,
    answer_free,
};

/// The bytes `b` points to.
///
/// # Safety
/// `b.ptr` must point to `b.len` readable bytes that outlive `'a` (or be null with len 0).
unsafe fn slice<'a>(b: Bytes) -> &'a [u8] {
    if b.ptr.is_null() || b.len == 0 {
        return &[];
    }
    // SAFETY: the caller (the module, through the abi contract) lends `len` bytes at `ptr`
    // for the duration of the call.
    unsafe { std::slice::from_raw_parts(b.ptr, b.len) }
}

/// Fills `out` (which must be valid) with `class`, `status` and `data`.
fn fill(out: &mut Answer, class: u32, status: u16, data: Vec<u8>) {
    let mut data = std::mem::ManuallyDrop::new(data);
    out.class = class;
    out.status = status;
    out.data = data.as_mut_ptr();
    out.len = data.len();
    out.cap = data.capacity();
}

fn fail(out: &mut Answer, failure: Failure) {
    match failure {
        Failure::Unavailable(why) => fill(out, CLASS_UNAVAILABLE, 0, why.into_bytes()),
        Failure::Refused(why) => fill(out, CLASS_REFUSED, 0, why.into_bytes()),
    }
}

const PANICKED: &str = "internal error in libecs_mfa_etcd.so (panic caught)";

/// # Safety
/// The `Bytes` follow the abi contract; `out` is null or points to a writable `Answer`.
unsafe extern "C" fn client_new(
    ca: Bytes,
    cert: Bytes,
    key: Bytes,
    out: *mut Answer,
) -> *mut c_void {
    // SAFETY: `out` is null or valid and not aliased during the call (abi contract).
    let Some(out) = (unsafe { out.as_mut() }) else {
        return std::ptr::null_mut();
    };
    *out = Answer::EMPTY;
    // SAFETY: lent for this call (abi contract).
    let tls = unsafe {
        TlsPem {
            ca: slice(ca),
            cert: slice(cert),
            key: slice(key),
        }
    };
    // Only logins load this library: answers are bounded to what a login ever reads.
    match catch_unwind(AssertUnwindSafe(|| {
        Client::new(&tls, LOGIN_MAX_ANSWER_BYTES)
    })) {
        Ok(Ok(client)) => {
            fill(out, CLASS_OK, 0, Vec::new());
            Box::into_raw(Box::new(client)).cast()
        }
        Ok(Err(why)) => {
            fill(out, CLASS_REFUSED, 0, why.into_bytes());
            std::ptr::null_mut()
        }
        Err(_) => {
            fill(out, CLASS_REFUSED, 0, PANICKED.as_bytes().to_vec());
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `client` comes from `client_new` and is not freed; the `Bytes` follow the abi contract;
/// `out` is null or points to a writable `Answer`.
unsafe extern "C" fn client_post(
    client: *const c_void,
    url: Bytes,
    body: Bytes,
    token: Bytes,
    timeout_ms: u64,
    out: *mut Answer,
) {
    // SAFETY: as for client_new.
    let Some(out) = (unsafe { out.as_mut() }) else {
        return;
    };
    *out = Answer::EMPTY;
    // SAFETY: a live client from client_new (abi contract), only read here.
    let Some(client) = (unsafe { client.cast::<Client>().as_ref() }) else {
        fill(out, CLASS_REFUSED, 0, b"no client".to_vec());
        return;
    };
    // SAFETY: lent for this call (abi contract).
    let (url, body, token) = unsafe { (slice(url), slice(body), slice(token)) };
    let (Ok(url), Ok(token)) = (std::str::from_utf8(url), std::str::from_utf8(token)) else {
        fill(out, CLASS_REFUSED, 0, b"URL or token is not UTF-8".to_vec());
        return;
    };
    let token = (!token.is_empty()).then_some(token);
    let timeout = Duration::from_millis(timeout_ms);
    match catch_unwind(AssertUnwindSafe(|| client.post(url, body, token, timeout))) {
        Ok(Ok((status, mut answer))) => {
            // The answer moves out without a copy left behind: take the Vec out of the
            // Zeroizing wrapper (which then wipes an empty Vec).
            let bytes = std::mem::take(&mut *answer);
            fill(out, CLASS_OK, status, bytes);
        }
        Ok(Err(failure)) => fail(out, failure),
        Err(_) => fill(out, CLASS_REFUSED, 0, PANICKED.as_bytes().to_vec()),
    }
}

/// # Safety
/// `client` is null or comes from `client_new` and is freed once.
unsafe extern "C" fn client_free(client: *mut c_void) {
    if !client.is_null() {
        // SAFETY: made by Box::into_raw in client_new, given back once (abi contract).
        let client = unsafe { Box::from_raw(client.cast::<Client>()) };
        let _ = catch_unwind(AssertUnwindSafe(move || drop(client)));
    }
}

/// # Safety
/// `answer` is null or an `Answer` this library filled, freed once.
unsafe extern "C" fn answer_free(answer: *mut Answer) {
    // SAFETY: null or valid (abi contract).
    let Some(answer) = (unsafe { answer.as_mut() }) else {
        return;
    };
    if !answer.data.is_null() {
        // SAFETY: data/len/cap come from a Vec<u8> this library leaked in `fill`.
        let mut bytes = unsafe { Vec::from_raw_parts(answer.data, answer.len, answer.cap) };
        bytes.zeroize();
    }
    *answer = Answer::EMPTY;
}
