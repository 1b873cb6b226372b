//! One callback registry, generic over the callback type and its filter:
//! the events layer's per-type callbacks and the monitor's lifecycle
//! listeners are both instances of it.
//!
//! Registration order is dispatch order. Each dispatch runs over a snapshot
//! of the entries registered when it began, skipping any deregistered
//! meanwhile. The promises of `deregister`:
//! - from another thread: when it returns, the callback is not running, will
//!   never run again, and its `on_remove` (the userdata release) has
//!   completed;
//! - from the dispatching thread (inside a callback): it returns at once;
//!   the callback does not run again, and if it is the one running, its
//!   `on_remove` runs right after it returns.
//!
//! The handshake: dispatch publishes the id it is about to run in `running`
//! and then reads the entry's `removed` flag; deregister publishes `removed`
//! and then reads `running`, so either dispatch skips the entry or
//! deregister sees it running and waits for `running` to change (the same
//! pair guards `waiters` against a lost wake-up). Each of these accesses is
//! a read-modify-write, not a plain load or store: RMWs on one location are
//! totally ordered and synchronise, so the pairs hold under acquire/release
//! alone, which is what loom checks (it models SeqCst loads and stores as
//! acquire/release and reported a false deadlock on the plain version). Only
//! the deregistering thread releases the entry, except when it is the
//! dispatching thread itself, which marks it for release after the return.
//! Panics in callbacks and in releases are caught and counted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::result::{nde_result, Error};
use crate::sync::model::{lock, wait, AtomicBool, AtomicI64, AtomicUsize, Condvar, Mutex};
use crate::tsan;

/// Runs once when a callback is removed: releases its userdata.
pub type OnRemove = Box<dyn FnOnce() + Send>;

struct Entry<F: ?Sized, K> {
    id: i32,
    /// What the callback wants (matched by the dispatcher's predicate).
    filter: K,
    callback: Mutex<Box<F>>,
    on_remove: Mutex<Option<OnRemove>>,
    removed: AtomicBool,
    /// Removed by itself while running: dispatch releases it on return.
    release_after_return: AtomicBool,
}

impl<F: ?Sized, K> Entry<F, K> {
    fn release(&self) {
        let f = lock(&self.on_remove).take();
        if let Some(f) = f {
            // userdata_free is C code or our own: it must not stop the rest.
            let _ = catch_unwind(AssertUnwindSafe(f));
        }
    }
}

/// The entries one dispatch runs over.
pub(crate) struct Snapshot<F: ?Sized, K>(Arc<Vec<Arc<Entry<F, K>>>>);

impl<F: ?Sized, K> Snapshot<F, K> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct State<F: ?Sized, K> {
    /// Copy-on-write: a dispatch takes the current list with one Arc clone.
    entries: Arc<Vec<Arc<Entry<F, K>>>>,
    next_id: i32,
}

const NOT_RUNNING: i64 = -1;

/// Callbacks of type `F` (e.g. `dyn FnMut(..) + Send`) with filters `K`.
pub(crate) struct Registry<F: ?Sized, K> {
    state: Mutex<State<F, K>>,
    /// The id of the callback running now on the dispatching thread.
    running: AtomicI64,
    /// Deregistering threads waiting for `running` to change.
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    returned: Condvar,
    panics: AtomicUsize,
}

impl<F: ?Sized, K> Default for Registry<F, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: ?Sized, K> Registry<F, K> {
    pub(crate) fn new() -> Self {
        Registry {
            state: Mutex::new(State { entries: Arc::new(Vec::new()), next_id: 0 }),
            running: AtomicI64::new(NOT_RUNNING),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            returned: Condvar::new(),
            panics: AtomicUsize::new(0),
        }
    }

