//! `nde_events_*`: typed events on one ordered worker, or on several with
//! keys and barriers.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::ptr;

use super::{c_str, nde_free_fn, status_code, write_out, OpaquePtr, OwnedData};
use crate::events::{nde_event_type, Events, NDE_EVENTS_MAX_WORKERS, NDE_EVENT_ANY};
use crate::monitor::log;
use crate::pool::{nde_pool_key_stats, nde_pool_stats};
use crate::result::{nde_result, to_c};
use crate::timeout::from_c_ms;

/// Typed events handled on worker threads (opaque). Create with
/// `nde_events_new` (one worker: every event in submission order) or
/// `nde_events_new_full` (several workers: ordered per key, barriers for
/// the rest), release with `nde_events_free`.
#[allow(non_camel_case_types)]
pub struct nde_events {
    _private: [u8; 0],
}

/// An event callback: `userdata` as registered, the event's type and data.
/// The data belongs to the event: do not free it, and do not keep it after
/// the callback returns. With one worker, callbacks never run at the same
/// time. With several (`nde_events_new_full`), the same callback may run on
/// several workers at once, for keyed events of different keys: guard what
/// it shares. Two events of one key, and a barrier event and any other
/// event, never overlap.
#[allow(non_camel_case_types)]
pub type nde_event_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event_type: nde_event_type, data: *mut c_void)>;

pub(crate) fn events_ref<'a>(ev: *mut nde_events) -> Option<&'a Events> {
    // SAFETY: a non-NULL `nde_events *` came from nde_events_new (or
    // nde_monitor_get_events) and is still alive (caller's contract).
    unsafe { (ev as *const Events).as_ref() }
}

/// The C callback plus its userdata, as a Rust callback.
pub(crate) fn c_callback(
    cb: unsafe extern "C" fn(*mut c_void, nde_event_type, *mut c_void),
    userdata: *mut c_void,
) -> crate::events::ConcurrentCallback {
    let ud = OpaquePtr(userdata);
    Box::new(move |t, data| {
        let ud = ud;
        // SAFETY: the caller's callback with its own userdata.
        unsafe { cb(ud.0, t, data) }
    })
}

/// Runs `userdata_free(userdata)` once, later, as a Rust closure.
///
/// # Safety
/// `userdata_free` (if any) may be called once with `userdata` on any thread.
pub(crate) unsafe fn c_release(userdata: *mut c_void, userdata_free: nde_free_fn) -> Option<crate::registry::OnRemove> {
    // SAFETY: the caller's contract, passed on.
    let data = unsafe { OwnedData::new(userdata, userdata_free) };
    userdata_free.map(|_| Box::new(move || drop(data)) as crate::registry::OnRemove)
}

/// Creates an events object with its one worker thread, named after `name`
/// (NULL allowed, copied; cut to 15 bytes). A timer thread is started on the
/// first `nde_events_schedule` with a delay. Returns NULL when a thread
/// cannot be created.
#[no_mangle]
pub unsafe extern "C" fn nde_events_new(name: *const c_char) -> *mut nde_events {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: NULL or a valid C string.
        let name = unsafe { c_str(name) }.unwrap_or("nde-events");
        match Events::new(name) {
            Ok(ev) => Box::into_raw(Box::new(ev)) as *mut nde_events,
            Err(_) => ptr::null_mut(),
        }
    })
}

/// Creates an events object with `workers` worker threads (all started
/// now), named after `name` as for `nde_events_new`. With `workers == 1` it
/// is `nde_events_new`. With more:
///
/// - events submitted with `nde_events_submit_keyed` and a non-zero key
///   are handled one at a time, in submission order, per key; events of
///   different keys may be handled at the same time on different workers;
///   an event whose key is busy waits without holding a worker;
/// - every other event is a **barrier**: `nde_events_submit`, key 0,
///   `nde_events_schedule`'s events, and `NDE_EVENT_INIT` and
///   `NDE_EVENT_MDEVCTL_CONFIG_CHANGED` whatever their key. A barrier is
///   handled alone, after every event submitted before it has been handled
///   (its callbacks returned, its data freed), and before any event
///   submitted after it starts. So code written for one worker stays
///   correct: only keyed events ever run in parallel.
/// - the callbacks of one event run in registration order on one worker;
///   one callback may run on several workers at once for different keys.
///
/// Returns NULL when `workers` is 0 or over `NDE_EVENTS_MAX_WORKERS`
/// (refused before any thread starts; the reason is logged), or a thread
/// cannot be created.
#[no_mangle]
pub unsafe extern "C" fn nde_events_new_full(name: *const c_char, workers: c_uint) -> *mut nde_events {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: NULL or a valid C string.
        let name = unsafe { c_str(name) }.unwrap_or("nde-events");
        if workers as usize > NDE_EVENTS_MAX_WORKERS {
            log::error(&format!("nde_events_new_full: {workers} workers is over NDE_EVENTS_MAX_WORKERS ({NDE_EVENTS_MAX_WORKERS})"));
        }
        match Events::with_workers(name, workers as usize) {
            Ok(ev) => Box::into_raw(Box::new(ev)) as *mut nde_events,
            Err(_) => ptr::null_mut(),
        }
    })
}

