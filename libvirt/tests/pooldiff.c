/*
 * pooldiff.c: drives libvirt's virThreadPool (virthreadpool.h, exported by
 * libvirt.so.0 as LIBVIRT_PRIVATE_9.0.0) through a scripted sequence and
 * prints what it observes, one "key: value" line each. Built once against
 * each tree (stock, ported); libvirt/tests/check-1-pool-diff.sh compares
 * the two outputs, allowing only the differences listed in
 * libvirt/tests/pooldiff-differences.txt.
 *
 * Every printed value is deterministic for a correct pool: jobs block until
 * the script releases them, and counts are read once they have settled.
 */

#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "internal.h"
#include "virthreadpool.h"
#include "virthreadjob.h"
#include "viridentity.h"
#include "virerror.h"

#define WAIT_US (5 * G_USEC_PER_SEC)

typedef struct {
    int id;
    bool block;         /* wait in the job until released */
    bool release;
    bool started;
    bool done;
    int order;          /* position among started jobs of its pool */
    char thread[16];    /* pthread name */
    char job[64];       /* virThreadJobGet() when the job starts */
    char jobSet[64];    /* ... after virThreadJobSet("pooldiff-api") */
    char jobCleared[64];/* ... after virThreadJobClear() */
    char user[64];      /* user name of virIdentityGetCurrent(), or "none" */
} Job;

typedef struct {
    int started;
} Counter;

static GMutex lock;
static GCond changed;

static void
runJob(void *data, void *opaque)
{
    Job *job = data;
    Counter *counter = opaque;
    g_autoptr(virIdentity) ident = virIdentityGetCurrent();
    const char *user = NULL;

    pthread_getname_np(pthread_self(), job->thread, sizeof(job->thread));
    g_snprintf(job->job, sizeof(job->job), "%s", NULLSTR(virThreadJobGet()));
    virThreadJobSet("pooldiff-api");
    g_snprintf(job->jobSet, sizeof(job->jobSet), "%s", NULLSTR(virThreadJobGet()));
    virThreadJobClear(0);
    g_snprintf(job->jobCleared, sizeof(job->jobCleared), "%s", NULLSTR(virThreadJobGet()));
    if (ident && virIdentityGetUserName(ident, &user) > 0)
        g_snprintf(job->user, sizeof(job->user), "%s", user);
    else
        g_snprintf(job->user, sizeof(job->user), "none");

    g_mutex_lock(&lock);
    job->started = true;
    job->order = counter->started++;
    g_cond_broadcast(&changed);
    while (job->block && !job->release)
        g_cond_wait(&changed, &lock);
    job->done = true;
    g_cond_broadcast(&changed);
    g_mutex_unlock(&lock);
}

/* Waits until *flag is true; false after WAIT_US. */
static bool
waitFlag(bool *flag)
{
    gint64 deadline = g_get_monotonic_time() + WAIT_US;
    bool ok;

    g_mutex_lock(&lock);
    while (!*flag && g_cond_wait_until(&changed, &lock, deadline))
        ;
    ok = *flag;
    g_mutex_unlock(&lock);
    return ok;
}

static void
release(Job *job)
{
    g_mutex_lock(&lock);
    job->release = true;
    g_cond_broadcast(&changed);
    g_mutex_unlock(&lock);
}

/* Polls a getter until it returns want; returns the last value seen. */
static size_t
settle(size_t (*getter)(virThreadPool *), virThreadPool *pool, size_t want)
{
    gint64 deadline = g_get_monotonic_time() + WAIT_US;
    size_t v;

    while ((v = getter(pool)) != want && g_get_monotonic_time() < deadline)
        g_usleep(1000);
    return v;
}

static void
printGetters(const char *key, virThreadPool *pool)
{
    printf("%s.getters: min=%zu max=%zu prio=%zu current=%zu free=%zu depth=%zu\n",
           key, virThreadPoolGetMinWorkers(pool), virThreadPoolGetMaxWorkers(pool),
           virThreadPoolGetPriorityWorkers(pool), virThreadPoolGetCurrentWorkers(pool),
           virThreadPoolGetFreeWorkers(pool), virThreadPoolGetJobQueueDepth(pool));
}