    /// Adds a callback; returns its id (>= 0). On failure `on_remove` has
    /// run before this returns.
    pub(crate) fn register(&self, filter: K, callback: Box<F>, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        // The registering thread's writes (userdata) happen before the
        // callback runs (ThreadSanitizer annotation; a no-op otherwise).
        tsan::release(self.sync_addr());
        let mut st = lock(&self.state);
        if st.next_id == i32::MAX {
            drop(st);
            if let Some(f) = on_remove {
                f();
            }
            return Err(nde_result::NDE_ERR_NO_MEMORY);
        }
        let id = st.next_id;
        st.next_id += 1;
        let mut entries = Vec::clone(&st.entries);
        entries.push(Arc::new(Entry {
            id,
            filter,
            callback: Mutex::new(callback),
            on_remove: Mutex::new(on_remove),
            removed: AtomicBool::new(false),
            release_after_return: AtomicBool::new(false),
        }));
        st.entries = Arc::new(entries);
        Ok(id)
    }

    /// Removes callback `id` (see the module's promises).
    /// `on_dispatch_thread`: the caller is the thread that dispatches.
    pub(crate) fn deregister(&self, id: i32, on_dispatch_thread: bool) -> Result<(), Error> {
        let entry = {
            let mut st = lock(&self.state);
            let Some(pos) = st.entries.iter().position(|e| e.id == id) else {
                return Err(nde_result::NDE_ERR_NOT_FOUND);
            };
            let mut entries = Vec::clone(&st.entries);
            let entry = entries.remove(pos);
            st.entries = Arc::new(entries);
            entry
        };
        self.retire(&entry, on_dispatch_thread);
        Ok(())
    }

    /// Removes every callback, with `deregister`'s promises for each.
    pub(crate) fn clear(&self, on_dispatch_thread: bool) {
        let entries = std::mem::replace(&mut lock(&self.state).entries, Arc::new(Vec::new()));
        for e in entries.iter() {
            self.retire(e, on_dispatch_thread);
        }
    }

    /// Marks a removed entry, waits until it is not running (or, on the
    /// dispatching thread, defers), and releases it.
    fn retire(&self, entry: &Entry<F, K>, on_dispatch_thread: bool) {
        tsan::release(self.sync_addr());
        let id = entry.id as i64;
        // Paired with dispatch: see the module comment.
        let early = self.known_bad_early_read();
        entry.removed.swap(true, Ordering::SeqCst);
        if early.unwrap_or_else(|| self.running.fetch_add(0, Ordering::SeqCst)) == id {
            if on_dispatch_thread {
                // Removing itself: released by dispatch right after it returns.
                entry.release_after_return.store(true, Ordering::SeqCst);
                return;
            }
            let mut g = lock(&self.wait_lock);
            self.waiters.fetch_add(1, Ordering::SeqCst);
            while self.running.fetch_add(0, Ordering::SeqCst) == id {
                g = wait(&self.returned, g);
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // The callback's last run happens before its userdata is released
        // and before deregister returns.
        tsan::acquire(self.sync_addr());
        entry.release();
    }

    /// `running` read before the entry is marked removed: the known-bad
    /// order the loom model must catch, when a loom test asks for it;
    /// never in a normal build.
    fn known_bad_early_read(&self) -> Option<i64> {
        #[cfg(loom)]
        return known_bad::READ_RUNNING_FIRST.with(|b| b.get()).then(|| self.running.load(Ordering::SeqCst));
        #[cfg(not(loom))]
        None
    }

    /// The callbacks registered now, for one or more `dispatch` calls.
    pub(crate) fn snapshot(&self) -> Snapshot<F, K> {
        Snapshot(Arc::clone(&lock(&self.state).entries))
    }

    /// Runs `call` on every callback of `snapshot` whose filter `wants`,
    /// in registration order, skipping removed ones. Called from one thread
    /// only (the dispatching thread).
    pub(crate) fn dispatch(&self, snapshot: &Snapshot<F, K>, wants: impl Fn(&K) -> bool, mut call: impl FnMut(&mut F)) {
        tsan::acquire(self.sync_addr());
        for entry in snapshot.0.iter() {
            if !wants(&entry.filter) {
                continue;
            }
            self.running.swap(entry.id as i64, Ordering::SeqCst);
            if !entry.removed.fetch_or(false, Ordering::SeqCst) {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let mut cb = lock(&entry.callback);
                    call(&mut **cb)
                }));
                if result.is_err() {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            tsan::release(self.sync_addr());
            self.running.swap(NOT_RUNNING, Ordering::SeqCst);
            if self.waiters.fetch_add(0, Ordering::SeqCst) > 0 {
                let _g = lock(&self.wait_lock);
                self.returned.notify_all();
            }
            if entry.release_after_return.load(Ordering::SeqCst) {
                entry.release();
            }
        }
    }

    /// The address this registry's ThreadSanitizer annotations use.
    fn sync_addr(&self) -> *const () {
        self as *const Self as *const ()
    }

    /// True when some registered callback's filter satisfies `pred`.
    pub(crate) fn any(&self, pred: impl Fn(&K) -> bool) -> bool {
        lock(&self.state).entries.iter().any(|e| pred(&e.filter))
    }

    /// Panics caught inside callbacks.
    pub(crate) fn caught_panics(&self) -> usize {
        self.panics.load(Ordering::Relaxed)
    }
}

#[cfg(loom)]
pub(crate) mod known_bad {
    thread_local! {
        /// Deregister reads `running` before publishing `removed`.
        pub(crate) static READ_RUNNING_FIRST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
}

impl<F: ?Sized, K> Drop for Registry<F, K> {
    fn drop(&mut self) {
        // Nothing can be dispatching: `&mut self`.
        self.clear(false);
    }
}

/// The deregister handshake under loom: every interleaving of a dispatch
/// against a deregister from another thread (`make check-loom`).
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::AtomicBool as LoomBool;

