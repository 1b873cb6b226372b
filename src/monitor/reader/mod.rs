//! (Over 400 lines: the reader thread, the state it shares and its libudev path are one concept; the fast path is in `fast.rs`.)
//!
//! The netlink reader: one thread that reads the uevent socket and queues
//! what it reads on the monitor's events worker.
//!
//! - Group: the udev group by default when `/run/udev/control` exists,
//!   else the kernel group; the config flags force one.
//! - Receive buffer: `udev_monitor_set_receive_buffer_size` (128 MiB by
//!   default; it uses `SO_RCVBUFFORCE`, so it needs root; failing is
//!   logged, not fatal).
//! - The thread polls the socket and an eventfd (stop, settle, "read
//!   again" from the worker) and **drains the socket on each wake-up**.
//!   Each `add`/`remove`/`change`/`move` becomes one event; other actions
//!   (`bind`, `unbind`, `online`...) are dropped, as libvirt does.
//! - **Two receive paths.** While a C user has a raw handler registered
//!   for an `NDE_EVENT_UDEV_*` type (`Events::has_callback_for`), every
//!   uevent is read through libudev and queued as its own event carrying
//!   the `struct udev_device *` (the API's contract). Otherwise the **fast
//!   path** reads the socket itself (`uevent.rs`: libudev's wire format and
//!   sender checks), copies the uevents of one wake-up into one arena and
//!   queues the batch as one internal event that only the built-in handler
//!   sees. The choice is made on every wake-up; order is kept across it
//!   because both paths queue on the same worker.
//! - Receive errors (both paths, `on_receive_error`): `ENOBUFS` (the socket
//!   overflowed: events were lost) is counted and answered with a resync,
//!   one `NDE_EVENT_INIT` (a fresh `struct udev *`) queued once the reader
//!   has emptied the socket, behind every uevent it still held;
//!   the built-in handler re-enumerates and emits only the differences. Any
//!   other error is counted and the reader carries on; it never dies of an
//!   error.
//! - libudev objects are not thread-safe (a device's reference count is a
//!   plain integer). A received device is made on the reader and handed to
//!   the worker through the queue; the reader never touches it again. The
//!   event's payload (`RawDevice`) drops the event's reference **on the thread
//!   that frees the event** (the worker, or the thread of `nde_monitor_stop`
//!   after the worker was joined), after every handler's own ref/unref.
//! - Memory is bounded and settle answered through `settle.rs`.
//! - Several workers (`route.rs`): each uevent is queued under its device's
//!   key, or as a barrier (a move, a device related to another one in
//!   flight); the fast path splits a wake-up's uevents into one batch per
//!   key, in order, until a barrier ends the segment. Settle is answered
//!   with a barrier mark (`settle.rs`).

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use udev::ffi;

mod fast;
mod peek;
mod route;

use super::log;
use super::settle::{Progress, QueueLimits, SettleMark};
use super::sys::{self, EventFd, IoctlSocket};
use super::uevent::Batch;
use fast::FastReader;
pub(crate) use peek::PeekedUevent;
use peek::Peeker;
use route::{Route, Router};
use crate::events::{nde_event_type, CData, Events};
use crate::error::Error;
use crate::thread::Thread;

/// Which netlink group to listen to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Group {
    Udev,
    Kernel,
}

impl Group {
    /// udev when a udevd runs (its control socket exists), else kernel.
    pub fn detect() -> Group {
        if std::path::Path::new("/run/udev/control").exists() {
            Group::Udev
        } else {
            Group::Kernel
        }
    }
}

/// What one uevent read through libudev is counted as (its device object
/// is ~27 allocations; about 2 KiB with properties).
pub(crate) const RAW_EVENT_BYTES: u64 = 2048;

/// State shared by the reader, the queued events (each holds it, to count
/// itself finished when it drops) and the monitor.
pub struct ReaderShared {
    pub progress: Progress,
    pub received: AtomicU64,
    /// Datagrams refused by the fast-path parser (bad header, missing
    /// fields, untrusted sender, ...).
    pub rejected: AtomicU64,
    /// uevents that went through the fast path.
    pub fast: AtomicU64,
    pub ignored: AtomicU64,
    pub overflows: AtomicU64,
    pub receive_errors: AtomicU64,
    /// A resync is queued and not yet started.
    pub resync_pending: AtomicBool,
    /// An `ENOBUFS` was seen since the last resync was queued (see
    /// `resync_if_wanted`).
    resync_wanted: AtomicBool,
    /// `progress.submitted` right after the last resync was queued.
    resync_at: AtomicU64,
    /// For `SIOCGIFHWADDR` (both paths, any thread).
    pub ioctl: Option<IoctlSocket>,
    stop: AtomicBool,
    wake: EventFd,
}

