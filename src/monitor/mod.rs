//! The udev + mdevctl monitor and the node-device table (layer 3).
//!
//! A [`Monitor`] owns one [`Events`] (one ordered worker). Every raw event
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
pub mod device;
pub mod enumerate;
// Until the events restructuring of these two lands, their unsafe
// operations inside `unsafe fn`s and their SAFETY comments are not checked.
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
mod handler;
pub mod listeners;
pub mod log;
mod mac;
pub mod mdevctl;
mod mdevctl_watch;
pub mod naming;
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
pub mod reader;
pub mod settle;
mod stats;
mod sys;
pub mod table;
pub mod udev_parse;
pub mod uevent;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

pub use config::*;
pub use device::Device;
pub use listeners::{LifecycleCallback, OnRemove};
pub use stats::{nde_monitor_stats, MonitorStats};
pub use table::{nde_lifecycle, Lifecycle};

use crate::events::Events;
use crate::result::{nde_result, Error};
use crate::sync::{deadline_after, lock, wait_until};
use handler::{RunState, Shared};
use reader::{Group, Reader, ReaderConfig, ReaderShared};
use settle::QueueLimits;
use table::Table;

struct Threads {
    reader: Option<Reader>,
    watcher: Option<mdevctl_watch::Watcher>,
}

/// The node-device monitor.
pub struct Monitor {
    shared: Arc<Shared>,
    events: Arc<Events>,
    threads: Mutex<Threads>,
    builtin_id: i32,
}

