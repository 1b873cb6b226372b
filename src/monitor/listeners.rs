//! Lifecycle listeners: registration, per-device filter, dispatch on the
//! events worker, and deregistration with the events layer's promises:
//! - from another thread, when `deregister` returns the callback is not
//!   running and will not run again, and its `on_remove` ran;
//! - from inside a callback (on the worker) it returns at once; the
//!   callback does not run for the rest of the current dispatch, and if it
//!   is the running one its `on_remove` runs right after it returns.
//! Panics in callbacks are caught and counted; dispatch carries on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::device::Device;
use super::table::Lifecycle;
use crate::result::{nde_result, Error};
use crate::sync::lock;

/// A lifecycle callback.
pub type LifecycleCallback = Box<dyn FnMut(&Arc<Device>, Lifecycle) + Send>;
/// Runs once when a listener is removed.
pub type OnRemove = Box<dyn FnOnce() + Send>;

struct Listener {
    id: i32,
    filter: Option<Box<str>>,
    cb: Mutex<LifecycleCallback>,
    removed: AtomicBool,
    running: AtomicBool,
    on_remove: Mutex<Option<OnRemove>>,
}

impl Listener {
    fn run_on_remove(&self) {
        let f = lock(&self.on_remove).take();
        if let Some(f) = f {
            let _ = catch_unwind(AssertUnwindSafe(f));
        }
    }
}

/// The listener list (copy-on-write: dispatch takes a snapshot).
#[derive(Default)]
pub struct Listeners {
    list: Mutex<Arc<Vec<Arc<Listener>>>>,
    next_id: AtomicUsize,
    panics: AtomicUsize,
}

impl Listeners {
    pub fn register(&self, device_name: Option<&str>, cb: LifecycleCallback, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id > i32::MAX as usize {
            if let Some(f) = on_remove {
                f();
            }
            return Err(nde_result::NDE_ERR_NO_MEMORY);
        }
        let l = Arc::new(Listener {
            id: id as i32,
            filter: device_name.map(Into::into),
            cb: Mutex::new(cb),
            removed: AtomicBool::new(false),
            running: AtomicBool::new(false),
            on_remove: Mutex::new(on_remove),
        });
        let mut g = lock(&self.list);
        let mut v: Vec<Arc<Listener>> = (**g).clone();
        v.push(l);
        *g = Arc::new(v);
        Ok(id as i32)
    }

    /// `on_worker`: called from the thread that dispatches.
    pub fn deregister(&self, id: i32, on_worker: bool) -> Result<(), Error> {
        let l = {
            let mut g = lock(&self.list);
            let pos = g.iter().position(|l| l.id == id).ok_or(nde_result::NDE_ERR_NOT_FOUND)?;
            let mut v: Vec<Arc<Listener>> = (**g).clone();
            let l = v.remove(pos);
            *g = Arc::new(v);
            l
        };
        l.removed.store(true, Ordering::SeqCst);
        if on_worker {
            if !l.running.load(Ordering::SeqCst) {
                l.run_on_remove();
            } // else: the dispatcher runs it when the callback returns
        } else {
            // Wait for a running call to end.
            drop(lock(&l.cb));
            l.run_on_remove();
        }
        Ok(())
    }

    /// Removes every listener from the dispatching thread itself (monitor
    /// freed from inside a callback): the running one's `on_remove` runs
    /// when it returns, the others' at once.
    pub fn clear_on_worker(&self) {
        let ids: Vec<i32> = lock(&self.list).iter().map(|l| l.id).collect();
        for id in ids {
            let _ = self.deregister(id, true);
        }
    }

    /// Removes every listener (monitor teardown), running each `on_remove`.
    pub fn clear(&self) {
        let v = std::mem::take(&mut *lock(&self.list));
        for l in v.iter() {
            l.removed.store(true, Ordering::SeqCst);
            drop(lock(&l.cb));
            l.run_on_remove();
        }
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.list).is_empty()
    }

    pub fn panics(&self) -> usize {
        self.panics.load(Ordering::Relaxed)
    }

    /// Calls every matching listener for every change, in order. Runs on
    /// the events worker only.
    pub fn dispatch(&self, changes: &[(Lifecycle, Arc<Device>)]) {
        if changes.is_empty() {
            return;
        }
        let snap = lock(&self.list).clone();
        if snap.is_empty() {
            return;
        }
        for (ev, dev) in changes {
            for l in snap.iter() {
                if l.removed.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(f) = &l.filter {
                    if **f != *dev.name() {
                        continue;
                    }
                }
                l.running.store(true, Ordering::SeqCst);
                {
                    let mut cb = lock(&l.cb);
                    if !l.removed.load(Ordering::SeqCst) {
                        if catch_unwind(AssertUnwindSafe(|| (*cb)(dev, *ev))).is_err() {
                            self.panics.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                l.running.store(false, Ordering::SeqCst);
                if l.removed.load(Ordering::SeqCst) {
                    // Deregistered from inside its own call.
                    l.run_on_remove();
                }
            }
        }
    }
}
