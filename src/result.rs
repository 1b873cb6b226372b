//! The C result codes, `nde_result`, and how a Rust [`Error`] maps onto
//! them (used by the C layer only; Rust callers see [`Error`]).
//!
//! Every failing C call returns a negative `nde_result`, so libvirt-style
//! `if (f(...) < 0)` checks keep working.

use std::fmt;

use crate::error::Error;

/// Result codes returned by every `int` function of the C API.
///
/// Success is `NDE_OK` (0) or a non-negative id; every failure is
/// negative. `nde_result_str` gives each code its own text.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum nde_result {
    /// Success.
    NDE_OK = 0,
    /// A NULL pointer or an argument out of range.
    NDE_ERR_INVALID = -1,
    /// The object is stopped or shutting down; nothing was queued.
    NDE_ERR_STOPPED = -2,
    /// Memory could not be allocated.
    NDE_ERR_NO_MEMORY = -3,
    /// A thread could not be created.
    NDE_ERR_THREAD = -4,
    /// The timeout expired before the condition was met.
    NDE_ERR_TIMEOUT = -5,
    /// The call would wait for the calling thread itself (made from the
    /// object's own worker); nothing was changed.
    NDE_ERR_WOULD_DEADLOCK = -6,
    /// Unknown callback id, device, ...
    NDE_ERR_NOT_FOUND = -7,
    /// A bounded queue is full.
    NDE_ERR_QUEUE_FULL = -8,
    /// A system call failed; errno is kept.
    NDE_ERR_OS = -9,
    /// A bug inside the library was caught before it reached C.
    NDE_ERR_PANIC = -10,
}

const ALL_RESULTS: [nde_result; 11] = [
    nde_result::NDE_OK,
    nde_result::NDE_ERR_INVALID,
    nde_result::NDE_ERR_STOPPED,
    nde_result::NDE_ERR_NO_MEMORY,
    nde_result::NDE_ERR_THREAD,
    nde_result::NDE_ERR_TIMEOUT,
    nde_result::NDE_ERR_WOULD_DEADLOCK,
    nde_result::NDE_ERR_NOT_FOUND,
    nde_result::NDE_ERR_QUEUE_FULL,
    nde_result::NDE_ERR_OS,
    nde_result::NDE_ERR_PANIC,
];

impl nde_result {
    /// Every code, in order of value.
    pub fn all() -> [nde_result; 11] {
        ALL_RESULTS
    }

    /// The code as the C API returns it.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Maps an `int` back to a code, if it is one.
    pub fn from_code(code: i32) -> Option<nde_result> {
        ALL_RESULTS.iter().copied().find(|r| r.code() == code)
    }

    /// NUL-terminated static text for the code (for the C API).
    pub(crate) fn text_c(self) -> &'static str {
        match self {
            nde_result::NDE_OK => "success\0",
            nde_result::NDE_ERR_INVALID => {
                "invalid argument (NULL pointer or value out of range)\0"
            }
            nde_result::NDE_ERR_STOPPED => {
                "object is stopped or shutting down; nothing was queued\0"
            }
            nde_result::NDE_ERR_NO_MEMORY => "out of memory\0",
            nde_result::NDE_ERR_THREAD => "a thread could not be created\0",
            nde_result::NDE_ERR_TIMEOUT => "timed out\0",
            nde_result::NDE_ERR_WOULD_DEADLOCK => {
                "call would deadlock: made from the object's own worker thread\0"
            }
            nde_result::NDE_ERR_NOT_FOUND => "not found (unknown callback id or device)\0",
            nde_result::NDE_ERR_QUEUE_FULL => "queue is full\0",
            nde_result::NDE_ERR_OS => "a system call failed (see errno)\0",
            nde_result::NDE_ERR_PANIC => "internal error: a bug inside nodedev-events was caught\0",
        }
    }

    /// The text without its terminating NUL.
    pub fn text(self) -> &'static str {
        let t = self.text_c();
        &t[..t.len() - 1]
    }
}

impl fmt::Display for nde_result {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for nde_result {}

impl From<&Error> for nde_result {
    fn from(e: &Error) -> nde_result {
        match e {
            Error::InvalidArgument => nde_result::NDE_ERR_INVALID,
            Error::Stopped => nde_result::NDE_ERR_STOPPED,
            Error::NoMemory => nde_result::NDE_ERR_NO_MEMORY,
            Error::Thread(_) => nde_result::NDE_ERR_THREAD,
            Error::Timeout => nde_result::NDE_ERR_TIMEOUT,
            Error::WouldDeadlock => nde_result::NDE_ERR_WOULD_DEADLOCK,
            Error::NotFound => nde_result::NDE_ERR_NOT_FOUND,
            Error::QueueFull => nde_result::NDE_ERR_QUEUE_FULL,
            Error::Os(_) => nde_result::NDE_ERR_OS,
            Error::Panic => nde_result::NDE_ERR_PANIC,
        }
    }
}

impl Error {
    /// The C code of this error (negative). For `NDE_ERR_OS` and
    /// `NDE_ERR_THREAD` the OS error is put back into `errno`, as the
    /// header promises, whatever ran since it was captured.
    pub(crate) fn code(&self) -> i32 {
        if let Some(errno) = match self {
            Error::Os(e) | Error::Thread(e) => e.raw_os_error(),
            _ => None,
        } {
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() = errno };
        }
        nde_result::from(self).code()
    }
}

/// Converts a Rust result into the C convention: the value (>= 0) or a
/// negative code.
pub(crate) fn to_c(r: std::result::Result<i32, Error>) -> i32 {
    match r {
        Ok(v) => v,
        Err(e) => e.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_negative_and_texts_unique() {
        let mut texts = std::collections::HashSet::new();
        for r in nde_result::all() {
            assert!(r.code() <= 0);
            assert_eq!(nde_result::from_code(r.code()), Some(r));
            assert!(r.text_c().ends_with('\0'));
            assert!(texts.insert(r.text()), "duplicate text for {r:?}");
        }
        assert_eq!(nde_result::from_code(-11), None);
        assert_eq!(nde_result::from_code(1), None);
    }
}
