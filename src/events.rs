//! (Over 400 lines: one type, `Events`, and its API; a third is the rustdoc
//! each public item needs: ownership, threading, blocking.)
//!
//! Typed events handled on a pool of workers (layer 2): the
//! `nodeDeviceEvent` machinery of libvirt's node-device driver, made reusable.
//!
//! One [`Events`] owns one pool. With one worker (the default) events are
//! handled one at a time in submission order. With more, events submitted
//! with a non-zero key ([`Events::submit_keyed`]) are handled one at a time
//! in submission order per key, different keys in parallel, and every other
//! event (unkeyed, timer-made, `INIT`, `MDEVCTL_CONFIG_CHANGED`, internal)
//! is a barrier: it runs alone, after every event submitted before it and
//! before any submitted after it (the pool's keyed jobs and barriers,
//! `pool/keyed.rs`). Callbacks are registered per type (or for every type)
//! and run in registration order for one event. `schedule` debounces per
//! type. The two-phase shutdown never blocks in `shutdown_prepare` and
//! never leaks in `shutdown_wait`: queued events are discarded and their
//! data freed.

use std::any::Any;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::closure_slot;
use crate::registration::Registration;
use crate::registry::Registry;
use crate::debounce::Debouncer;
use crate::owned::OwnedData;
use crate::pool::{JobPool, KeyStats, PoolLimits, PoolStats, WorkerHooks};
use crate::error::Error;

mod queued;

use queued::{Event, EventPacking};

pub use crate::owned::FreeFn;
pub use crate::registry::OnRemove;

/// Event types of libvirt's node-device (udev) driver.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum nde_event_type {
    /// Initial enumeration; data: the `struct udev *` (monitor).
    NDE_EVENT_INIT = 0,
    /// udev "add"; data: a `struct udev_device *` owned by the event.
    NDE_EVENT_UDEV_ADD = 1,
    /// udev "remove"; data: a `struct udev_device *` owned by the event.
    NDE_EVENT_UDEV_REMOVE = 2,
    /// udev "change"; data: a `struct udev_device *` owned by the event.
    NDE_EVENT_UDEV_CHANGE = 3,
    /// udev "move" (rename); data: a `struct udev_device *` owned by the event.
    NDE_EVENT_UDEV_MOVE = 4,
    /// mdevctl's configuration changed; no data.
    NDE_EVENT_MDEVCTL_CONFIG_CHANGED = 5,
    /// Number of event types (not a type).
    NDE_EVENT_LAST = 6,
}

/// Pass as the type to `register` to receive every type.
pub const NDE_EVENT_ANY: i32 = -1;

impl nde_event_type {
    /// The event type with C value `v`, if it is one (`NDE_EVENT_LAST` is not).
    pub fn from_i32(v: i32) -> Option<nde_event_type> {
        use nde_event_type::*;
        Some(match v {
            0 => NDE_EVENT_INIT,
            1 => NDE_EVENT_UDEV_ADD,
            2 => NDE_EVENT_UDEV_REMOVE,
            3 => NDE_EVENT_UDEV_CHANGE,
            4 => NDE_EVENT_UDEV_MOVE,
            5 => NDE_EVENT_MDEVCTL_CONFIG_CHANGED,
            _ => return None,
        })
    }
}

/// Data carried by one event; its free function runs exactly once.
pub type EventData = OwnedData;

/// A Rust callback that may run on several workers at the same time (for
/// events of different keys; see [`Events::register_concurrent`]).
pub type ConcurrentCallback = Box<dyn Fn(nde_event_type, *mut c_void) + Send + Sync>;

/// C-visible data owned by a Rust value of the library (e.g. a
/// `struct udev_device *` the monitor's reader made): callbacks see
/// [`CData::as_ptr`] exactly as they see C data; dropping the value
/// releases it, on the thread that frees the event (after every callback
/// returned, or when the event is refused or discarded).
pub trait CData: Send + Any {
    /// The pointer C callbacks receive.
    fn as_ptr(&self) -> *mut c_void;
}