impl Monitor {
    /// A monitor that is not started yet.
    pub fn new(cfg: MonitorConfig) -> Result<Monitor, Error> {
        let known = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL;
        let both = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS;
        if cfg.flags & both == both || cfg.flags & !known != 0 {
            return Err(nde_result::NDE_ERR_INVALID);
        }
        let events = Arc::new(Events::new(&format!("{}-ev", cfg.name))?);
        let limits = QueueLimits { events: cfg.max_queued_events.max(1) as u64, bytes: cfg.max_queued_bytes.max(1) as u64 };
        let shared = Arc::new(Shared {
            cfg,
            table: RwLock::new(Table::new()),
            listeners: Default::default(),
            run: Mutex::new(RunState::default()),
            run_cv: Condvar::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            reader: ReaderShared::new(limits)?,
            mdevctl: mdevctl::Mdevctl::from_environment(),
            mdev_enabled: AtomicBool::new(false),
            mdev_queued: AtomicBool::new(false),
            kernel_group: AtomicBool::new(false),
            resyncs: AtomicU64::new(0),
            inits: AtomicU64::new(0),
            mdev_refreshes: AtomicU64::new(0),
            mdev_failures: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let ev_weak = Arc::downgrade(&events);
        let builtin_id = events.register_internal(
            Box::new(move |t, data| handler::handle(&sh, ev_weak.upgrade().as_deref(), t, data)),
            None,
        )?;
        Ok(Monitor { shared, events, threads: Mutex::new(Threads { reader: None, watcher: None }), builtin_id })
    }

    /// The monitor's events object (C drivers add raw handlers there).
    pub fn events(&self) -> &Arc<Events> {
        &self.events
    }

    /// Id of the built-in handler on [`Monitor::events`].
    pub fn builtin_handler_id(&self) -> i32 {
        self.builtin_id
    }

    /// Adds a lifecycle listener for one device name (None = all).
    pub fn register(&self, device_name: Option<&str>, cb: LifecycleCallback, on_remove: Option<OnRemove>) -> Result<i32, Error> {
        self.shared.listeners.register(device_name, cb, on_remove)
    }

    /// Removes a lifecycle listener (see `listeners.rs` for the promises).
    pub fn deregister(&self, id: i32) -> Result<(), Error> {
        self.shared.listeners.deregister(id, self.events.on_worker())
    }

    /// Opens the netlink monitor, **then** queues INIT (enumeration), then
    /// starts the reader and the mdevctl watch. Every error path releases
    /// what it opened.
    pub fn start(&self) -> Result<(), Error> {
        let sh = &self.shared;
        {
            let mut r = lock(&sh.run);
            if r.stopped {
                return Err(nde_result::NDE_ERR_STOPPED);
            }
            if r.started {
                return Err(nde_result::NDE_ERR_INVALID);
            }
            r.started = true;
        }
        let group = if sh.cfg.flags & NDE_MONITOR_KERNEL_EVENTS != 0 {
            Group::Kernel
        } else if sh.cfg.flags & NDE_MONITOR_UDEV_EVENTS != 0 {
            Group::Udev
        } else {
            Group::detect()
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
        let mdev = sh.cfg.flags & NDE_MONITOR_NO_MDEVCTL == 0;
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
            let debounce = match sh.cfg.mdevctl_debounce_ms {
                0 => DEFAULT_MDEVCTL_DEBOUNCE_MS,
                ms => ms,
            };
            let name = format!("{}-mdev", sh.cfg.name);
            th.watcher = mdevctl_watch::Watcher::start_debounced(&sh.cfg.mdevctl_dir, &name, &self.events, debounce).ok();
        }
        Ok(())
    }

    /// Waits until INIT was handled (`timeout_ms < 0`: for ever).
    pub fn wait_initialized(&self, timeout_ms: i32) -> Result<(), Error> {
        let on_worker = self.events.on_worker();
        let deadline = deadline_after(timeout_ms);
        let mut r = lock(&self.shared.run);
        loop {
            if r.initialized {
                return Ok(());
            }
            if on_worker {
                return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
            }
            if r.stopped {
                return Err(nde_result::NDE_ERR_STOPPED);
            }
            let (g, timed_out) = wait_until(&self.shared.run_cv, r, deadline);
            if timed_out {
                return Err(nde_result::NDE_ERR_TIMEOUT);
            }
            r = g;
        }
    }

    /// Returns once every uevent the socket had received when the call
    /// began has been handled and its callbacks returned.
    pub fn settle(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.events.on_worker() {
            return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
        }
        let started = {
            let r = lock(&self.shared.run);
            if r.stopped {
                return Err(nde_result::NDE_ERR_STOPPED);
            }
            r.started
        };
        if !started {
            return Ok(());
        }
        let (reader, events) = (&self.shared.reader, &self.events);
        // A caller that shut the monitor's events object down gets STOPPED.
        reader.progress.settle(deadline_after(timeout_ms), &|| reader.wake_reader(), &|| events.is_stopping())
    }

    pub fn device_count(&self) -> usize {
        self.shared.read_table().len()
    }

    /// A consistent snapshot of every device.
    pub fn snapshot(&self) -> Vec<Arc<Device>> {
        self.shared.read_table().iter().cloned().collect()
    }

    /// Calls `f` for each device of a consistent snapshot until it returns
    /// a non-zero value, which is returned (0 when all were visited).
    pub fn foreach(&self, mut f: impl FnMut(&Arc<Device>) -> i32) -> i32 {
        self.snapshot().iter().map(&mut f).find(|&r| r != 0).unwrap_or(0)
    }

    pub fn lookup(&self, name: &str) -> Option<Arc<Device>> {
        self.shared.read_table().get(name).cloned()
    }

    pub fn lookup_by_syspath(&self, syspath: &str) -> Option<Arc<Device>> {
        self.shared.read_table().get_by_syspath(syspath).cloned()
    }

    /// Stops the reader, the mdevctl watch and the timers, joins them and
    /// the worker, discards queued events (every `udev_device` reference is
    /// released). A long enumeration or mdevctl run is cut short. From the
    /// worker: `NDE_ERR_WOULD_DEADLOCK`. `NDE_ERR_TIMEOUT` when a callback
    /// is still running: safe to call again.
    pub fn stop(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.events.on_worker() {
            return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
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
        self.events.shutdown_wait(timeout_ms)?;
        self.shared.reader.drop_batches();
        // The worker is gone: no event can refer to the context any more.
        th.reader = None;
        Ok(())
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
            // The context stays allocated (queued devices point at it).
            std::mem::forget(th.reader.take());
            drop(th);
            self.shared.listeners.clear_on_worker();
            return;
        }
        let _ = self.stop(-1);
        let _ = self.events.deregister(self.builtin_id);
        self.shared.listeners.clear();
    }
}
