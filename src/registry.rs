//! (Over 400 lines: 350 lines of registry, then its loom model.)
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
//! The handshake, per entry, is one atomic word (`Entry::state`): the
//! number of dispatching threads inside the entry and three flags. A
//! dispatch enters with `fetch_add` (and skips the callback when the
//! `REMOVED` it read back is set) and leaves with `fetch_sub`; deregister
//! sets `REMOVED` with `fetch_or` and reads the count from the same
//! operation. Read-modify-writes of one location are totally ordered, so
//! either the dispatch saw `REMOVED` or the deregister saw it inside; there
//! is no pair of locations to order (loom checks this under
//! acquire/release alone). A deregister that must wait sets `WAITER` in the
//! same `fetch_or`, and the dispatch whose `fetch_sub` takes the count to
//! zero sees it and wakes it (under `wait_lock`, so no wake-up is lost); a
//! deregister from a dispatching thread sets `DEFERRED` instead, and that
//! last dispatch releases the entry. `on_remove` is taken out of its slot
//! once, so whichever of the deregistering thread and the last dispatcher
//! gets there first runs it, exactly once. Panics in callbacks and in
//! releases are caught and counted.
//!
//! Snapshots: a dispatching thread may keep its snapshot in a
//! [`CachedSnapshot`] and refresh it with [`Registry::current`], which
//! costs one atomic load while nothing was registered or removed (each
//! change stores a new, process-unique generation). Whatever happens
//! before a `register` returns happens before the next `current` on a
//! thread that synchronised with it (e.g. through the pool's queue), so
//! that thread sees the callback.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::Error;
use crate::sync::model::{lock, wait, AtomicUsize, Condvar, Mutex};
use crate::tsan;

/// Runs once when a callback is removed: releases its userdata.
pub type OnRemove = Box<dyn FnOnce() + Send>;

/// `Entry::state` flag: removed; the callback never starts again.
const REMOVED: usize = 1;
/// `Entry::state` flag: a deregistering thread waits for the count to drop
/// to zero.
const WAITER: usize = 2;
/// `Entry::state` flag: removed from a dispatching thread while running;
/// the last dispatch to leave releases it.
const DEFERRED: usize = 4;
/// `Entry::state` unit of the count of dispatching threads inside.
const INSIDE: usize = 8;

