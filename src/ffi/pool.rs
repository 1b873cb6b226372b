//! (Over 400 lines: one `extern "C"` function per header entry; 200 lines
//! are their rustdoc, which cbindgen copies into the header.)
//!
//! `nde_pool_*`: libvirt's `virThreadPool` API over [`crate::pool::Pool`].

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_void};
use std::ptr;
use std::sync::Arc;

use super::{c_str, nde_free_fn, write_out, OpaquePtr, OwnedData};
pub use crate::pool::{nde_pool_key_stats, nde_pool_stats};
use crate::pool::{JobPool, PoolLimits, WorkerHook, WorkerHooks};
use crate::result::nde_result;
use crate::timeout::from_c_ms;

/// A pool of worker threads (opaque). Create with `nde_pool_new_full`,
/// release with `nde_pool_free`.
#[allow(non_camel_case_types)]
pub struct nde_pool {
    _private: [u8; 0],
}

/// The function a pool runs for each job, called on a worker thread with the
/// job's data and the pool's `opaque` (libvirt's argument order).
#[allow(non_camel_case_types)]
pub type nde_job_fn = Option<unsafe extern "C" fn(jobdata: *mut c_void, opaque: *mut c_void)>;

type CPool = JobPool<OwnedData>;

fn pool_ref<'a>(pool: *mut nde_pool) -> Option<&'a CPool> {
    // SAFETY: a non-NULL `nde_pool *` is one returned by nde_pool_new_full
    // and not yet freed (caller's contract).
    unsafe { (pool as *const CPool).as_ref() }
}

/// Creates a pool and starts `min_workers` ordinary and `prio_workers`
/// priority threads.
///
/// - `min_workers` threads start at once; after a job is queued, while queued
///   jobs outnumber idle workers and fewer than `max_workers` exist, one more
///   starts. `min_workers > max_workers` is clamped to `max_workers`.
/// - `prio_workers` extra threads run only jobs sent with a non-zero priority.
/// - With `(1, 1, 0)` jobs run one at a time in exactly the order accepted.
/// - `func` runs each job as `func(jobdata, opaque)`; `opaque` is passed
///   through untouched and stays owned by the caller.
/// - `name` (NULL allowed, copied) names the threads, cut to the 15 bytes
///   Linux keeps; priority threads are named `prio-` + `name`.
///
/// Returns NULL when `func` is NULL, `max_workers` is 0, or a thread cannot
/// be created (nothing is left running then).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_new_full(
    min_workers: usize,
    max_workers: usize,
    prio_workers: usize,
    func: nde_job_fn,
    name: *const c_char,
    opaque: *mut c_void,
) -> *mut nde_pool {
    ffi_guard!(ptr::null_mut(), {
        let limits = PoolLimits { min_workers, max_workers, prio_workers };
        new_pool(limits, func, name, opaque, WorkerHooks::default())
    })
}

/// The body of `nde_pool_new_full` and `nde_pool_new_config`.
fn new_pool(
    limits: PoolLimits,
    func: nde_job_fn,
    name: *const c_char,
    opaque: *mut c_void,
    hooks: WorkerHooks,
) -> *mut nde_pool {
    let Some(func) = func else {
        return ptr::null_mut(); // `hooks` drop: their userdata is freed
    };
    // SAFETY: `name` is NULL or a valid C string (caller's contract).
    let name = unsafe { c_str(name) }.unwrap_or("nde-pool");
    let opaque = OpaquePtr(opaque);
    let handler = Box::new(move |job: OwnedData| {
        let opaque = opaque;
        // SAFETY: the caller's job function with the caller's data.
        unsafe { func(job.ptr, opaque.0) };
        // `job` drops here: its free function runs after `func` returned.
    });
    match CPool::with_hooks(limits, name, handler, hooks) {
        Ok(pool) => Box::into_raw(Box::new(pool)) as *mut nde_pool,
        Err(_) => ptr::null_mut(),
    }
}

