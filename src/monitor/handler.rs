//! The built-in handler: on the events worker, it turns each raw event
//! into table changes and lifecycle callbacks. Registered first on the
//! monitor's events object, so C raw handlers run after it, in order.
//!
//! - `NDE_EVENT_INIT`: enumerate, diff against the table (the first time:
//!   the inventory; later: a resync after an overflow), then refresh
//!   mdevctl's view.
//! - `NDE_EVENT_UDEV_*` with a `struct udev_device *`: one uevent of the
//!   libudev path (NULL data, which only a C user can send: ignored).
//! - An internal event carrying a fast-path batch: every uevent of it
//!   under one lock.
//! - An internal [`SettleMark`] (several workers): settle's barrier.
//! - `NDE_EVENT_MDEVCTL_CONFIG_CHANGED`: refresh mdevctl's view.
//!
//! With several workers this runs on several threads at once, for events
//! of different devices (see `reader/route.rs`); the table and the
//! listener registry are behind locks, and `Changes` are dispatched after
//! the table lock is released.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use udev::ffi;

use super::reader::{PeekedUevent, QueuedBatch, Reader, ReaderShared};
use super::settle::SettleMark;
use super::table::{Changes, DeviceSpec, Table};
use super::{enumerate, listeners, log, mac, mdevctl, naming, udev_parse, uevent, MonitorConfig};
use crate::events::{nde_event_type, Delivery, Events};
use crate::sync::lock;

#[derive(Default)]
pub(super) struct RunState {
    pub(super) started: bool,
    pub(super) initialized: bool,
    pub(super) stopped: bool,
}

/// State shared by the monitor, its built-in handler and its threads.
pub(super) struct Shared {
    pub(super) cfg: MonitorConfig,
    pub(super) table: RwLock<Table>,
    pub(super) listeners: listeners::Listeners,
    pub(super) run: Mutex<RunState>,
    pub(super) run_cv: Condvar,
    pub(super) stopping: Arc<AtomicBool>,
    pub(super) reader: Arc<ReaderShared>,
    /// mdevctl and its environment, read once at `Monitor::new`.
    pub(super) mdevctl: mdevctl::Mdevctl,
    pub(super) mdev_enabled: AtomicBool,
    pub(super) mdev_queued: AtomicBool,
    /// The kernel group was chosen (see `mac.rs`).
    pub(super) kernel_group: AtomicBool,
    pub(super) resyncs: AtomicU64,
    pub(super) inits: AtomicU64,
    pub(super) mdev_refreshes: AtomicU64,
    pub(super) mdev_failures: AtomicU64,
    /// The reader of a monitor dropped from its own callback, stopped: its
    /// context must outlive the events still queued (their devices point
    /// at it), so it goes with this, whose last owner is the built-in
    /// handler, released after the last worker discarded the queue.
    pub(super) parked_reader: Mutex<Option<Reader>>,
}

impl Shared {
    pub(super) fn mark_initialized(&self) {
        let mut r = lock(&self.run);
        if !r.initialized {
            r.initialized = true;
            self.run_cv.notify_all();
        }
    }

