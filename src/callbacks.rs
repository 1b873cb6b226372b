//! The callback registry of an events object.
//!
//! Registration order is dispatch order. Each event dispatches to a snapshot
//! of the callbacks registered when its dispatch began, skipping any that
//! were deregistered meanwhile. Deregistering from another thread waits until
//! the callback is not running, so after `deregister` returns it never runs
//! again; from inside a callback it returns at once, and a callback that
//! removes itself has its userdata released right after it returns.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::sync::{lock, wait};
use crate::tsan;
use crate::result::{nde_result, Error};

/// A callback: gets the event type (as its C value) and the raw data.
pub type Callback = Box<dyn FnMut(i32, *mut std::ffi::c_void) + Send>;
/// Runs once when a callback is removed: releases its userdata.
pub type OnRemove = Box<dyn FnOnce() + Send>;

struct Entry {
    id: i32,
    /// The event type it wants; `None` = every type.
    filter: Option<i32>,
    /// The library's own handler: the only kind that sees internal events.
    internal: bool,
    callback: Mutex<Callback>,
    on_remove: Mutex<Option<OnRemove>>,
    removed: AtomicBool,
    /// It removed itself while running: dispatch releases it on return.
    release_after_return: AtomicBool,
}

impl Entry {
    fn release(&self) {
        let f = lock(&self.on_remove).take();
        if let Some(f) = f {
            // userdata_free is C code or our own: it must not stop the rest.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        }
    }
}

/// Event types from here on are the library's own: only internal handlers
/// see them.
pub(crate) const INTERNAL_EVENT_BASE: i32 = 1000;

struct State {
    /// Copy-on-write: dispatch takes the current list with one Arc clone.
    entries: Arc<Vec<Arc<Entry>>>,
    next_id: i32,
}

const NOT_RUNNING: i64 = -1;

/// Callbacks of one events object.
pub struct Registry {
    state: Mutex<State>,
    /// The id of the callback running now on the dispatch thread.
    running: AtomicI64,
    /// Deregistering threads waiting for `running` to change.
    waiters: AtomicUsize,
    wait_lock: Mutex<()>,
    returned: Condvar,
    panics: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry {
            state: Mutex::new(State { entries: Arc::new(Vec::new()), next_id: 0 }),
            running: AtomicI64::new(NOT_RUNNING),
            waiters: AtomicUsize::new(0),
            wait_lock: Mutex::new(()),
            returned: Condvar::new(),
            panics: AtomicUsize::new(0),
        }
    }

    /// Adds a callback; returns its id (>= 0).
    pub fn register(&self, filter: Option<i32>, callback: Callback, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        self.register_entry(filter, false, callback, on_remove)
    }

    /// Adds the library's own handler: it receives every event, including
    /// the internal ones (`event_type` >= [`INTERNAL_EVENT_BASE`]) that no
    /// other callback sees.
    pub fn register_internal(&self, callback: Callback, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        self.register_entry(None, true, callback, on_remove)
    }

    fn register_entry(
        &self,
        filter: Option<i32>,
        internal: bool,
        callback: Callback,
        on_remove: Option<OnRemove>,
    ) -> Result<i32, Error> {
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
            internal,
            callback: Mutex::new(callback),
            on_remove: Mutex::new(on_remove),
            removed: AtomicBool::new(false),
            release_after_return: AtomicBool::new(false),
        }));
        st.entries = Arc::new(entries);
        Ok(id)
    }

    /// Removes callback `id`. `on_dispatch_thread` tells whether the caller
    /// is the thread that runs callbacks (then it must not wait).
    pub fn deregister(&self, id: i32, on_dispatch_thread: bool) -> Result<(), Error> {
        tsan::release(self.sync_addr());
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
        // Paired with dispatch: it publishes `running` and then reads
        // `removed`; we publish `removed` and then read `running`
        // (sequentially consistent), so it skips the callback or we see it
        // running.
        entry.removed.store(true, Ordering::SeqCst);
        let id = id as i64;
        if on_dispatch_thread {
            if self.running.load(Ordering::SeqCst) == id {
                // Removing itself: released by dispatch right after it returns.
                entry.release_after_return.store(true, Ordering::SeqCst);
                return Ok(());
            }
        } else if self.running.load(Ordering::SeqCst) == id {
            let mut g = lock(&self.wait_lock);
            self.waiters.fetch_add(1, Ordering::SeqCst);
            while self.running.load(Ordering::SeqCst) == id {
                g = wait(&self.returned, g);
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        // The callback's last run happens before its userdata is released
        // and before deregister returns.
        tsan::acquire(self.sync_addr());
        entry.release();
        Ok(())
    }

    /// Runs, in registration order, every callback registered now whose
    /// filter matches `event_type`. Called from one thread only.
    pub fn dispatch(&self, event_type: i32, data: *mut std::ffi::c_void) {
        let is_internal = event_type >= INTERNAL_EVENT_BASE;
        let snapshot = Arc::clone(&lock(&self.state).entries);
        tsan::acquire(self.sync_addr());
        for entry in snapshot.iter() {
            if entry.filter.is_some_and(|t| t != event_type) || (is_internal && !entry.internal) {
                continue;
            }
            self.running.store(entry.id as i64, Ordering::SeqCst);
            if !entry.removed.load(Ordering::SeqCst) {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut cb = lock(&entry.callback);
                    (*cb)(event_type, data)
                }));
                if result.is_err() {
                    self.panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            tsan::release(self.sync_addr());
            self.running.store(NOT_RUNNING, Ordering::SeqCst);
            if self.waiters.load(Ordering::SeqCst) > 0 {
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

    /// Number of callbacks registered.
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when a callback for exactly this type (not `ANY`) is registered.
    pub fn has_callback_for(&self, event_type: i32) -> bool {
        lock(&self.state)
            .entries
            .iter()
            .any(|e| !e.internal && e.filter.is_none_or(|t| t == event_type))
    }

    /// Panics caught inside callbacks.
    pub fn caught_panics(&self) -> usize {
        self.panics.load(Ordering::Relaxed)
    }

    /// Removes every callback, releasing each one's userdata once.
    pub fn clear(&self) {
        let entries = std::mem::replace(&mut lock(&self.state).entries, Arc::new(Vec::new()));
        tsan::acquire(self.sync_addr());
        for e in entries.iter() {
            e.removed.store(true, Ordering::SeqCst);
            e.release();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.clear();
    }
}
