//! Result texts and the library version.

use std::ffi::{c_char, c_int};

use crate::result::nde_result;

/// Static text describing `code`, for any `int` (unknown codes get a text
/// that says so). Never NULL; do not free it.
#[no_mangle]
pub extern "C" fn nde_result_str(code: c_int) -> *const c_char {
    let text = match nde_result::from_code(code) {
        Some(r) => r.text_c(),
        None if code > 0 => "success (a non-negative id or count)\0",
        None => "unknown nde_result code\0",
    };
    text.as_ptr() as *const c_char
}

/// The library's version as "MAJOR.MINOR.PATCH", static; compare with the
/// `NDE_VERSION_*` macros of the header the caller was built with.
#[no_mangle]
pub extern "C" fn nde_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