/// Registers `cb` for events of `event_type` (an `nde_event_type`, or
/// `NDE_EVENT_ANY` for all). For one event, matching callbacks run in
/// registration order, on the worker thread.
///
/// `userdata` is passed to `cb`; `userdata_free` (NULL allowed) runs exactly
/// once: when the callback is deregistered, when the object is freed, or
/// before this call returns if it fails.
///
/// May be called from inside a callback: the new callback receives events
/// from the next one on.
///
/// Returns the callback id (>= 0), or `NDE_ERR_INVALID` (NULL object or
/// callback, unknown type).
#[no_mangle]
pub unsafe extern "C" fn nde_events_register(
    ev: *mut nde_events,
    event_type: c_int,
    cb: nde_event_cb,
    userdata: *mut c_void,
    userdata_free: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `userdata` over with `userdata_free` (the header's contract).
    let release = unsafe { c_release(userdata, userdata_free) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        let filter = if event_type == NDE_EVENT_ANY {
            Some(None)
        } else {
            nde_event_type::from_i32(event_type).map(Some)
        };
        match (events_ref(ev), cb, filter) {
            (Some(ev), Some(cb), Some(filter)) => to_c(ev.register_concurrent_id(filter, c_callback(cb, userdata), release)),
            _ => {
                if let Some(f) = release {
                    f();
                }
                nde_result::NDE_ERR_INVALID.code()
            }
        }
    })
}

/// Removes callback `callback_id`.
///
/// From any thread but the object's workers: when this returns, the
/// callback is not running on any worker and will not run again, and its
/// `userdata_free` has run.
/// From inside a callback (on a worker): never waits; the removed callback
/// does not start again; its `userdata_free` runs once no worker is running
/// it: at once, or right after the last running call returns (so a
/// callback removing itself is released after it returns, before
/// `nde_events_wait_idle` can return).
///
/// Returns `NDE_OK`, `NDE_ERR_NOT_FOUND` (unknown or already removed id) or
/// `NDE_ERR_INVALID` (NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_events_deregister(ev: *mut nde_events, callback_id: c_int) -> c_int {
    ffi_status!(events_ref(ev), |ev| ev.deregister_id(callback_id))
}

/// Queues an event. Always takes `data`: `data_free` (NULL allowed) runs
/// exactly once, after every callback for this event has returned, or when
/// the event is discarded by shutdown, or before this call returns when it
/// fails. Events are handled in submission order.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL object, `NDE_EVENT_ANY`,
/// `NDE_EVENT_LAST` or any other unknown type) or `NDE_ERR_STOPPED` (after
/// `nde_events_shutdown_prepare`). Safe from any thread, including callbacks.
#[no_mangle]
pub unsafe extern "C" fn nde_events_submit(
    ev: *mut nde_events,
    event_type: c_int,
    data: *mut c_void,
    data_free: nde_free_fn,
) -> c_int {
    // SAFETY: the same arguments, under the same contract.
    unsafe { nde_events_submit_keyed(ev, event_type, 0, data, data_free) }
}

/// Queues an event under `key`, as `nde_events_submit` does (the same
/// ownership of `data`, the same results). On an events object with
/// several workers, events with the same non-zero `key` are handled one at
/// a time in submission order and events of different keys may be handled
/// at the same time; key 0, `NDE_EVENT_INIT` and
/// `NDE_EVENT_MDEVCTL_CONFIG_CHANGED` are barriers (see
/// `nde_events_new_full`). With one worker the key changes nothing.
#[no_mangle]
pub unsafe extern "C" fn nde_events_submit_keyed(
    ev: *mut nde_events,
    event_type: c_int,
    key: u64,
    data: *mut c_void,
    data_free: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `data` over with `data_free` (the header's contract).
    let data = unsafe { OwnedData::new(data, data_free) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        match (events_ref(ev), nde_event_type::from_i32(event_type)) {
            (Some(ev), Some(t)) => status_code(ev.submit_keyed(t, key, data)),
            _ => nde_result::NDE_ERR_INVALID.code(), // `data` drops: freed
        }
    })
}

