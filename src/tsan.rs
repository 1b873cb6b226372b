//! Hand-off annotations for ThreadSanitizer.
//!
//! The library is not instrumented, and its locks are futexes and atomics
//! that TSan cannot see, so a C host built with `-fsanitize=thread` would
//! see every hand-off (data written before a send and read by the job,
//! results written by a job and read after `wait_idle`) as a race. When the
//! host runs under TSan (`__tsan_acquire` / `__tsan_release` resolve in the
//! process), the pool and the callback registry announce their real
//! happens-before edges; otherwise each call is one load and a branch.

use std::ffi::CStr;
use std::sync::OnceLock;

type Annotate = unsafe extern "C" fn(addr: *mut libc::c_void);

/// The runtime's functions, looked up once (None: not running under TSan).
static ACQUIRE: OnceLock<Option<Annotate>> = OnceLock::new();
static RELEASE: OnceLock<Option<Annotate>> = OnceLock::new();

#[cold]
fn resolve(name: &CStr) -> Option<Annotate> {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the
    // process's global scope, where a TSan runtime would be.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a non-NULL result is the runtime's annotation function, whose
    // C signature is `void (void *)`.
    (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, Annotate>(f) })
}

#[inline]
fn call(slot: &OnceLock<Option<Annotate>>, name: &CStr, addr: *const ()) {
    if let Some(f) = slot.get_or_init(|| resolve(name)) {
        // SAFETY: `f` takes any address and only records a synchronisation
        // event on it.
        unsafe { f(addr as *mut libc::c_void) };
    }
}

/// What happened before on this thread happens before whatever follows an
/// `acquire` of `addr` on another thread.
#[inline]
pub(crate) fn release(addr: *const ()) {
    call(&RELEASE, c"__tsan_release", addr);
}

/// See [`release`].
#[inline]
pub(crate) fn acquire(addr: *const ()) {
    call(&ACQUIRE, c"__tsan_acquire", addr);
}
