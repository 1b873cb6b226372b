/**
 * @file nodedev_events_virt.h
 * nodedev-events: libvirt's virThreadPool API on top of nde_pool.
 *
 * A driver written against libvirt's src/util/virthreadpool.h switches to
 * nodedev-events by replacing
 *
 *     #include "virthreadpool.h"
 *
 * with
 *
 *     #include <nodedev_events_virt.h>
 *
 * and linking -lnodedev_events (pkg-config nodedev-events). Every name,
 * argument list and return convention below is libvirt's (libvirt >= 6.x,
 * with the `identity` argument of virThreadPoolNewFull):
 *
 *  - virThreadPoolSendJob and virThreadPoolSetParameters return 0 or -1
 *    (never another negative value), so `if (f(...) < 0)` and
 *    `if (f(...) == -1)` checks both keep working;
 *  - virThreadPoolStop, virThreadPoolDrain and virThreadPoolFree return
 *    void; virThreadPoolNewFull returns NULL on failure;
 *  - virThreadPoolSendJob leaves jobdata with the caller, as in libvirt.
 *
 * The functions are `static inline`, so their addresses can be taken
 * (`g_clear_pointer(&pool, virThreadPoolFree)` works) and nothing but the
 * nde_pool_* symbols is needed from the library.
 *
 * What changes for the better, with no source change:
 *  - virThreadPoolDrain resets the queue depth (libvirt leaves it stale)
 *    and, called from one of the pool's own jobs, returns without doing
 *    anything instead of waiting for itself for ever;
 *  - virThreadPoolFree from inside a job releases the pool when the job
 *    returns instead of deadlocking;
 *  - the on-demand worker growth has no size_t wrap-around;
 *  - nothing aborts on allocation failure: NewFull returns NULL.
 *
 * What libvirt has and this header does not: error reporting through
 * virReportError (there is no thread-local error state; use the nde_pool_*
 * functions directly for a specific nde_result), and the identity (the
 * argument is accepted and ignored: workers run with the identity of
 * nobody, so a job that needs one sets it itself).
 *
 * Queued job data dropped by Drain/Free is not freed here either (libvirt
 * cannot free what it does not know how to free). To have it freed, call
 * nde_pool_send_job_full(pool, priority, jobdata, free_fn) instead of
 * virThreadPoolSendJob: virThreadPool is nde_pool, so both mix freely.
 */
#ifndef NODEDEV_EVENTS_VIRT_H
#define NODEDEV_EVENTS_VIRT_H

#include "nodedev_events.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The pool type: the same object as nde_pool, so nde_pool_* calls
 * (send_job_full, wait_idle, get_stats) take a virThreadPool * too. */
typedef nde_pool virThreadPool;

/* libvirt's job function: func(jobdata, opaque), the same type as nde_job_fn. */
typedef void (*virThreadPoolJobFunc)(void *jobdata, void *opaque);

/* libvirt's identity object (struct _virIdentity), only ever passed by
 * pointer and ignored here. The typedef is libvirt's own; it is skipped when
 * libvirt's viridentity.h came first (VIR_TYPE_IDENTITY) or when
 * NDE_VIRT_HAVE_VIR_IDENTITY is defined. (Repeating it is valid C11 and
 * C++; only C99 with -pedantic warns.) */
#if !defined(VIR_TYPE_IDENTITY) && !defined(NDE_VIRT_HAVE_VIR_IDENTITY)
#define NDE_VIRT_HAVE_VIR_IDENTITY 1
typedef struct _virIdentity virIdentity;
#endif

/*
 * libvirt's virThreadPoolNewFull. `min_workers > max_workers` is clamped,
 * `prio_workers` extra threads run only priority jobs, `name` (copied)
 * names the threads (15 bytes kept), `identity` is ignored, `opaque` is
 * passed to every job. NULL when `func` is NULL, `max_workers` is 0 or a
 * thread cannot be created.
 */
static inline virThreadPool *virThreadPoolNewFull(size_t min_workers,
                                                  size_t max_workers,
                                                  size_t prio_workers,
                                                  virThreadPoolJobFunc func,
                                                  const char *name,
                                                  struct _virIdentity *identity,
                                                  void *opaque)
{
    (void)identity;
    return nde_pool_new_full(min_workers, max_workers, prio_workers, func,
                             name, opaque);
}

/* The configured minimum number of ordinary workers. */
static inline size_t virThreadPoolGetMinWorkers(virThreadPool *pool)
{
    return nde_pool_get_min_workers(pool);
}

/* The configured maximum number of ordinary workers. */
static inline size_t virThreadPoolGetMaxWorkers(virThreadPool *pool)
{
    return nde_pool_get_max_workers(pool);
}

/* The number of priority workers running now (libvirt's meaning). */
static inline size_t virThreadPoolGetPriorityWorkers(virThreadPool *pool)
{
    return nde_pool_get_priority_workers(pool);
}

/* The number of ordinary workers running now. */
static inline size_t virThreadPoolGetCurrentWorkers(virThreadPool *pool)
{
    return nde_pool_get_current_workers(pool);
}

/* The number of ordinary workers waiting for a job. */
static inline size_t virThreadPoolGetFreeWorkers(virThreadPool *pool)
{
    return nde_pool_get_free_workers(pool);
}

/* The number of jobs queued and not yet started. */
static inline size_t virThreadPoolGetJobQueueDepth(virThreadPool *pool)
{
    return nde_pool_get_job_queue_depth(pool);
}

/* Stops, joins every worker, drops the queued jobs (their data stays the
 * caller's), then releases the pool. NULL does nothing. */
static inline void virThreadPoolFree(virThreadPool *pool)
{
    nde_pool_free(pool);
}

/*
 * Queues `jobdata` (which stays the caller's) for func(jobdata, opaque).
 * Returns 0, or -1 when the pool is NULL or stopped or no worker could be
 * started; nothing was queued then.
 */
static inline int virThreadPoolSendJob(virThreadPool *pool,
                                       unsigned int priority,
                                       void *jobdata)
{
    return nde_pool_send_job(pool, priority, jobdata) < 0 ? -1 : 0;
}

/*
 * A negative value keeps the current setting. Returns 0, or -1 when
 * `min > max` (after applying the kept values), when `max` would become 0,
 * after Stop, or when a thread could not start (the new limits are kept
 * then, as libvirt does).
 */
static inline int virThreadPoolSetParameters(virThreadPool *pool,
                                             long long min_workers,
                                             long long max_workers,
                                             long long prio_workers)
{
    return nde_pool_set_parameters(pool, min_workers, max_workers,
                                   prio_workers) < 0 ? -1 : 0;
}

/* Stops without blocking: later sends fail, workers exit after their
 * current job, queued jobs stay queued (and are dropped by Drain/Free). */
static inline void virThreadPoolStop(virThreadPool *pool)
{
    nde_pool_stop(pool);
}

/* Stop, join every worker, drop the queued jobs; the pool stays stopped.
 * From one of the pool's own jobs it does nothing (libvirt hangs). */
static inline void virThreadPoolDrain(virThreadPool *pool)
{
    (void)nde_pool_drain(pool);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NODEDEV_EVENTS_VIRT_H */
