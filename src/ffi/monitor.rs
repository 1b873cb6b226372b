//! (Over 400 lines: one `extern "C"` function per header entry; a third is
//! their rustdoc, which cbindgen copies into the header.)
//!
//! `nde_monitor_*` and `nde_device_*`: the udev + mdevctl source and the
//! node-device table over [`crate::monitor::Monitor`].

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::path::PathBuf;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use super::events::{c_release, nde_events};
use super::{c_str, nde_free_fn, write_out, OpaquePtr};
pub use crate::monitor::nde_monitor_stats;
use crate::monitor::{
    log, Device, EventSource, Lifecycle, Monitor, MonitorConfig, DEFAULT_RECEIVE_BUFFER, NDE_MONITOR_KERNEL_EVENTS, NDE_MONITOR_NO_MDEVCTL,
    NDE_MONITOR_UDEV_EVENTS,
};
use crate::result::{nde_result, to_c};
use crate::timeout::from_c_ms;

/// The node-device monitor (opaque). Create with `nde_monitor_new`, start
/// with `nde_monitor_start`, release with `nde_monitor_free`.
#[allow(non_camel_case_types)]
pub struct nde_monitor {
    _private: [u8; 0],
}

/// One node device (opaque, reference counted, immutable). Strings it
/// returns live as long as the reference.
#[allow(non_camel_case_types)]
pub struct nde_device {
    _private: [u8; 0],
}

/// Lifecycle events (libvirt's values, plus UPDATED for its separate
/// UPDATE event id).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum nde_lifecycle {
    /// A new device: added, or (an mdev) started.
    NDE_LIFECYCLE_CREATED = 0,
    /// The device left the table (removed, or renamed).
    NDE_LIFECYCLE_DELETED = 1,
    /// mdevctl now defines the mediated device.
    NDE_LIFECYCLE_DEFINED = 2,
    /// mdevctl no longer defines the mediated device.
    NDE_LIFECYCLE_UNDEFINED = 3,
    /// A known device was added again or changed.
    NDE_LIFECYCLE_UPDATED = 4,
}

impl From<Lifecycle> for nde_lifecycle {
    fn from(event: Lifecycle) -> nde_lifecycle {
        match event {
            Lifecycle::Created => nde_lifecycle::NDE_LIFECYCLE_CREATED,
            Lifecycle::Deleted => nde_lifecycle::NDE_LIFECYCLE_DELETED,
            Lifecycle::Defined => nde_lifecycle::NDE_LIFECYCLE_DEFINED,
            Lifecycle::Undefined => nde_lifecycle::NDE_LIFECYCLE_UNDEFINED,
            Lifecycle::Updated => nde_lifecycle::NDE_LIFECYCLE_UPDATED,
        }
    }
}

/// A lifecycle callback: runs on the monitor's worker thread, in udev event
/// order (with several workers, see `nde_monitor_config.workers`: in udev
/// order per device, different devices at the same time). `dev` is borrowed for the duration of the call (take a reference
/// with `nde_device_ref` to keep it).
#[allow(non_camel_case_types)]
pub type nde_lifecycle_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, dev: *const nde_device, event: nde_lifecycle)>;

/// A `nde_monitor_foreach` visitor: return 0 to go on, anything else to
/// stop (that value is returned by `nde_monitor_foreach`).
#[allow(non_camel_case_types)]
pub type nde_device_visit_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, dev: *const nde_device) -> c_int>;

