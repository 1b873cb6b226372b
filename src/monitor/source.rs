//! The netlink uevent source: a libudev monitor read by one thread.
//!
//! - Group: the udev group by default when `/run/udev/control` exists,
//!   else the kernel group; the config flags force one.
//! - Receive buffer: `udev_monitor_set_receive_buffer_size` (128 MiB by
//!   default; it uses `SO_RCVBUFFORCE`, so it needs root; failing is
//!   logged, not fatal).
//! - The reader thread polls the socket and an eventfd (stop, settle,
//!   returned devices), and **drains the socket on each wake-up**. Each
//!   `add`/`remove`/`change`/`move` becomes one `NDE_EVENT_UDEV_*` event
//!   whose data is the `struct udev_device *` (the event owns it). Other
//!   actions (`bind`, `unbind`, `online`...) are dropped, as libvirt does.
//! - Errors: `udev_monitor_receive_device` is called directly so errno can
//!   be read. `ENOBUFS` (the socket overflowed: events were lost) is
//!   counted and answered with a resync: one `NDE_EVENT_INIT` (a fresh
//!   `struct udev *`) is queued, at most one pending at a time; the built-in
//!   handler re-enumerates and emits only the differences. Any other error
//!   is counted and the reader carries on; it never dies of an error.
//! - libudev objects are not thread-safe (a device's reference count is a
//!   plain integer). Each received device is created on the reader and
//!   handed to the events worker through the queue; from then on the reader
//!   never touches it. The worker is its only user: the C handlers (which
//!   may take and drop their own references there) and then the event's
//!   free function, which drops the event's reference **on the thread that
//!   frees the event** (the worker, or the thread of `nde_monitor_stop`
//!   after the worker was joined), ordered after every handler's own
//!   ref/unref. (Unref'ing on the reader, where the device was made, is
//!   cheaper, but races a handler's `udev_device_ref`.)
//! - Memory is bounded: past `limits` (events queued and not yet handled,
//!   or their bytes: a fast-path batch counts its heap size, a libudev
//!   device `RAW_EVENT_BYTES`), the reader stops reading the socket; the
//!   kernel's receive buffer absorbs what follows, and when that overflows
//!   the `ENOBUFS` is answered by the resync above. Reading resumes once
//!   the handler brought the queue under three quarters of both limits.
//! - Settle: every submitted event increments `submitted`; every event's
//!   free function (it runs after all callbacks of that event returned, or
//!   when it is discarded) increments `handled`. `settle` asks the reader
//!   to drain the socket, takes the `submitted` count the reader reports
//!   after that drain, and waits until `handled` reaches it.

use std::ffi::{c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use udev::ffi;

use super::log;
use super::uevent::{self, Batch, Reject, Sender};
use crate::events::{nde_event_type, EventData, Events};
use crate::result::{nde_result, Error};
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How much the reader may queue before it stops reading the socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub events: u64,
    pub bytes: u64,
}

/// What one uevent read through libudev is counted as (its device object
/// is ~27 allocations; measured about 2 KiB with properties).
pub(crate) const RAW_EVENT_BYTES: u64 = 2048;

#[derive(Default)]
struct SettleState {
    /// Highest settle request the reader answered.
    ack: u64,
    /// `submitted` when it answered.
    target: u64,
}

/// Counters and hand-over state shared by the reader, the free functions
/// and the monitor. Its address is the `userdata` of the reader's
/// `struct udev` (and of every INIT context), which is how the C free
/// functions find it.
pub struct SourceShared {
    pub submitted: AtomicU64,
    pub handled: AtomicU64,
    pub overflows: AtomicU64,
    pub receive_errors: AtomicU64,
    pub ignored: AtomicU64,
    pub received: AtomicU64,
    /// Datagrams refused by the fast-path parser (bad header, missing
    /// fields, untrusted sender, ...).
    pub rejected: AtomicU64,
    /// uevents that went through the fast path.
    pub fast: AtomicU64,
    pub resyncs_queued: AtomicU64,
    limits: QueueLimits,
    /// Bytes of the events queued and not yet handled.
    queued_bytes: AtomicU64,
    /// The reader stopped reading (over a limit); the handler wakes it.
    paused: AtomicBool,
    /// Times the reader stopped reading.
    pub pauses: AtomicU64,
    /// Parsed batches waiting for their marker event (fast path).
    batches: Mutex<std::collections::VecDeque<Batch>>,
    pub resync_pending: AtomicBool,
    stop: AtomicBool,
    settle_req: AtomicU64,
    settle: Mutex<SettleState>,
    settle_cv: Condvar,
    handled_waiters: AtomicUsize,
    handled_mx: Mutex<()>,
    handled_cv: Condvar,
    wake: OwnedFd,
}