static void
printJob(const char *key, Job *job)
{
    if (!waitFlag(&job->done)) {
        printf("%s: TIMEOUT (job never finished)\n", key);
        return;
    }
    printf("%s.thread: %s\n", key, job->thread);
    printf("%s.job: %s\n", key, job->job);
    printf("%s.job-set: %s\n", key, job->jobSet);
    printf("%s.job-cleared: %s\n", key, job->jobCleared);
    printf("%s.identity: %s\n", key, job->user);
}

static const char *
ranStr(Job *job)
{
    bool ran;

    g_mutex_lock(&lock);
    ran = job->started;
    g_mutex_unlock(&lock);
    return ran ? "yes" : "no";
}

static void
printSet(const char *key, virThreadPool *pool, long long min, long long max, long long prio)
{
    int rc;

    virResetLastError();
    rc = virThreadPoolSetParameters(pool, min, max, prio);
    printf("%s: rc=%d error=%d\n", key, rc, virGetLastErrorCode());
}

static void
printSend(const char *key, virThreadPool *pool, unsigned int prio, Job *job)
{
    int rc;

    virResetLastError();
    rc = virThreadPoolSendJob(pool, prio, job);
    printf("%s: rc=%d error=%d\n", key, rc, virGetLastErrorCode());
}

static void
mustSend(virThreadPool *pool, unsigned int prio, Job *job)
{
    if (virThreadPoolSendJob(pool, prio, job) < 0) {
        printf("FATAL: SendJob failed: %s\n", virGetLastErrorMessage());
        exit(1);
    }
}

/* Two ordinary workers, one priority worker, an identity: where each kind
 * of job runs and what the job sees there. */
static void
scriptWorkers(virIdentity *ident)
{
    Counter counter = { 0 };
    Job plain = { .id = 1 };
    Job b1 = { .block = true }, b2 = { .block = true };
    Job onPrio = { 0 }, queued = { 0 };
    Job b3 = { .block = true }, b4 = { .block = true }, bPrio = { .block = true };
    Job onOrdinary = { 0 };
    virThreadPool *pool;

    pool = virThreadPoolNewFull(2, 2, 1, runJob, "pooldiff-workers-pool", ident, &counter);
    if (!pool) {
        printf("FATAL: NewFull: %s\n", virGetLastErrorMessage());
        exit(1);
    }
    settle(virThreadPoolGetFreeWorkers, pool, 2);
    printGetters("workers.created", pool);

    mustSend(pool, 0, &plain);
    printJob("workers.ordinary-job", &plain);

    /* both ordinary workers busy: a priority job runs on the priority worker,
     * an ordinary one waits */
    mustSend(pool, 0, &b1);
    mustSend(pool, 0, &b2);
    waitFlag(&b1.started);
    waitFlag(&b2.started);
    mustSend(pool, 1, &onPrio);
    printJob("workers.priority-job-ordinary-busy", &onPrio);
    mustSend(pool, 0, &queued);
    g_usleep(50 * 1000);
    printf("workers.ordinary-job-while-busy.ran: %s\n", ranStr(&queued));
    printGetters("workers.busy", pool);
    release(&b1);
    release(&b2);
    printJob("workers.queued-ordinary-job", &queued);
    waitFlag(&b1.done);
    waitFlag(&b2.done);
    settle(virThreadPoolGetFreeWorkers, pool, 2);

    /* priority worker busy, one ordinary worker free: a priority job runs
     * on the ordinary worker */
    mustSend(pool, 0, &b3);
    mustSend(pool, 0, &b4);
    waitFlag(&b3.started);
    waitFlag(&b4.started);
    mustSend(pool, 1, &bPrio);
    waitFlag(&bPrio.started);
    printf("workers.blocking-priority-job.thread: %s\n", bPrio.thread);
    release(&b3);
    waitFlag(&b3.done);
    settle(virThreadPoolGetFreeWorkers, pool, 1);
    mustSend(pool, 1, &onOrdinary);
    printJob("workers.priority-job-prio-busy", &onOrdinary);
    release(&b4);
    release(&bPrio);
    waitFlag(&b4.done);
    waitFlag(&bPrio.done);

    settle(virThreadPoolGetFreeWorkers, pool, 2);
    printGetters("workers.idle", pool);
    virThreadPoolFree(pool);
    printf("workers.jobs-run: %d\n", counter.started);
}

