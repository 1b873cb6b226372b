//! (Over 400 lines: one type, `Monitor`, and its API; a quarter is the
//! rustdoc each public item needs: ownership, threading, blocking.)
//!
//! The udev + mdevctl monitor and the node-device table (layer 3).
//!
//! A [`Monitor`] owns one [`Events`] (one ordered worker by default;
//! `MonitorConfig::workers` for more, see [`Monitor`]). Every raw event
//! goes through it: `NDE_EVENT_INIT` (enumeration, and again for each
//! resync after an overflow), `NDE_EVENT_UDEV_ADD/REMOVE/CHANGE/MOVE` (data:
//! the `struct udev_device *`, owned by the event) and
//! `NDE_EVENT_MDEVCTL_CONFIG_CHANGED`. The built-in handler, registered
//! first (for every type), keeps the [`table::Table`] and calls the
//! lifecycle listeners; C drivers may register their own raw handlers on
//! [`Monitor::events`], which run after it, in order.
//!
//! Files by concept: `reader/` (netlink reader, both receive paths,
//! overflow, resync), `handler.rs` (the built-in handler and its state),
//! `settle.rs` (counts, memory bound, settle), `uevent.rs` (fast-path
//! parser, batches), `udev_parse.rs`, `mac.rs`, `enumerate.rs`,
//! `mdevctl.rs` + `mdevctl_watch.rs`, `table.rs`, `device.rs`, `naming.rs`,
//! `listeners.rs`, `config.rs`, `stats.rs`, `log.rs`, `sys.rs` (syscalls).

mod config;
pub(crate) mod device;
mod enumerate;
mod handler;
mod listeners;
pub(crate) mod log;
mod mac;
// `pub` (inside this private module) only for `test_hooks`.
#[cfg_attr(feature = "test-hooks", allow(missing_docs, missing_debug_implementations))] // test hooks only
pub mod mdevctl;
mod mdevctl_watch;
#[cfg_attr(feature = "test-hooks", allow(missing_docs, missing_debug_implementations))] // test hooks only
pub(crate) mod naming;
mod raw_events;
mod reader;
mod settle;
mod stats;
mod subscription;
mod sys;
#[cfg_attr(feature = "test-hooks", allow(missing_docs, missing_debug_implementations))] // test hooks only
pub(crate) mod table;
mod udev_parse;
// `pub` (inside this private module) only for `test_hooks`.
#[cfg_attr(feature = "test-hooks", allow(missing_docs, missing_debug_implementations))] // test hooks only
pub mod uevent;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

pub use config::*;
pub use device::Device;
pub(crate) use listeners::{ConcurrentLifecycleCallback, OnRemove};
pub use naming::DeviceKind;
pub use raw_events::MonitorEvents;
pub use subscription::{Received, Subscription};
pub use stats::nde_monitor_stats;
pub use stats::MonitorStats;
pub use table::Lifecycle;

use crate::closure_slot;
use crate::events::Events;
use crate::registration::Registration;
use crate::error::Error;
use crate::sync::{lock, wait_until};
use crate::timeout::deadline;
use handler::{RunState, Shared};
use reader::{Group, Reader, ReaderConfig, ReaderShared};
use settle::QueueLimits;
use table::Table;

struct Threads {
    reader: Option<Reader>,
    watcher: Option<mdevctl_watch::Watcher>,
}

/// The node-device monitor: the udev (or kernel) uevent reader, the
/// mdevctl watch and the device table, over one ordered [`Events`] worker
/// (or several: `MonitorConfig::workers`).
///
/// Several workers: each uevent is keyed by its device (a hash of its
/// devpath), so the uevents of one device, and so its lifecycle callbacks,
/// stay in udev order while different devices are handled at the same
/// time. Barriers (they run alone, after everything queued before them and
/// before anything after): the initial enumeration and every resync, each
/// mdevctl refresh, a move (ordered with both its old and its new name),
/// and a uevent whose device is an ancestor or a descendant of one still
/// in flight (its parent link depends on that order). Not ordered with
/// each other: uevents of two unrelated devices, also when libvirt's
/// naming gives them the same name (then which record wins may differ
/// from one worker's). `settle` and `wait_initialized` keep their meaning.
///
/// Ownership: the monitor owns its threads (reader, worker, mdevctl
/// watch) and joins them in [`Monitor::stop`] or when dropped; devices it
/// hands out are `Arc`s that stay valid after they leave the table.
/// Threading: `Monitor` is `Send + Sync`; every method may be called from
/// any thread. Lifecycle callbacks run on the worker threads, in udev
/// order per device (one worker: one at a time, in udev order). Blocking: `new`, `start`, the lookups and
/// `snapshot` never wait for callbacks; `wait_initialized`, `settle` and
/// `stop` do (bounded by their timeout) and return
/// [`Error::WouldDeadlock`] from a callback instead.
pub struct Monitor {
    shared: Arc<Shared>,
    events: Arc<Events>,
    threads: Mutex<Threads>,
    builtin_id: i32,
}

