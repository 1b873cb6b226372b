/*
 * virthreadpool-nde.c: libvirt's virThreadPool served by nodedev-events
 *
 * This file replaces src/util/virthreadpool.c in the ported tree (see
 * libvirt/patches/0001-*.patch, which compiles it instead). virthreadpool.h
 * and every caller are unchanged: each function forwards to the library's
 * nde_pool_* call of the same meaning, and the library's per-worker start
 * hook does what libvirt's own workers do implicitly.
 *
 * This library is free software; you can redistribute it and/or
 * modify it under the terms of the GNU Lesser General Public
 * License as published by the Free Software Foundation; either
 * version 2.1 of the License, or (at your option) any later version.
 */

#include <config.h>

#include <nodedev_events.h>

#include "virthreadpool.h"
#include "virthreadjob.h"
#include "viridentity.h"
#include "virerror.h"
#include "virlog.h"

#define VIR_FROM_THIS VIR_FROM_NONE

VIR_LOG_INIT("util.threadpool.nde");

/* What every worker is given when it starts. The library owns it once the
 * pool exists and frees it after the last worker has exited, so the names
 * stay valid for as long as virThreadJobGet() can return them. */
typedef struct _virThreadPoolWorkerSetup virThreadPoolWorkerSetup;
struct _virThreadPoolWorkerSetup {
    char *name;             /* job name of an ordinary worker */
    char *prioName;         /* "prio-" + name, for priority workers */
    virIdentity *identity;  /* set on every worker; NULL: none */
};

struct _virThreadPool {
    char *name;
    /* NULL for a pool created with maxWorkers == 0: it never has a thread
     * (the RPC servers of virtlogd, virtlockd and the LXC controller handle
     * each message themselves and never send it a job). */
    nde_pool *pool;
};


static void
virThreadPoolWorkerSetupFree(void *opaque)
{
    virThreadPoolWorkerSetup *setup = opaque;

    if (setup->identity)
        g_object_unref(setup->identity);
    g_free(setup->name);
    g_free(setup->prioName);
    g_free(setup);
}


/* Runs on each new worker before its first job: a libvirt worker thread
 * (virThreadJobGet() names the worker between jobs) with the pool's
 * identity. The library has already named the thread. */
static void
virThreadPoolWorkerStart(void *opaque, int priorityWorker)
{
    virThreadPoolWorkerSetup *setup = opaque;

    virThreadJobSetWorker(priorityWorker ? setup->prioName : setup->name);
    if (setup->identity)
        ignore_value(virIdentitySetCurrent(setup->identity));
}


virThreadPool *
virThreadPoolNewFull(size_t minWorkers,
                     size_t maxWorkers,
                     size_t prioWorkers,
                     virThreadPoolJobFunc func,
                     const char *name,
                     virIdentity *identity,
                     void *opaque)
{
    g_autofree virThreadPool *pool = g_new0(virThreadPool, 1);
    virThreadPoolWorkerSetup *setup;
    nde_pool_config config = { 0 };

    pool->name = g_strdup(name);

    if (maxWorkers == 0) {
        if (prioWorkers > 0) {
            virReportError(VIR_ERR_INVALID_ARG,
                           _("thread pool '%s' without ordinary workers cannot have priority workers"),
                           NULLSTR(name));
            g_free(pool->name);
            return NULL;
        }
        return g_steal_pointer(&pool);
    }

    setup = g_new0(virThreadPoolWorkerSetup, 1);
    setup->name = g_strdup(name);
    setup->prioName = g_strdup_printf("prio-%s", NULLSTR(name));
    if (identity)
        setup->identity = g_object_ref(identity);

    config.size = sizeof(config);
    config.min_workers = minWorkers;
    config.max_workers = maxWorkers;
    config.prio_workers = prioWorkers;
    config.func = func;
    config.name = name;
    config.opaque = opaque;
    config.worker_start = virThreadPoolWorkerStart;
    config.hook_userdata = setup;
    config.hook_userdata_free = virThreadPoolWorkerSetupFree;

    /* On failure the library has freed 'setup' already. */
    if (!(pool->pool = nde_pool_new_config(&config))) {
        virReportError(VIR_ERR_INTERNAL_ERROR,
                       _("cannot start the workers of thread pool '%s'"),
                       NULLSTR(name));
        g_free(pool->name);
        return NULL;
    }

    return g_steal_pointer(&pool);
}


