//! The C ABI: every `extern "C"` item of the library lives under here.
//!
//! Each exported body runs inside [`ffi_guard!`], so a Rust panic never
//! unwinds into C: it becomes `NDE_ERR_PANIC` (or NULL / 0). Signatures are
//! written out literally, because cbindgen does not expand macros.

use std::ffi::c_void;

/// Runs `$body`; a panic inside it returns `$on_panic` instead.
macro_rules! ffi_guard {
    ($on_panic:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => $on_panic,
        }
    };
}

pub mod api_table;
pub mod common;
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
    std::ffi::CStr::from_ptr(s).to_str().ok()
}