impl Monitor {
    /// A monitor that is not started yet (starts the events worker; the
    /// reader starts with [`Monitor::start`]). [`Error::InvalidArgument`] for
    /// unknown flags or both groups forced, [`Error::Thread`] when a thread
    /// cannot be created.
    pub fn new(cfg: MonitorConfig) -> Result<Monitor, Error> {
        let workers = cfg.workers.max(1);
        if workers > NDE_MONITOR_MAX_WORKERS {
            return Err(Error::InvalidArgument);
        }
        let events = Arc::new(Events::with_workers(&format!("{}-ev", cfg.name), workers)?);
        let limits = QueueLimits { events: cfg.max_queued_events.max(1) as u64, bytes: cfg.max_queued_bytes.max(1) as u64 };
        let shared = Arc::new(Shared {
            cfg,
            table: RwLock::new(Table::new()),
            listeners: Default::default(),
            run: Mutex::new(RunState::default()),
            run_cv: Condvar::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            reader: ReaderShared::new(limits, workers > 1)?,
            mdevctl: mdevctl::Mdevctl::from_environment(),
            mdev_enabled: AtomicBool::new(false),
            mdev_queued: AtomicBool::new(false),
            kernel_group: AtomicBool::new(false),
            resyncs: AtomicU64::new(0),
            inits: AtomicU64::new(0),
            mdev_refreshes: AtomicU64::new(0),
            mdev_failures: AtomicU64::new(0),
            parked_reader: Mutex::new(None),
        });
        let sh = shared.clone();
        let ev_weak = Arc::downgrade(&events);
        let builtin_id = events.register_internal_handler(
            Box::new(move |t, delivery| handler::handle(&sh, ev_weak.upgrade().as_deref(), t, delivery)),
            None,
        )?;
        Ok(Monitor { shared, events, threads: Mutex::new(Threads { reader: None, watcher: None }), builtin_id })
    }