    pub(super) fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Queues an mdevctl refresh now unless one is queued already.
pub(super) fn request_mdev_refresh(sh: &Shared, ev: &Events) {
    if !sh.mdev_queued.swap(true, Ordering::SeqCst) && ev.schedule(nde_event_type::NDE_EVENT_MDEVCTL_CONFIG_CHANGED, std::time::Duration::ZERO).is_err() {
        sh.mdev_queued.store(false, Ordering::SeqCst);
    }
}

/// The handler (`ev`: the monitor's events, gone while it is dropped).
pub(super) fn handle(sh: &Shared, ev: Option<&Events>, t: nde_event_type, delivery: Delivery<'_>) {
    use nde_event_type::*;
    let mut out = Changes::new();
    let (data, parsed) = match delivery {
        Delivery::Internal(value) => {
            // A fast-path batch (see reader/fast.rs); it counts as finished
            // when its event drops, after this returns.
            if let Some(q) = value.downcast_mut::<QueuedBatch>() {
                handle_batch(sh, &q.batch, &mut out);
                finish(sh, ev, &out, true);
            } else if let Some(mark) = value.downcast_ref::<SettleMark>() {
                sh.reader.progress.mark_reached(mark.0);
            }
            return;
        }
        Delivery::Data(data) => (data, None),
        Delivery::Owned(value) => (value.as_ptr(), super::reader::peeked(value)),
    };
    match t {
        NDE_EVENT_INIT => handle_init(sh, data.cast(), &mut out),
        NDE_EVENT_UDEV_ADD | NDE_EVENT_UDEV_CHANGE | NDE_EVENT_UDEV_REMOVE | NDE_EVENT_UDEV_MOVE => {
            if data.is_null() {
                // A C user's event without a device: nothing to apply.
                return;
            }
            // SAFETY: the event owns the device; this worker is its only
            // user until the event is freed, after we return.
            unsafe { handle_uevent(sh, t, data.cast(), parsed, &mut out) };
        }
        NDE_EVENT_MDEVCTL_CONFIG_CHANGED => {
            sh.mdev_queued.store(false, Ordering::SeqCst);
            mdev_refresh(sh, &mut out);
        }
        NDE_EVENT_LAST => {}
    }
    finish(sh, ev, &out, matches!(t, NDE_EVENT_UDEV_ADD | NDE_EVENT_UDEV_CHANGE | NDE_EVENT_UDEV_REMOVE | NDE_EVENT_UDEV_MOVE));
    if t == NDE_EVENT_INIT {
        // After the inventory was dispatched: a listener registered once
        // wait_initialized returned never sees it replayed.
        sh.mark_initialized();
    }
}

/// Dispatches the changes; an mdev that udev reported (`from_udev`) asks
/// mdevctl (changes that mdevctl's own refresh made do not).
fn finish(sh: &Shared, ev: Option<&Events>, out: &Changes, from_udev: bool) {
    sh.listeners.dispatch(out);
    let mdev_touched = from_udev && out.iter().any(|(_, d)| d.subsystem() == "mdev");
    if mdev_touched && sh.mdev_enabled.load(Ordering::Relaxed) {
        if let Some(ev) = ev {
            request_mdev_refresh(sh, ev);
        }
    }
}

/// `_udev`, the event's libudev context, is for C handlers: the
/// enumeration makes its own.
fn handle_init(sh: &Shared, _udev: *mut ffi::udev, out: &mut Changes) {
    let n = sh.inits.fetch_add(1, Ordering::SeqCst);
    if n > 0 {
        sh.resyncs.fetch_add(1, Ordering::Relaxed);
    }
    sh.reader.resync_pending.store(false, Ordering::SeqCst);
    let stopping = sh.stopping.clone();
    let r = enumerate::enumerate(sh.cfg.subsystems.as_deref(), &move || stopping.load(Ordering::Relaxed));
    let mut t = sh.table.write().unwrap_or_else(|p| p.into_inner());
    t.ensure_root(out);
    match r {
        Ok((fresh, order)) => t.sync_to(fresh, order, out),
        Err(e) => log::warn(&format!("enumeration ended early: {e:?}")),
    }
    drop(t);
    if sh.mdev_enabled.load(Ordering::Relaxed) && !sh.stopping.load(Ordering::Relaxed) {
        mdev_refresh(sh, out);
    }
}

/// # Safety
/// `dev` is a live device this thread may use.
unsafe fn handle_uevent(sh: &Shared, t: nde_event_type, dev: *mut ffi::udev_device, parsed: Option<&PeekedUevent>, out: &mut Changes) {
    // The reader's parse of the same datagram when it made one (cheaper
    // than libudev's property list), else the device's properties.
    let parsed = parsed.and_then(PeekedUevent::uevent);
    // SAFETY: `dev` is live and this thread's (the caller's promise), and
    // outlives `spec` (this call).
    let Some(mut spec) = parsed.as_ref().map(|u| u.spec()).or_else(|| unsafe { udev_parse::spec_from_device(dev) }) else {
        log::debug("uevent without a usable syspath: ignored");
        return;
    };
    if t == nde_event_type::NDE_EVENT_UDEV_REMOVE {
        sh.table.write().unwrap_or_else(|p| p.into_inner()).remove(spec.syspath, out);
        return;
    }
    let mut mac = String::new();
    let is_net = spec.subsystem == Some("net");
    let kernel_group = sh.kernel_group.load(Ordering::Relaxed);
    let have_mac =
        is_net && mac::lookup(sh.reader.ioctl.as_ref(), naming::sysname(spec.syspath), "", spec.syspath, kernel_group, &mut mac);
    let mut tbl = sh.table.write().unwrap_or_else(|p| p.into_inner());
    if is_net && (have_mac || mac::known(&tbl, spec.syspath, &mut mac)) {
        spec.mac = Some(&mac);
        spec.props.push(("ADDRESS", &mac));
    }
    if t == nde_event_type::NDE_EVENT_UDEV_MOVE {
        let old = match &parsed {
            Some(u) => u.old_syspath(),
            // SAFETY: as above.
            None => unsafe { udev_parse::property(dev, c"DEVPATH_OLD") }.map(|o| format!("/sys{o}")),
        };
        tbl.move_device(old.as_deref(), &spec, out);
    } else {
        tbl.add_or_change(&spec, out);
    }
}

/// A batch of parsed uevents (fast path), applied under one lock.
fn handle_batch(sh: &Shared, b: &uevent::Batch, out: &mut Changes) {
    let mut tbl = sh.table.write().unwrap_or_else(|p| p.into_inner());
    let mut mac = String::new();
    for u in b.iter() {
        if u.action() == uevent::Action::Remove {
            tbl.remove(u.syspath(), out);
            continue;
        }
        let mut spec: DeviceSpec<'_> = u.spec();
        // Device already gone or injected: keep the MAC we knew.
        if spec.subsystem == Some("net") && spec.mac.is_none() && mac::known(&tbl, spec.syspath, &mut mac) {
            spec.mac = Some(&mac);
            spec.props.push(("ADDRESS", &mac));
        }
        if u.action() == uevent::Action::Move {
            tbl.move_device(u.old_syspath().as_deref(), &spec, out);
        } else {
            tbl.add_or_change(&spec, out);
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
            super::mdevctl::apply(&mut t, &defined, &active, out);
        }
        Ok(None) => log::info("mdevctl was not on PATH when the monitor was made: mdev refresh skipped"),
        Err(e) => {
            sh.mdev_failures.fetch_add(1, Ordering::Relaxed);
            log::warn(&format!("mdevctl refresh failed, table unchanged: {e}"));
        }
    }
}
