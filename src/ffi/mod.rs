//! The C ABI: every `extern "C"` item of the library lives under here.
//!
//! Each exported body runs inside `ffi_guard!`, so a Rust panic never
//! unwinds into C: it becomes `NDE_ERR_PANIC` (or NULL / 0). Signatures are
//! written out literally, because cbindgen does not expand macros.
//!
//! Every export that takes a pointer is an `unsafe extern "C" fn`: C sees no
//! difference, and from Rust a call needs `unsafe` (a safe call could hand
//! `nde_pool_free` any address; issue 22, item 6, and `src/soundness.rs`).
//! Each pointer's contract is the function's doc comment, which cbindgen
//! copies into the header; a `# Safety` heading there would change the
//! header, hence `clippy::missing_safety_doc` is allowed for this module.
#![allow(clippy::missing_safety_doc)]
// C handles and tables: nothing a Rust `{:?}` could show.
#![allow(missing_debug_implementations)]

use std::ffi::{c_int, c_void};

use crate::error::Error;

/// Runs `$body`; a panic inside it returns `$on_panic` instead.
macro_rules! ffi_guard {
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $on_panic,
        }
    };
}

/// The shape of most `int` exports: `$obj` is the `Option<&T>` of the
/// object pointer; NULL gives `NDE_ERR_INVALID`, otherwise `$call` (a
/// `Result<(), Error>` computed from the object bound to `$x`) becomes
/// `NDE_OK` or its error code, and a panic becomes `NDE_ERR_PANIC`.
macro_rules! ffi_status {
    ($obj:expr, |$x:ident| $call:expr) => {
        ffi_guard!($crate::result::nde_result::NDE_ERR_PANIC.code(), {
            match $obj {
                None => $crate::result::nde_result::NDE_ERR_INVALID.code(),
                Some($x) => $crate::ffi::status_code($call),
            }
        })
    };
}

pub use crate::events::NDE_EVENT_ANY;
pub use crate::result::nde_result;

pub mod api_table;
pub mod common;
pub mod log;
pub mod events;
pub mod monitor;
pub mod pool;

/// A function that releases data handed to the library. The library calls
/// it exactly once for each pointer it was given with, whatever happens.
#[allow(non_camel_case_types)]
pub type nde_free_fn = Option<unsafe extern "C" fn(data: *mut c_void)>;

/// A raw pointer the library carries between threads without looking at it.
#[derive(Copy, Clone)]
pub(crate) struct OpaquePtr(pub *mut c_void);
// SAFETY: the library never dereferences it; the C API documents that such
// pointers are passed to the caller's callbacks on the library's threads.
unsafe impl Send for OpaquePtr {}
// SAFETY: as for Send: shared references only copy the address.
unsafe impl Sync for OpaquePtr {}

pub(crate) use crate::owned::OwnedData;

/// Reads a NUL-terminated C string; NULL or invalid UTF-8 gives `None`.
///
/// # Safety
/// `s` is NULL or a valid NUL-terminated string.
pub(crate) unsafe fn c_str<'a>(s: *const std::ffi::c_char) -> Option<&'a str> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    unsafe { std::ffi::CStr::from_ptr(s) }.to_str().ok()
}

/// `NDE_OK` or the error's code.
pub(crate) fn status_code(r: Result<(), Error>) -> c_int {
    match r {
        Ok(()) => nde_result::NDE_OK.code(),
        Err(e) => e.code(),
    }
}

/// Writes `value` to the out-parameter `out` when both are present and
/// returns `NDE_OK`; otherwise writes nothing and returns `NDE_ERR_INVALID`.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: Option<T>) -> c_int {
    match value {
        Some(v) if !out.is_null() => {
            // SAFETY: non-NULL and writable (caller's contract).
            unsafe { out.write(v) };
            nde_result::NDE_OK.code()
        }
        _ => nde_result::NDE_ERR_INVALID.code(),
    }
}
