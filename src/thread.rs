//! Threads made with `pthread_create` directly.
//!
//! `std::thread::spawn` touches thread-locals of the *calling* thread, which
//! may register TLS destructors there; a C host must never get those from a
//! library call. Our own threads are named (cut to the 15 bytes Linux keeps)
//! so `top -H` and gdb show them, and are always joined by their owner.

use std::ffi::CString;

use crate::error::Error;

/// Linux keeps 15 bytes of a thread name plus the NUL.
pub(crate) const MAX_THREAD_NAME: usize = 15;

/// A running thread that must be joined (or, if the owner cannot join it,
/// detached explicitly).
#[derive(Debug)]
pub struct Thread {
    handle: libc::pthread_t,
}

// SAFETY: a pthread_t is a plain handle; joining it from another thread is
// what it is for.
unsafe impl Send for Thread {}
// SAFETY: a shared `&Thread` gives no access to the handle but reading it.
unsafe impl Sync for Thread {}

#[cfg(any(test, feature = "test-hooks"))]
pub use inject::fail_next_spawns;

/// Fault injection for tests only (`cfg(test)` or the `test-hooks`
/// feature): thread names starting with a registered prefix fail to start,
/// as many times as registered. One entry per prefix, so tests running in
/// parallel with their own prefixes do not interfere.
#[cfg(any(test, feature = "test-hooks"))]
mod inject {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    static INJECTED_FAILURES: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());
    static INJECTION_ARMED: AtomicUsize = AtomicUsize::new(0);

    /// Makes the next `count` calls to [`spawn`](super::spawn) whose thread name starts with
    /// `name_prefix` fail with [`Error::Thread`] (fault injection for tests);
    /// a count of 0 disarms every prefix starting with `name_prefix` (so ""
    /// disarms all).
    pub fn fail_next_spawns(name_prefix: &str, count: usize) {
        let mut table = INJECTED_FAILURES.lock().unwrap_or_else(|p| p.into_inner());
        if count == 0 {
            table.retain(|(p, _)| !p.starts_with(name_prefix));
        } else {
            table.retain(|(p, _)| p != name_prefix);
        }
        if count > 0 {
            table.push((name_prefix.to_owned(), count));
        }
        INJECTION_ARMED.store(table.len(), Ordering::SeqCst);
    }

    pub(super) fn injected_failure(name: &str) -> bool {
        if INJECTION_ARMED.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let mut table = INJECTED_FAILURES.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = table.iter().position(|(p, _)| name.starts_with(p.as_str())) else {
            return false;
        };
        table[i].1 -= 1;
        if table[i].1 == 0 {
            table.remove(i);
        }
        INJECTION_ARMED.store(table.len(), Ordering::SeqCst);
        true
    }
}

/// Cuts `name` to what Linux keeps, on a UTF-8 boundary, without NULs.
pub fn thread_name(name: &str) -> CString {
    let clean: String = name.chars().filter(|&c| c != '\0').collect();
    let mut end = clean.len().min(MAX_THREAD_NAME);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    CString::new(&clean[..end]).expect("NULs were removed")
}

type Body = (CString, Box<dyn FnOnce() + Send + 'static>);

extern "C" fn trampoline(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the Box<Body> leaked by `spawn`, handed over once.
    let (name, body) = *unsafe { Box::from_raw(arg as *mut Body) };
    // Named from inside, so the name is set before any of the body runs.
    // SAFETY: NUL-terminated name of at most 15 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    // A panic must never unwind out of a pthread start routine.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    std::ptr::null_mut()
}

/// Starts `body` on a new thread named `name` (cut to 15 bytes).
pub fn spawn<F>(name: &str, body: F) -> Result<Thread, Error>
where
    F: FnOnce() + Send + 'static,
{
    #[cfg(any(test, feature = "test-hooks"))]
    if inject::injected_failure(name) {
        return Err(Error::Thread(std::io::Error::from_raw_os_error(libc::EAGAIN)));
    }
    let boxed: Box<Body> = Box::new((thread_name(name), Box::new(body)));
    let arg = Box::into_raw(boxed) as *mut libc::c_void;
    let mut handle: libc::pthread_t = 0;
    // SAFETY: plain pthread_create with default attributes; on failure the
    // argument was not handed over and is reclaimed below.
    let rc = unsafe { libc::pthread_create(&mut handle, std::ptr::null(), trampoline, arg) };
    if rc != 0 {
        // SAFETY: the thread was not created, so we still own `arg`.
        drop(unsafe { Box::from_raw(arg as *mut Body) });
        return Err(Error::Thread(std::io::Error::from_raw_os_error(rc)));
    }
    Ok(Thread { handle })
}

impl Thread {
    /// Waits for the thread to end.
    pub fn join(self) {
        // SAFETY: the handle is joined exactly once (self is consumed).
        unsafe { libc::pthread_join(self.handle, std::ptr::null_mut()) };
    }

    /// Lets the thread end on its own (used only when a thread must release
    /// its own object and so cannot be joined by anyone).
    pub fn detach(self) {
        // SAFETY: the handle is consumed, so it is neither joined nor
        // detached twice.
        unsafe { libc::pthread_detach(self.handle) };
    }

    /// True when called from this thread.
    pub fn is_current(&self) -> bool {
        // SAFETY: pthread_self/pthread_equal have no preconditions.
        unsafe { libc::pthread_equal(self.handle, libc::pthread_self()) != 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn names_are_cut_to_fifteen_bytes() {
        assert_eq!(
            thread_name("nodev-device-event").to_bytes(),
            b"nodev-device-ev"
        );
        assert_eq!(thread_name("short").to_bytes(), b"short");
        // 'é' is two bytes: never split a character.
        let n = thread_name("ééééééééé");
        assert_eq!(n.to_bytes().len(), 14);
    }

    #[test]
    fn spawn_runs_names_and_joins() {
        let seen = Arc::new(Mutex::new(String::new()));
        let s2 = seen.clone();
        let t = spawn("nde-test-thread-long-name", move || {
            let mut buf = [0 as libc::c_char; 32];
            // SAFETY: buffer of 32 bytes.
            unsafe { libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr(), 32) };
            // SAFETY: pthread_getname_np wrote a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            *s2.lock().unwrap() = name.to_string_lossy().into_owned();
        })
        .unwrap();
        assert!(!t.is_current());
        t.join();
        assert_eq!(seen.lock().unwrap().as_str(), "nde-test-thread");
    }

    #[test]
    fn injected_failure_is_reported() {
        fail_next_spawns("inject-test", 1);
        assert_eq!(
            spawn("inject-test", || {}).err(),
            Some(Error::Thread(std::io::Error::from_raw_os_error(libc::EAGAIN)))
        );
        spawn("inject-test", || {}).unwrap().join();
    }
}