/// Monitor settings. Zero every field you do not set, and set `size` to
/// `sizeof(nde_monitor_config)`: zero values mean the documented defaults.
/// Fields are only appended; the library accepts the size of each earlier
/// layout (fields beyond it get their defaults).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct nde_monitor_config {
    /// `sizeof(nde_monitor_config)`, so the layout can grow compatibly.
    pub size: u32,
    /// `NDE_MONITOR_*` flags; 0 = the udev group when udevd runs
    /// (`/run/udev/control` exists), otherwise the kernel group.
    pub flags: u32,
    /// Prefix of the thread names; NULL = "nodedev". Copied.
    pub name: *const c_char,
    /// NULL-terminated list of subsystems to watch; NULL = all (minus acpi,
    /// tty, vc and i2c during enumeration, as libvirt). Copied.
    pub subsystems: *const *const c_char,
    /// mdevctl's configuration directory; NULL = /etc/mdevctl.d. Copied.
    pub mdevctl_dir: *const c_char,
    /// Debounce of mdevctl configuration changes; 0 = 100 ms.
    pub mdevctl_debounce_ms: u32,
    /// Netlink receive buffer; 0 = 128 MiB (set with SO_RCVBUFFORCE, root).
    pub receive_buffer_bytes: usize,
    /// The reader's memory bound: past this many uevents read and not yet
    /// handled, the reader stops reading the socket; the kernel's receive
    /// buffer absorbs what follows, and when it overflows the monitor
    /// resyncs (as after any overflow). Reading resumes below three
    /// quarters of the bound. 0 = 65536. (Added after the first release:
    /// a config whose `size` ends before this field gets the defaults.)
    pub max_queued_events: usize,
    /// The same bound in bytes of queued uevents (a uevent read through
    /// libudev counts 2 KiB). 0 = 16 MiB.
    pub max_queued_bytes: usize,
    /// Worker threads of the monitor's events object; 0 or 1 = one (every
    /// callback in udev order, one at a time), at most
    /// `NDE_MONITOR_MAX_WORKERS` (256). (Added after
    /// `max_queued_bytes`: a config whose `size` ends before it gets 1.)
    ///
    /// With several workers, the uevents of one device stay in udev order
    /// and those of different devices are handled at the same time:
    /// - a lifecycle callback (`nde_monitor_register`) may run on several
    ///   workers at once, for different devices; for one device its calls
    ///   never overlap and come in udev order; guard what it shares;
    /// - raw `NDE_EVENT_UDEV_*` handlers likewise, per device (the
    ///   `udev_device` rules of `nde_monitor_get_events` still hold: touch
    ///   a device only inside a callback of its own event's device);
    /// - barriers run alone, after every event read before them and before
    ///   any read after: `NDE_EVENT_INIT` (the enumeration and each
    ///   resync), `NDE_EVENT_MDEVCTL_CONFIG_CHANGED`, a move (ordered with
    ///   both its old and its new name), and a uevent about a device that
    ///   is an ancestor or a descendant of a device with a uevent in flight;
    /// - uevents of two unrelated devices are not ordered with each other,
    ///   even when libvirt's naming gives them one name;
    /// - `nde_monitor_settle` and `nde_monitor_wait_initialized` keep their
    ///   meaning.
    pub workers: c_uint,
}

/// `sizeof(nde_monitor_config)` before `max_queued_events` was appended.
const CONFIG_SIZE_V1: usize = std::mem::offset_of!(nde_monitor_config, max_queued_events);
/// `sizeof(nde_monitor_config)` before `workers` was appended.
const CONFIG_SIZE_V2: usize = std::mem::offset_of!(nde_monitor_config, workers);

/// A `size` the library accepts: the current layout or an earlier one.
fn known_config_size(size: usize) -> bool {
    size == std::mem::size_of::<nde_monitor_config>() || size == CONFIG_SIZE_V1 || size == CONFIG_SIZE_V2
}

fn monitor_ref<'a>(mon: *mut nde_monitor) -> Option<&'a Monitor> {
    // SAFETY: a non-NULL pointer came from nde_monitor_new and is alive.
    unsafe { (mon as *const Monitor).as_ref() }
}

fn device_ref<'a>(dev: *const nde_device) -> Option<&'a Device> {
    // SAFETY: a non-NULL pointer is a live Arc<Device> given out by us.
    unsafe { (dev as *const Device).as_ref() }
}

fn device_out(dev: Option<Arc<Device>>) -> *mut nde_device {
    dev.map_or(ptr::null_mut(), |d| Arc::into_raw(d) as *mut nde_device)
}

