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
/// way crossbeam and tokio do it. Code under model (the pool, its intake,
/// the callback registry) imports its mutexes, condition variables,
/// atomics, cells, threads and spin-wait from here, so the models run the
/// code that ships.
#[cfg(not(loom))]
// The benchmark-only SegQueue intake leaves the intake's primitives unused.
#[cfg_attr(feature = "crossbeam-intake", allow(unused_imports, dead_code))]
pub(crate) mod model {
    pub(crate) use super::{lock, wait, wait_until};
    pub(crate) use crate::thread::{spawn, Thread};
    pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    /// `std::cell::UnsafeCell` with loom's access API, so that under loom
    /// every access to a slot is checked for races. (Built zeroed, inside
    /// the intake's blocks, in normal builds.)
    #[derive(Debug)]
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Runs `f` with a pointer to the contents for writing.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// One step of a wait for another thread's few instructions: lets a
    /// preempted thread run.
    pub(crate) fn yield_now() {
        std::hint::spin_loop();
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }

    /// True while a spin that waits for work may go on (`since` is when it
    /// began): real time decides.
    pub(crate) fn keep_spinning(since: std::time::Instant, limit: std::time::Duration) -> bool {
        since.elapsed() < limit
    }
}

/// See the non-loom twin above.
#[cfg(loom)]
pub(crate) mod model {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::time::Instant;

    use crate::error::Error;

    /// [`super::lock`] for loom's mutex.
    pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`super::wait`] for loom's condition variable.
    pub(crate) fn wait<'a, T>(cond: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cond.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// [`super::wait_until`] for loom: loom has no time, so a wait with a
    /// deadline is a plain wait (the models use none).
    pub(crate) fn wait_until<'a, S>(
        cond: &Condvar,
        guard: MutexGuard<'a, S>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, S>, bool) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return (guard, true);
        }
        (wait(cond, guard), false)
    }

    /// A thread of the model (`crate::thread::Thread` in normal builds).
    pub(crate) struct Thread(loom::thread::JoinHandle<()>);

    /// [`crate::thread::spawn`] for loom (names are not modelled).
    pub(crate) fn spawn<F>(_name: &str, body: F) -> Result<Thread, Error>
    where
        F: FnOnce() + Send + 'static,
    {
        Ok(Thread(loom::thread::spawn(body)))
    }

    impl Thread {
        pub(crate) fn join(self) {
            let _ = self.0.join();
        }

        pub(crate) fn detach(self) {}
    }

    /// Under loom a spin must hand over to the other threads, or the model
    /// would never end.
    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }

    /// loom has no time: a spin waiting for work makes one pass.
    pub(crate) fn keep_spinning(_since: Instant, _limit: std::time::Duration) -> bool {
        false
    }
}