/// Queues a job whose data stays owned by the caller (libvirt's
/// `virThreadPoolSendJob`): the same as `nde_pool_send_job_full` with a
/// NULL `free_fn`.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_send_job(
    pool: *mut nde_pool,
    priority: c_uint,
    jobdata: *mut c_void,
) -> c_int {
    // SAFETY: the same arguments, under the same contract.
    unsafe { nde_pool_send_job_full(pool, priority, jobdata, None) }
}

/// Queues a job. From this call on, `jobdata` belongs to the pool: `free_fn`
/// (NULL allowed) runs exactly once, on the worker right after `func`
/// returned, or when the job is discarded by drain/free, or before this call
/// returns when it fails.
///
/// `priority != 0` lets priority workers take the job too; ordinary workers
/// take jobs in FIFO order whatever their priority.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL pool), `NDE_ERR_STOPPED` (after
/// stop/drain) or `NDE_ERR_THREAD` (no worker exists and none could start).
/// Safe from any thread, including from inside a job.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_send_job_full(
    pool: *mut nde_pool,
    priority: c_uint,
    jobdata: *mut c_void,
    free_fn: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `jobdata` over with `free_fn` (the header's contract).
    let job = unsafe { OwnedData::new(jobdata, free_fn) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        let Some(pool) = pool_ref(pool) else {
            return nde_result::NDE_ERR_INVALID.code(); // `job` drops: data freed
        };
        match pool.send(priority, job) {
            Ok(()) => nde_result::NDE_OK.code(),
            Err((err, job)) => {
                drop(job);
                err.code()
            }
        }
    })
}

/// Stops the pool without blocking: later sends fail with
/// `NDE_ERR_STOPPED`, each worker exits after its current job, and queued
/// jobs stay queued until `nde_pool_drain` or `nde_pool_free`. Idempotent;
/// NULL does nothing.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_stop(pool: *mut nde_pool) {
    ffi_guard!((), {
        if let Some(pool) = pool_ref(pool) {
            pool.stop();
        }
    })
}

/// Stops the pool, joins every worker and discards the queued jobs (their
/// `free_fn` runs). Afterwards the queue depth is 0, the stats keep their
/// totals and the pool stays stopped. Calling it again is harmless.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL) or `NDE_ERR_WOULD_DEADLOCK`
/// when called from one of the pool's own workers (nothing changes then).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_drain(pool: *mut nde_pool) -> c_int {
    ffi_status!(pool_ref(pool), |p| p.drain())
}

/// Waits until the queue is empty and every accepted job's `func` and
/// `free_fn` have returned (the stats count it completed by then).
/// `timeout_ms < 0` waits for ever.
///
/// Returns `NDE_OK`, `NDE_ERR_TIMEOUT`, `NDE_ERR_STOPPED` (stopped with jobs
/// still queued: they will not run), `NDE_ERR_INVALID` (NULL) or
/// `NDE_ERR_WOULD_DEADLOCK` from one of the pool's own workers.
/// libvirt has no such call.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_wait_idle(pool: *mut nde_pool, timeout_ms: c_int) -> c_int {
    ffi_status!(pool_ref(pool), |p| p.wait_idle(from_c_ms(timeout_ms)))
}

/// Drains the pool (see `nde_pool_drain`) and releases it. NULL does nothing.
///
/// From inside one of the pool's own jobs it cannot join its own thread:
/// the pool is stopped at once and released when the running jobs return
/// (queued jobs are then discarded, their `free_fn` runs). Either way the
/// pointer must not be used after this call.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_free(pool: *mut nde_pool) {
    ffi_guard!((), {
        if !pool.is_null() {
            // SAFETY: `pool` came from nde_pool_new_full and is freed once.
            drop(unsafe { Box::from_raw(pool as *mut CPool) });
        }
    })
}

/// The configured minimum number of ordinary workers (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_min_workers(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, { pool_ref(pool).map_or(0, |p| p.limits().min_workers) })
}

/// The configured maximum number of ordinary workers (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_max_workers(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, { pool_ref(pool).map_or(0, |p| p.limits().max_workers) })
}

/// The number of priority workers running now (libvirt's meaning; the
/// configured number is what was passed in). 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_priority_workers(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, {
        pool_ref(pool).map_or(0, |p| p.current_prio_workers())
    })
}

