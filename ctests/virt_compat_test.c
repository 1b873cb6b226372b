/*
 * libvirt-style code, compiled unchanged against include/nodedev_events_virt.h.
 *
 * The first half of this file is written the way libvirt writes it: the
 * libvirt worker-pool patch's nodeDeviceEvent submit/handler over a (1, 1, 0) pool, the
 * qemu driver's lazily started (0, 1, 0) pool with an identity, and the RPC
 * server's admin calls (getters, SetParameters). Only virThreadPool* names,
 * libvirt's return conventions (-1 on failure, void Drain), and a minimal
 * stand-in for the GLib helpers libvirt uses (g_new0, g_free,
 * g_clear_pointer, VIR_WARN). The second half checks what that code did.
 */
#include "nde_test.h" /* first: in dlopen mode it routes nde_* through dlsym */
#include "nodedev_events_virt.h"

/* ---- the GLib / libvirt helpers the code below relies on ---------------- */
#define g_new0(type, n) ((type *)calloc((n), sizeof(type)))
#define g_free free
#define g_clear_pointer(pp, destroy)                                  \
    do {                                                              \
        __typeof__(*(pp)) clear_tmp_ = *(pp);                         \
        *(pp) = NULL;                                                 \
        if (clear_tmp_)                                               \
            (destroy)(clear_tmp_);                                    \
    } while (0)
#define VIR_WARN(...) fprintf(stderr, __VA_ARGS__)
typedef void (*virFreeCallback)(void *);

/* ====================== libvirt-style code, unchanged ===================== */

typedef enum {
    NODE_DEVICE_EVENT_INIT = 0,
    NODE_DEVICE_EVENT_UDEV_ADD,
    NODE_DEVICE_EVENT_UDEV_REMOVE,
    NODE_DEVICE_EVENT_UDEV_CHANGE,
    NODE_DEVICE_EVENT_UDEV_MOVE,
    NODE_DEVICE_EVENT_MDEVCTL_CONFIG_CHANGED,

    NODE_DEVICE_EVENT_LAST
} nodeDeviceEventType;

struct _nodeDeviceEvent {
    nodeDeviceEventType eventType;
    void *data;
    virFreeCallback dataFreeFunc;
};
typedef struct _nodeDeviceEvent nodeDeviceEvent;

typedef struct {
    virThreadPool *workerPool; /* Immutable pointer, self-locking APIs */
} udevEventData;

typedef struct {
    udevEventData *privateData;
    long handled[NODE_DEVICE_EVENT_LAST];
    long lastSeq;
    long outOfOrder;
} virNodeDeviceDriverState;

static virNodeDeviceDriverState *driver;

static void
nodeDeviceEventFree(nodeDeviceEvent *event)
{
    if (!event)
        return;

    if (event->dataFreeFunc)
        event->dataFreeFunc(event->data);
    g_free(event);
}

static int
nodeDeviceEventSubmit(nodeDeviceEventType eventType, void *data,
                      virFreeCallback dataFreeFunc)
{
    nodeDeviceEvent *event = g_new0(nodeDeviceEvent, 1);
    udevEventData *priv = NULL;

    if (!driver) {
        /* (libvirt's patch leaks here; a port should not) */
        event->dataFreeFunc = dataFreeFunc;
        event->data = data;
        nodeDeviceEventFree(event);
        return -1;
    }

    priv = driver->privateData;

    event->eventType = eventType;
    event->data = data;
    event->dataFreeFunc = dataFreeFunc;
    if (virThreadPoolSendJob(priv->workerPool, 0, event) < 0) {
        nodeDeviceEventFree(event);
        return -1;
    }
    return 0;
}

static void
nodeDeviceEventHandler(void *data, void *opaque)
{
    virNodeDeviceDriverState *driver_state = opaque;
    nodeDeviceEvent *processEvent = data;

    switch (processEvent->eventType) {
    case NODE_DEVICE_EVENT_INIT:
    case NODE_DEVICE_EVENT_UDEV_ADD:
    case NODE_DEVICE_EVENT_UDEV_REMOVE:
    case NODE_DEVICE_EVENT_UDEV_CHANGE:
    case NODE_DEVICE_EVENT_UDEV_MOVE:
    {
        long seq = *(long *)processEvent->data;

        if (seq != driver_state->lastSeq + 1)
            driver_state->outOfOrder++;
        driver_state->lastSeq = seq;
    }
        break;
    case NODE_DEVICE_EVENT_MDEVCTL_CONFIG_CHANGED:
        break;
    case NODE_DEVICE_EVENT_LAST:
        abort();
        break;
    }
    driver_state->handled[processEvent->eventType]++;

    nodeDeviceEventFree(processEvent); /* g_autoptr in libvirt */
}

