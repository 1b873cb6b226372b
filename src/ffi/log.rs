//! `nde_set_log_callback`: where the library's warnings and errors go.

use std::ffi::{c_char, c_int, c_void, CString};

use super::{nde_free_fn, OwnedData};
use crate::monitor::log::{self, Level};
use crate::result::nde_result;

/// Severity of a log message (`NDE_LOG_ERROR` is the most severe).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum nde_log_level {
    /// Something failed; the library carries on without it.
    NDE_LOG_ERROR = 1,
    /// Something was lost or refused and is being repaired (an overflow and
    /// its resync, a failed mdevctl refresh).
    NDE_LOG_WARNING = 2,
    /// A state worth knowing (mdevctl not found, directory not watched).
    NDE_LOG_INFO = 3,
    /// Detail for debugging (a refused message and why).
    NDE_LOG_DEBUG = 4,
}

/// A log callback: `message` is one line without a trailing newline, valid
/// during the call only.
#[allow(non_camel_case_types)]
pub type nde_log_fn =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: nde_log_level, message: *const c_char)>;

/// The C callback with its userdata; dropping it runs `userdata_free`.
struct CLogger {
    func: unsafe extern "C" fn(*mut c_void, nde_log_level, *const c_char),
    userdata: OwnedData,
}

// SAFETY: the header tells the caller that the callback runs on the
// library's threads, several at a time; the library only passes the
// pointer back and frees it once (OwnedData).
unsafe impl Sync for CLogger {}

impl CLogger {
    fn call(&self, level: Level, msg: &str) {
        let level = match level {
            Level::Error => nde_log_level::NDE_LOG_ERROR,
            Level::Warn => nde_log_level::NDE_LOG_WARNING,
            Level::Info => nde_log_level::NDE_LOG_INFO,
            Level::Debug => nde_log_level::NDE_LOG_DEBUG,
        };
        // Interior NULs (from a hostile device name) must not cut the line.
        let line = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: the caller's callback with its userdata and a valid string.
        unsafe { (self.func)(self.userdata.ptr, level, line.as_ptr()) };
    }
}

/// Sends the library's log messages to `log_fn` instead of the default, for the
/// whole process (all monitors, pools and events objects).
///
/// `log_fn(userdata, level, message)` runs on the thread that logs: the
/// monitor's reader, worker and mdevctl threads, or a thread calling into
/// the library; several threads may call it at once. `message` is valid
/// during the call only. The callback must not call back into the object
/// that logs (it may be holding a lock); it may call
/// `nde_set_log_callback`.
///
/// `log_fn == NULL` restores the default: messages go to standard error when
/// the environment variable `NDE_DEBUG` is set (not "0") at the first
/// message, and nowhere otherwise.
///
/// The previous callback's `userdata_free` runs exactly once: before this
/// call returns, after every call into the previous callback has returned
/// (so the caller may free what it used). Called from inside a log
/// callback, it runs instead when the last call into the previous callback
/// returns. `userdata_free` of this call (NULL allowed) runs when this
/// callback is replaced in turn, or at once when `log_fn` is NULL.
///
/// Returns `NDE_OK`.
#[no_mangle]
pub unsafe extern "C" fn nde_set_log_callback(log_fn: nde_log_fn, userdata: *mut c_void, userdata_free: nde_free_fn) -> c_int {
    // SAFETY: the caller hands `userdata` over with `userdata_free` (the header's contract).
    let data = unsafe { OwnedData::new(userdata, userdata_free) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        match log_fn {
            None => {
                drop(data);
                log::set_logger(None);
            }
            Some(func) => {
                let l = CLogger { func, userdata: data };
                log::set_logger(Some(Box::new(move |level, msg| l.call(level, msg))));
            }
        }
        nde_result::NDE_OK.code()
    })
}