impl ReaderShared {
    /// `by_mark`: settle is answered with a barrier mark (several workers).
    pub fn new(limits: QueueLimits, by_mark: bool) -> Result<Arc<ReaderShared>, Error> {
        Ok(Arc::new(ReaderShared {
            progress: Progress::new(limits, by_mark),
            received: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            fast: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            resync_pending: AtomicBool::new(false),
            resync_wanted: AtomicBool::new(false),
            resync_at: AtomicU64::new(0),
            ioctl: IoctlSocket::new().ok(),
            stop: AtomicBool::new(false),
            wake: EventFd::new().map_err(Error::Os)?,
        }))
    }

    pub fn wake_reader(&self) {
        self.wake.signal();
    }

    fn finished(&self, n: u64, bytes: u64) {
        if self.progress.finished(n, bytes) {
            self.wake_reader();
        }
    }

}

/// A fast-path batch on its way through the events queue (an internal
/// event: only the built-in handler sees it). Dropping it, after the
/// handler or when the event is refused or discarded, counts its uevents
/// as finished.
pub struct QueuedBatch {
    pub batch: Batch,
    shared: Arc<ReaderShared>,
}

impl QueuedBatch {
    /// Counts `batch` as queued and wraps it for the events queue.
    fn new(batch: Batch, shared: &Arc<ReaderShared>) -> Box<QueuedBatch> {
        shared.progress.queued(batch.len() as u64, batch.heap_bytes() as u64);
        Box::new(QueuedBatch { batch, shared: shared.clone() })
    }
}

impl Drop for QueuedBatch {
    fn drop(&mut self) {
        self.shared.finished(self.batch.len() as u64, self.batch.heap_bytes() as u64);
    }
}

/// The `struct udev_device *` of a raw `NDE_EVENT_UDEV_*` event. Dropped
/// where the event is freed (the worker, or the thread of
/// `nde_monitor_stop` once the worker was joined): the event's reference is
/// released after every handler's own ref/unref, never concurrently with
/// them, and the uevent counts as finished.
struct RawDevice {
    dev: *mut ffi::udev_device,
    /// The reader's own parse of the same uevent (see `peek.rs`).
    parsed: Option<PeekedUevent>,
    shared: Arc<ReaderShared>,
}

/// The reader's parse of a raw event's uevent, if it made one.
pub(crate) fn peeked(value: &dyn CData) -> Option<&PeekedUevent> {
    let value: &dyn std::any::Any = value;
    value.downcast_ref::<RawDevice>()?.parsed.as_ref()
}

// SAFETY: the reader hands the device over and never touches it again; from
// then on one thread at a time uses it (the worker, then whoever frees it).
unsafe impl Send for RawDevice {}

impl CData for RawDevice {
    fn as_ptr(&self) -> *mut c_void {
        self.dev.cast()
    }
}

impl Drop for RawDevice {
    fn drop(&mut self) {
        // SAFETY: the event's own reference, released once.
        unsafe { ffi::udev_device_unref(self.dev) };
        self.shared.finished(1, RAW_EVENT_BYTES);
    }
}

/// The `struct udev *` of an `NDE_EVENT_INIT` the monitor queued.
struct InitContext {
    udev: *mut ffi::udev,
    shared: Arc<ReaderShared>,
}

// SAFETY: as for `RawDevice`: used by one thread at a time.
unsafe impl Send for InitContext {}

impl CData for InitContext {
    fn as_ptr(&self) -> *mut c_void {
        self.udev.cast()
    }
}

impl Drop for InitContext {
    fn drop(&mut self) {
        // SAFETY: the event's own context, released once.
        unsafe { ffi::udev_unref(self.udev) };
        self.shared.finished(1, 0);
    }
}