static int
nodeStateInitialize(void)
{
    driver = g_new0(virNodeDeviceDriverState, 1);
    driver->privateData = g_new0(udevEventData, 1);

    driver->privateData->workerPool = virThreadPoolNewFull(1, 1, 0, nodeDeviceEventHandler,
                                                           "nodev-device-event",
                                                           NULL,
                                                           driver);
    if (!driver->privateData->workerPool)
        return -1;
    return 0;
}

static int
nodeStateShutdownPrepare(void)
{
    udevEventData *priv = driver->privateData;

    if (priv->workerPool)
        virThreadPoolStop(priv->workerPool);
    return 0;
}

static int
nodeStateShutdownWait(void)
{
    udevEventData *priv = driver->privateData;

    if (priv->workerPool)
        virThreadPoolDrain(priv->workerPool);
    return 0;
}

static void
udevEventDataDispose(udevEventData *priv)
{
    g_clear_pointer(&priv->workerPool, virThreadPoolFree);
    g_free(priv);
}

/* qemu's shape: no worker until the first job, an identity to run jobs as. */
typedef struct { int placeholder; } qemuDriverIdentityStandIn;

static void
qemuProcessEventHandler(void *data, void *opaque)
{
    long *counter = opaque;

    (*counter) += *(long *)data;
}

static virThreadPool *
qemuStartWorkerPool(virIdentity *identity, long *counter)
{
    return virThreadPoolNewFull(0, 1, 0, qemuProcessEventHandler,
                                "qemu-event", identity, counter);
}

/* The RPC server's admin API: threadpool parameters. */
typedef struct {
    size_t minWorkers, maxWorkers, nWorkers, freeWorkers, prioWorkers, jobQueueDepth;
} virNetServerThreadPoolParams;

static void
virNetServerGetThreadPoolParameters(virThreadPool *workers,
                                    virNetServerThreadPoolParams *p)
{
    p->minWorkers = virThreadPoolGetMinWorkers(workers);
    p->maxWorkers = virThreadPoolGetMaxWorkers(workers);
    p->nWorkers = virThreadPoolGetCurrentWorkers(workers);
    p->freeWorkers = virThreadPoolGetFreeWorkers(workers);
    p->prioWorkers = virThreadPoolGetPriorityWorkers(workers);
    p->jobQueueDepth = virThreadPoolGetJobQueueDepth(workers);
}

static int
virNetServerSetThreadPoolParameters(virThreadPool *workers,
                                    long long minWorkers,
                                    long long maxWorkers,
                                    long long prioWorkers)
{
    return virThreadPoolSetParameters(workers, minWorkers,
                                      maxWorkers, prioWorkers);
}

/* ========================= end of libvirt-style code ====================== */

static atomic_long data_freed;

static void count_free(void *p)
{
    atomic_fetch_add(&data_freed, 1);
    free(p);
}

enum { EVENTS = 2000 };

static void test_libvirt_patch_driver(void)
{
    atomic_store(&data_freed, 0);
    CHECK_EQ(nodeStateInitialize(), 0);
    virThreadPool *pool = driver->privateData->workerPool;
    CHECK(pool != NULL);
    CHECK_EQ(virThreadPoolGetMinWorkers(pool), 1);
    CHECK_EQ(virThreadPoolGetMaxWorkers(pool), 1);
    CHECK_EQ(virThreadPoolGetCurrentWorkers(pool), 1);
    CHECK_EQ(virThreadPoolGetPriorityWorkers(pool), 0);

    for (long i = 1; i <= EVENTS; i++) {
        long *seq = malloc(sizeof *seq);
        CHECK(seq != NULL);
        *seq = i;
        CHECK_EQ(nodeDeviceEventSubmit((nodeDeviceEventType)(1 + i % 4), seq, count_free), 0);
    }
    CHECK_EQ(nodeDeviceEventSubmit(NODE_DEVICE_EVENT_MDEVCTL_CONFIG_CHANGED, NULL, NULL), 0);
    /* libvirt has no wait: mix in the nde call, the pool is the same object */
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(driver->outOfOrder, 0);
    CHECK_EQ(driver->lastSeq, EVENTS);
    CHECK_EQ(driver->handled[NODE_DEVICE_EVENT_MDEVCTL_CONFIG_CHANGED], 1);
    CHECK_EQ(atomic_load(&data_freed), EVENTS);

    CHECK_EQ(nodeStateShutdownPrepare(), 0);
    /* After Stop: SendJob is -1, exactly, and the event is freed by the
     * submit path. */
    long *late = malloc(sizeof *late);
    CHECK(late != NULL);
    *late = EVENTS + 1;
    CHECK_EQ(nodeDeviceEventSubmit(NODE_DEVICE_EVENT_UDEV_ADD, late, count_free), -1);
    CHECK_EQ(atomic_load(&data_freed), EVENTS + 1);
    CHECK_EQ(virThreadPoolSendJob(pool, 0, NULL), -1);
    CHECK_EQ(nodeStateShutdownWait(), 0);
    CHECK_EQ(nodeStateShutdownWait(), 0); /* twice is harmless */
    CHECK_EQ(virThreadPoolGetCurrentWorkers(pool), 0);
    CHECK_EQ(virThreadPoolGetJobQueueDepth(pool), 0);

    udevEventDataDispose(driver->privateData);
    g_free(driver);
    driver = NULL;

    /* libvirt's NULL-driver path: data freed, -1. */
    long *orphan = malloc(sizeof *orphan);
    CHECK(orphan != NULL);
    CHECK_EQ(nodeDeviceEventSubmit(NODE_DEVICE_EVENT_UDEV_ADD, orphan, count_free), -1);
    CHECK_EQ(atomic_load(&data_freed), EVENTS + 2);
}

