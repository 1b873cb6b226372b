//! Synchronisation helpers shared by the crate: the one poison-tolerant
//! `lock`, the one `CachePadded`, and the one deadline helper.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks `m`, ignoring poison. A panic never happens while our code holds a
/// lock, and if one did the guarded state is still consistent: poison must
/// never wedge a shutdown.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `cond.wait(guard)`, ignoring poison (see [`lock`]).
pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cond.wait(guard).unwrap_or_else(|p| p.into_inner())
}

/// Keeps a hot atomic on a cache line of its own, away from the fields
/// other threads write.
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Waits on `cond` until woken or `deadline` (None = for ever). Returns the
/// guard and whether the deadline had passed before the wait.
pub(crate) fn wait_until<'a, S>(
    cond: &Condvar,
    guard: MutexGuard<'a, S>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, S>, bool) {
    match deadline {
        None => (wait(cond, guard), false),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return (guard, true);
            }
            let (g, _) = cond.wait_timeout(guard, d - now).unwrap_or_else(|p| p.into_inner());
            (g, false)
        }
    }
}

/// The primitives of the code that is model-checked with loom: std's in
/// every normal build, loom's under `--cfg loom` (`make check-loom`), the
/// way crossbeam and tokio do it. Code under model imports its mutexes,
/// condition variables and atomics from here.
#[cfg(not(loom))]
pub(crate) mod model {
    pub(crate) use super::{lock, wait};
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
    pub(crate) use std::sync::{Condvar, Mutex};
}

/// See the non-loom twin above.
#[cfg(loom)]
pub(crate) mod model {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
    pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

    /// [`super::lock`] for loom's mutex.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`super::wait`] for loom's condition variable.
    pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cond.wait(guard).unwrap_or_else(|p| p.into_inner())
    }
}