struct Entry<F: ?Sized, K> {
    id: i32,
    /// What the callback wants (matched by the dispatcher's predicate).
    filter: K,
    callback: Box<F>,
    on_remove: Mutex<Option<OnRemove>>,
    /// Dispatching threads inside this entry (running it, or about to find
    /// it removed and skip it) times `INSIDE`, plus the flags above.
    state: AtomicUsize,
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

/// A dispatching thread's snapshot with the generation it was taken at
/// (see [`Registry::current`]).
pub(crate) struct CachedSnapshot<F: ?Sized, K> {
    generation: usize,
    snapshot: Snapshot<F, K>,
}

/// Generations are unique in the process, so a cache filled from one
/// registry never passes for another's (a plain std atomic also under
/// loom: it only numbers, it orders nothing).
static NEXT_GENERATION: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn new_generation() -> usize {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

struct State<F: ?Sized, K> {
    /// Copy-on-write: a dispatch takes the current list with one Arc clone.
    entries: Arc<Vec<Arc<Entry<F, K>>>>,
    /// Changes with every change of `entries` (mirrored in
    /// `Registry::generation`).
    generation: usize,
    next_id: i32,
}

impl<F: ?Sized, K> State<F, K> {
    /// Replaces the list and publishes its new generation.
    fn set_entries(&mut self, entries: Vec<Arc<Entry<F, K>>>, published: &AtomicUsize) {
        self.entries = Arc::new(entries);
        self.generation = new_generation();
        published.store(self.generation, Ordering::Release);
    }
}

/// Callbacks of type `F` (e.g. `dyn Fn(..) + Send + Sync`) with filters `K`.
pub(crate) struct Registry<F: ?Sized, K> {
    state: Mutex<State<F, K>>,
    /// `State::generation`, readable without the lock.
    generation: AtomicUsize,
    /// Deregistering threads wait under it for an entry's count to drop.
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
        let generation = new_generation();
        Registry {
            state: Mutex::new(State { entries: Arc::new(Vec::new()), generation, next_id: 0 }),
            generation: AtomicUsize::new(generation),
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
            return Err(Error::NoMemory);
        }
        let id = st.next_id;
        st.next_id += 1;
        let mut entries = Vec::clone(&st.entries);
        entries.push(Arc::new(Entry {
            id,
            filter,
            callback,
            on_remove: Mutex::new(on_remove),
            state: AtomicUsize::new(0),
        }));
        st.set_entries(entries, &self.generation);
        Ok(id)
    }

    /// Removes callback `id` (see the module's promises).
    /// `on_dispatch_thread`: the caller is a thread that dispatches.
    pub(crate) fn deregister(&self, id: i32, on_dispatch_thread: bool) -> Result<(), Error> {
        let entry = {
            let mut st = lock(&self.state);
            let Some(pos) = st.entries.iter().position(|e| e.id == id) else {
                return Err(Error::NotFound);
            };
            let mut entries = Vec::clone(&st.entries);
            let entry = entries.remove(pos);
            st.set_entries(entries, &self.generation);
            entry
        };
        self.retire(&entry, on_dispatch_thread);
        Ok(())
    }

    /// Removes every callback, with `deregister`'s promises for each.
    pub(crate) fn clear(&self, on_dispatch_thread: bool) {
        let entries = {
            let mut st = lock(&self.state);
            let entries = Arc::clone(&st.entries);
            st.set_entries(Vec::new(), &self.generation);
            entries
        };
        for e in entries.iter() {
            self.retire(e, on_dispatch_thread);
        }
    }

    /// Marks a removed entry, waits until no thread runs it (or, on a
    /// dispatching thread, leaves the release to the last one that does),
    /// and releases it.
    fn retire(&self, entry: &Entry<F, K>, on_dispatch_thread: bool) {
        tsan::release(self.sync_addr());
        let flags = REMOVED | if on_dispatch_thread { DEFERRED } else { WAITER };
        // Paired with dispatch: see the module comment.
        let before = Self::known_bad_split_read(entry, flags).unwrap_or_else(|| entry.state.fetch_or(flags, Ordering::SeqCst));
        if before >= INSIDE {
            if on_dispatch_thread {
                // Never wait here: the last dispatch to leave releases it.
                return;
            }
            let mut g = lock(&self.wait_lock);
            while entry.state.fetch_add(0, Ordering::SeqCst) >= INSIDE {
                g = wait(&self.returned, g);
            }
        }
        // The callback's last run happens before its userdata is released
        // and before deregister returns.
        tsan::acquire(self.sync_addr());
        entry.release();
    }

    /// The count read before the entry is marked removed, in a separate
    /// operation: the known-bad order the loom model must catch, when a
    /// loom test asks for it; never in a normal build.
    #[cfg_attr(not(loom), allow(unused_variables))]
    fn known_bad_split_read(entry: &Entry<F, K>, flags: usize) -> Option<usize> {
        #[cfg(loom)]
        return known_bad::READ_RUNNING_FIRST.with(|b| b.get()).then(|| {
            let before = entry.state.load(Ordering::SeqCst);
            entry.state.fetch_or(flags, Ordering::SeqCst);
            before
        });
        #[cfg(not(loom))]
        None
    }

    /// The callbacks registered now, for one or more `dispatch` calls.
    pub(crate) fn snapshot(&self) -> Snapshot<F, K> {
        Snapshot(Arc::clone(&lock(&self.state).entries))
    }

    /// The callbacks registered now, from `cache` when nothing changed since
    /// it was filled (one atomic load), else refilled under the lock.
    pub(crate) fn current<'c>(&self, cache: &'c mut Option<CachedSnapshot<F, K>>) -> &'c Snapshot<F, K> {
        let published = self.generation.load(Ordering::Acquire);
        if cache.as_ref().is_some_and(|c| c.generation != published) {
            *cache = None;
        }
        let cached = cache.get_or_insert_with(|| {
            let st = lock(&self.state);
            CachedSnapshot { generation: st.generation, snapshot: Snapshot(Arc::clone(&st.entries)) }
        });
        &cached.snapshot
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
            // Paired with retire: see the module comment.
            if entry.state.fetch_add(INSIDE, Ordering::SeqCst) & REMOVED == 0 {
                let result = catch_unwind(AssertUnwindSafe(|| call(&entry.callback)));
                if result.is_err() {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            tsan::release(self.sync_addr());
            let before = entry.state.fetch_sub(INSIDE, Ordering::SeqCst);
            if before < 2 * INSIDE && before & REMOVED != 0 {
                self.last_one_out(entry, before);
            }
        }
    }

    /// The last dispatch left a removed entry (`state` was `before`): wake
    /// the deregistering thread, or release the entry for it.
    #[cold]
    fn last_one_out(&self, entry: &Entry<F, K>, before: usize) {
        if before & WAITER != 0 {
            let _g = lock(&self.wait_lock);
            self.returned.notify_all();
        }
        if before & DEFERRED != 0 {
            tsan::acquire(self.sync_addr());
            entry.release();
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
        /// Deregister reads the count before, not in the same operation as,
        /// publishing `REMOVED`.
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

    /// A dispatcher's cached snapshot, filled before another thread
    /// registers a callback and hands something over (as a submit does):
    /// once the dispatcher received the hand-off, `current` gives it the
    /// new callback.
    #[test]
    fn cached_snapshot_sees_a_callback_registered_before_a_hand_off() {
        loom::model(|| {
            let reg: Arc<Registry<Cb, ()>> = Arc::new(Registry::new());
            let seen = Arc::new(Seen::default());
            let mut cache = None;
            assert!(reg.current(&mut cache).is_empty());
            let handed = Arc::new(LoomBool::new(false));
            let ran = Arc::new(LoomBool::new(false));
            let (r2, s2, h2, ran2) = (reg.clone(), seen.clone(), handed.clone(), ran.clone());
            let registering = loom::thread::spawn(move || {
                register(&r2, &s2, move || ran2.store(true, Ordering::SeqCst));
                h2.store(true, Ordering::Release);
            });
            if handed.load(Ordering::Acquire) {
                let snap = reg.current(&mut cache);
                reg.dispatch(snap, |_| true, |cb| cb());
                assert!(ran.load(Ordering::SeqCst), "stale cached snapshot after the hand-off");
            }
            registering.join().unwrap();
        });
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