fn str_or_null(s: Option<&CStr>) -> *const c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// Reads a config; `None` (with a logged reason) when it is malformed.
///
/// # Safety
/// `cfg` is NULL or points to `cfg->size` readable bytes (at least the
/// `size` field).
unsafe fn read_config(cfg: *const nde_monitor_config) -> Option<MonitorConfig> {
    let mut out = MonitorConfig::default();
    if cfg.is_null() {
        return Some(out);
    }
    // SAFETY: `cfg` is non-NULL and its `size` field is readable (the
    // caller's contract).
    let size = unsafe { std::ptr::addr_of!((*cfg).size).read() } as usize;
    // An earlier, shorter layout is copied into a zeroed current one (zero
    // means default), so only `size` bytes of the caller's are read.
    // SAFETY: all-zero is a valid config (integers and NULL pointers).
    let mut copy: nde_monitor_config = unsafe { std::mem::zeroed() };
    if known_config_size(size) {
        // SAFETY: the caller's `size` bytes are readable, and `size` is at
        // most the size of `copy`.
        unsafe {
            std::ptr::copy_nonoverlapping(cfg.cast::<u8>(), (&mut copy as *mut nde_monitor_config).cast::<u8>(), size)
        };
    }
    let c = &copy;
    if !known_config_size(size) {
        log::log(
            log::Level::Error,
            &format!(
                "nde_monitor_new: config.size is {}, expected sizeof(nde_monitor_config) = {}",
                c.size,
                std::mem::size_of::<nde_monitor_config>()
            ),
        );
        return None;
    }
    (out.source, out.watch_mdevctl) = match source_of_flags(c.flags) {
        Some(v) => v,
        None => {
            log::log(log::Level::Error, &format!("nde_monitor_new: invalid flags {:#x} (unknown, or both groups)", c.flags));
            return None;
        }
    };
    if !c.name.is_null() {
        // SAFETY: a non-NULL string of the config is a C string.
        out.name = unsafe { c_str(c.name) }?.to_owned();
    }
    if !c.subsystems.is_null() {
        let mut list = Vec::new();
        let mut p = c.subsystems;
        // SAFETY: a NULL-terminated array of C strings (the caller's
        // contract): every element up to the NULL is readable.
        while let Some(s) = unsafe { (*p).as_ref() } {
            // SAFETY: an element of that array, a C string.
            list.push(unsafe { c_str(s) }?.to_owned());
            // SAFETY: not past the terminating NULL yet.
            p = unsafe { p.add(1) };
        }
        out.subsystems = Some(list);
    }
    if !c.mdevctl_dir.is_null() {
        // SAFETY: a non-NULL string of the config is a C string.
        out.mdevctl_dir = PathBuf::from(unsafe { c_str(c.mdevctl_dir) }?);
    }
    out.mdevctl_debounce = Duration::from_millis(c.mdevctl_debounce_ms.into()); // 0: the monitor's default
    out.receive_buffer_bytes = if c.receive_buffer_bytes == 0 { DEFAULT_RECEIVE_BUFFER } else { c.receive_buffer_bytes };
    if c.max_queued_events != 0 {
        out.max_queued_events = c.max_queued_events;
    }
    if c.max_queued_bytes != 0 {
        out.max_queued_bytes = c.max_queued_bytes;
    }
    out.workers = (c.workers as usize).max(1); // 0: one, as before the field
    Some(out)
}

/// The event source and mdevctl switch of `NDE_MONITOR_*` flags; `None`
/// for unknown flags or both groups.
fn source_of_flags(flags: u32) -> Option<(EventSource, bool)> {
    let known = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL;
    let source = match flags & (NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS) {
        0 => EventSource::Auto,
        NDE_MONITOR_KERNEL_EVENTS => EventSource::Kernel,
        NDE_MONITOR_UDEV_EVENTS => EventSource::Udev,
        _ => return None,
    };
    (flags & !known == 0).then_some((source, flags & NDE_MONITOR_NO_MDEVCTL == 0))
}

/// Creates a monitor (not started). `config` may be NULL for the defaults;
/// it is read during the call only.
///
/// Returns NULL when `config->size` is not `sizeof(nde_monitor_config)`,
/// a string in it is not UTF-8, the flags are unknown or ask for both
/// groups, `workers` is over `NDE_MONITOR_MAX_WORKERS`, or a thread cannot be created (the reason is logged when
/// `NDE_DEBUG` is set).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_new(config: *const nde_monitor_config) -> *mut nde_monitor {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: NULL or a readable config (caller's contract).
        let Some(cfg) = (unsafe { read_config(config) }) else { return ptr::null_mut() };
        match Monitor::new(cfg) {
            Ok(m) => Box::into_raw(Box::new(m)) as *mut nde_monitor,
            Err(e) => {
                log::log(log::Level::Error, &format!("nde_monitor_new: {e}"));
                ptr::null_mut()
            }
        }
    })
}