    /// The monitor's event queue, as a view that registers raw handlers
    /// (they run after the built-in one that keeps the table) but cannot
    /// queue events (see [`MonitorEvents`]).
    pub fn events(&self) -> MonitorEvents<'_> {
        MonitorEvents::new(&self.events)
    }

    /// The events object itself, for the C API (`nde_monitor_get_events`).
    pub(crate) fn events_arc(&self) -> &Arc<Events> {
        &self.events
    }

    /// Adds a lifecycle listener for the device named `device_name`
    /// (`None`: every device). It runs on a worker thread, one call at a
    /// time (with several workers it is called under a lock: see
    /// [`Monitor::register_concurrent`]), in udev order per device:
    /// `Created` for a new device (and, if registered before
    /// [`Monitor::start`], for each device of the initial inventory),
    /// `Updated`, `Deleted` (a rename is `Deleted` then `Created`),
    /// `Defined` / `Undefined` for mdevctl's configuration. Never blocks.
    ///
    /// The listener stays registered while the returned handle lives (see
    /// [`Registration`]); the closure is dropped exactly once when it is
    /// released.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use nodedev_events::{EventSource, Lifecycle, Monitor, MonitorConfig};
    ///
    /// let monitor = Monitor::new(MonitorConfig { source: EventSource::Kernel, watch_mdevctl: false, ..MonitorConfig::default() })?;
    /// let (tx, rx) = mpsc::channel();
    /// let _listener = monitor.register(Some("computer"), move |device, event| tx.send((device.name().to_owned(), event)).unwrap())?;
    /// monitor.start()?;
    /// monitor.wait_initialized(None)?;
    /// assert_eq!(rx.try_recv().unwrap(), ("computer".to_owned(), Lifecycle::Created));
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn register(
        &self,
        device_name: Option<&str>,
        cb: impl FnMut(&Arc<Device>, Lifecycle) + Send + 'static,
    ) -> Result<Registration, Error> {
        // One call at a time under the slot's lock; released (dropped) by
        // the registry's on_remove (see `closure_slot.rs`).
        let slot = closure_slot::Exclusive::new(cb);
        let release = slot.release();
        let call = Box::new(move |device: &Arc<Device>, event| slot.with(|cb| cb(device, event)));
        let id = self.register_concurrent_id(device_name, call, Some(release))?;
        Ok(self.registration(id))
    }

    /// As [`Monitor::register`], for a listener that may run on several
    /// workers at the same time (a monitor with `workers > 1`): for
    /// different devices concurrently, for one device in order. With one
    /// worker it is [`Monitor::register`].
    pub fn register_concurrent(
        &self,
        device_name: Option<&str>,
        cb: impl Fn(&Arc<Device>, Lifecycle) + Send + Sync + 'static,
    ) -> Result<Registration, Error> {
        let slot = closure_slot::Shared::new(cb);
        let release = slot.release();
        let call = Box::new(move |device: &Arc<Device>, event| slot.with(|cb| cb(device, event)));
        let id = self.register_concurrent_id(device_name, call, Some(release))?;
        Ok(self.registration(id))
    }

    /// Lifecycle events of `device_name` (`None`: every device) for a poll
    /// loop, beside the callbacks: a queue of at most `capacity` events
    /// whose fd is readable while one is waiting (see [`Subscription`]).
    /// Registered like a listener: before [`Monitor::start`] it also gets
    /// the initial inventory. [`Error::InvalidArgument`] for a zero
    /// capacity, [`Error::Os`] when the eventfd cannot be made.
    pub fn subscribe(&self, device_name: Option<&str>, capacity: usize) -> Result<Subscription, Error> {
        subscription::subscribe(capacity, |push| self.register_concurrent(device_name, push))
    }

    /// The handle that deregisters listener `id`.
    fn registration(&self, id: i32) -> Registration {
        let (shared, events) = (Arc::downgrade(&self.shared), Arc::downgrade(&self.events));
        Registration::new(move || match (shared.upgrade(), events.upgrade()) {
            (Some(shared), Some(events)) => shared.listeners.deregister(id, events.on_worker()),
            _ => Ok(()), // the monitor is gone and released every listener
        })
    }

    /// [`Monitor::register_concurrent`] for the C API: the listener's id.
    pub(crate) fn register_concurrent_id(
        &self,
        device_name: Option<&str>,
        cb: ConcurrentLifecycleCallback,
        on_remove: Option<OnRemove>,
    ) -> Result<i32, Error> {
        self.shared.listeners.register_concurrent(device_name, cb, on_remove)
    }

    /// Removes listener `id` (C API; the promises of
    /// [`Registration::deregister`]).
    pub(crate) fn deregister_id(&self, id: i32) -> Result<(), Error> {
        self.shared.listeners.deregister(id, self.events.on_worker())
    }

    /// Opens the netlink monitor, **then** queues INIT (enumeration), then
    /// starts the reader and the mdevctl watch; returns at once. Every
    /// error path releases what it opened. [`Error::InvalidArgument`] when already
    /// started, [`Error::Stopped`] after stop, [`Error::Os`] when the socket
    /// cannot be opened, [`Error::Thread`].
    pub fn start(&self) -> Result<(), Error> {
        let sh = &self.shared;
        {
            let mut r = lock(&sh.run);
            if r.stopped {
                return Err(Error::Stopped);
            }
            if r.started {
                return Err(Error::InvalidArgument);
            }
            r.started = true;
        }
        let group = match sh.cfg.source {
            EventSource::Kernel => Group::Kernel,
            EventSource::Udev => Group::Udev,
            EventSource::Auto => Group::detect(),
        };
        sh.kernel_group.store(group == Group::Kernel, Ordering::SeqCst);
        let rcfg = ReaderConfig {
            group,
            subsystems: sh.cfg.subsystems.clone(),
            receive_buffer_bytes: sh.cfg.receive_buffer_bytes,
            thread_name: format!("{}-udev", sh.cfg.name),
        };
        let fail = |e: Error| {
            let mut r = lock(&sh.run);
            r.stopped = true;
            sh.run_cv.notify_all();
            e
        };
        let mut reader = Reader::open(&rcfg, sh.reader.clone()).map_err(fail)?;
        let mdev = sh.cfg.watch_mdevctl;
        if mdev && sh.mdevctl.bin.is_some() {
            sh.mdev_enabled.store(true, Ordering::SeqCst);
        } else if mdev {
            log::info("mdevctl is not on PATH: mediated devices are not tracked");
        }
        reader::submit_init(&self.events, &sh.reader).map_err(fail)?;
        let started = reader.start(&rcfg, self.events.clone());
        let mut th = lock(&self.threads);
        th.reader = Some(reader);
        started.map_err(fail)?;
        if mdev {
            let debounce = match u32::try_from(sh.cfg.mdevctl_debounce.as_millis()).unwrap_or(u32::MAX) {
                0 => DEFAULT_MDEVCTL_DEBOUNCE_MS,
                ms => ms,
            };
            let name = format!("{}-mdev", sh.cfg.name);
            th.watcher = mdevctl_watch::Watcher::start_debounced(&sh.cfg.mdevctl_dir, &name, &self.events, debounce).ok();
        }
        Ok(())
    }

    /// Blocks until the initial inventory was handled (`timeout` `None`:
    /// for ever). [`Error::Timeout`], [`Error::Stopped`] (stopped, or start
    /// failed, first), [`Error::WouldDeadlock`] from a callback before
    /// initialization.
    pub fn wait_initialized(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let on_worker = self.events.on_worker();
        let deadline = deadline(timeout);
        let mut r = lock(&self.shared.run);
        loop {
            if r.initialized {
                return Ok(());
            }
            if on_worker {
                return Err(Error::WouldDeadlock);
            }
            if r.stopped {
                return Err(Error::Stopped);
            }
            let (g, timed_out) = wait_until(&self.shared.run_cv, r, deadline);
            if timed_out {
                return Err(Error::Timeout);
            }
            r = g;
        }
    }

    /// Blocks until every uevent the socket had received when the call
    /// began has been handled and its callbacks returned (`timeout` `None`:
    /// for ever). `Ok` at once before start; [`Error::Stopped`] after stop
    /// or once the events object was shut down; [`Error::Timeout`];
    /// [`Error::WouldDeadlock`] from a callback.
    pub fn settle(&self, timeout: Option<Duration>) -> Result<(), Error> {
        if self.events.on_worker() {
            return Err(Error::WouldDeadlock);
        }
        let started = {
            let r = lock(&self.shared.run);
            if r.stopped {
                return Err(Error::Stopped);
            }
            r.started
        };
        if !started {
            return Ok(());
        }
        let (reader, events) = (&self.shared.reader, &self.events);
        // A caller that shut the monitor's events object down gets STOPPED.
        reader.progress.settle(deadline(timeout), &|| reader.wake_reader(), &|| events.is_stopping())
    }

    /// Number of devices in the table now. Never blocks on callbacks.
    pub fn device_count(&self) -> usize {
        self.shared.read_table().len()
    }

    /// Every device of the table, one consistent snapshot (iterate it;
    /// the devices stay valid after they leave the table). Never blocks on
    /// callbacks; may be called from a callback.
    pub fn snapshot(&self) -> Vec<Arc<Device>> {
        self.shared.read_table().iter().cloned().collect()
    }

    /// The device libvirt names `name` (e.g. `"computer"`,
    /// `"net_lo_00_00_00_00_00_00"`), if it is in the table.
    pub fn lookup(&self, name: &str) -> Option<Arc<Device>> {
        self.shared.read_table().get(name).cloned()
    }

    /// The device at `syspath` (`/sys/devices/...`), if it is in the table.
    pub fn lookup_by_syspath(&self, syspath: &str) -> Option<Arc<Device>> {
        self.shared.read_table().get_by_syspath(syspath).cloned()
    }

    /// Stops the reader, the mdevctl watch and the timers, joins them and
    /// the worker, discards queued events (every `udev_device` reference is
    /// released). A long enumeration or mdevctl run is cut short. Blocks
    /// until a running callback returns (`timeout` `None`: for ever);
    /// [`Error::Timeout`] when it is still running (safe to call again);
    /// from a callback: [`Error::WouldDeadlock`]. The table stays readable.
    pub fn stop(&self, timeout: Option<Duration>) -> Result<(), Error> {
        if self.events.on_worker() {
            return Err(Error::WouldDeadlock);
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let mut r = lock(&self.shared.run);
            r.stopped = true;
            self.shared.run_cv.notify_all();
        }
        self.events.shutdown_prepare();
        let mut th = lock(&self.threads);
        th.watcher = None;
        if let Some(r) = th.reader.as_mut() {
            r.stop();
        }
        self.events.shutdown_wait(timeout)?;
        // The worker is gone: no event can refer to the context any more.
        th.reader = None;
        Ok(())
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = lock(&self.shared.run);
        let (started, initialized, stopped) = (run.started, run.initialized, run.stopped);
        drop(run);
        f.debug_struct("Monitor")
            .field("name", &self.shared.cfg.name)
            .field("started", &started)
            .field("initialized", &initialized)
            .field("stopped", &stopped)
            .field("devices", &self.device_count())
            .finish()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.events.on_worker() {
            // Dropped from its own callback: the Events object defers its
            // own release; the reader must still stop.
            let mut th = lock(&self.threads);
            th.watcher = None;
            if let Some(r) = th.reader.as_mut() {
                r.stop();
            }
            // The context stays allocated while queued devices point at
            // it: released with `shared` (see `parked_reader`).
            *lock(&self.shared.parked_reader) = th.reader.take();
            drop(th);
            self.shared.listeners.clear_on_worker();
            return;
        }
        let _ = self.stop(None);
        let _ = self.events.deregister_id(self.builtin_id);
        self.shared.listeners.clear();
    }
}
