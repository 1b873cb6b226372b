//! The udev + mdevctl source and the node-device table (layer 3).
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
//! **Two receive paths** (see `source.rs`). While a C user has a raw
//! handler registered for some `NDE_EVENT_UDEV_*` type on
//! [`Monitor::events`] (`Events::has_callback_for`), every uevent is read
//! through libudev and queued as its own event carrying the
//! `struct udev_device *` (the API's contract; the device is handed back
//! to the reader thread to be freed where it was made). Otherwise the
//! **fast path** reads the socket itself (`uevent.rs`: libudev's wire
//! format and sender checks), copies the fields of every uevent of one
//! wake-up into one arena and queues the batch behind one internal marker
//! (`Events::submit_marker`), which only the built-in handler sees (as
//! `NDE_EVENT_UDEV_ADD` with NULL data); it applies the batch under one
//! table lock. C handlers never see a marker. The
//! switch is checked on every wake-up of the reader; order is kept across
//! it because both paths queue on the same worker.
//!
//! Files: `naming.rs` (libvirt names and types), `device.rs` (the record),
//! `table.rs` (table, lifecycle rules, resync diff), `udev_parse.rs`
//! (libudev device -> spec), `uevent.rs` (datagram parser and batches of
//! the fast path), `source.rs` (netlink reader, overflow, settle),
//! `enumerate.rs` (sysfs enumeration), `mdevctl.rs` (watch,
//! refresh, JSON, diff), `listeners.rs` (lifecycle callbacks), `log.rs`.

pub mod device;
pub mod enumerate;
pub mod listeners;
pub mod log;
pub mod mdevctl;
pub mod naming;
pub mod source;
mod stats;
pub mod table;
pub mod udev_parse;
pub mod uevent;

use std::ffi::{c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use udev::ffi;

pub use device::Device;
pub use stats::{nde_monitor_stats, MonitorStats};
pub use listeners::{LifecycleCallback, OnRemove};
pub use table::{nde_lifecycle, Lifecycle};

use crate::events::{nde_event_type, Events};
use crate::result::{nde_result, Error};
use source::{Group, Source, SourceConfig, SourceShared};
use table::{Changes, DeviceSpec, Table};

/// Force the kernel netlink group.
pub const NDE_MONITOR_KERNEL_EVENTS: u32 = 1 << 0;
/// Do not watch mdevctl's configuration.
pub const NDE_MONITOR_NO_MDEVCTL: u32 = 1 << 1;
/// Force the udev netlink group.
pub const NDE_MONITOR_UDEV_EVENTS: u32 = 1 << 2;

/// Default debounce of mdevctl configuration changes (libvirt's 100 ms).
pub const DEFAULT_MDEVCTL_DEBOUNCE_MS: u32 = 100;

/// Default receive buffer (systemd's and libvirt's 128 MiB).
pub const DEFAULT_RECEIVE_BUFFER: usize = 128 << 20;

/// Monitor settings (the Rust side of `nde_monitor_config`).
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    pub flags: u32,
    /// Thread names; default `nodedev`.
    pub name: String,
    /// Subsystem filter (None = all).
    pub subsystems: Option<Vec<String>>,
    /// Default `/etc/mdevctl.d`.
    pub mdevctl_dir: PathBuf,
    /// Default (and 0) [`DEFAULT_MDEVCTL_DEBOUNCE_MS`].
    pub mdevctl_debounce_ms: u32,
    /// Default 128 MiB (root only; failing to set it is logged).
    pub receive_buffer_bytes: usize,
    /// Past this many uevents queued and not yet handled, the reader stops
    /// reading (the kernel's buffer absorbs, then overflows into a
    /// resync). Default [`DEFAULT_MAX_QUEUED_EVENTS`].
    pub max_queued_events: usize,
    /// The same bound in bytes of queued uevents. Default
    /// [`DEFAULT_MAX_QUEUED_BYTES`].
    pub max_queued_bytes: usize,
}

/// Default bound of queued uevents (see `MonitorConfig`).
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = 65536;
/// Default bound of queued uevent bytes (see `MonitorConfig`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            flags: 0,
            name: "nodedev".into(),
            subsystems: None,
            mdevctl_dir: PathBuf::from("/etc/mdevctl.d"),
            mdevctl_debounce_ms: DEFAULT_MDEVCTL_DEBOUNCE_MS,
            receive_buffer_bytes: DEFAULT_RECEIVE_BUFFER,
            max_queued_events: DEFAULT_MAX_QUEUED_EVENTS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
        }
    }
}