/* (1, 1, 0) without identity: a serial FIFO executor. */
static void
scriptSerial(void)
{
    Counter counter = { 0 };
    g_autofree Job *jobs = g_new0(Job, 200);
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, runJob, "pooldiff-serial", NULL, &counter);
    bool fifo = true;
    size_t i;

    for (i = 0; i < 200; i++)
        mustSend(pool, i % 3 == 0, &jobs[i]);
    for (i = 0; i < 200; i++) {
        if (!waitFlag(&jobs[i].done) || jobs[i].order != (int) i)
            fifo = false;
    }
    printf("serial.fifo-200-jobs: %s\n", fifo ? "yes" : "no");
    printJob("serial.job", &jobs[0]);
    virThreadPoolFree(pool);
}

/* (0, 3, 0): a worker per blocked job up to max, then queueing; shrinking
 * and growing with SetParameters; its refusals. */
static void
scriptGrowShrink(void)
{
    Counter counter = { 0 };
    Job jobs[4] = { { .block = true }, { .block = true }, { .block = true }, { .block = true } };
    virThreadPool *pool = virThreadPoolNewFull(0, 3, 0, runJob, "pooldiff-grow", NULL, &counter);
    size_t i;

    printGetters("grow.created", pool);
    for (i = 0; i < 3; i++) {
        mustSend(pool, 0, &jobs[i]);
        waitFlag(&jobs[i].started);
        printf("grow.after-job-%zu.current: %zu\n", i + 1, virThreadPoolGetCurrentWorkers(pool));
    }
    mustSend(pool, 0, &jobs[3]);
    printGetters("grow.at-max", pool);
    for (i = 0; i < 4; i++)
        release(&jobs[i]);
    for (i = 0; i < 4; i++)
        waitFlag(&jobs[i].done);
    settle(virThreadPoolGetFreeWorkers, pool, 3);
    printGetters("grow.idle", pool);

    printSet("shrink.set(0,1,-1)", pool, 0, 1, -1);
    settle(virThreadPoolGetCurrentWorkers, pool, 1);
    settle(virThreadPoolGetFreeWorkers, pool, 1);
    printGetters("shrink.settled", pool);

    printSet("refuse.set(2,-1,-1)-min-above-max", pool, 2, -1, -1);
    printSet("refuse.set(-1,0,-1)-max-to-zero", pool, -1, 0, -1);
    printSet("refuse.set(5,4,-1)", pool, 5, 4, -1);
    printGetters("refuse.unchanged", pool);

    printSet("grow.set(3,4,-1)", pool, 3, 4, -1);
    settle(virThreadPoolGetCurrentWorkers, pool, 3);
    settle(virThreadPoolGetFreeWorkers, pool, 3);
    printGetters("grow.min-raised", pool);

    printSet("prio.set(-1,-1,2)", pool, -1, -1, 2);
    settle(virThreadPoolGetPriorityWorkers, pool, 2);
    printGetters("prio.raised", pool);
    printSet("prio.set(-1,-1,0)", pool, -1, -1, 0);
    settle(virThreadPoolGetPriorityWorkers, pool, 0);
    printGetters("prio.lowered", pool);
    virThreadPoolFree(pool);
}

