//! `nde_get_api`: one symbol for plugin hosts that `dlopen` the library.
//!
//! A host resolves `nde_get_api` alone, asks for the ABI version it was
//! built against, checks `size`, and calls everything else through the
//! returned table: no `dlsym` per function, no symbol-version games, and a
//! mismatch is found at load time instead of at the first call.
//!
//! # Evolution rules (the ABI contract of the table)
//!
//! - Version 1 is this struct: common, pool and events functions, then the
//!   monitor layer (`nde_monitor_*`, `nde_device_*`), which was appended as
//!   its tail. Its members are never reordered, removed or retyped; new
//!   functions are **appended at the end** of version 1, and `size` grows
//!   with them.
//! - A host built against a newer header may therefore get a table from an
//!   older library that is shorter than its own `nde_api`: before touching a
//!   member it checks `offsetof(nde_api, member) + sizeof(void (*)(void)) <=
//!   api->size`. Members inside `size` are never NULL.
//! - An incompatible change would be a new version number with its own
//!   struct; `nde_get_api` keeps answering the old versions it still
//!   supports and returns NULL for the others.

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_void};

use super::common::{nde_result_str, nde_version};
use super::events::*;
use super::log::*;
use super::monitor::*;
use super::nde_free_fn;
use super::pool::*;
use crate::pool::{nde_pool_key_stats, nde_pool_stats};

/// The ABI version of the function table this header describes; pass it to
/// `nde_get_api`.
pub const NDE_API_VERSION: u32 = 1;

/// The function table of ABI version 1, returned by `nde_get_api(1)`.
///
/// Every member is the exported function of the same name with the `nde_`
/// prefix dropped (`api->pool_new_full` is `nde_pool_new_full`), with the
/// same contract. Members are only ever appended: use a member only when
/// `offsetof(nde_api, member) + sizeof(void (*)(void)) <= api->size`; every
/// member within `size` is non-NULL.
#[repr(C)]
// Each member is documented at the function of the same name.
#[allow(non_camel_case_types, missing_docs)]
pub struct nde_api {
    /// The version this table implements (the one asked for).
    pub abi_version: u32,
    /// `sizeof` the library's table, in bytes: members beyond it are absent.
    pub size: u32,

    // ---- common ----
    pub result_str: extern "C" fn(code: c_int) -> *const c_char,
    pub version: extern "C" fn() -> *const c_char,

    // ---- pool ----
    pub pool_new_full: unsafe extern "C" fn(
        min_workers: usize,
        max_workers: usize,
        prio_workers: usize,
        func: nde_job_fn,
        name: *const c_char,
        opaque: *mut c_void,
    ) -> *mut nde_pool,
    pub pool_send_job: unsafe extern "C" fn(pool: *mut nde_pool, priority: c_uint, jobdata: *mut c_void) -> c_int,
    pub pool_send_job_full: unsafe extern "C" fn(
        pool: *mut nde_pool,
        priority: c_uint,
        jobdata: *mut c_void,
        free_fn: nde_free_fn,
    ) -> c_int,
    pub pool_stop: unsafe extern "C" fn(pool: *mut nde_pool),
    pub pool_drain: unsafe extern "C" fn(pool: *mut nde_pool) -> c_int,
    pub pool_wait_idle: unsafe extern "C" fn(pool: *mut nde_pool, timeout_ms: c_int) -> c_int,
    pub pool_free: unsafe extern "C" fn(pool: *mut nde_pool),
    pub pool_get_min_workers: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_get_max_workers: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_get_priority_workers: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_get_current_workers: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_get_free_workers: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_get_job_queue_depth: unsafe extern "C" fn(pool: *mut nde_pool) -> usize,
    pub pool_set_parameters: unsafe extern "C" fn(
        pool: *mut nde_pool,
        min_workers: c_longlong,
        max_workers: c_longlong,
        prio_workers: c_longlong,
    ) -> c_int,
    pub pool_get_stats: unsafe extern "C" fn(pool: *mut nde_pool, out: *mut nde_pool_stats) -> c_int,

