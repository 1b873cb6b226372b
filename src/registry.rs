//! (Over 400 lines: 280 lines of registry, then its unit and loom tests.)
//!
//! One callback registry, generic over the callback type and its filter:
//! the events layer's per-type callbacks and the monitor's lifecycle
//! listeners are both instances of it.
//!
//! Registration order is dispatch order. Each dispatch runs over a snapshot
//! of the entries registered when it began, skipping any deregistered
//! meanwhile. Several threads may dispatch at once (the events layer with
//! more than one worker), so one callback may run on several of them at the
//! same time: callbacks are `Fn + Sync` (a caller with an `FnMut` wraps it
//! in a mutex). The promises of `deregister`:
//! - from a thread that does not dispatch: when it returns, the callback is
//!   not running on any thread, will never run again, and its `on_remove`
//!   (the userdata release) has completed;
//! - from a dispatching thread (inside a callback): it never waits (two
//!   callbacks removing each other would deadlock); the callback does not
//!   start again, and its `on_remove` runs as soon as no thread runs it:
//!   at once when none does, else right after the last running call
//!   returns (so a callback removing itself is released after it returns).
//!
//! The handshake, per entry: dispatch counts itself in the entry's
//! `running` and then reads `removed`; deregister publishes `removed` and
//! then reads `running`, so either dispatch skips the entry or deregister
//! sees it running and waits for `running` to drop to zero (the same pair
//! guards `waiters` against a lost wake-up, and `release_after_return`
//! against a deferred release that nobody runs). Each of these accesses is
//! a read-modify-write, not a plain load or store: RMWs on one location are
//! totally ordered and synchronise, so the pairs hold under acquire/release
//! alone, which is what loom checks (it models SeqCst loads and stores as
//! acquire/release and reported a false deadlock on the plain version).
//! `on_remove` is taken out of its slot once, so whichever of the
//! deregistering thread and the last dispatcher gets there first runs it,
//! exactly once. Panics in callbacks and in releases are caught and counted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::result::{nde_result, Error};
use crate::sync::model::{lock, wait, AtomicBool, AtomicUsize, Condvar, Mutex};
use crate::tsan;

/// Runs once when a callback is removed: releases its userdata.
pub type OnRemove = Box<dyn FnOnce() + Send>;