/* Three blocking jobs sent back to back to (0, 3, 0). */
static void
scriptBurst(void)
{
    Counter counter = { 0 };
    Job jobs[3] = { { .block = true }, { .block = true }, { .block = true } };
    virThreadPool *pool = virThreadPoolNewFull(0, 3, 0, runJob, "pooldiff-burst", NULL, &counter);
    gint64 deadline = g_get_monotonic_time() + G_USEC_PER_SEC;
    int started;
    size_t i;

    for (i = 0; i < 3; i++)
        mustSend(pool, 0, &jobs[i]);
    g_mutex_lock(&lock);
    while (counter.started < 3 && g_cond_wait_until(&changed, &lock, deadline))
        ;
    started = counter.started;
    g_mutex_unlock(&lock);
    printf("burst.running-within-1s: %d\n", started);
    for (i = 0; i < 3; i++)
        release(&jobs[i]);
    for (i = 0; i < 3; i++)
        waitFlag(&jobs[i].done);
    virThreadPoolFree(pool);
}

/* Stop refuses new jobs and leaves queued ones unrun; Drain joins. */
static void
scriptStopDrain(void)
{
    Counter counter = { 0 };
    Job running = { .block = true }, q1 = { 0 }, q2 = { 0 }, late = { 0 };
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, runJob, "pooldiff-drain", NULL, &counter);

    mustSend(pool, 0, &running);
    waitFlag(&running.started);
    mustSend(pool, 0, &q1);
    mustSend(pool, 0, &q2);
    printGetters("stop.before", pool);
    virThreadPoolStop(pool);
    virThreadPoolStop(pool);
    printSend("stop.send-after-stop", pool, 0, &late);
    release(&running);
    virThreadPoolDrain(pool);
    printf("drain.running-job-finished: %s\n", running.done ? "yes" : "no");
    printf("drain.queued-jobs-ran: %s %s\n", ranStr(&q1), ranStr(&q2));
    printGetters("drain.after", pool);
    virThreadPoolDrain(pool);
    virThreadPoolFree(pool);
    printf("drain.jobs-run: %d\n", counter.started);
}

static void *
releaseLater(void *opaque)
{
    g_usleep(100 * 1000);
    release(opaque);
    return NULL;
}

/* Free waits for the running job. */
static void
scriptFree(void)
{
    Counter counter = { 0 };
    Job running = { .block = true };
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, runJob, "pooldiff-free", NULL, &counter);
    pthread_t releaser;

    mustSend(pool, 0, &running);
    waitFlag(&running.started);
    pthread_create(&releaser, NULL, releaseLater, &running);
    virThreadPoolFree(pool);
    printf("free.waited-for-running-job: %s\n", running.done ? "yes" : "no");
    pthread_join(releaser, NULL);
    virThreadPoolFree(NULL);
}

/* (0, 0, 0): the RPC servers that handle messages inline. */
static void
scriptEmpty(void)
{
    Counter counter = { 0 };
    Job job = { 0 };
    virThreadPool *pool = virThreadPoolNewFull(0, 0, 0, runJob, "pooldiff-empty", NULL, &counter);

    printf("empty.created: %s\n", pool ? "yes" : "no");
    printGetters("empty", pool);
    printSet("empty.set(-1,1,-1)-max-from-zero", pool, -1, 1, -1);
    printSet("empty.set(0,0,-1)", pool, 0, 0, -1);
    printSend("empty.send", pool, 0, &job);
    g_usleep(50 * 1000);
    printf("empty.job-ran: %s\n", ranStr(&job));
    virThreadPoolFree(pool);
}

int
main(void)
{
    virIdentity *ident;

    if (virInitialize() < 0) {
        fprintf(stderr, "virInitialize failed\n");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    ident = virIdentityNew();
    if (virIdentitySetUserName(ident, "pooldiff-user") < 0)
        return 1;
    printf("main.thread-job-before: %s\n", NULLSTR(virThreadJobGet()));

    scriptWorkers(ident);
    g_object_unref(ident);
    scriptSerial();
    scriptGrowShrink();
    scriptBurst();
    scriptStopDrain();
    scriptFree();
    scriptEmpty();
    printf("main.done: yes\n");
    return 0;
}
