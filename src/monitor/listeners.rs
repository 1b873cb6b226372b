//! Lifecycle listeners: the crate's one callback registry
//! (`crate::registry`) with a per-device-name filter, dispatched on the
//! events worker. Deregistration keeps the registry's promises: from another
//! thread, when it returns the callback is not running, never runs again and
//! its `on_remove` has completed; from inside a callback it returns at once
//! and a running callback is released right after it returns. Panics in
//! callbacks are caught and counted; dispatch carries on.

use std::sync::Arc;

use super::device::Device;
use super::table::Lifecycle;
use crate::registry::Registry;
use crate::error::Error;

pub use crate::registry::OnRemove;

/// A lifecycle callback as the registry holds it (callable from any
/// dispatching thread).
type SharedLifecycleFn = dyn Fn(&Arc<Device>, Lifecycle) + Send + Sync;

/// A lifecycle callback that may run on several workers at the same time
/// (for different devices; see `Monitor::register_concurrent`).
pub type ConcurrentLifecycleCallback = Box<SharedLifecycleFn>;

/// The listener list: callbacks filtered by device name (None = all).
#[derive(Default)]
pub struct Listeners {
    registry: Registry<SharedLifecycleFn, Option<Box<str>>>,
}

impl Listeners {
    /// Adds a listener for `device_name` (None = every device) that may run
    /// on several dispatching threads at once; returns its id. On failure
    /// `on_remove` ran before this returns.
    pub fn register_concurrent(
        &self,
        device_name: Option<&str>,
        cb: ConcurrentLifecycleCallback,
        on_remove: Option<OnRemove>,
    ) -> Result<i32, Error> {
        self.registry.register(device_name.map(Into::into), cb, on_remove)
    }

    /// Removes listener `id`; `on_worker`: called from the dispatching
    /// thread.
    pub fn deregister(&self, id: i32, on_worker: bool) -> Result<(), Error> {
        self.registry.deregister(id, on_worker)
    }

    /// Removes every listener from the dispatching thread itself (monitor
    /// freed from inside a callback): the running one is released when it
    /// returns, the others at once.
    pub fn clear_on_worker(&self) {
        self.registry.clear(true);
    }

    /// Removes every listener (monitor teardown), waiting for a running one
    /// to return, and releases each.
    pub fn clear(&self) {
        self.registry.clear(false);
    }

    /// Panics caught inside listeners.
    pub fn panics(&self) -> usize {
        self.registry.caught_panics()
    }

    /// Calls every matching listener for every change, in order, over the
    /// listeners registered when the call began. Runs on the events workers
    /// only (with several, for different devices at the same time).
    pub fn dispatch(&self, changes: &[(Lifecycle, Arc<Device>)]) {
        if changes.is_empty() {
            return;
        }
        let snapshot = self.registry.snapshot();
        if snapshot.is_empty() {
            return;
        }
        for (ev, dev) in changes {
            let wants = |filter: &Option<Box<str>>| filter.as_deref().is_none_or(|name| name == dev.name());
            self.registry.dispatch(&snapshot, wants, |cb| cb(dev, *ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    fn test_device(name: &str) -> Arc<Device> {
        Device::new(
            &super::super::device::DeviceFields {
                name,
                syspath: "/sys/devices/virtual/net/x",
                subsystem: "net",
                devtype: None,
                driver: None,
                devnode: None,
                parent: "computer",
                kind: super::super::naming::DeviceKind::System,
                flags: 0,
            },
            &[],
        )
    }

    /// Dispatches to the listeners from two threads at once (as two
    /// workers do for two devices); each call waits, boundedly, for a
    /// second call to be inside (up to `wait_ms`). True when two calls
    /// overlapped.
    fn two_dispatchers_overlap(concurrent: bool, wait_ms: u32) -> bool {
        let listeners = Arc::new(Listeners::default());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicBool::new(false));
        let (i2, o2) = (inside.clone(), overlapped.clone());
        let call = move |_: &Arc<Device>, _: Lifecycle| {
            if i2.fetch_add(1, Ordering::SeqCst) > 0 {
                o2.store(true, Ordering::SeqCst);
            }
            for _ in 0..wait_ms {
                if o2.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            i2.fetch_sub(1, Ordering::SeqCst);
        };
        if concurrent {
            listeners.register_concurrent(None, Box::new(call), None).unwrap();
        } else {
            // What `Monitor::register` does with an `FnMut` listener.
            let slot = crate::closure_slot::Exclusive::new(call);
            let release = slot.release();
            listeners.register_concurrent(None, Box::new(move |d: &Arc<Device>, l| slot.with(|cb| cb(d, l))), Some(release)).unwrap();
        }
        let threads: Vec<_> = ["net_a", "net_b"]
            .into_iter()
            .map(|name| {
                let l = listeners.clone();
                let dev = test_device(name);
                std::thread::spawn(move || l.dispatch(&[(Lifecycle::Created, dev)]))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        overlapped.load(Ordering::SeqCst)
    }

    /// A concurrent listener (C callbacks, `Monitor::register_concurrent`)
    /// runs for two devices at once; a plain one (`FnMut`) never does.
    #[test]
    fn concurrent_listeners_overlap_and_plain_ones_are_serialised() {
        // Ends as soon as the second call is in (2 s: a bound for a loaded machine).
        assert!(two_dispatchers_overlap(true, 2000), "a concurrent listener was serialised");
        // Waits the whole bound in each call.
        assert!(!two_dispatchers_overlap(false, 200), "an FnMut listener ran twice at once");
    }

    /// Issue 12 item 1: a listener sleeping in its callback, deregistered
    /// from another thread: at return its `on_remove` has completed (it
    /// used to be run by whichever thread took it first, so deregister
    /// could return while the release still ran on the worker).
    #[test]
    fn deregister_from_another_thread_returns_after_the_release_completed() {
        let listeners = Arc::new(Listeners::default());
        let started = Arc::new(AtomicBool::new(false));
        let released = Arc::new(AtomicBool::new(false));
        let (s2, r2) = (started.clone(), released.clone());
        let id = listeners
            .register_concurrent(
                None,
                Box::new(move |_: &Arc<Device>, _| {
                    s2.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(300));
                }),
                Some(Box::new(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    r2.store(true, Ordering::SeqCst);
                })),
            )
            .unwrap();
        let dev = test_device("net_test_0");
        let l2 = listeners.clone();
        let worker = std::thread::spawn(move || l2.dispatch(&[(Lifecycle::Created, dev)]));
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        listeners.deregister(id, false).unwrap();
        assert!(released.load(Ordering::SeqCst), "deregister returned before on_remove completed");
        worker.join().unwrap();
    }
}