void
virThreadPoolFree(virThreadPool *pool)
{
    if (!pool)
        return;

    nde_pool_free(pool->pool);
    g_free(pool->name);
    g_free(pool);
}


size_t
virThreadPoolGetMinWorkers(virThreadPool *pool)
{
    return nde_pool_get_min_workers(pool->pool);
}


size_t
virThreadPoolGetMaxWorkers(virThreadPool *pool)
{
    return nde_pool_get_max_workers(pool->pool);
}


size_t
virThreadPoolGetPriorityWorkers(virThreadPool *pool)
{
    return nde_pool_get_priority_workers(pool->pool);
}


size_t
virThreadPoolGetCurrentWorkers(virThreadPool *pool)
{
    return nde_pool_get_current_workers(pool->pool);
}


size_t
virThreadPoolGetFreeWorkers(virThreadPool *pool)
{
    return nde_pool_get_free_workers(pool->pool);
}


size_t
virThreadPoolGetJobQueueDepth(virThreadPool *pool)
{
    return nde_pool_get_job_queue_depth(pool->pool);
}


int
virThreadPoolSendJob(virThreadPool *pool,
                     unsigned int priority,
                     void *jobData)
{
    int rc;

    if (!pool->pool) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("thread pool '%s' has no workers to run a job"),
                       NULLSTR(pool->name));
        return -1;
    }

    rc = nde_pool_send_job(pool->pool, priority, jobData);
    if (rc == NDE_ERR_STOPPED)
        return -1; /* shutting down: libvirt's callers expect no error here */
    if (rc != NDE_OK) {
        virReportError(VIR_ERR_INTERNAL_ERROR,
                       _("cannot start a worker of thread pool '%s'"),
                       NULLSTR(pool->name));
        return -1;
    }
    return 0;
}


int
virThreadPoolSetParameters(virThreadPool *pool,
                           long long int minWorkers,
                           long long int maxWorkers,
                           long long int prioWorkers)
{
    /* maxWorkers is 0 exactly when there is no library pool, and it can
     * never change between 0 and non-zero, so this is stable. */
    size_t curMax = virThreadPoolGetMaxWorkers(pool);
    size_t max = maxWorkers >= 0 ? maxWorkers : curMax;
    size_t min = minWorkers >= 0 ? minWorkers : virThreadPoolGetMinWorkers(pool);
    int rc;

    if (min > max) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("minimum workers (%zu) above maximum workers (%zu)"),
                       min, max);
        return -1;
    }

    if ((maxWorkers == 0) != (curMax == 0) && maxWorkers >= 0) {
        virReportError(VIR_ERR_INVALID_ARG, "%s",
                       _("a thread pool's maximum workers can change neither to nor from 0"));
        return -1;
    }

    if (!pool->pool) {
        if (prioWorkers > 0) {
            virReportError(VIR_ERR_INVALID_ARG,
                           _("thread pool '%s' without ordinary workers cannot have priority workers"),
                           NULLSTR(pool->name));
            return -1;
        }
        return 0;
    }

    rc = nde_pool_set_parameters(pool->pool, minWorkers, maxWorkers, prioWorkers);
    switch (rc) {
    case NDE_OK:
        return 0;
    case NDE_ERR_INVALID:
        /* a concurrent change made min > max after our check */
        virReportError(VIR_ERR_INVALID_ARG, "%s",
                       _("minimum workers above maximum workers"));
        return -1;
    case NDE_ERR_STOPPED:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("thread pool '%s' is stopped"), NULLSTR(pool->name));
        return -1;
    default:
        virReportError(VIR_ERR_INTERNAL_ERROR,
                       _("cannot start the workers of thread pool '%s' (the new limits are kept)"),
                       NULLSTR(pool->name));
        return -1;
    }
}


void
virThreadPoolStop(virThreadPool *pool)
{
    nde_pool_stop(pool->pool);
}


/* Stops the pool and joins its workers; queued jobs are dropped unrun (their
 * data stays the caller's, as with libvirt's own pool). */
void
virThreadPoolDrain(virThreadPool *pool)
{
    if (nde_pool_drain(pool->pool) == NDE_ERR_WOULD_DEADLOCK) {
        /* libvirt's own pool would wait for itself for ever here */
        nde_pool_stop(pool->pool);
        VIR_WARN("thread pool '%s' drained from its own worker: stopped, not joined",
                 NULLSTR(pool->name));
    }
}