static void test_qemu_lazy_pool(void)
{
    qemuDriverIdentityStandIn who = {42};
    long counter = 0;
    virThreadPool *pool = qemuStartWorkerPool((virIdentity *)(void *)&who, &counter);
    CHECK(pool != NULL);
    CHECK_EQ(virThreadPoolGetCurrentWorkers(pool), 0); /* nothing until a job */
    static long ones[100];
    for (int i = 0; i < 100; i++) {
        ones[i] = 1;
        CHECK(virThreadPoolSendJob(pool, 0, &ones[i]) == 0);
    }
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(virThreadPoolGetCurrentWorkers(pool), 1);
    CHECK_EQ(counter, 100);
    virThreadPoolFree(pool);
    virThreadPoolFree(NULL);
}

/* A job that blocks on a gate: queued jobs behind it stay queued. */
static gate drain_gate;
static atomic_int drained_ran;

static void gated_job(void *jobdata, void *opaque)
{
    (void)opaque;
    if (jobdata == NULL)
        gate_pass(&drain_gate);
    else
        atomic_fetch_add(&drained_ran, 1);
}

static void test_stop_and_drain(void)
{
    gate_init(&drain_gate);
    atomic_store(&drained_ran, 0);
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, gated_job, "drain", NULL, NULL);
    CHECK(pool != NULL);
    static int queued[50];
    CHECK_EQ(virThreadPoolSendJob(pool, 0, NULL), 0);
    gate_wait_for(&drain_gate, 1);
    for (int i = 0; i < 50; i++)
        CHECK_EQ(virThreadPoolSendJob(pool, 0, &queued[i]), 0);
    CHECK_EQ(virThreadPoolGetJobQueueDepth(pool), 50);

    virThreadPoolStop(pool);
    virThreadPoolStop(pool); /* idempotent */
    CHECK_EQ(virThreadPoolSendJob(pool, 0, &queued[0]), -1);
    CHECK_EQ(virThreadPoolSetParameters(pool, -1, 2, -1), -1);
    gate_open(&drain_gate);
    virThreadPoolDrain(pool);
    /* queued jobs were dropped, not run; libvirt's depth would stay at 50 */
    CHECK_EQ(atomic_load(&drained_ran), 0);
    CHECK_EQ(virThreadPoolGetJobQueueDepth(pool), 0);
    CHECK_EQ(virThreadPoolGetCurrentWorkers(pool), 0);
    virThreadPoolFree(pool);
    gate_destroy(&drain_gate);
}

/* Drain from one of the pool's own jobs: libvirt waits for itself for ever;
 * here it returns at once and changes nothing. */
static virThreadPool *self_pool;
static atomic_int self_jobs;

static void self_draining_job(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
    virThreadPoolDrain(self_pool);
    atomic_fetch_add(&self_jobs, 1);
}

static void test_drain_from_a_job(void)
{
    atomic_store(&self_jobs, 0);
    self_pool = virThreadPoolNewFull(1, 1, 0, self_draining_job, "self", NULL, NULL);
    CHECK(self_pool != NULL);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(virThreadPoolSendJob(self_pool, 0, NULL), 0);
    CHECK_EQ(nde_pool_wait_idle(self_pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&self_jobs), 3); /* the pool kept running */
    virThreadPoolFree(self_pool);
    self_pool = NULL;
}