/// The monitor's events object (borrowed: valid until `nde_monitor_free`;
/// never pass it to `nde_events_free`). Register raw handlers there:
/// `NDE_EVENT_UDEV_*` events carry a `struct udev_device *` that the event
/// owns (do not unref it; take your own reference to keep it), and
/// `NDE_EVENT_INIT` marks an enumeration (the first one, then one per
/// resync). The built-in handler that keeps the device table was registered
/// first, so yours run after it. NULL for a NULL monitor.
///
/// libudev objects are not thread-safe (their reference counts are plain
/// integers): touch an event's `udev_device` (read, ref, unref, also a
/// reference you kept from an earlier event) only on the events' worker
/// thread, i.e. inside your callbacks. The library drops the event's own
/// reference on that same thread, after the event's last callback returned,
/// so your ref/unref never race with it (`ctests/monitor_faults_test.c`,
/// `refcount_child`, counts overlapping ref/unref calls).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_get_events(mon: *mut nde_monitor) -> *mut nde_events {
    ffi_guard!(ptr::null_mut(), {
        monitor_ref(mon).map_or(ptr::null_mut(), |m| Arc::as_ptr(m.events_arc()) as *mut nde_events)
    })
}

/// Registers a lifecycle callback for the device named `device_name`
/// (copied), or for every device when it is NULL. It runs on the worker
/// thread, in order (several workers: in order per device, different
/// devices at the same time; see `nde_monitor_config.workers`): CREATED for a new device (and, for callbacks
/// registered before `nde_monitor_start`, for every device of the initial
/// inventory), UPDATED when a known device is added again or changes,
/// DELETED when it is removed (a rename is DELETED of the old name, then
/// CREATED of the new), DEFINED / UNDEFINED when mdevctl's configuration
/// changes.
///
/// `userdata_free` (NULL allowed) runs exactly once: on deregister, on
/// `nde_monitor_free`, or before this call returns if it fails.
/// Returns the callback id (>= 0) or `NDE_ERR_INVALID` (NULL monitor or
/// callback, name not UTF-8).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_register(
    mon: *mut nde_monitor,
    device_name: *const c_char,
    cb: nde_lifecycle_cb,
    userdata: *mut c_void,
    userdata_free: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `userdata` over with `userdata_free` (the header's contract).
    let release = unsafe { c_release(userdata, userdata_free) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        // SAFETY: NULL or a valid C string.
        let name = unsafe { c_str(device_name) };
        let name_ok = device_name.is_null() || name.is_some();
        match (monitor_ref(mon), cb, name_ok) {
            (Some(m), Some(cb), true) => {
                let ud = OpaquePtr(userdata);
                let call = Box::new(move |dev: &Arc<Device>, event: Lifecycle| {
                    let ud = ud;
                    // SAFETY: the caller's callback, its userdata, a live device.
                    unsafe { cb(ud.0, Arc::as_ptr(dev) as *const nde_device, event.into()) }
                });
                to_c(m.register_concurrent_id(name, call, release))
            }
            _ => {
                if let Some(f) = release {
                    f();
                }
                nde_result::NDE_ERR_INVALID.code()
            }
        }
    })
}

/// Removes a lifecycle callback, with the promises of
/// `nde_events_deregister` (from another thread: it is not running and
/// never runs again when this returns, and its userdata_free ran).
/// Returns `NDE_OK`, `NDE_ERR_NOT_FOUND` or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_deregister(mon: *mut nde_monitor, callback_id: c_int) -> c_int {
    ffi_status!(monitor_ref(mon), |m| m.deregister_id(callback_id))
}

/// Starts monitoring: opens the netlink socket first, then queues the
/// initial enumeration (so no device falls between the two), then starts
/// the reader thread and the mdevctl watch. Returns at once; use
/// `nde_monitor_wait_initialized` to wait for the inventory.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL, or already started),
/// `NDE_ERR_STOPPED` (after stop), `NDE_ERR_OS` (the socket could not be
/// opened) or `NDE_ERR_THREAD`.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_start(mon: *mut nde_monitor) -> c_int {
    ffi_status!(monitor_ref(mon), |m| m.start())
}