/// Copies the key and barrier counters of the events queue into `*out`
/// (written only on success; see `nde_pool_key_stats`: every event of an
/// object with several workers is counted there as keyed or barrier; with
/// one worker all stay 0). Returns `NDE_OK` or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_events_get_key_stats(ev: *mut nde_events, out: *mut nde_pool_key_stats) -> c_int {
    // SAFETY: `out` is NULL or writable (caller's contract).
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), { unsafe { write_out(out, events_ref(ev).map(Events::key_stats)) } })
}

/// Debounces events of `event_type` (libvirt's 100 ms mdevctl timer): each
/// call (re)arms a one-shot timer for that type; when it fires,
/// `(event_type, NULL)` is submitted with no data. Calls within the delay
/// collapse into one event, `delay_ms` after the last call.
/// `delay_ms == 0` submits now and cancels a pending timer (libvirt's
/// "force").
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL object or a type that is not an
/// event type), `NDE_ERR_STOPPED` (after shutdown_prepare) or
/// `NDE_ERR_THREAD` (the timer thread could not start).
#[no_mangle]
pub unsafe extern "C" fn nde_events_schedule(ev: *mut nde_events, event_type: c_int, delay_ms: c_uint) -> c_int {
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        match (events_ref(ev), nde_event_type::from_i32(event_type)) {
            (Some(ev), Some(t)) => status_code(ev.schedule(t, std::time::Duration::from_millis(delay_ms.into()))),
            _ => nde_result::NDE_ERR_INVALID.code(),
        }
    })
}

/// Waits until every submitted event has been handled and its data freed.
/// `timeout_ms < 0` waits for ever. Returns `NDE_OK`, `NDE_ERR_TIMEOUT`,
/// `NDE_ERR_STOPPED` (shut down with events still queued),
/// `NDE_ERR_INVALID` or `NDE_ERR_WOULD_DEADLOCK` (from a callback).
#[no_mangle]
pub unsafe extern "C" fn nde_events_wait_idle(ev: *mut nde_events, timeout_ms: c_int) -> c_int {
    ffi_status!(events_ref(ev), |ev| ev.wait_idle(from_c_ms(timeout_ms)))
}

/// Shutdown, phase one (libvirt's ShutdownPrepare): from now on submit and
/// schedule return `NDE_ERR_STOPPED`, pending timers are cancelled and none
/// fires, and the worker stops after the current event. Never blocks;
/// idempotent; safe from a callback. Returns `NDE_OK` or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_events_shutdown_prepare(ev: *mut nde_events) -> c_int {
    ffi_status!(events_ref(ev), |ev| {
        ev.shutdown_prepare();
        Ok(())
    })
}

/// Shutdown, phase two (libvirt's ShutdownWait, without its leak and its
/// lock-while-joining): prepares first if needed, joins the timer and the
/// worker, then discards the queued events (their `data_free` runs).
///
/// Returns `NDE_OK` (also on later calls), `NDE_ERR_TIMEOUT` when the
/// current callback is still running after `timeout_ms` (< 0: wait for
/// ever; nothing is broken, call again), `NDE_ERR_WOULD_DEADLOCK` from a
/// callback, or `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_events_shutdown_wait(ev: *mut nde_events, timeout_ms: c_int) -> c_int {
    ffi_status!(events_ref(ev), |ev| ev.shutdown_wait(from_c_ms(timeout_ms)))
}

/// Shuts down (prepare, then wait for ever), discards queued events, and
/// releases every callback's userdata. NULL does nothing. From inside a
/// callback the release completes when that callback returns.
#[no_mangle]
pub unsafe extern "C" fn nde_events_free(ev: *mut nde_events) {
    ffi_guard!((), {
        if !ev.is_null() {
            // SAFETY: from nde_events_new, released once. Dropping it shuts
            // down as documented above (`Events`'s `Drop`).
            drop(unsafe { Box::from_raw(ev as *mut Events) });
        }
    })
}

/// Copies the counters of the events queue into `*out` (written only on
/// success): submitted, completed (handled), discarded (dropped by
/// shutdown), rejected, queue_high_water. Returns `NDE_OK` or
/// `NDE_ERR_INVALID`.
#[no_mangle]
pub unsafe extern "C" fn nde_events_get_stats(ev: *mut nde_events, out: *mut nde_pool_stats) -> c_int {
    // SAFETY: `out` is NULL or writable (caller's contract).
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), { unsafe { write_out(out, events_ref(ev).map(Events::stats)) } })
}