static char thread_name[32];
static void name_job(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
    CHECK_EQ(pthread_getname_np(pthread_self(), thread_name, sizeof thread_name), 0);
}

static void test_new_full_rules(void)
{
    /* NULL func and max 0 give NULL (libvirt aborts or asserts) */
    CHECK(virThreadPoolNewFull(1, 1, 0, NULL, "x", NULL, NULL) == NULL);
    CHECK(virThreadPoolNewFull(0, 0, 0, name_job, "x", NULL, NULL) == NULL);
    /* min > max is clamped, as libvirt does */
    virThreadPool *pool = virThreadPoolNewFull(5, 2, 0, name_job, "nodev-device-event", NULL, NULL);
    CHECK(pool != NULL);
    CHECK_EQ(virThreadPoolGetMinWorkers(pool), 2);
    CHECK_EQ(virThreadPoolGetMaxWorkers(pool), 2);
    CHECK_EQ(virThreadPoolSendJob(pool, 0, NULL), 0);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK(strcmp(thread_name, "nodev-device-ev") == 0); /* 15 bytes, like libvirt */
    virThreadPoolFree(pool);
}

static void nothing_job(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
}

static void test_admin_parameters(void)
{
    virThreadPool *pool = virThreadPoolNewFull(1, 2, 0, nothing_job, "rpc-test", NULL, NULL);
    CHECK(pool != NULL);
    virNetServerThreadPoolParams p;
    virNetServerGetThreadPoolParameters(pool, &p);
    CHECK_EQ(p.minWorkers, 1);
    CHECK_EQ(p.maxWorkers, 2);
    CHECK_EQ(p.nWorkers, 1);
    CHECK_EQ(p.prioWorkers, 0);
    CHECK_EQ(p.jobQueueDepth, 0);

    /* libvirt's error rules, -1 exactly, nothing changed */
    CHECK_EQ(virNetServerSetThreadPoolParameters(pool, 3, -1, -1), -1); /* min > max */
    CHECK_EQ(virNetServerSetThreadPoolParameters(pool, 5, 4, -1), -1);
    CHECK_EQ(virNetServerSetThreadPoolParameters(pool, 0, 0, -1), -1); /* max 0 */
    CHECK_EQ(virThreadPoolGetMinWorkers(pool), 1);
    CHECK_EQ(virThreadPoolGetMaxWorkers(pool), 2);

    /* growing: min workers and priority workers start now */
    CHECK_EQ(virNetServerSetThreadPoolParameters(pool, 3, 4, 2), 0);
    virNetServerGetThreadPoolParameters(pool, &p);
    CHECK_EQ(p.minWorkers, 3);
    CHECK_EQ(p.maxWorkers, 4);
    CHECK_EQ(p.nWorkers, 3);
    CHECK_EQ(p.prioWorkers, 2);
    /* negative keeps */
    CHECK_EQ(virNetServerSetThreadPoolParameters(pool, -1, -1, -1), 0);
    CHECK_EQ(virThreadPoolGetMaxWorkers(pool), 4);

    /* free workers settle at the number of running ordinary workers */
    for (int i = 0; i < 200 && virThreadPoolGetFreeWorkers(pool) != 3; i++)
        nap_ms(5);
    CHECK_EQ(virThreadPoolGetFreeWorkers(pool), 3);

    /* the address can be taken: libvirt passes these as callbacks */
    int (*send)(virThreadPool *, unsigned int, void *) = virThreadPoolSendJob;
    void (*release)(virThreadPool *) = virThreadPoolFree;
    CHECK_EQ(send(pool, 1, NULL), 0);
    g_clear_pointer(&pool, release);
    CHECK(pool == NULL);

    /* NULL: -1 / 0, never a crash */
    CHECK_EQ(virThreadPoolSendJob(NULL, 0, NULL), -1);
    CHECK_EQ(virThreadPoolSetParameters(NULL, 1, 1, 0), -1);
    CHECK_EQ(virThreadPoolGetMaxWorkers(NULL), 0);
    virThreadPoolStop(NULL);
    virThreadPoolDrain(NULL);
}

int main(void)
{
    nde_test_begin();
    test_libvirt_patch_driver();
    test_qemu_lazy_pool();
    test_stop_and_drain();
    test_drain_from_a_job();
    test_new_full_rules();
    test_admin_parameters();
    nde_test_end();
    printf("virt_compat_test: ok\n");
    return 0;
}
