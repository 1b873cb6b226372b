//! The Rust error type. The C layer maps it onto `nde_result` codes
//! (`ffi/result.rs`), so every failing C call still returns a negative
//! `int` that libvirt-style `if (f(...) < 0)` checks catch.

use std::fmt;
use std::io;

/// Why a call failed.
///
/// The operating system's error is kept where there is one ([`Error::Os`],
/// [`Error::Thread`]) and is the [`std::error::Error::source`]. New
/// variants may be added (hence `#[non_exhaustive]`).
///
/// ```
/// use nodedev_events::{Error, Events};
///
/// let events = Events::new("example")?;
/// events.shutdown_prepare();
/// match events.submit(nodedev_events::EventType::NDE_EVENT_INIT, nodedev_events::EventData::none()) {
///     Err(Error::Stopped) => {} // refused: nothing was queued
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An argument out of range (a bad limit, a flag combination, a second
    /// `start`, ...).
    InvalidArgument,
    /// The object is stopped or shutting down; nothing was queued.
    Stopped,
    /// Memory could not be allocated.
    NoMemory,
    /// A thread could not be created; the OS error is the source.
    Thread(io::Error),
    /// The timeout expired before the condition was met.
    Timeout,
    /// The call would wait for the calling thread itself (made from the
    /// object's own worker); nothing was changed.
    WouldDeadlock,
    /// Unknown callback or device.
    NotFound,
    /// A bounded queue is full.
    QueueFull,
    /// A system call failed; the OS error is the source.
    Os(io::Error),
    /// A bug inside the library was caught (a panic) before it could do
    /// harm.
    Panic,
}

impl Error {
    /// The last OS error (`errno`) as [`Error::Os`].
    pub(crate) fn last_os_error() -> Error {
        Error::Os(io::Error::last_os_error())
    }
}

/// Equal when of the same kind and, for errors that keep an OS error, with
/// the same `errno` (so tests and callers can compare results directly).
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        match (self, other) {
            (Error::Os(a), Error::Os(b)) | (Error::Thread(a), Error::Thread(b)) => {
                a.raw_os_error() == b.raw_os_error() && a.kind() == b.kind()
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::InvalidArgument => "invalid argument",
            Error::Stopped => "stopped or shutting down; nothing was queued",
            Error::NoMemory => "out of memory",
            Error::Thread(_) => "a thread could not be created",
            Error::Timeout => "timed out",
            Error::WouldDeadlock => "the call would wait for the calling thread itself",
            Error::NotFound => "not found",
            Error::QueueFull => "queue is full",
            Error::Os(_) => "a system call failed",
            Error::Panic => "internal error: a bug inside nodedev-events was caught",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os(e) | Error::Thread(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Os(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn os_errors_keep_their_source_and_compare_by_errno() {
        let e = Error::Os(io::Error::from_raw_os_error(libc::EBADF));
        let source = e.source().expect("the OS error");
        assert_eq!(source.to_string(), io::Error::from_raw_os_error(libc::EBADF).to_string());
        assert_eq!(e, Error::Os(io::Error::from_raw_os_error(libc::EBADF)));
        assert_ne!(e, Error::Os(io::Error::from_raw_os_error(libc::EINVAL)));
        assert_ne!(e, Error::Timeout);
        assert!(Error::Timeout.source().is_none());
        assert_eq!(Error::Timeout.to_string(), "timed out");
    }
}