/// How an internal handler receives an event's payload.
pub enum Delivery<'a> {
    /// The C data pointer (NULL allowed) of a public event.
    Data(*mut c_void),
    /// A public event whose data a library value owns (see [`CData`]): C
    /// callbacks get its pointer, internal handlers the value itself (to
    /// downcast; e.g. what the reader parsed beside libudev's device).
    Owned(&'a dyn CData),
    /// The value of an internal event (see [`Events::submit_internal`]).
    Internal(&'a mut (dyn Any + Send)),
}

/// An internal handler (see [`Events::register_internal_handler`]).
/// It may run on several workers at the same time.
pub type InternalHandler = Box<dyn Fn(nde_event_type, Delivery<'_>) + Send + Sync>;

/// The registry's view of a callback: the C type value and the delivery.
type RegistryCallback = dyn Fn(i32, Delivery<'_>) + Send + Sync;

/// What a registered callback receives.
#[derive(Copy, Clone)]
struct Filter {
    /// The public type it wants; `None` = every type.
    event_type: Option<i32>,
    /// The library's own handler: the only kind that sees internal events.
    internal: bool,
}

/// The largest worker count an events object accepts
/// (`nde_events_new_full`); a larger one is refused before any thread
/// starts, as the monitor refuses more than `NDE_MONITOR_MAX_WORKERS`.
pub const NDE_EVENTS_MAX_WORKERS: usize = 256;

struct Core {
    // Field order is drop order: timers stop before the worker is drained.
    timers: Debouncer,
    pool: JobPool<Event, EventPacking>,
    registry: Arc<Registry<RegistryCallback, Filter>>,
    stopping: AtomicBool,
    /// Worker count; with 1 keys are ignored (every event is in order).
    workers: usize,
}

/// Typed events on a pool of workers, one by default (libvirt's
/// node-device event queue): per-type callbacks, debounced scheduling,
/// two-phase shutdown; with several workers, keyed events in parallel
/// across keys (see the module comment).
///
/// Ownership: the object owns its worker and timer threads and every
/// queued event's data (freed exactly once: after the callbacks, or when
/// discarded); dropping it shuts down, waits and releases every callback.
/// Threading: `Send + Sync`; callbacks run on the worker threads; with one
/// worker one at a time, in submission order. Blocking: `submit`,
/// `schedule`, `register` and `shutdown_prepare` never wait; `wait_idle`,
/// `shutdown_wait`, a handle's `deregister` and drop do, and return
/// [`Error::WouldDeadlock`] (or defer) from a callback.
pub struct Events {
    core: Arc<Core>,
}

impl Core {
    /// Queues a C event without a key: the hot path of `nde_events_submit`.
    #[inline(always)]
    fn submit(&self, event_type: nde_event_type, data: EventData) -> Result<(), Error> {
        if self.workers != 1 {
            return self.send(Event::C(event_type, data), 0);
        }
        self.stop_pool_if_stopping();
        // Split at once: a 24-byte `Event` built in memory and copied on
        // its way to the intake stalled every submit on store forwarding
        // (perf, issue 14); the two halves travel in registers.
        let (tag, body) = EventPacking::pack_c(event_type, data);
        // SAFETY: `pack_c` is `EventPacking::pack` for a C event.
        let sent = unsafe { self.pool.send_packed(0, tag, body) };
        sent.map_err(|(e, _ev)| e) // refused: the payload drops, freed
    }

    /// Queues `ev` under `key` (0: none), as the module comment says.
    fn send(&self, ev: Event, key: u64) -> Result<(), Error> {
        self.stop_pool_if_stopping();
        let sent = if self.workers == 1 {
            self.pool.send(0, ev)
        } else if key == 0 || ev.is_barrier_type() {
            self.pool.send_barrier(ev)
        } else {
            self.pool.send_keyed(key, 0, ev)
        };
        sent.map_err(|(e, _ev)| e) // refused: the payload drops, freed
    }

    #[inline(always)]
    fn stop_pool_if_stopping(&self) {
        if self.stopping.load(Ordering::SeqCst) {
            // shutdown_prepare may still be on its way to stopping the pool:
            // stop it here too (idempotent, never blocks), so the pool
            // refuses the event and counts it in `rejected`.
            self.pool.stop();
        }
    }
}

impl Events {
    /// New events object with one worker; its worker thread is named after
    /// `name`, its timer thread (started on the first `schedule`) `name` +
    /// "-timer".
    pub fn new(name: &str) -> Result<Events, Error> {
        Events::with_workers(name, 1)
    }

    /// New events object with `workers` worker threads (1 to
    /// [`NDE_EVENTS_MAX_WORKERS`]; else [`Error::InvalidArgument`] before
    /// any thread starts), all started now. See the module comment for what
    /// runs in parallel.
    pub fn with_workers(name: &str, workers: usize) -> Result<Events, Error> {
        if workers == 0 || workers > NDE_EVENTS_MAX_WORKERS {
            return Err(Error::InvalidArgument);
        }
        let registry = Arc::new(Registry::new());
        let dispatch = Arc::clone(&registry);
        let pool = JobPool::with_packing(
            PoolLimits { min_workers: workers, max_workers: workers, prio_workers: 0 },
            name,
            Box::new(move |ev: Event| ev.dispatch(&dispatch)),
            WorkerHooks::default(),
        )?;
        let core = Arc::new_cyclic(|weak: &Weak<Core>| {
            let weak = weak.clone();
            let fire = Box::new(move |slot: usize| {
                let core = weak.upgrade();
                if let (Some(core), Some(t)) = (core, nde_event_type::from_i32(slot as i32)) {
                    let _ = core.submit(t, EventData::none());
                }
            });
            let timer_name = format!("{}-timer", name.chars().take(9).collect::<String>());
            Core {
                timers: Debouncer::new(nde_event_type::NDE_EVENT_LAST as usize, &timer_name, fire),
                pool,
                registry,
                stopping: AtomicBool::new(false),
                workers,
            }
        });
        Ok(Events { core })
    }

    /// Registers `cb` for `event_type` (`None`: every type). For one event
    /// it runs after the callbacks registered before it, one call at a time
    /// (with several workers it is called under a lock, so it serialises
    /// the events it receives; see [`Events::register_concurrent`]); never
    /// blocks. It stays registered while the returned handle lives (see
    /// [`Registration`]); the closure is dropped exactly once when it is
    /// released (its `Drop` is the place to release what it holds).
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use nodedev_events::{EventData, EventType, Events};
    ///
    /// let events = Events::new("doc-register")?;
    /// let (seen, rx) = mpsc::channel();
    /// let handle = events.register(Some(EventType::NDE_EVENT_UDEV_ADD), move |t, _data| seen.send(t).unwrap())?;
    /// events.submit(EventType::NDE_EVENT_UDEV_ADD, EventData::none())?;
    /// events.submit(EventType::NDE_EVENT_UDEV_REMOVE, EventData::none())?; // not for this callback
    /// events.wait_idle(None)?;
    /// handle.deregister()?; // the closure (and `seen`) is dropped here
    /// assert_eq!(rx.iter().collect::<Vec<_>>(), [EventType::NDE_EVENT_UDEV_ADD]);
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn register(
        &self,
        event_type: Option<nde_event_type>,
        cb: impl FnMut(nde_event_type, *mut c_void) + Send + 'static,
    ) -> Result<Registration, Error> {
        // Called one at a time under the slot's lock (as `register_id`
        // does for C callbacks); released by the registry's on_remove.
        let slot = closure_slot::Exclusive::new(cb);
        let release = slot.release();
        let call = Box::new(move |t, data| slot.with(|cb| cb(t, data)));
        let id = self.register_concurrent_id(event_type, call, Some(release))?;
        Ok(self.registration(id))
    }

    /// As [`Events::register`], for a callback that may run on several
    /// workers at the same time (events of different keys).
    pub fn register_concurrent(
        &self,
        event_type: Option<nde_event_type>,
        cb: impl Fn(nde_event_type, *mut c_void) + Send + Sync + 'static,
    ) -> Result<Registration, Error> {
        let slot = closure_slot::Shared::new(cb);
        let release = slot.release();
        let call = Box::new(move |t, data| slot.with(|cb| cb(t, data)));
        let id = self.register_concurrent_id(event_type, call, Some(release))?;
        Ok(self.registration(id))
    }

    /// The handle that deregisters callback `id`.
    fn registration(&self, id: i32) -> Registration {
        let core = Arc::downgrade(&self.core);
        Registration::new(move || match core.upgrade() {
            Some(core) => core.registry.deregister(id, core.pool.on_worker()),
            None => Ok(()), // the object is gone and released every callback
        })
    }

    /// [`Events::register_concurrent`] for the C API: the callback's id.
    pub(crate) fn register_concurrent_id(
        &self,
        event_type: Option<nde_event_type>,
        cb: ConcurrentCallback,
        on_remove: Option<OnRemove>,
    ) -> Result<i32, Error> {
        let filter = Filter { event_type: event_type.map(|t| t as i32), internal: false };
        let wrapped = Box::new(move |t: i32, delivery: Delivery<'_>| match (nde_event_type::from_i32(t), delivery) {
            (Some(t), Delivery::Data(data)) => cb(t, data),
            (Some(t), Delivery::Owned(value)) => cb(t, value.as_ptr()),
            _ => {}
        });
        self.core.registry.register(filter, wrapped, on_remove)
    }

    /// Registers an internal handler (for every type): it receives every
    /// public event as [`Delivery::Data`] (or [`Delivery::Owned`] when a
    /// library value owns its data) and every internal event (see
    /// [`Events::submit_internal`]) as [`Delivery::Internal`]; no other
    /// callback sees internal events, and it does not count for
    /// `has_callback_for`. Returns its id, as `register` does.
    pub(crate) fn register_internal_handler(&self, cb: InternalHandler, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        let wrapped = Box::new(move |t: i32, delivery: Delivery<'_>| {
            if let Some(t) = nde_event_type::from_i32(t) {
                cb(t, delivery)
            }
        });
        self.core.registry.register(Filter { event_type: None, internal: true }, wrapped, on_remove)
    }

    /// Queues an internal event: ordered with every other event, handed
    /// only to internal handlers (as `(event_type, Delivery::Internal)`),
    /// dropped once they all returned, or when the event is refused or
    /// discarded.
    pub(crate) fn submit_internal(&self, event_type: nde_event_type, value: Box<dyn Any + Send>) -> Result<(), Error> {
        self.submit_internal_keyed(event_type, 0, value)
    }

    /// [`Events::submit_internal`] under `key`, as [`Events::submit_keyed`].
    pub(crate) fn submit_internal_keyed(&self, event_type: nde_event_type, key: u64, value: Box<dyn Any + Send>) -> Result<(), Error> {
        if event_type == nde_event_type::NDE_EVENT_LAST {
            return Err(Error::InvalidArgument);
        }
        self.core.send(Event::Internal(event_type, Box::new(value)), key)
    }

    /// Queues a public event whose C-visible data is owned by `value` (see
    /// [`CData`]): every callback for `event_type` sees `value.as_ptr()`,
    /// and `value` drops once, after them, or when the event is refused or
    /// discarded.
    pub(crate) fn submit_owned(&self, event_type: nde_event_type, value: Box<dyn CData>) -> Result<(), Error> {
        self.submit_owned_keyed(event_type, 0, value)
    }

    /// [`Events::submit_owned`] under `key`, as [`Events::submit_keyed`].
    pub(crate) fn submit_owned_keyed(&self, event_type: nde_event_type, key: u64, value: Box<dyn CData>) -> Result<(), Error> {
        if event_type == nde_event_type::NDE_EVENT_LAST {
            return Err(Error::InvalidArgument);
        }
        self.core.send(Event::Owned(event_type, Box::new(value)), key)
    }

    /// Removes callback `id` (C API; the promises of
    /// [`Registration::deregister`]). From a thread that is not one of the
    /// workers: when this returns the callback is not running on any worker
    /// and never runs again, and its `on_remove` ran. From a worker (inside
    /// a callback): never waits; the callback does not start again and its
    /// `on_remove` runs once no worker runs it (see `registry.rs`).
    pub(crate) fn deregister_id(&self, id: i32) -> Result<(), Error> {
        self.core.registry.deregister(id, self.on_worker())
    }

    /// Queues an event; `data` is always consumed (freed on failure).
    #[inline]
    pub fn submit(&self, event_type: nde_event_type, data: EventData) -> Result<(), Error> {
        self.submit_keyed(event_type, 0, data)
    }

    /// Queues an event under `key`: with several workers, events with the
    /// same non-zero key are handled one at a time in submission order and
    /// different keys in parallel; key 0, `NDE_EVENT_INIT` and
    /// `NDE_EVENT_MDEVCTL_CONFIG_CHANGED` make it a barrier (see the module
    /// comment). With one worker it is [`Events::submit`]. `data` is always
    /// consumed.
    pub fn submit_keyed(&self, event_type: nde_event_type, key: u64, data: EventData) -> Result<(), Error> {
        if event_type == nde_event_type::NDE_EVENT_LAST {
            return Err(Error::InvalidArgument);
        }
        self.core.send(Event::C(event_type, data), key)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.core.workers
    }

    /// Debounce: (re)arms the one-shot timer of `event_type`; when it fires,
    /// `(event_type, NULL)` is submitted. A zero `delay` submits now and
    /// cancels a pending timer.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use nodedev_events::{EventType, Events};
    ///
    /// let events = Events::new("doc-schedule")?;
    /// let fired = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&fired);
    /// let _cb = events.register(None, move |_t, _data| { count.fetch_add(1, Ordering::SeqCst); })?;
    /// for _ in 0..5 {
    ///     events.schedule(EventType::NDE_EVENT_MDEVCTL_CONFIG_CHANGED, Duration::from_secs(60))?;
    /// }
    /// events.schedule(EventType::NDE_EVENT_MDEVCTL_CONFIG_CHANGED, Duration::ZERO)?; // now, once
    /// events.wait_idle(None)?;
    /// assert_eq!(fired.load(Ordering::SeqCst), 1);
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn schedule(&self, event_type: nde_event_type, delay: Duration) -> Result<(), Error> {
        if event_type == nde_event_type::NDE_EVENT_LAST {
            return Err(Error::InvalidArgument);
        }
        if self.core.stopping.load(Ordering::SeqCst) {
            return Err(Error::Stopped);
        }
        // The timer thread submits the event: what the caller did so far
        // must still happen before its callbacks (for ThreadSanitizer).
        self.core.pool.announce_handoff();
        let slot = event_type as usize;
        if delay.is_zero() {
            self.core.timers.disarm(slot);
            return self.core.submit(event_type, EventData::none());
        }
        self.core.timers.arm(slot, delay)
    }

    /// Blocks until every submitted event was handled and its data freed
    /// (`timeout` `None`: for ever). [`Error::Timeout`];
    /// [`Error::WouldDeadlock`] from a callback.
    pub fn wait_idle(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.core.pool.wait_idle(timeout)
    }

    /// Phase one: refuse new events, cancel timers, let the worker stop
    /// after the current event. Never blocks; idempotent.
    pub fn shutdown_prepare(&self) {
        self.core.stopping.store(true, Ordering::SeqCst);
        self.core.timers.cancel();
        self.core.pool.stop();
    }

    /// Phase two: prepare if needed, join the timer and the worker, discard
    /// queued events (their data is freed). [`Error::Timeout`] when the
    /// current callback is still running after `timeout` (`None`: for
    /// ever): safe to call again. From a callback: [`Error::WouldDeadlock`].
    pub fn shutdown_wait(&self, timeout: Option<Duration>) -> Result<(), Error> {
        if self.on_worker() {
            return Err(Error::WouldDeadlock);
        }
        self.shutdown_prepare();
        self.core.timers.cancel_and_join();
        self.core.pool.drain_timeout(timeout)
    }

    /// True once `shutdown_prepare` (or `shutdown_wait`) was called.
    pub fn is_stopping(&self) -> bool {
        self.core.stopping.load(Ordering::SeqCst)
    }

    /// Counters of the worker's queue.
    pub fn stats(&self) -> PoolStats {
        self.core.pool.stats()
    }

    /// Counters of key and barrier contention (all zero with one worker).
    pub fn key_stats(&self) -> KeyStats {
        self.core.pool.key_stats()
    }

    /// Jobs queued and not yet handled.
    pub fn queue_depth(&self) -> usize {
        self.core.pool.queue_depth()
    }

    /// True when a callback other than the library's own would receive
    /// `event_type` (one registered for it or for ANY).
    pub fn has_callback_for(&self, event_type: nde_event_type) -> bool {
        let t = event_type as i32;
        self.core.registry.any(|f| !f.internal && f.event_type.is_none_or(|w| w == t))
    }

    /// Panics caught inside callbacks.
    pub fn caught_panics(&self) -> usize {
        self.core.registry.caught_panics()
    }

    /// True when called from one of this object's worker threads.
    pub fn on_worker(&self) -> bool {
        self.core.pool.on_worker()
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("workers", &self.workers())
            .field("queue_depth", &self.queue_depth())
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

impl Drop for Events {
    /// Prepare, wait for ever, release every callback's userdata. From inside
    /// a callback the release happens when that callback returns.
    fn drop(&mut self) {
        if self.on_worker() {
            self.shutdown_prepare();
        } else {
            // Join the timer thread here: a timer firing at this moment holds
            // a strong reference to the core, and without the join the last
            // reference (and with it the drain and every userdata release)
            // could end on the timer thread after this drop returned.
            let _ = self.shutdown_wait(None);
            // Released here, whoever holds the core last (a registration
            // handle being dropped elsewhere may hold it for a moment).
            self.core.registry.clear(false);
        }
    }
}

#[cfg(test)]
mod tests;