    // ---- events ----
    pub events_new: unsafe extern "C" fn(name: *const c_char) -> *mut nde_events,
    pub events_register: unsafe extern "C" fn(
        ev: *mut nde_events,
        event_type: c_int,
        cb: nde_event_cb,
        userdata: *mut c_void,
        userdata_free: nde_free_fn,
    ) -> c_int,
    pub events_deregister: unsafe extern "C" fn(ev: *mut nde_events, callback_id: c_int) -> c_int,
    pub events_submit: unsafe extern "C" fn(
        ev: *mut nde_events,
        event_type: c_int,
        data: *mut c_void,
        data_free: nde_free_fn,
    ) -> c_int,
    pub events_schedule: unsafe extern "C" fn(ev: *mut nde_events, event_type: c_int, delay_ms: c_uint) -> c_int,
    pub events_wait_idle: unsafe extern "C" fn(ev: *mut nde_events, timeout_ms: c_int) -> c_int,
    pub events_shutdown_prepare: unsafe extern "C" fn(ev: *mut nde_events) -> c_int,
    pub events_shutdown_wait: unsafe extern "C" fn(ev: *mut nde_events, timeout_ms: c_int) -> c_int,
    pub events_free: unsafe extern "C" fn(ev: *mut nde_events),
    pub events_get_stats: unsafe extern "C" fn(ev: *mut nde_events, out: *mut nde_pool_stats) -> c_int,
    // ---- monitor (appended to version 1 after the first release of the table) ----
    pub monitor_new: unsafe extern "C" fn(config: *const nde_monitor_config) -> *mut nde_monitor,
    pub monitor_get_events: unsafe extern "C" fn(mon: *mut nde_monitor) -> *mut nde_events,
    pub monitor_register: unsafe extern "C" fn(
        mon: *mut nde_monitor,
        device_name: *const c_char,
        cb: nde_lifecycle_cb,
        userdata: *mut c_void,
        userdata_free: nde_free_fn,
    ) -> c_int,
    pub monitor_deregister: unsafe extern "C" fn(mon: *mut nde_monitor, callback_id: c_int) -> c_int,
    pub monitor_start: unsafe extern "C" fn(mon: *mut nde_monitor) -> c_int,
    pub monitor_wait_initialized: unsafe extern "C" fn(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int,
    pub monitor_settle: unsafe extern "C" fn(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int,
    pub monitor_device_count: unsafe extern "C" fn(mon: *mut nde_monitor) -> usize,
    pub monitor_foreach: unsafe extern "C" fn(mon: *mut nde_monitor, cb: nde_device_visit_fn, userdata: *mut c_void) -> c_int,
    pub monitor_lookup: unsafe extern "C" fn(mon: *mut nde_monitor, name: *const c_char) -> *mut nde_device,
    pub monitor_lookup_by_syspath: unsafe extern "C" fn(mon: *mut nde_monitor, syspath: *const c_char) -> *mut nde_device,
    pub monitor_get_stats: unsafe extern "C" fn(mon: *mut nde_monitor, out: *mut nde_monitor_stats) -> c_int,
    pub monitor_stop: unsafe extern "C" fn(mon: *mut nde_monitor, timeout_ms: c_int) -> c_int,
    pub monitor_free: unsafe extern "C" fn(mon: *mut nde_monitor),

    // ---- device ----
    pub device_ref: unsafe extern "C" fn(dev: *mut nde_device) -> *mut nde_device,
    pub device_unref: unsafe extern "C" fn(dev: *mut nde_device),
    pub device_get_name: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_syspath: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_subsystem: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_devtype: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_driver: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_devnode: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_parent: unsafe extern "C" fn(dev: *const nde_device) -> *const c_char,
    pub device_get_property: unsafe extern "C" fn(dev: *const nde_device, key: *const c_char) -> *const c_char,
    pub pool_new_config: unsafe extern "C" fn(config: *const nde_pool_config) -> *mut nde_pool,
    // ---- keyed jobs and barriers (issue 15) ----
    pub pool_send_job_keyed: unsafe extern "C" fn(
        pool: *mut nde_pool,
        key: u64,
        priority: c_uint,
        jobdata: *mut c_void,
        free_fn: nde_free_fn,
    ) -> c_int,
    pub pool_send_barrier: unsafe extern "C" fn(pool: *mut nde_pool, jobdata: *mut c_void, free_fn: nde_free_fn) -> c_int,
    pub pool_get_key_stats: unsafe extern "C" fn(pool: *mut nde_pool, out: *mut nde_pool_key_stats) -> c_int,
    // ---- log (appended) ----
    pub set_log_callback: unsafe extern "C" fn(log_fn: nde_log_fn, userdata: *mut c_void, userdata_free: nde_free_fn) -> c_int,
    // ---- events with several workers (issue 15, appended) ----
    pub events_new_full: unsafe extern "C" fn(name: *const c_char, workers: c_uint) -> *mut nde_events,
    pub events_submit_keyed: unsafe extern "C" fn(
        ev: *mut nde_events,
        event_type: c_int,
        key: u64,
        data: *mut c_void,
        data_free: nde_free_fn,
    ) -> c_int,
    pub events_get_key_stats: unsafe extern "C" fn(ev: *mut nde_events, out: *mut nde_pool_key_stats) -> c_int,
    // ---- append new members here, never above ----
}

static API_V1: nde_api = nde_api {
    abi_version: 1,
    size: std::mem::size_of::<nde_api>() as u32,

    result_str: nde_result_str,
    version: nde_version,

    pool_new_full: nde_pool_new_full,
    pool_send_job: nde_pool_send_job,
    pool_send_job_full: nde_pool_send_job_full,
    pool_stop: nde_pool_stop,
    pool_drain: nde_pool_drain,
    pool_wait_idle: nde_pool_wait_idle,
    pool_free: nde_pool_free,
    pool_get_min_workers: nde_pool_get_min_workers,
    pool_get_max_workers: nde_pool_get_max_workers,
    pool_get_priority_workers: nde_pool_get_priority_workers,
    pool_get_current_workers: nde_pool_get_current_workers,
    pool_get_free_workers: nde_pool_get_free_workers,
    pool_get_job_queue_depth: nde_pool_get_job_queue_depth,
    pool_set_parameters: nde_pool_set_parameters,
    pool_get_stats: nde_pool_get_stats,

    events_new: nde_events_new,
    events_register: nde_events_register,
    events_deregister: nde_events_deregister,
    events_submit: nde_events_submit,
    events_schedule: nde_events_schedule,
    events_wait_idle: nde_events_wait_idle,
    events_shutdown_prepare: nde_events_shutdown_prepare,
    events_shutdown_wait: nde_events_shutdown_wait,
    events_free: nde_events_free,
    events_get_stats: nde_events_get_stats,

    monitor_new: nde_monitor_new,
    monitor_get_events: nde_monitor_get_events,
    monitor_register: nde_monitor_register,
    monitor_deregister: nde_monitor_deregister,
    monitor_start: nde_monitor_start,
    monitor_wait_initialized: nde_monitor_wait_initialized,
    monitor_settle: nde_monitor_settle,
    monitor_device_count: nde_monitor_device_count,
    monitor_foreach: nde_monitor_foreach,
    monitor_lookup: nde_monitor_lookup,
    monitor_lookup_by_syspath: nde_monitor_lookup_by_syspath,
    monitor_get_stats: nde_monitor_get_stats,
    monitor_stop: nde_monitor_stop,
    monitor_free: nde_monitor_free,

    device_ref: nde_device_ref,
    device_unref: nde_device_unref,
    device_get_name: nde_device_get_name,
    device_get_syspath: nde_device_get_syspath,
    device_get_subsystem: nde_device_get_subsystem,
    device_get_devtype: nde_device_get_devtype,
    device_get_driver: nde_device_get_driver,
    device_get_devnode: nde_device_get_devnode,
    device_get_parent: nde_device_get_parent,
    device_get_property: nde_device_get_property,
    pool_new_config: nde_pool_new_config,

    pool_send_job_keyed: nde_pool_send_job_keyed,
    pool_send_barrier: nde_pool_send_barrier,
    pool_get_key_stats: nde_pool_get_key_stats,
    set_log_callback: nde_set_log_callback,
    events_new_full: nde_events_new_full,
    events_submit_keyed: nde_events_submit_keyed,
    events_get_key_stats: nde_events_get_key_stats,
};

/// The static function table for ABI version `abi_version` (pass
/// `NDE_API_VERSION`), or NULL when this library does not provide that
/// version. The table lives as long as the library is loaded; do not free
/// it. Check `api->size` before using members that a newer header added
/// (see `nde_api`).
///
/// This is the one symbol a plugin host needs to resolve with `dlsym`.
#[no_mangle]
pub extern "C" fn nde_get_api(abi_version: u32) -> *const nde_api {
    match abi_version {
        1 => &API_V1,
        _ => std::ptr::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_and_only_version_one() {
        let api = nde_get_api(NDE_API_VERSION);
        assert!(!api.is_null());
        // SAFETY: a pointer to a static.
        let api = unsafe { &*api };
        assert_eq!(api.abi_version, 1);
        assert_eq!(api.size as usize, std::mem::size_of::<nde_api>());
        for v in [0, 2, 3, u32::MAX] {
            assert!(nde_get_api(v).is_null(), "version {v}");
        }
    }

    /// Version 1's members as first published: they keep their names,
    /// order and offsets for ever; new members may only follow them.
    const V1_MEMBERS: &[&str] = &[
        "result_str", "version",
        "pool_new_full", "pool_send_job", "pool_send_job_full", "pool_stop", "pool_drain",
        "pool_wait_idle", "pool_free", "pool_get_min_workers", "pool_get_max_workers",
        "pool_get_priority_workers", "pool_get_current_workers", "pool_get_free_workers",
        "pool_get_job_queue_depth", "pool_set_parameters", "pool_get_stats",
        "events_new", "events_register", "events_deregister", "events_submit", "events_schedule",
        "events_wait_idle", "events_shutdown_prepare", "events_shutdown_wait", "events_free",
        "events_get_stats",
    ];

    fn header_table_members() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let header = std::fs::read_to_string(root.join("include/nodedev_events.h")).unwrap();
        let start = header.find("typedef struct nde_api {").expect("nde_api in the header");
        let end = start + header[start..].find("} nde_api;").unwrap();
        header[start..end]
            .match_indices("(*")
            .map(|(i, _)| {
                let rest = &header[start + i + 2..end];
                rest[..rest.find(')').unwrap()].to_string()
            })
            .collect()
    }

    #[test]
    fn version_one_only_grows_at_its_end() {
        let members = header_table_members();
        assert!(
            members.len() >= V1_MEMBERS.len() && members[..V1_MEMBERS.len()] == *V1_MEMBERS,
            "nde_api version 1 changed before its end (members are append-only):\n{members:?}"
        );
        let ptr = std::mem::size_of::<usize>();
        assert_eq!(std::mem::offset_of!(nde_api, abi_version), 0);
        assert_eq!(std::mem::offset_of!(nde_api, size), 4);
        assert_eq!(std::mem::offset_of!(nde_api, result_str), 8);
        assert_eq!(std::mem::offset_of!(nde_api, events_get_stats), 8 + 26 * ptr);
        assert_eq!(std::mem::size_of::<nde_api>(), 8 + members.len() * ptr);
    }

    /// The table lists every function the header declares (except
    /// `nde_get_api` itself), each under its name without `nde_`, in the
    /// order of the header's layers. Functions of layers not yet appended
    /// (PENDING) are reported, not failed, until they are.
    #[test]
    fn table_covers_every_public_function() {
        const PENDING: &[&str] = &[];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let header = std::fs::read_to_string(root.join("include/nodedev_events.h")).unwrap();
        let start = header.find("typedef struct nde_api {").expect("nde_api in the header");
        let end = start + header[start..].find("} nde_api;").unwrap();
        let table = &header[start..end];
        let mut missing = Vec::new();
        for line in header.lines() {
            let skip = line.starts_with(' ')
                || line.starts_with('#')
                || line.starts_with('*')
                || line.starts_with("/*")
                || line.starts_with("typedef");
            if skip {
                continue;
            }
            let Some(paren) = line.find('(') else { continue };
            let Some(name) = line[..paren].split([' ', '*']).next_back() else { continue };
            let Some(member) = name.strip_prefix("nde_") else { continue };
            if name == "nde_get_api" {
                continue;
            }
            if !table.contains(&format!("(*{member})(")) {
                missing.push(name.to_string());
            }
        }
        let (pending, missing): (Vec<_>, Vec<_>) =
            missing.into_iter().partition(|n| PENDING.iter().any(|p| n.starts_with(p)));
        if !pending.is_empty() {
            eprintln!("not yet in nde_api (append them to version 1): {pending:?}");
        }
        assert!(missing.is_empty(), "public functions missing from nde_api: {missing:?}");
    }
}