/// Queues an INIT (initial enumeration or resync) carrying a new
/// `struct udev *`.
pub fn submit_init(events: &Events, shared: &Arc<ReaderShared>) -> Result<(), Error> {
    // SAFETY: a new context, owned by the event from here on.
    let u = unsafe { ffi::udev_new() };
    if u.is_null() {
        return Err(Error::NoMemory);
    }
    shared.progress.queued(1, 0);
    let init = Box::new(InitContext { udev: u, shared: shared.clone() });
    events.submit_owned(nde_event_type::NDE_EVENT_INIT, init)
}

/// Reader settings.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    pub group: Group,
    pub subsystems: Option<Vec<String>>,
    pub receive_buffer_bytes: usize,
    pub thread_name: String,
}

struct SendPtr<T>(*mut T);
// SAFETY: moved to the reader thread, which becomes its only user.
unsafe impl<T> Send for SendPtr<T> {}

/// An open netlink monitor (before the thread starts) and, once started,
/// the reader thread.
pub struct Reader {
    udev: *mut ffi::udev,
    monitor: Option<SendPtr<ffi::udev_monitor>>,
    thread: Option<Thread>,
    shared: Arc<ReaderShared>,
}

// SAFETY: the raw pointers are used by one thread at a time: the opener,
// then the reader thread; `udev` is only freed after the reader and the
// worker are gone.
unsafe impl Send for Reader {}
// SAFETY: as above; `&Reader` gives no access to the pointers.
unsafe impl Sync for Reader {}

/// Releases what `open` made (a failed start drops it unstarted).
impl Drop for Reader {
    fn drop(&mut self) {
        self.release_context();
    }
}

impl Reader {
    /// Opens and binds the netlink monitor (receiving starts now: events
    /// queue in the socket until the thread runs).
    pub fn open(cfg: &ReaderConfig, shared: Arc<ReaderShared>) -> Result<Reader, Error> {
        // SAFETY: libudev calls on objects created and used here only.
        unsafe {
            let udev = ffi::udev_new();
            if udev.is_null() {
                return Err(Error::NoMemory);
            }
            let name = match cfg.group {
                Group::Udev => c"udev",
                Group::Kernel => c"kernel",
            };
            let mon = ffi::udev_monitor_new_from_netlink(udev, name.as_ptr());
            if mon.is_null() {
                log::error(&format!("cannot open the {:?} netlink monitor: {}", cfg.group, std::io::Error::last_os_error()));
                ffi::udev_unref(udev);
                return Err(Error::last_os_error());
            }
            for s in cfg.subsystems.iter().flatten() {
                if let Ok(c) = CString::new(s.as_str()) {
                    ffi::udev_monitor_filter_add_match_subsystem_devtype(mon, c.as_ptr(), std::ptr::null());
                }
            }
            let size = cfg.receive_buffer_bytes.min(i32::MAX as usize) as i32;
            if size > 0 && ffi::udev_monitor_set_receive_buffer_size(mon, size) < 0 {
                log::warn(&format!(
                    "cannot set a {} byte receive buffer (needs CAP_NET_ADMIN): {}",
                    size,
                    std::io::Error::last_os_error()
                ));
            }
            if ffi::udev_monitor_enable_receiving(mon) < 0 {
                log::error(&format!("cannot bind the netlink monitor: {}", std::io::Error::last_os_error()));
                ffi::udev_monitor_unref(mon);
                ffi::udev_unref(udev);
                return Err(Error::last_os_error());
            }
            Ok(Reader { udev, monitor: Some(SendPtr(mon)), thread: None, shared })
        }
    }

    /// Starts the reader thread.
    pub fn start(&mut self, cfg: &ReaderConfig, events: Arc<Events>) -> Result<(), Error> {
        let mon = self.monitor.take().ok_or(Error::InvalidArgument)?;
        let raw = mon.0;
        let sh = self.shared.clone();
        let subs = cfg.subsystems.clone();
        let t = crate::thread::spawn(&cfg.thread_name, move || {
            let mon = mon;
            reader_loop(mon.0, &sh, &events, subs.as_deref());
            // SAFETY: the monitor was used by this thread only.
            unsafe { ffi::udev_monitor_unref(mon.0) };
        });
        match t {
            Ok(t) => {
                self.thread = Some(t);
                Ok(())
            }
            Err(e) => {
                // The closure was dropped without running: the monitor is
                // still ours.
                // SAFETY: no thread ever used it.
                unsafe { ffi::udev_monitor_unref(raw) };
                Err(e)
            }
        }
    }