impl SourceShared {
    pub fn new(limits: QueueLimits) -> Result<Arc<SourceShared>, Error> {
        // SAFETY: plain eventfd creation.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(nde_result::NDE_ERR_OS);
        }
        Ok(Arc::new(SourceShared {
            submitted: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            receive_errors: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            received: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            fast: AtomicU64::new(0),
            batches: Mutex::new(std::collections::VecDeque::new()),
            resyncs_queued: AtomicU64::new(0),
            limits,
            queued_bytes: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            pauses: AtomicU64::new(0),
            resync_pending: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            settle_req: AtomicU64::new(0),
            settle: Mutex::new(SettleState::default()),
            settle_cv: Condvar::new(),
            handled_waiters: AtomicUsize::new(0),
            handled_mx: Mutex::new(()),
            handled_cv: Condvar::new(),
            // SAFETY: a fresh fd we own.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        }))
    }

    fn wake_reader(&self) {
        let one: u64 = 1;
        // SAFETY: 8-byte write to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn note_handled(&self, bytes: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.handled.fetch_add(1, Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) && self.below_resume() && self.paused.swap(false, Ordering::SeqCst) {
            self.wake_reader();
        }
        if self.handled_waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.handled_mx);
            self.handled_cv.notify_all();
        }
    }

    /// `n` events of `bytes` in all are queued.
    fn note_queued(&self, n: u64, bytes: u64) {
        self.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.submitted.fetch_add(n, Ordering::SeqCst);
    }

    fn queued_events(&self) -> u64 {
        // `handled` is read first: it never passes `submitted`.
        let h = self.handled.load(Ordering::SeqCst);
        self.submitted.load(Ordering::SeqCst).saturating_sub(h)
    }

    /// The reader must stop reading.
    fn over_limit(&self) -> bool {
        self.queued_events() >= self.limits.events || self.queued_bytes.load(Ordering::SeqCst) >= self.limits.bytes
    }

    /// The reader may read again.
    fn below_resume(&self) -> bool {
        self.queued_events() <= self.limits.events / 4 * 3 && self.queued_bytes.load(Ordering::SeqCst) <= self.limits.bytes / 4 * 3
    }

    /// Whether the reader may read now (pauses it over a limit). Pausing
    /// is announced before the last check, so a handler that catches up
    /// meanwhile either is seen here or sees the flag and wakes the reader.
    fn may_read(&self) -> bool {
        if !self.paused.load(Ordering::SeqCst) {
            if !self.over_limit() {
                return true;
            }
            self.pauses.fetch_add(1, Ordering::Relaxed);
            self.paused.store(true, Ordering::SeqCst);
        }
        if self.below_resume() {
            self.paused.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The next batch of the fast path (called by the handler for each
    /// batch marker, in order).
    pub fn take_batch(&self) -> Option<Batch> {
        lock(&self.batches).pop_front()
    }

    /// A batch is done with: its uevents count as handled.
    pub fn batch_done(&self, b: &Batch) {
        self.handled.fetch_add(b.len() as u64 - 1, Ordering::SeqCst);
        self.note_handled(b.heap_bytes() as u64);
    }

    /// Batches whose marker was discarded (stop): counted, dropped.
    pub fn drop_batches(&self) {
        let v: Vec<Batch> = lock(&self.batches).drain(..).collect();
        for b in v {
            if !b.is_empty() {
                self.batch_done(&b);
            }
        }
    }

    /// Asks the reader to drain and report; waits until every event that
    /// was submitted by then has been freed (handled). `NDE_ERR_STOPPED`
    /// as soon as `events_gone()` (the events object was shut down: what
    /// it still holds will not be handled before the monitor stops).
    pub fn settle(&self, timeout: Option<Duration>, reader_running: bool, events_gone: &dyn Fn() -> bool) -> Result<(), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let left = |d: Option<Instant>| -> Result<Option<Duration>, Error> {
            match d {
                None => Ok(None),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        Err(nde_result::NDE_ERR_TIMEOUT)
                    } else {
                        Ok(Some(d - now))
                    }
                }
            }
        };
        let target = if reader_running {
            let req = self.settle_req.fetch_add(1, Ordering::SeqCst) + 1;
            self.wake_reader();
            let mut g = lock(&self.settle);
            while g.ack < req {
                if self.stop.load(Ordering::SeqCst) || events_gone() {
                    return Err(nde_result::NDE_ERR_STOPPED);
                }
                let l = left(deadline)?.unwrap_or(Duration::from_millis(100)).min(Duration::from_millis(100));
                g = self.settle_cv.wait_timeout(g, l).unwrap_or_else(|p| p.into_inner()).0;
            }
            g.target
        } else {
            self.submitted.load(Ordering::SeqCst)
        };
        self.handled_waiters.fetch_add(1, Ordering::SeqCst);
        let r = (|| {
            let mut g = lock(&self.handled_mx);
            while self.handled.load(Ordering::SeqCst) < target {
                if events_gone() {
                    return Err(nde_result::NDE_ERR_STOPPED);
                }
                let l = left(deadline)?.unwrap_or(Duration::from_millis(100)).min(Duration::from_millis(100));
                g = self.handled_cv.wait_timeout(g, l).unwrap_or_else(|p| p.into_inner()).0;
            }
            Ok(())
        })();
        self.handled_waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

/// Free function of `NDE_EVENT_UDEV_*` data made by the reader.
///
/// # Safety
/// `p` is a `struct udev_device *` whose reference the event owned.
pub unsafe extern "C" fn free_udev_device(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let dev = p as *mut ffi::udev_device;
    let sh = ffi::udev_get_userdata(ffi::udev_device_get_udev(dev)) as *const SourceShared;
    // The event's reference, dropped here: this thread runs the event's
    // handlers (or discards it after they are gone), so no handler's
    // ref/unref can run at the same time.
    ffi::udev_device_unref(dev);
    if !sh.is_null() {
        (*sh).note_handled(RAW_EVENT_BYTES);
    }
}

/// Free function of `NDE_EVENT_INIT` data (a `struct udev *` made for it).
///
/// # Safety
/// `p` is a `struct udev *` whose reference the event owned.
pub unsafe extern "C" fn free_udev_ctx(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    let u = p as *mut ffi::udev;
    let sh = ffi::udev_get_userdata(u) as *const SourceShared;
    ffi::udev_unref(u);
    if !sh.is_null() {
        (*sh).note_handled(0);
    }
}

/// Queues an INIT (initial enumeration or resync) carrying a new
/// `struct udev *`.
pub fn submit_init(events: &Events, shared: &Arc<SourceShared>) -> Result<(), Error> {
    // SAFETY: a new context, owned by the event from here on.
    let u = unsafe { ffi::udev_new() };
    if u.is_null() {
        return Err(nde_result::NDE_ERR_NO_MEMORY);
    }
    // SAFETY: the shared state outlives every event (the monitor joins the
    // worker and frees the queue before dropping it).
    unsafe { ffi::udev_set_userdata(u, Arc::as_ptr(shared) as *mut c_void) };
    shared.note_queued(1, 0);
    events.submit(nde_event_type::NDE_EVENT_INIT, EventData::new(u.cast(), Some(free_udev_ctx)))
}

/// Source settings.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub group: Group,
    pub subsystems: Option<Vec<String>>,
    pub receive_buffer_bytes: usize,
    pub thread_name: String,
}