/// The number of ordinary workers running now (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_current_workers(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, { pool_ref(pool).map_or(0, |p| p.current_workers()) })
}

/// The number of ordinary workers not running a job (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_free_workers(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, { pool_ref(pool).map_or(0, |p| p.free_workers()) })
}

/// The number of jobs queued and not yet started (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_job_queue_depth(pool: *mut nde_pool) -> usize {
    ffi_guard!(0, { pool_ref(pool).map_or(0, |p| p.queue_depth()) })
}

/// libvirt's `virThreadPoolSetParameters`: a negative value keeps the
/// current setting. Growing `min_workers` or `prio_workers` starts threads
/// now; shrinking takes effect as workers finish their current job.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL, `max == 0` or `min > max`
/// after applying the kept values; nothing changes), `NDE_ERR_STOPPED`
/// (after stop) or `NDE_ERR_THREAD` (the new limits are kept, with fewer
/// threads running than asked for).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_set_parameters(
    pool: *mut nde_pool,
    min_workers: c_longlong,
    max_workers: c_longlong,
    prio_workers: c_longlong,
) -> c_int {
    ffi_status!(pool_ref(pool), |p| p.set_parameters(min_workers, max_workers, prio_workers))
}

/// Copies the pool's counters into `*out`, which is written only on
/// success. Returns `NDE_OK` or `NDE_ERR_INVALID` (a NULL argument).
/// Safe from any thread, including from inside a job.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_stats(pool: *mut nde_pool, out: *mut nde_pool_stats) -> c_int {
    // SAFETY: `out` is NULL or writable (caller's contract).
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), { unsafe { write_out(out, pool_ref(pool).map(CPool::stats)) } })
}

/// A worker hook: `worker_start` / `worker_stop` of `nde_pool_config`.
/// Called on the worker thread itself with the config's `hook_userdata`;
/// `priority_worker` is 1 on a priority worker, 0 on an ordinary one.
#[allow(non_camel_case_types)]
pub type nde_worker_hook_fn = Option<unsafe extern "C" fn(userdata: *mut c_void, priority_worker: c_int)>;

/// Everything `nde_pool_new_config` needs. Set `size` to
/// `sizeof(nde_pool_config)`: fields are only ever appended, and the library
/// reads only the first `size` bytes (the fields up to `opaque` are
/// required; later ones a shorter struct lacks count as NULL).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct nde_pool_config {
    /// `sizeof(nde_pool_config)` as the caller's header defines it.
    pub size: u32,
    /// As for `nde_pool_new_full`.
    pub min_workers: usize,
    /// As for `nde_pool_new_full`.
    pub max_workers: usize,
    /// As for `nde_pool_new_full`.
    pub prio_workers: usize,
    /// As for `nde_pool_new_full` (required).
    pub func: nde_job_fn,
    /// As for `nde_pool_new_full` (NULL allowed, copied).
    pub name: *const c_char,
    /// As for `nde_pool_new_full`.
    pub opaque: *mut c_void,
    /// Runs on each new worker thread (ordinary or priority, started at
    /// creation, by growth or by `nde_pool_set_parameters`) before its first
    /// job. NULL: none.
    pub worker_start: nde_worker_hook_fn,
    /// Runs on each worker thread right before it exits (stop, drain, free,
    /// or a shrink by `nde_pool_set_parameters`), after its last job. NULL:
    /// none.
    pub worker_stop: nde_worker_hook_fn,
    /// Passed to both hooks; owned by the pool from the call on.
    pub hook_userdata: *mut c_void,
    /// Releases `hook_userdata` (NULL allowed): runs exactly once, after
    /// every worker has run `worker_stop` and exited, when the pool is
    /// released (`nde_pool_free`); or before `nde_pool_new_config` returns
    /// NULL.
    pub hook_userdata_free: nde_free_fn,
}

/// `hook_userdata` with its free function, shared by the two hooks.
struct HookUserdata(OwnedData);
// SAFETY: the pointer is only handed to the caller's hooks, which the header
// says run on the pool's worker threads; it is freed once, by the drop of
// the last hook.
unsafe impl Sync for HookUserdata {}