/// Waits until the initial enumeration was handled. Never hangs unless
/// asked to (`timeout_ms < 0`). Returns `NDE_OK`, `NDE_ERR_TIMEOUT`,
/// `NDE_ERR_STOPPED` (stopped, or start failed, first), `NDE_ERR_INVALID`
/// or `NDE_ERR_WOULD_DEADLOCK` (from a callback, before initialization).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_wait_initialized(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int {
    ffi_status!(monitor_ref(mon), |m| m.wait_initialized(from_c_ms(timeout_ms)))
}

/// Returns once every uevent that the socket had received when the call
/// began has been handled and its callbacks have returned: the
/// `udevadm settle` for this monitor's view. Returns `NDE_OK`,
/// `NDE_ERR_TIMEOUT`, `NDE_ERR_STOPPED`, `NDE_ERR_INVALID` or
/// `NDE_ERR_WOULD_DEADLOCK` (from a callback).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_settle(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int {
    ffi_status!(monitor_ref(mon), |m| m.settle(from_c_ms(timeout_ms)))
}

/// Number of devices in the table (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_device_count(mon: *mut nde_monitor) -> usize {
    ffi_guard!(0, { monitor_ref(mon).map_or(0, |m| m.device_count()) })
}

/// Calls `cb(userdata, dev)` for each device of a consistent snapshot of the
/// table (devices are borrowed for the call). Stops at the first non-zero
/// return, which it returns; `NDE_OK` when every device was visited;
/// `NDE_ERR_INVALID` for a NULL monitor or callback. May be called from a
/// callback.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_foreach(mon: *mut nde_monitor, cb: nde_device_visit_fn, userdata: *mut c_void) -> c_int {
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        match (monitor_ref(mon), cb) {
            (Some(m), Some(cb)) => {
                let visit = |d: &Arc<Device>| {
                    // SAFETY: the caller's visitor with a live device.
                    unsafe { cb(userdata, Arc::as_ptr(d) as *const nde_device) }
                };
                m.snapshot().iter().map(visit).find(|&r| r != 0).unwrap_or(0)
            }
            _ => nde_result::NDE_ERR_INVALID.code(),
        }
    })
}

/// The device named `name` (libvirt's name, e.g. "net_lo_00_00_00_00_00_00"
/// or "computer"), as a new reference to release with `nde_device_unref`;
/// NULL when unknown or for NULL arguments. The reference stays valid after
/// the device is removed from the table.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_lookup(mon: *mut nde_monitor, name: *const c_char) -> *mut nde_device {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: NULL or a valid C string.
        match (monitor_ref(mon), unsafe { c_str(name) }) {
            (Some(m), Some(n)) => device_out(m.lookup(n)),
            _ => ptr::null_mut(),
        }
    })
}

/// The device at sysfs path `syspath` (e.g. "/sys/devices/virtual/net/lo"),
/// as a new reference (see `nde_monitor_lookup`), or NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_lookup_by_syspath(mon: *mut nde_monitor, syspath: *const c_char) -> *mut nde_device {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: NULL or a valid C string.
        match (monitor_ref(mon), unsafe { c_str(syspath) }) {
            (Some(m), Some(p)) => device_out(m.lookup_by_syspath(p)),
            _ => ptr::null_mut(),
        }
    })
}

/// Copies the monitor's counters into `*out` (written only on success).
/// Returns `NDE_OK` or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_get_stats(mon: *mut nde_monitor, out: *mut nde_monitor_stats) -> c_int {
    // SAFETY: `out` is NULL or writable (caller's contract).
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), { unsafe { write_out(out, monitor_ref(mon).map(Monitor::stats)) } })
}