struct Entry<F: ?Sized, K> {
    id: i32,
    /// What the callback wants (matched by the dispatcher's predicate).
    filter: K,
    callback: Box<F>,
    on_remove: Mutex<Option<OnRemove>>,
    /// Dispatching threads inside this entry now (running it, or about to
    /// find it removed and skip it).
    running: AtomicUsize,
    removed: AtomicBool,
    /// Removed from a dispatching thread while running: the last dispatch
    /// to leave the entry releases it.
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

/// Callbacks of type `F` (e.g. `dyn Fn(..) + Send + Sync`) with filters `K`.
pub(crate) struct Registry<F: ?Sized, K> {
    state: Mutex<State<F, K>>,
    /// Deregistering threads waiting for an entry's `running` to drop.
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
            callback,
            on_remove: Mutex::new(on_remove),
            running: AtomicUsize::new(0),
            removed: AtomicBool::new(false),
            release_after_return: AtomicBool::new(false),
        }));
        st.entries = Arc::new(entries);
        Ok(id)
    }

    /// Removes callback `id` (see the module's promises).
    /// `on_dispatch_thread`: the caller is a thread that dispatches.
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

    /// Marks a removed entry, waits until no thread runs it (or, on a
    /// dispatching thread, leaves the release to the last one that does),
    /// and releases it.
    fn retire(&self, entry: &Entry<F, K>, on_dispatch_thread: bool) {
        tsan::release(self.sync_addr());
        // Paired with dispatch: see the module comment.
        let early = Self::known_bad_early_read(entry);
        entry.removed.swap(true, Ordering::SeqCst);
        if early.unwrap_or_else(|| entry.running.fetch_add(0, Ordering::SeqCst)) > 0 {
            if on_dispatch_thread {
                // Never wait here: released by the last dispatch to leave,
                // unless every one left before it could see the flag.
                entry.release_after_return.swap(true, Ordering::SeqCst);
                if entry.running.fetch_add(0, Ordering::SeqCst) > 0 {
                    return;
                }
            } else {
                let mut g = lock(&self.wait_lock);
                self.waiters.fetch_add(1, Ordering::SeqCst);
                while entry.running.fetch_add(0, Ordering::SeqCst) > 0 {
                    g = wait(&self.returned, g);
                }
                self.waiters.fetch_sub(1, Ordering::SeqCst);
            }
        }
        // The callback's last run happens before its userdata is released
        // and before deregister returns.
        tsan::acquire(self.sync_addr());
        entry.release();
    }

    /// `running` read before the entry is marked removed: the known-bad
    /// order the loom model must catch, when a loom test asks for it;
    /// never in a normal build.
    #[cfg_attr(not(loom), allow(unused_variables))]
    fn known_bad_early_read(entry: &Entry<F, K>) -> Option<usize> {
        #[cfg(loom)]
        return known_bad::READ_RUNNING_FIRST.with(|b| b.get()).then(|| entry.running.load(Ordering::SeqCst));
        #[cfg(not(loom))]
        None
    }

    /// The callbacks registered now, for one or more `dispatch` calls.
    pub(crate) fn snapshot(&self) -> Snapshot<F, K> {
        Snapshot(Arc::clone(&lock(&self.state).entries))
    }

    /// Runs `call` on every callback of `snapshot` whose filter `wants`,
    /// in registration order, skipping removed ones. Any number of threads
    /// may dispatch at the same time.
    pub(crate) fn dispatch(&self, snapshot: &Snapshot<F, K>, wants: impl Fn(&K) -> bool, mut call: impl FnMut(&F)) {
        tsan::acquire(self.sync_addr());
        for entry in snapshot.0.iter() {
            if !wants(&entry.filter) {
                continue;
            }
            entry.running.fetch_add(1, Ordering::SeqCst);
            if !entry.removed.fetch_or(false, Ordering::SeqCst) {
                let result = catch_unwind(AssertUnwindSafe(|| call(&entry.callback)));
                if result.is_err() {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            tsan::release(self.sync_addr());
            if entry.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                if self.waiters.fetch_add(0, Ordering::SeqCst) > 0 {
                    let _g = lock(&self.wait_lock);
                    self.returned.notify_all();
                }
                if entry.release_after_return.fetch_or(false, Ordering::SeqCst) {
                    tsan::acquire(self.sync_addr());
                    entry.release();
                }
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

/// The deregister handshake under loom: every interleaving of one or two
/// dispatching threads against a deregister from another thread, and of a
/// callback removing itself while another thread runs it (`make
/// check-loom`).
#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::atomic::{AtomicBool as LoomBool, AtomicUsize as LoomUsize};

    type Cb = dyn Fn() + Send + Sync;

    /// Preemption bound of the three-thread model.
    const PREEMPTIONS: usize = 3;

    /// What the callback and its release saw; checked after the threads.
    #[derive(Default)]
    struct Seen {
        /// Deregister returned (set by the deregistering thread).
        returned: LoomBool,
        /// Calls of the callback running now.
        in_callback: LoomUsize,
        released: LoomBool,
        late_run: LoomBool,
        bad_release: LoomBool,
    }

    fn register(reg: &Registry<Cb, ()>, seen: &Arc<Seen>, body: impl Fn() + Send + Sync + 'static) -> i32 {
        let (s1, s2) = (seen.clone(), seen.clone());
        reg.register(
            (),
            Box::new(move || {
                s1.in_callback.fetch_add(1, Ordering::SeqCst);
                if s1.returned.load(Ordering::SeqCst) {
                    s1.late_run.store(true, Ordering::SeqCst);
                }
                body();
                s1.in_callback.fetch_sub(1, Ordering::SeqCst);
            }),
            Some(Box::new(move || {
                if s2.in_callback.load(Ordering::SeqCst) > 0 {
                    s2.bad_release.store(true, Ordering::SeqCst); // during a run
                }
                if s2.released.swap(true, Ordering::SeqCst) {
                    s2.bad_release.store(true, Ordering::SeqCst); // twice
                }
            })),
        )
        .unwrap()
    }

    /// Deregister from a thread that does not dispatch while `dispatchers`
    /// threads may be running the callback: once deregister returned, the
    /// callback never runs and its release has completed, exactly once,
    /// never during a run (on any thread).
    fn model(read_running_first: bool, dispatchers: usize) {
        let mut builder = loom::model::Builder::new();
        if dispatchers > 1 {
            // Three threads with every interleaving run for many minutes;
            // bounded preemptions (the CHESS result: most races need very
            // few) keep it to seconds.
            builder.preemption_bound = Some(PREEMPTIONS);
        }
        builder.check(move || {
            let reg: Arc<Registry<Cb, ()>> = Arc::new(Registry::new());
            let seen = Arc::new(Seen::default());
            let id = register(&reg, &seen, || {});
            let threads: Vec<_> = (0..dispatchers)
                .map(|_| {
                    let reg = reg.clone();
                    loom::thread::spawn(move || {
                        let snap = reg.snapshot();
                        reg.dispatch(&snap, |_| true, |cb| cb());
                    })
                })
                .collect();
            known_bad::READ_RUNNING_FIRST.with(|b| b.set(read_running_first));
            reg.deregister(id, false).unwrap();
            assert!(seen.released.load(Ordering::SeqCst), "deregister returned before the release");
            seen.returned.store(true, Ordering::SeqCst);
            for t in threads {
                t.join().unwrap();
            }
            assert!(!seen.late_run.load(Ordering::SeqCst), "callback ran after deregister returned");
            assert!(!seen.bad_release.load(Ordering::SeqCst), "released while running, or twice");
        });
    }

    #[test]
    fn deregister_against_dispatch() {
        model(false, 1);
    }

    #[test]
    fn deregister_against_two_dispatching_threads() {
        model(false, 2);
    }

    #[test]
    #[should_panic]
    fn known_bad_deregister_reading_running_first_is_caught() {
        model(true, 1);
    }

    #[test]
    #[should_panic]
    fn known_bad_is_caught_with_two_dispatching_threads() {
        model(true, 2);
    }

    /// Two threads dispatch the same callback; one call removes it (from a
    /// dispatching thread: no wait). The release runs exactly once, after
    /// every running call returned, whichever thread gets there last.
    #[test]
    fn self_removal_while_another_thread_runs_it() {
        loom::model(|| {
            let reg: Arc<Registry<Cb, ()>> = Arc::new(Registry::new());
            let seen = Arc::new(Seen::default());
            let id_cell = Arc::new(LoomUsize::new(usize::MAX));
            let (r2, c2) = (Arc::downgrade(&reg), id_cell.clone());
            let id = register(&reg, &seen, move || {
                // The first call to get here removes the callback.
                let id = c2.swap(usize::MAX - 1, Ordering::SeqCst);
                if id < usize::MAX - 1 {
                    if let Some(reg) = r2.upgrade() {
                        let _ = reg.deregister(id as i32, true);
                    }
                }
            });
            id_cell.store(id as usize, Ordering::SeqCst);
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let reg = reg.clone();
                    loom::thread::spawn(move || {
                        let snap = reg.snapshot();
                        reg.dispatch(&snap, |_| true, |cb| cb());
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert!(seen.released.load(Ordering::SeqCst), "never released");
            assert!(!seen.bad_release.load(Ordering::SeqCst), "released while running, or twice");
        });
    }
}