/// The part of `*config` its caller provided (its first `size` bytes);
/// fields beyond are zero (NULL). None for NULL or a `size` too small.
///
/// # Safety
/// `config` is NULL or points to at least `size` readable bytes, of which
/// `size` itself is the first 4.
unsafe fn read_config(config: *const nde_pool_config) -> Option<nde_pool_config> {
    if config.is_null() {
        return None;
    }
    let ours = std::mem::size_of::<nde_pool_config>();
    let required = std::mem::offset_of!(nde_pool_config, opaque) + std::mem::size_of::<*mut c_void>();
    // SAFETY: `size` is the struct's first field (caller's contract).
    let given = unsafe { std::ptr::addr_of!((*config).size).read_unaligned() } as usize;
    if given < required {
        return None;
    }
    let mut out = std::mem::MaybeUninit::<nde_pool_config>::zeroed();
    // SAFETY: the caller's struct has `given` readable bytes, of which we
    // copy at most our size; every field of ours is valid when zero (NULL,
    // None, 0).
    unsafe {
        std::ptr::copy_nonoverlapping(config as *const u8, out.as_mut_ptr() as *mut u8, given.min(ours));
        Some(out.assume_init())
    }
}

/// Creates a pool as `nde_pool_new_full` does, with per-worker hooks (what
/// a host needs to make each worker one of its own threads: name it,
/// set its identity, register it with its thread tracking).
///
/// `worker_start(hook_userdata, priority_worker)` runs on every worker
/// thread before its first job, `worker_stop(hook_userdata,
/// priority_worker)` on it after its last job, right before it exits; both
/// run outside the pool's locks and may call any `nde_pool_*` function
/// except the joining ones (drain, wait_idle, free), which return
/// `NDE_ERR_WOULD_DEADLOCK` there as they do in a job. `hook_userdata`
/// belongs to the pool from this call on: `hook_userdata_free` runs once,
/// after the last `worker_stop` returned, when the pool is released, or
/// before this call returns NULL.
///
/// Returns NULL when `config` is NULL, `config->size` is smaller than the
/// fields up to `opaque` (nothing beyond `size` is read then, so
/// `hook_userdata_free` does not run), `func` is NULL, `max_workers` is 0, or a thread
/// cannot be created (every worker that started has run both hooks and
/// exited then).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_new_config(config: *const nde_pool_config) -> *mut nde_pool {
    ffi_guard!(ptr::null_mut(), {
        // SAFETY: `config` is NULL or a struct of `config->size` bytes
        // (caller's contract).
        let Some(config) = (unsafe { read_config(config) }) else {
            return ptr::null_mut();
        };
        // SAFETY: the config hands `hook_userdata` over with its free function.
        let userdata = Arc::new(HookUserdata(unsafe { OwnedData::new(config.hook_userdata, config.hook_userdata_free) }));
        // Both hooks hold the userdata (even a NULL hook, so that it lives
        // as long as the pool): it is freed with the last of them.
        let hook = |f: nde_worker_hook_fn| -> Option<WorkerHook> {
            let userdata = Arc::clone(&userdata);
            Some(Box::new(move |priority: bool| {
                if let Some(f) = f {
                    // SAFETY: the caller's hook with the caller's userdata.
                    unsafe { f(userdata.0.ptr, priority as c_int) }
                }
            }))
        };
        let hooks = WorkerHooks { on_start: hook(config.worker_start), on_stop: hook(config.worker_stop) };
        drop(userdata);
        new_pool(
            PoolLimits {
                min_workers: config.min_workers,
                max_workers: config.max_workers,
                prio_workers: config.prio_workers,
            },
            config.func,
            config.name,
            config.opaque,
            hooks,
        )
    })
}