#[derive(Default)]
struct RunState {
    started: bool,
    initialized: bool,
    stopped: bool,
}

/// State shared by the monitor, its built-in handler and its threads.
struct Shared {
    cfg: MonitorConfig,
    table: RwLock<Table>,
    listeners: listeners::Listeners,
    run: Mutex<RunState>,
    run_cv: Condvar,
    stopping: Arc<AtomicBool>,
    src: Arc<SourceShared>,
    /// mdevctl and its environment, read once at `Monitor::new`.
    mdevctl: mdevctl::Mdevctl,
    mdev_enabled: AtomicBool,
    mdev_queued: AtomicBool,
    /// The kernel group was chosen (kernel adds may precede the interface
    /// name being listed: see `source.rs`).
    kernel_group: AtomicBool,
    /// A datagram socket for `SIOCGIFHWADDR` on the worker (raw path).
    ioctl_sock: Option<std::os::fd::OwnedFd>,
    resyncs: AtomicU64,
    inits: AtomicU64,
    mdev_refreshes: AtomicU64,
    mdev_failures: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Threads {
    source: Option<Source>,
    watcher: Option<mdevctl::Watcher>,
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
        if cfg.flags & NDE_MONITOR_KERNEL_EVENTS != 0 && cfg.flags & NDE_MONITOR_UDEV_EVENTS != 0 {
            return Err(nde_result::NDE_ERR_INVALID);
        }
        if cfg.flags & !(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL) != 0 {
            return Err(nde_result::NDE_ERR_INVALID);
        }
        let events = Arc::new(Events::new(&format!("{}-ev", cfg.name))?);
        let limits = source::QueueLimits {
            events: cfg.max_queued_events.max(1) as u64,
            bytes: cfg.max_queued_bytes.max(1) as u64,
        };
        let shared = Arc::new(Shared {
            cfg,
            table: RwLock::new(Table::new()),
            listeners: Default::default(),
            run: Mutex::new(RunState::default()),
            run_cv: Condvar::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            src: SourceShared::new(limits)?,
            mdevctl: mdevctl::Mdevctl::from_environment(),
            mdev_enabled: AtomicBool::new(false),
            mdev_queued: AtomicBool::new(false),
            kernel_group: AtomicBool::new(false),
            // SAFETY: plain socket creation; a negative result means none.
            ioctl_sock: {
                let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
                // SAFETY: a fresh fd we own.
                (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
            },
            resyncs: AtomicU64::new(0),
            inits: AtomicU64::new(0),
            mdev_refreshes: AtomicU64::new(0),
            mdev_failures: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let ev_weak = Arc::downgrade(&events);
        let builtin_id = events.register_internal(
            Box::new(move |t, data| {
                let ev = ev_weak.upgrade();
                handle(&sh, ev.as_deref(), t, data)
            }),
            None,
        )?;
        Ok(Monitor { shared, events, threads: Mutex::new(Threads { source: None, watcher: None }), builtin_id })
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
    /// starts the reader and the mdevctl watch.
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
        let scfg = SourceConfig {
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
        let mut src = Source::open(&scfg, sh.src.clone()).map_err(fail)?;
        if sh.cfg.flags & NDE_MONITOR_NO_MDEVCTL == 0 {
            if sh.mdevctl.bin.is_some() {
                sh.mdev_enabled.store(true, Ordering::SeqCst);
            } else {
                log::info("mdevctl is not on PATH: mediated devices are not tracked");
            }
        }
        source::submit_init(&self.events, &sh.src).map_err(fail)?;
        if let Err(e) = src.start(&scfg, self.events.clone()) {
            lock(&self.threads).source = Some(src);
            return Err(fail(e));
        }
        let mut th = lock(&self.threads);
        th.source = Some(src);
        if sh.cfg.flags & NDE_MONITOR_NO_MDEVCTL == 0 {
            let ev = Arc::downgrade(&self.events);
            let sh2 = sh.clone();
            let w = mdevctl::Watcher::start(
                &sh.cfg.mdevctl_dir,
                Duration::from_millis(match sh.cfg.mdevctl_debounce_ms {
                    0 => DEFAULT_MDEVCTL_DEBOUNCE_MS,
                    ms => ms,
                }
                .into()),
                &format!("{}-mdev", sh.cfg.name),
                Box::new(move || {
                    if let Some(ev) = ev.upgrade() {
                        request_mdev_refresh(&sh2, &ev);
                    }
                }),
            );
            th.watcher = w.ok();
        }
        Ok(())
    }

    /// Waits until INIT was handled (`timeout_ms < 0`: for ever).
    pub fn wait_initialized(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.events.on_worker() {
            let r = lock(&self.shared.run);
            return if r.initialized { Ok(()) } else { Err(nde_result::NDE_ERR_WOULD_DEADLOCK) };
        }
        let deadline = (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        let mut r = lock(&self.shared.run);
        loop {
            if r.initialized {
                return Ok(());
            }
            if r.stopped {
                return Err(nde_result::NDE_ERR_STOPPED);
            }
            let wait = match deadline {
                None => Duration::from_secs(1),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(nde_result::NDE_ERR_TIMEOUT);
                    }
                    d - now
                }
            };
            r = self.shared.run_cv.wait_timeout(r, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Returns once every uevent the socket had received when the call
    /// began has been handled and its callbacks returned.
    pub fn settle(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.events.on_worker() {
            return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
        }
        let running = {
            let r = lock(&self.shared.run);
            if r.stopped {
                return Err(nde_result::NDE_ERR_STOPPED);
            }
            r.started
        };
        if self.events.is_stopping() {
            // The caller shut the monitor's events object down.
            return Err(nde_result::NDE_ERR_STOPPED);
        }
        if !running {
            return Ok(());
        }
        let timeout = (timeout_ms >= 0).then(|| Duration::from_millis(timeout_ms as u64));
        let events = &self.events;
        self.shared.src.settle(timeout, true, &|| events.is_stopping())
    }

    pub fn device_count(&self) -> usize {
        self.shared.table.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A consistent snapshot of every device.
    pub fn snapshot(&self) -> Vec<Arc<Device>> {
        self.shared.table.read().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Calls `f` for each device of a consistent snapshot until it returns
    /// a non-zero value, which is returned (0 when all were visited).
    pub fn foreach(&self, mut f: impl FnMut(&Arc<Device>) -> i32) -> i32 {
        for d in self.snapshot() {
            let r = f(&d);
            if r != 0 {
                return r;
            }
        }
        0
    }

    pub fn lookup(&self, name: &str) -> Option<Arc<Device>> {
        self.shared.table.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn lookup_by_syspath(&self, syspath: &str) -> Option<Arc<Device>> {
        self.shared.table.read().unwrap_or_else(|p| p.into_inner()).get_by_syspath(syspath).cloned()
    }

    /// C-string lookups (for the FFI).
    pub fn lookup_c(&self, name: &CStr) -> Option<Arc<Device>> {
        name.to_str().ok().and_then(|n| self.lookup(n))
    }

    pub fn stats(&self) -> MonitorStats {
        let s = &self.shared.src;
        MonitorStats {
            received: s.received.load(Ordering::Relaxed),
            submitted: s.submitted.load(Ordering::Relaxed),
            handled: s.handled.load(Ordering::Relaxed),
            ignored: s.ignored.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            fast_path: s.fast.load(Ordering::Relaxed),
            overflows: s.overflows.load(Ordering::Relaxed),
            receive_errors: s.receive_errors.load(Ordering::Relaxed),
            resyncs: self.shared.resyncs.load(Ordering::Relaxed),
            mdevctl_refreshes: self.shared.mdev_refreshes.load(Ordering::Relaxed),
            mdevctl_failures: self.shared.mdev_failures.load(Ordering::Relaxed),
            listener_panics: self.shared.listeners.panics() as u64,
        }
    }

    /// Times the reader stopped reading because its queue was full (Rust
    /// only: the C stats struct has no size field to grow safely).
    pub fn reader_pauses(&self) -> u64 {
        self.shared.src.pauses.load(Ordering::Relaxed)
    }

    /// Stops the source thread, the mdevctl watch and the timers, joins
    /// them and the worker, discards queued events (every `udev_device`
    /// reference is released). A long enumeration is cut short. From the
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
        if let Some(w) = th.watcher.as_mut() {
            w.stop();
        }
        th.watcher = None;
        if let Some(s) = th.source.as_mut() {
            s.stop();
        }
        self.events.shutdown_wait(timeout_ms)?;
        self.shared.src.drop_batches();
        if let Some(mut s) = th.source.take() {
            s.release_context();
        }
        Ok(())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.events.on_worker() {
            // Dropped from its own callback: the Events object defers its
            // own release; the source must still stop.
            let mut th = lock(&self.threads);
            th.watcher = None;
            if let Some(s) = th.source.as_mut() {
                s.stop();
            }
            // The context stays allocated (queued devices point at it).
            std::mem::forget(th.source.take());
            drop(th);
            self.shared.listeners.clear_on_worker();
            return;
        }
        let _ = self.stop(-1);
        let _ = self.events.deregister(self.builtin_id);
        self.shared.listeners.clear();
    }
}

fn request_mdev_refresh(sh: &Shared, ev: &Events) {
    if !sh.mdev_queued.swap(true, Ordering::SeqCst) && ev.schedule(nde_event_type::NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 0).is_err() {
        sh.mdev_queued.store(false, Ordering::SeqCst);
    }
}

/// The built-in handler, on the events worker.
fn handle(sh: &Shared, ev: Option<&Events>, t: nde_event_type, data: *mut c_void) {
    use nde_event_type::*;
    let mut out = Changes::new();
    let mut mdev_touched = false;
    match t {
        NDE_EVENT_INIT => {
            handle_init(sh, data.cast(), &mut out);
        }
        NDE_EVENT_UDEV_ADD | NDE_EVENT_UDEV_CHANGE | NDE_EVENT_UDEV_REMOVE | NDE_EVENT_UDEV_MOVE => {
            if data.is_null() {
                // A fast-path batch marker (see source.rs).
                if let Some(b) = sh.src.take_batch() {
                    handle_batch(sh, &b, &mut out);
                    mdev_touched = out.iter().any(|(_, d)| d.subsystem() == "mdev");
                    sh.listeners.dispatch(&out);
                    sh.src.batch_done(&b);
                    if mdev_touched && sh.mdev_enabled.load(Ordering::Relaxed) {
                        if let Some(ev) = ev {
                            request_mdev_refresh(sh, ev);
                        }
                    }
                }
                return;
            }
            let dev = data as *mut ffi::udev_device;
            // SAFETY: the event owns `dev`; this worker is its only user
            // until the event is freed, which happens after we return.
            unsafe { handle_uevent(sh, t, dev, &mut out) };
            mdev_touched = out.iter().any(|(_, d)| d.subsystem() == "mdev");
        }
        NDE_EVENT_MDEVCTL_CONFIG_CHANGED => {
            sh.mdev_queued.store(false, Ordering::SeqCst);
            mdev_refresh(sh, &mut out);
        }
        NDE_EVENT_LAST => {}
    }
    sh.listeners.dispatch(&out);
    if t == NDE_EVENT_INIT {
        // After the inventory was dispatched: a listener registered once
        // wait_initialized returned never sees it replayed.
        mark_initialized(sh);
    }
    if mdev_touched && sh.mdev_enabled.load(Ordering::Relaxed) {
        if let Some(ev) = ev {
            request_mdev_refresh(sh, ev);
        }
    }
}

fn handle_init(sh: &Shared, udev: *mut ffi::udev, out: &mut Changes) {
    let n = sh.inits.fetch_add(1, Ordering::SeqCst);
    if n > 0 {
        sh.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    sh.src.resync_pending.store(false, Ordering::SeqCst);
    // SAFETY: a context owned by the event (or our own when a C caller sent
    // INIT without one), used by this thread only during the call.
    let own = udev.is_null().then(|| unsafe { ffi::udev_new() });
    let u = own.unwrap_or(udev);
    let stopping = sh.stopping.clone();
    let r = if u.is_null() {
        Err(enumerate::EnumError::Os(libc::ENOMEM))
    } else {
        // SAFETY: see above.
        unsafe { enumerate::enumerate(u, sh.cfg.subsystems.as_deref(), &move || stopping.load(Ordering::Relaxed)) }
    };
    if let Some(o) = own {
        if !o.is_null() {
            // SAFETY: made above.
            unsafe { ffi::udev_unref(o) };
        }
    }
    match r {
        Ok((fresh, order)) => {
            let mut t = sh.table.write().unwrap_or_else(|p| p.into_inner());
            t.ensure_root(out);
            t.sync_to(fresh, order, out);
        }
        Err(e) => {
            log::warn(&format!("enumeration ended early: {e:?}"));
            sh.table.write().unwrap_or_else(|p| p.into_inner()).ensure_root(out);
        }
    }
    if sh.mdev_enabled.load(Ordering::Relaxed) && !sh.stopping.load(Ordering::Relaxed) {
        mdev_refresh(sh, out);
    }
}

fn mark_initialized(sh: &Shared) {
    let mut r = lock(&sh.run);
    if !r.initialized {
        r.initialized = true;
        sh.run_cv.notify_all();
    }
}

/// # Safety
/// `dev` is a live device this thread may use.
unsafe fn handle_uevent(sh: &Shared, t: nde_event_type, dev: *mut ffi::udev_device, out: &mut Changes) {
    use nde_event_type::*;
    let Some(mut spec) = udev_parse::spec_from_device(dev) else {
        log::debug("uevent without a usable syspath: ignored");
        return;
    };
    if t == NDE_EVENT_UDEV_REMOVE {
        sh.table.write().unwrap_or_else(|p| p.into_inner()).remove(spec.syspath, out);
        return;
    }
    let mut mac = String::new();
    let is_net = spec.subsystem == Some("net");
    let have_mac = is_net && {
        use std::os::fd::AsRawFd;
        let sock = sh.ioctl_sock.as_ref().map_or(-1, |f| f.as_raw_fd());
        match udev_parse::mac_by_ioctl(sock, naming::sysname(spec.syspath), &mut mac) {
            udev_parse::Mac::Found => true,
            udev_parse::Mac::NoDevice if !sh.kernel_group.load(Ordering::Relaxed) => false,
            _ => udev_parse::read_mac(spec.syspath, &mut mac),
        }
    };
    let mut tbl = sh.table.write().unwrap_or_else(|p| p.into_inner());
    if is_net && !have_mac {
        // Device already gone or injected: keep the MAC we knew.
        if let Some(m) = tbl.get_by_syspath(spec.syspath).and_then(|d| d.property("ADDRESS")) {
            mac.push_str(m);
        }
    }
    if is_net && !mac.is_empty() {
        spec.mac = Some(&mac);
        spec.props.push(("ADDRESS", &mac));
    }
    if t == NDE_EVENT_UDEV_MOVE {
        let old = udev_parse::property(dev, c"DEVPATH_OLD").map(|o| format!("/sys{o}"));
        tbl.move_device(old.as_deref(), &spec, out);
    } else {
        tbl.add_or_change(&spec, out);
    }
    drop(tbl);
    let _: &DeviceSpec = &spec;
}

/// A batch of parsed uevents (fast path), applied under one lock.
fn handle_batch(sh: &Shared, b: &uevent::Batch, out: &mut Changes) {
    let mut tbl = sh.table.write().unwrap_or_else(|p| p.into_inner());
    let mut mac = String::new();
    for u in b.iter() {
        match u.action() {
            uevent::Action::Remove => tbl.remove(u.syspath(), out),
            a => {
                let mut spec = u.spec();
                if spec.subsystem == Some("net") && spec.mac.is_none() {
                    // Device already gone or injected: keep the MAC we knew.
                    mac.clear();
                    if let Some(m) = tbl.get_by_syspath(spec.syspath).and_then(|d| d.property("ADDRESS")) {
                        mac.push_str(m);
                    }
                    if !mac.is_empty() {
                        spec.mac = Some(&mac);
                        spec.props.push(("ADDRESS", &mac));
                    }
                }
                if a == uevent::Action::Move {
                    tbl.move_device(u.old_syspath().as_deref(), &spec, out);
                } else {
                    tbl.add_or_change(&spec, out);
                }
            }
        }
    }
}

fn mdev_refresh(sh: &Shared, out: &mut Changes) {
    if !sh.mdev_enabled.load(Ordering::Relaxed) {
        return;
    }
    sh.mdev_refreshes.fetch_add(1, Ordering::Relaxed);
    match sh.mdevctl.query(&sh.stopping) {
        Ok(Some((defined, active))) => {
            let mut t = sh.table.write().unwrap_or_else(|p| p.into_inner());
            mdevctl::apply(&mut t, &defined, &active, out);
        }
        Ok(None) => {
            log::info("mdevctl was not on PATH when the monitor was made: mdev refresh skipped");
        }
        Err(e) => {
            sh.mdev_failures.fetch_add(1, Ordering::Relaxed);
            log::warn(&format!("mdevctl refresh failed, table unchanged: {e}"));
        }
    }
}