    /// Stops and joins the reader thread (idempotent). Never called from
    /// the reader itself (it runs no user code).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.progress.reader_stopping();
        self.shared.wake_reader();
        if let Some(t) = self.thread.take() {
            t.join();
        }
        if let Some(m) = self.monitor.take() {
            // SAFETY: never handed to a reader thread.
            unsafe { ffi::udev_monitor_unref(m.0) };
        }
    }

    /// Frees the context. Call only once no event can be freed any more
    /// (the events worker was joined and its queue discarded).
    pub fn release_context(&mut self) {
        self.stop();
        if !self.udev.is_null() {
            // SAFETY: nothing refers to the context any more.
            unsafe { ffi::udev_unref(self.udev) };
            self.udev = std::ptr::null_mut();
        }
    }
}

/// True when a C user registered a raw handler for a `UDEV_*` type: then
/// every uevent goes through libudev and carries its `struct udev_device *`.
fn raw_wanted(events: &Events) -> bool {
    use nde_event_type::*;
    [NDE_EVENT_UDEV_ADD, NDE_EVENT_UDEV_REMOVE, NDE_EVENT_UDEV_CHANGE, NDE_EVENT_UDEV_MOVE]
        .into_iter()
        .any(|t| events.has_callback_for(t))
}

fn reader_loop(mon: *mut ffi::udev_monitor, sh: &Arc<ReaderShared>, events: &Events, subs: Option<&[String]>) {
    let mut fast = FastReader::new();
    let mut peeker = Peeker::new();
    // Several workers: each uevent is routed under a key or as a barrier.
    let mut router = (events.workers() > 1).then(Router::default);
    // SAFETY: mon is ours.
    let mon_fd = unsafe { ffi::udev_monitor_get_fd(mon) };
    let mut may_read = true;
    loop {
        // Paused: the socket is not watched (its buffer absorbs).
        let mut fds = [sys::readable(if may_read { mon_fd } else { -1 }), sys::readable(sh.wake.fd())];
        if let Err(e) = sys::poll(&mut fds, -1) {
            if e != libc::EINTR {
                sh.receive_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if fds[1].revents != 0 {
            sh.wake.drain();
        }
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let req = sh.progress.settle_requested();
        may_read = sh.progress.may_read();
        // Emptied: every datagram the socket held is queued (or refused).
        let emptied = may_read
            && if raw_wanted(events) {
                drain_raw(mon, mon_fd, &mut peeker, sh, events, subs, router.as_mut())
            } else {
                fast.drain(mon_fd, sh, events, subs, router.as_mut())
            };
        may_read = may_read && sh.progress.may_read();
        // Settle is answered only after a drain that emptied the socket.
        if emptied {
            resync_if_wanted(sh, events);
            if sh.progress.answer(req) && sh.progress.by_mark {
                // A barrier (key 0); refused (stopping): settle sees the
                // events gone.
                let _ = events.submit_internal(nde_event_type::NDE_EVENT_INIT, Box::new(SettleMark(req)));
                if let Some(router) = router.as_mut() {
                    router.barrier_queued();
                }
            }
        }
    }
}

/// What a drain does after a failed receive.
enum AfterError {
    /// Read on.
    Continue,
    /// The socket is empty, or keeps failing: back to poll.
    Done,
}

/// Receive-error handling of both paths: `EAGAIN` ends the drain, `EINTR`
/// retries, `ENOBUFS` asks for a resync (after `before_resync`, which keeps
/// what was read before the loss in order), anything else is counted, and
/// a socket that keeps failing is left alone until the next wake-up.
fn on_receive_error(e: i32, errors: &mut u32, sh: &Arc<ReaderShared>, before_resync: impl FnOnce()) -> AfterError {
    match e {
        libc::EAGAIN => AfterError::Done,
        libc::EINTR => AfterError::Continue,
        libc::ENOBUFS => {
            before_resync();
            overflowed(sh);
            AfterError::Continue
        }
        _ => {
            sh.receive_errors.fetch_add(1, Ordering::Relaxed);
            *errors += 1;
            if *errors > 64 {
                log::error(&format!("netlink receive keeps failing (errno {e}); retrying"));
                std::thread::sleep(Duration::from_millis(10));
                return AfterError::Done;
            }
            AfterError::Continue
        }
    }
}

/// `ENOBUFS`: events were lost. Counted here; the resync is queued once the
/// socket is empty (`resync_if_wanted`).
fn overflowed(sh: &ReaderShared) {
    let c = sh.overflows.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn(&format!("netlink receive buffer overflowed (ENOBUFS #{c}): events were lost, resyncing"));
    sh.resync_wanted.store(true, Ordering::SeqCst);
}

/// After a drain that emptied the socket, when events were lost since the
/// last resync was queued: queue one now, behind every uevent the socket
/// still held when the kernel reported the loss. Those are older than the
/// enumeration; queued after it, one could resurrect a device that is gone
/// (an add read after the ENOBUFS whose remove was dropped: the kernel
/// reports no second ENOBUFS while the socket stays congested). A resync
/// still pending is enough when nothing was queued after it.
fn resync_if_wanted(sh: &Arc<ReaderShared>, events: &Events) {
    if !sh.resync_wanted.swap(false, Ordering::SeqCst) {
        return;
    }
    let submitted = sh.progress.submitted.load(Ordering::SeqCst);
    if sh.resync_pending.load(Ordering::SeqCst) && sh.resync_at.load(Ordering::SeqCst) == submitted {
        return;
    }
    sh.resync_pending.store(true, Ordering::SeqCst);
    if submit_init(events, sh).is_err() {
        sh.resync_pending.store(false, Ordering::SeqCst);
    } else {
        sh.resync_at.store(sh.progress.submitted.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// The libudev path: reads until the socket is empty (true) or a limit is
/// reached (false). `router`: several workers (see `route.rs`).
fn drain_raw(
    mon: *mut ffi::udev_monitor,
    mon_fd: i32,
    peeker: &mut Peeker,
    sh: &Arc<ReaderShared>,
    events: &Events,
    subs: Option<&[String]>,
    mut router: Option<&mut Router>,
) -> bool {
    let mut errors = 0u32;
    loop {
        if sh.progress.over_limit() {
            return false;
        }
        // A receive error (ENOBUFS too) is reported to the peek, not again
        // to libudev.
        let peeked = match peeker.peek(mon_fd, subs) {
            Ok(p) => p,
            Err(e) => match on_receive_error(e, &mut errors, sh, || {}) {
                AfterError::Continue => continue,
                AfterError::Done => return true,
            },
        };
        sys::set_errno(0);
        // SAFETY: mon is used by this thread only.
        let dev = unsafe { ffi::udev_monitor_receive_device(mon) };
        if dev.is_null() {
            match on_receive_error(sys::errno(), &mut errors, sh, || {}) {
                AfterError::Continue => continue,
                AfterError::Done => return true,
            }
        }
        // SAFETY: dev is a live device made by this thread.
        let parsed = peeked.and_then(|p| unsafe { p.of(dev) });
        sh.received.fetch_add(1, Ordering::Relaxed);
        use super::uevent::Action;
        // SAFETY: dev is a live device made by this thread.
        let (t, action) = match unsafe { super::udev_parse::action(dev) } {
            Some("add") => (nde_event_type::NDE_EVENT_UDEV_ADD, Action::Add),
            Some("remove") => (nde_event_type::NDE_EVENT_UDEV_REMOVE, Action::Remove),
            Some("change") => (nde_event_type::NDE_EVENT_UDEV_CHANGE, Action::Change),
            Some("move") => (nde_event_type::NDE_EVENT_UDEV_MOVE, Action::Move),
            _ => {
                sh.ignored.fetch_add(1, Ordering::Relaxed);
                // SAFETY: ours, unused from here on.
                unsafe { ffi::udev_device_unref(dev) };
                continue;
            }
        };
        let key = match router.as_deref_mut() {
            // SAFETY: as above; the string is read before the device moves on.
            Some(r) => match r.route(action, unsafe { super::udev_parse::cstr(ffi::udev_device_get_devpath(dev)) }.unwrap_or("")) {
                Route::Key(k) => k,
                Route::Barrier => 0,
            },
            None => 0,
        };
        sh.progress.queued(1, RAW_EVENT_BYTES);
        // On failure (stopping) the device is released (and counted) at once.
        let _ = events.submit_owned_keyed(t, key, Box::new(RawDevice { dev, parsed, shared: sh.clone() }));
    }
}