/// Queues a keyed job: ordered per key, parallel across keys.
///
/// - Jobs sent with the same non-zero `key` run one at a time, in the order
///   the sends were accepted: a job starts only after the previous job of
///   its key (its `func` and `free_fn`) has returned. Two sends of one key
///   from different threads are ordered by whichever call the pool accepted
///   first.
/// - Jobs with different keys, and unkeyed jobs, may run at the same time
///   on different workers (with one worker, everything runs in send order).
/// - A job whose key is busy waits outside the queue and holds no worker:
///   other keys' jobs never wait behind it (no head-of-line blocking).
/// - Among jobs that may start, workers take the oldest first, keyed or not.
/// - `key == 0` is `nde_pool_send_job_full`: no ordering at all.
/// - `priority != 0` also lets priority workers take the job once its key is
///   free; it never lets a job pass an earlier job of its key.
/// - A keyed job sent while a barrier is pending waits for that barrier
///   (see `nde_pool_send_barrier`).
///
/// Ownership is as for `nde_pool_send_job_full`: from this call on,
/// `jobdata` belongs to the pool and `free_fn` (NULL allowed) runs exactly
/// once: on the worker right after `func` returned, or when the job is
/// discarded by drain/free (even while it waits behind its key or a
/// barrier), or before this call returns when it fails.
///
/// Returns `NDE_OK`, `NDE_ERR_INVALID` (NULL pool), `NDE_ERR_STOPPED`
/// (after stop/drain) or `NDE_ERR_THREAD` (no worker exists and none could
/// start). Safe from any thread, including from inside a job (a job may
/// send the next job of its own key: it runs after the current one).
#[no_mangle]
pub unsafe extern "C" fn nde_pool_send_job_keyed(
    pool: *mut nde_pool,
    key: u64,
    priority: c_uint,
    jobdata: *mut c_void,
    free_fn: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `jobdata` over with `free_fn` (the header's contract).
    let job = unsafe { OwnedData::new(jobdata, free_fn) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        let Some(pool) = pool_ref(pool) else {
            return nde_result::NDE_ERR_INVALID.code(); // `job` drops: data freed
        };
        match pool.send_keyed(key, priority, job) {
            Ok(()) => nde_result::NDE_OK.code(),
            Err((err, job)) => {
                drop(job);
                err.code()
            }
        }
    })
}

/// Queues a barrier: `func(jobdata, opaque)` runs on an ordinary worker
/// after every job (keyed or not) and barrier whose send returned before
/// this call began has finished, and before any job or barrier whose send
/// began after this call returned starts; nothing else runs while it runs.
/// Jobs sent while it waits are held (they hold no worker) and enter the
/// pool in send order once it has returned. Sends that overlap this call in
/// time from other threads fall on one side or the other.
///
/// Use it for work that must see everything before it and nothing after it
/// (an initial enumeration, a configuration refresh, a resync).
///
/// Ownership, return values and threading are as for
/// `nde_pool_send_job_keyed`. A barrier sent from inside a job runs after
/// that job has returned; a job cannot wait for a barrier it sent.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_send_barrier(
    pool: *mut nde_pool,
    jobdata: *mut c_void,
    free_fn: nde_free_fn,
) -> c_int {
    // SAFETY: the caller hands `jobdata` over with `free_fn` (the header's contract).
    let job = unsafe { OwnedData::new(jobdata, free_fn) };
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), {
        let Some(pool) = pool_ref(pool) else {
            return nde_result::NDE_ERR_INVALID.code(); // `job` drops: data freed
        };
        match pool.send_barrier(job) {
            Ok(()) => nde_result::NDE_OK.code(),
            Err((err, job)) => {
                drop(job);
                err.code()
            }
        }
    })
}

/// Copies the pool's key and barrier counters into `*out`, which is written
/// only on success: how often jobs waited behind their key or a barrier,
/// the deepest backlog of one key, and how many keys have work now. Keyed
/// jobs and barriers are also counted in `nde_pool_stats` (submitted,
/// completed, discarded, rejected) like every job, and the queue depth
/// counts those waiting behind their key or a barrier.
/// Returns `NDE_OK` or `NDE_ERR_INVALID` (a NULL argument). Safe from any
/// thread, including from inside a job.
#[no_mangle]
pub unsafe extern "C" fn nde_pool_get_key_stats(pool: *mut nde_pool, out: *mut nde_pool_key_stats) -> c_int {
    // SAFETY: `out` is NULL or writable (caller's contract).
    ffi_guard!(nde_result::NDE_ERR_PANIC.code(), { unsafe { write_out(out, pool_ref(pool).map(CPool::key_stats)) } })
}