struct SendPtr<T>(*mut T);
// SAFETY: moved to the reader thread, which becomes its only user.
unsafe impl<T> Send for SendPtr<T> {}

/// An open netlink monitor (before the reader starts) and, once started,
/// its reader thread.
pub struct Source {
    udev: *mut ffi::udev,
    monitor: Option<SendPtr<ffi::udev_monitor>>,
    thread: Option<Thread>,
    shared: Arc<SourceShared>,
}

// SAFETY: the raw pointers are used by one thread at a time: the opener,
// then the reader; `udev` is only freed after the reader and the worker
// are gone.
unsafe impl Send for Source {}
unsafe impl Sync for Source {}

/// Releases what `open` made (a failed start drops it unstarted).
impl Drop for Source {
    fn drop(&mut self) {
        self.release_context();
    }
}

impl Source {
    /// Opens and binds the netlink monitor (receiving starts now: events
    /// queue in the socket until the reader runs).
    pub fn open(cfg: &SourceConfig, shared: Arc<SourceShared>) -> Result<Source, Error> {
        // SAFETY: libudev calls on objects created and used here only.
        unsafe {
            let udev = ffi::udev_new();
            if udev.is_null() {
                return Err(nde_result::NDE_ERR_NO_MEMORY);
            }
            ffi::udev_set_userdata(udev, Arc::as_ptr(&shared) as *mut c_void);
            let name = CString::new(match cfg.group {
                Group::Udev => "udev",
                Group::Kernel => "kernel",
            })
            .unwrap();
            let mon = ffi::udev_monitor_new_from_netlink(udev, name.as_ptr());
            if mon.is_null() {
                log::error(&format!("cannot open the {:?} netlink monitor: {}", cfg.group, std::io::Error::last_os_error()));
                ffi::udev_unref(udev);
                return Err(nde_result::NDE_ERR_OS);
            }
            if let Some(subs) = &cfg.subsystems {
                for s in subs {
                    if let Ok(c) = CString::new(s.as_str()) {
                        ffi::udev_monitor_filter_add_match_subsystem_devtype(mon, c.as_ptr(), std::ptr::null());
                    }
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
                return Err(nde_result::NDE_ERR_OS);
            }
            Ok(Source { udev, monitor: Some(SendPtr(mon)), thread: None, shared })
        }
    }

    /// Starts the reader thread.
    pub fn start(&mut self, cfg: &SourceConfig, events: Arc<Events>) -> Result<(), Error> {
        let mon = self.monitor.take().ok_or(nde_result::NDE_ERR_INVALID)?;
        let raw = mon.0;
        let sh2 = self.shared.clone();
        let subs = cfg.subsystems.clone();
        let t = crate::thread::spawn(&cfg.thread_name, move || {
            let mon = mon;
            reader_loop(mon.0, &sh2, &events, subs.as_deref());
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

    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Stops and joins the reader (idempotent). Must not be called from
    /// the reader itself (it never calls user code).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake_reader();
        {
            let _g = lock(&self.shared.settle);
            self.shared.settle_cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            t.join();
        }
        if let Some(m) = self.monitor.take() {
            // SAFETY: never handed to a reader.
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

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn set_errno(v: i32) {
    // SAFETY: errno location of this thread.
    unsafe { *libc::__errno_location() = v };
}

/// True when a C user registered a raw handler for a `UDEV_*` type: then
/// every uevent goes through libudev and carries its `struct udev_device *`.
fn raw_wanted(events: &Events) -> bool {
    use nde_event_type::*;
    [NDE_EVENT_UDEV_ADD, NDE_EVENT_UDEV_REMOVE, NDE_EVENT_UDEV_CHANGE, NDE_EVENT_UDEV_MOVE]
        .into_iter()
        .any(|t| events.has_callback_for(t))
}

fn reader_loop(mon: *mut ffi::udev_monitor, sh: &Arc<SourceShared>, events: &Events, subs: Option<&[String]>) {
    let mut fast = FastReader::new();
    // SAFETY: mon is ours.
    let mon_fd = unsafe { ffi::udev_monitor_get_fd(mon) };
    let wake_fd = sh.wake.as_raw_fd();
    let mut last_ack = 0u64;
    let mut may_read = true;
    loop {
        let mut fds = [
            // Paused: the socket is not watched (its buffer absorbs).
            libc::pollfd { fd: if may_read { mon_fd } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: wake_fd, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 && errno() != libc::EINTR {
            sh.receive_errors.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
        if fds[1].revents != 0 {
            let mut v: u64 = 0;
            // SAFETY: 8-byte read from our eventfd.
            unsafe { libc::read(wake_fd, (&mut v as *mut u64).cast(), 8) };
        }
        if sh.stop.load(Ordering::SeqCst) {
            break;
        }
        let req = sh.settle_req.load(Ordering::SeqCst);
        may_read = sh.may_read();
        // Emptied: every datagram the socket held is queued (or refused).
        let emptied = may_read
            && if raw_wanted(events) { drain(mon, sh, events) } else { fast.drain(mon_fd, sh, events, subs) };
        may_read = may_read && sh.may_read();
        // Settle is answered only after a drain that emptied the socket.
        if emptied && req > last_ack {
            last_ack = req;
            let mut g = lock(&sh.settle);
            g.ack = req;
            g.target = sh.submitted.load(Ordering::SeqCst);
            sh.settle_cv.notify_all();
        }
    }
}

/// Reads until the socket is empty (true) or a limit is reached (false).
fn drain(mon: *mut ffi::udev_monitor, sh: &Arc<SourceShared>, events: &Events) -> bool {
    let mut errors = 0u32;
    loop {
        if sh.over_limit() {
            return false;
        }
        set_errno(0);
        // SAFETY: mon is used by this thread only.
        let dev = unsafe { ffi::udev_monitor_receive_device(mon) };
        if dev.is_null() {
            let e = errno();
            match e {
                libc::EAGAIN => return true,
                libc::EINTR => continue,
                libc::ENOBUFS => overflowed(sh, events),
                _ => {
                    sh.receive_errors.fetch_add(1, Ordering::Relaxed);
                    errors += 1;
                    if errors > 64 {
                        // Persistent failure: do not spin; poll again later.
                        log::error(&format!("netlink receive keeps failing (errno {e}); retrying"));
                        std::thread::sleep(Duration::from_millis(10));
                        return true;
                    }
                }
            }
            continue;
        }
        sh.received.fetch_add(1, Ordering::Relaxed);
        // SAFETY: dev is a live device made by this thread.
        let t = match unsafe { super::udev_parse::action(dev) } {
            Some("add") => nde_event_type::NDE_EVENT_UDEV_ADD,
            Some("remove") => nde_event_type::NDE_EVENT_UDEV_REMOVE,
            Some("change") => nde_event_type::NDE_EVENT_UDEV_CHANGE,
            Some("move") => nde_event_type::NDE_EVENT_UDEV_MOVE,
            _ => {
                sh.ignored.fetch_add(1, Ordering::Relaxed);
                // SAFETY: ours, unused from here on.
                unsafe { ffi::udev_device_unref(dev) };
                continue;
            }
        };
        sh.note_queued(1, RAW_EVENT_BYTES);
        // On failure (stopping) the data is freed (and counted) at once.
        let _ = events.submit(t, EventData::new(dev.cast(), Some(free_udev_device)));
    }
}

/// `ENOBUFS`: count it and queue one resync (at most one pending).
fn overflowed(sh: &Arc<SourceShared>, events: &Events) {
    let c = sh.overflows.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn(&format!("netlink receive buffer overflowed (ENOBUFS #{c}): events were lost, resyncing"));
    if !sh.resync_pending.swap(true, Ordering::SeqCst) {
        sh.resyncs_queued.fetch_add(1, Ordering::Relaxed);
        if submit_init(events, sh).is_err() {
            sh.resync_pending.store(false, Ordering::SeqCst);
        }
    }
}

/// The fast path: `recvmsg` on the monitor's socket, our own parser
/// (uevent.rs), the fields copied into one arena per batch, no libudev
/// object at all. Used while no C raw `UDEV_*` handler is registered.
/// The socket filter libudev installed still applies (udev group); the
/// subsystem filter is applied again here (the kernel group has none).
/// A batch is queued in `SourceShared` and announced by one
/// `NDE_EVENT_UDEV_ADD` event with NULL data (handlers registered by C
/// for `NDE_EVENT_ANY` see such markers and must ignore NULL data).
struct FastReader {
    buf: Vec<u8>,
    mac: String,
    /// A datagram socket for `SIOCGIFHWADDR` (-1 if none could be made).
    ioctl_sock: i32,
}

impl Drop for FastReader {
    fn drop(&mut self) {
        if self.ioctl_sock >= 0 {
            // SAFETY: our own fd.
            unsafe { libc::close(self.ioctl_sock) };
        }
    }
}

const FAST_BATCH: usize = 512;

impl FastReader {
    fn new() -> FastReader {
        // SAFETY: plain socket creation.
        let ioctl_sock = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        FastReader { buf: vec![0u8; 16 * 1024], mac: String::new(), ioctl_sock }
    }

    fn flush(batch: &mut Batch, sh: &Arc<SourceShared>, events: &Events) {
        if batch.is_empty() {
            return;
        }
        let b = std::mem::replace(batch, Batch::with_capacity(FAST_BATCH));
        sh.note_queued(b.len() as u64, b.heap_bytes() as u64);
        sh.fast.fetch_add(b.len() as u64, Ordering::Relaxed);
        lock(&sh.batches).push_back(b);
        if events.submit_marker().is_err() {
            // Refused (the events object was shut down): no marker will
            // take this batch (the last one pushed); count it and drop it.
            if let Some(b) = lock(&sh.batches).pop_back() {
                sh.batch_done(&b);
            }
        }
    }

    /// Reads until the socket is empty (true) or a limit is reached (false).
    fn drain(&mut self, fd: i32, sh: &Arc<SourceShared>, events: &Events, subs: Option<&[String]>) -> bool {
        let mut batch = Batch::with_capacity(FAST_BATCH);
        let mut errors = 0u32;
        let emptied = loop {
            // SAFETY: zeroed C structs filled by recvmsg below.
            let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut cbuf = [0u64; 8];
            let mut iov = libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
            // SAFETY: as above.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cbuf);
            // SAFETY: every pointer in msg is valid for the call.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
            if n < 0 {
                match errno() {
                    libc::EAGAIN => break true,
                    libc::EINTR => continue,
                    libc::ENOBUFS => {
                        // Keep order: what was read before the loss first.
                        Self::flush(&mut batch, sh, events);
                        overflowed(sh, events);
                    }
                    e => {
                        sh.receive_errors.fetch_add(1, Ordering::Relaxed);
                        errors += 1;
                        if errors > 64 {
                            log::error(&format!("netlink receive keeps failing (errno {e}); retrying"));
                            std::thread::sleep(Duration::from_millis(10));
                            break true;
                        }
                    }
                }
                continue;
            }
            sh.received.fetch_add(1, Ordering::Relaxed);
            if msg.msg_flags & libc::MSG_TRUNC != 0 {
                sh.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut uid = None;
            // SAFETY: walking the control messages recvmsg wrote.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                        let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        uid = Some(cred.uid);
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            let sender = Sender { groups: addr.nl_groups, pid: addr.nl_pid, uid };
            match uevent::parse(&self.buf[..n as usize], sender, subs) {
                Ok(p) => {
                    let mac = if p.subsystem == "net" && p.action != uevent::Action::Remove {
                        use super::udev_parse::{mac_by_ioctl, read_mac, Mac};
                        let ifname = p.devpath.rsplit('/').next().unwrap_or("");
                        match mac_by_ioctl(self.ioctl_sock, ifname, &mut self.mac) {
                            Mac::Found => Some(self.mac.as_str()),
                            // udevd broadcasts once the interface is fully
                            // registered: no such interface means it is gone
                            // (or the message is injected). A kernel event
                            // for an add can precede the name being listed,
                            // while its sysfs entry already exists: ask sysfs.
                            Mac::NoDevice if sender.groups & 1 == 0 => None,
                            Mac::NoDevice | Mac::Unknown => {
                                let sp = format!("/sys{}", p.devpath);
                                read_mac(&sp, &mut self.mac).then_some(self.mac.as_str())
                            }
                        }
                    } else {
                        None
                    };
                    batch.push(&p, mac);
                    if batch.len() >= FAST_BATCH {
                        Self::flush(&mut batch, sh, events);
                        if sh.over_limit() {
                            break false;
                        }
                    }
                }
                Err(Reject::OtherAction) => {
                    sh.ignored.fetch_add(1, Ordering::Relaxed);
                }
                Err(Reject::Filtered) => {}
                Err(r) => {
                    sh.rejected.fetch_add(1, Ordering::Relaxed);
                    log::debug(&format!("uevent refused: {r:?}"));
                }
            }
        };
        Self::flush(&mut batch, sh, events);
        emptied
    }
}