/// Stops the monitor (libvirt's ShutdownPrepare + ShutdownWait, without
/// holding a lock while joining): stops the reader thread, the mdevctl watch
/// and the timers, cuts a running enumeration short, joins, and discards
/// queued events (every `udev_device` reference is released). The table
/// stays readable.
///
/// Returns `NDE_OK` (also when called again), `NDE_ERR_TIMEOUT` when a
/// callback is still running after `timeout_ms` (< 0: wait for ever; call
/// again), `NDE_ERR_WOULD_DEADLOCK` from a callback, or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_stop(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int {
    ffi_status!(monitor_ref(mon), |m| m.stop(from_c_ms(timeout_ms)))
}

/// Stops the monitor (waiting for ever) and releases it, with every
/// callback's userdata. Device references held by the caller stay valid.
/// NULL does nothing. From inside a callback the release completes when the
/// callback returns.
#[no_mangle]
pub unsafe extern "C" fn nde_monitor_free(mon: *mut nde_monitor) {
    ffi_guard!((), {
        if !mon.is_null() {
            // SAFETY: from nde_monitor_new, released once.
            // Dropping it stops and releases as documented above
            // (`Monitor`'s `Drop`).
            drop(unsafe { Box::from_raw(mon as *mut Monitor) });
        }
    })
}

/// Takes one more reference to `dev`; returns `dev` (NULL for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_device_ref(dev: *mut nde_device) -> *mut nde_device {
    ffi_guard!(ptr::null_mut(), {
        if !dev.is_null() {
            // SAFETY: a live Arc<Device> pointer given out by us.
            unsafe { Arc::increment_strong_count(dev as *const Device) };
        }
        dev
    })
}

/// Releases one reference; the device is freed with the last one. NULL
/// does nothing.
#[no_mangle]
pub unsafe extern "C" fn nde_device_unref(dev: *mut nde_device) {
    ffi_guard!((), {
        if !dev.is_null() {
            // SAFETY: the caller owns this reference and gives it back.
            unsafe { Arc::decrement_strong_count(dev as *const Device) };
        }
    })
}

/// libvirt's name of the device (e.g. "pci_0000_00_1f_2"); NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_name(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { device_ref(dev).map_or(ptr::null(), |d| d.name_c().as_ptr()) })
}

/// The sysfs path ("/sys/devices/..."); empty for a device mdevctl defines
/// that is not active. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_syspath(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { device_ref(dev).map_or(ptr::null(), |d| d.syspath_c().as_ptr()) })
}

/// The udev subsystem ("net", "block", "pci", ...); NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_subsystem(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { device_ref(dev).map_or(ptr::null(), |d| d.subsystem_c().as_ptr()) })
}

/// The udev device type ("disk", "usb_device", ...) or NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_devtype(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { str_or_null(device_ref(dev).and_then(|d| d.devtype_c())) })
}

/// The bound driver or NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_driver(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { str_or_null(device_ref(dev).and_then(|d| d.driver_c())) })
}

/// The device node ("/dev/sda") or NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_devnode(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { str_or_null(device_ref(dev).and_then(|d| d.devnode_c())) })
}

/// The name of the parent device ("computer" for top-level devices and for
/// devices whose parent is not in the table); NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_parent(dev: *const nde_device) -> *const c_char {
    ffi_guard!(ptr::null(), { device_ref(dev).map_or(ptr::null(), |d| d.parent_c().as_ptr()) })
}

/// The value of udev property `key` (e.g. "ID_SERIAL", "INTERFACE") or
/// NULL when the device has none.
#[no_mangle]
pub unsafe extern "C" fn nde_device_get_property(dev: *const nde_device, key: *const c_char) -> *const c_char {
    ffi_guard!(ptr::null(), {
        if key.is_null() {
            return ptr::null();
        }
        // SAFETY: a valid C string (caller's contract).
        let key = unsafe { CStr::from_ptr(key) };
        str_or_null(device_ref(dev).and_then(|d| d.property_c(key.to_bytes())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_onto_the_source_and_bad_combinations_are_refused() {
        assert_eq!(source_of_flags(0), Some((EventSource::Auto, true)));
        assert_eq!(source_of_flags(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL), Some((EventSource::Kernel, false)));
        assert_eq!(source_of_flags(NDE_MONITOR_UDEV_EVENTS), Some((EventSource::Udev, true)));
        assert_eq!(source_of_flags(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS), None);
        assert_eq!(source_of_flags(1 << 9), None);
    }
}