    type Cb = dyn FnMut() + Send;

    /// Deregister from another thread while dispatch may be running the
    /// callback: once deregister returned, the callback never runs and its
    /// release has completed, exactly once, never during a run.
    fn model(read_running_first: bool) {
        loom::model(move || {
            let reg: Arc<Registry<Cb, ()>> = Arc::new(Registry::new());
            let returned = Arc::new(LoomBool::new(false));
            let in_callback = Arc::new(LoomBool::new(false));
            let released = Arc::new(LoomBool::new(false));
            // Panics inside callbacks and releases are caught by the
            // registry: violations are recorded and asserted at the end.
            let late_run = Arc::new(LoomBool::new(false));
            let bad_release = Arc::new(LoomBool::new(false));
            let (r2, c2, l2) = (returned.clone(), in_callback.clone(), late_run.clone());
            let (rel2, c3, b2) = (released.clone(), in_callback.clone(), bad_release.clone());
            let id = reg
                .register(
                    (),
                    Box::new(move || {
                        c2.store(true, Ordering::SeqCst);
                        if r2.load(Ordering::SeqCst) {
                            l2.store(true, Ordering::SeqCst);
                        }
                        c2.store(false, Ordering::SeqCst);
                    }),
                    Some(Box::new(move || {
                        if c3.load(Ordering::SeqCst) {
                            b2.store(true, Ordering::SeqCst); // during a run
                        }
                        if rel2.swap(true, Ordering::SeqCst) {
                            b2.store(true, Ordering::SeqCst); // twice
                        }
                    })),
                )
                .unwrap();
            let reg2 = reg.clone();
            let dispatcher = loom::thread::spawn(move || {
                let snap = reg2.snapshot();
                reg2.dispatch(&snap, |_| true, |cb| cb());
            });
            known_bad::READ_RUNNING_FIRST.with(|b| b.set(read_running_first));
            reg.deregister(id, false).unwrap();
            assert!(released.load(Ordering::SeqCst), "deregister returned before the release");
            returned.store(true, Ordering::SeqCst);
            dispatcher.join().unwrap();
            assert!(!late_run.load(Ordering::SeqCst), "callback ran after deregister returned");
            assert!(!bad_release.load(Ordering::SeqCst), "released while running, or twice");
        });
    }

    #[test]
    fn deregister_against_dispatch() {
        model(false);
    }

    #[test]
    #[should_panic]
    fn known_bad_deregister_reading_running_first_is_caught() {
        model(true);
    }
}
