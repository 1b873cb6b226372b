/*
 * The whole nde_pool contract, from C: order, producers, stop/drain/free
 * with queued jobs, free callbacks counted exactly, calls from inside jobs,
 * worker growth, priority workers, parameters, worker hooks and bad input.
 */
#include "nde_test.h"

static atomic_long ran, freed;

typedef struct {
    int producer;
    long seq;
} item;

static item *item_new(int producer, long seq)
{
    item *it = malloc(sizeof *it);
    CHECK(it != NULL);
    it->producer = producer;
    it->seq = seq;
    return it;
}

static void item_free(void *p)
{
    atomic_fetch_add(&freed, 1);
    free(p);
}

static void reset_counts(void)
{
    atomic_store(&ran, 0);
    atomic_store(&freed, 0);
}

/* ---- order with one worker ---- */
static long next_seq[8];

static void check_order(void *jobdata, void *opaque)
{
    item *it = jobdata;
    CHECK(opaque == (void *)next_seq);
    CHECK_EQ(it->seq, next_seq[it->producer]);
    next_seq[it->producer]++;
    atomic_fetch_add(&ran, 1);
}

static void test_fifo_order(void)
{
    enum { N = 100000 };
    reset_counts();
    memset(next_seq, 0, sizeof next_seq);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, check_order, "order", next_seq);
    CHECK(pool != NULL);
    for (long i = 0; i < N; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, (unsigned)(i % 3), item_new(0, i), item_free), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&ran), N);
    CHECK_EQ(atomic_load(&freed), N);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, N);
    CHECK_EQ(st.completed, N);
    CHECK_EQ(st.discarded, 0);
    CHECK_EQ(st.rejected, 0);
    CHECK(st.queue_high_water >= 1 && st.queue_high_water <= N);
    nde_pool_free(pool);
}

/* ---- four producers: per-producer order, nothing lost ---- */
typedef struct {
    nde_pool *pool;
    int id;
} producer_arg;

enum { PER_PRODUCER = 50000 };

static void *produce(void *p)
{
    producer_arg *a = p;
    for (long i = 0; i < PER_PRODUCER; i++)
        CHECK_EQ(nde_pool_send_job_full(a->pool, 0, item_new(a->id, i), item_free), NDE_OK);
    return NULL;
}

static void test_four_producers(void)
{
    reset_counts();
    memset(next_seq, 0, sizeof next_seq);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, check_order, "producers", next_seq);
    CHECK(pool != NULL);
    pthread_t t[4];
    producer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].pool = pool;
        args[i].id = i;
        CHECK(pthread_create(&t[i], NULL, produce, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&ran), 4 * PER_PRODUCER);
    CHECK_EQ(atomic_load(&freed), 4 * PER_PRODUCER);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(next_seq[i], PER_PRODUCER);
    nde_pool_free(pool);
}

/* ---- jobs that block on a gate ---- */
static gate the_gate;

static void blocking_job(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
    gate_pass(&the_gate);
    atomic_fetch_add(&ran, 1);
}

static void test_stop_drain_with_queued_jobs(void)
{
    reset_counts();
    gate_init(&the_gate);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, blocking_job, "drain", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, 0), item_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, i), item_free), NDE_OK);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 1000);

    nde_pool_stop(pool); /* must not block on the running job */
    nde_pool_stop(pool); /* idempotent */
    long before = atomic_load(&freed);
    CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, -1), item_free), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&freed), before + 1); /* freed before the call returned */
    CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_ERR_STOPPED);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 1000);

    gate_open(&the_gate);
    CHECK_EQ(nde_pool_drain(pool), NDE_OK);
    CHECK_EQ(atomic_load(&ran), 1);
    CHECK_EQ(atomic_load(&freed), 1 + 1000 + 1);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 0);
    CHECK_EQ(nde_pool_get_current_workers(pool), 0);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, 1001);
    CHECK_EQ(st.completed, 1);
    CHECK_EQ(st.discarded, 1000);
    CHECK_EQ(st.rejected, 2);
    CHECK_EQ(nde_pool_drain(pool), NDE_OK); /* again: harmless */
    CHECK_EQ(nde_pool_wait_idle(pool, 0), NDE_OK);
    CHECK_EQ(nde_pool_set_parameters(pool, 1, 2, 0), NDE_ERR_STOPPED);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&freed), 1002);
    gate_destroy(&the_gate);
}

static void *open_gate_later(void *p)
{
    nap_ms(20);
    gate_open(p);
    return NULL;
}

static void test_free_with_queued_jobs(void)
{
    reset_counts();
    gate_init(&the_gate);
    nde_pool *pool = nde_pool_new_full(2, 2, 0, blocking_job, "free", NULL);
    CHECK(pool != NULL);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, i), item_free), NDE_OK);
    gate_wait_for(&the_gate, 2);
    for (int i = 0; i < 500; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, i), item_free), NDE_OK);
    pthread_t opener;
    CHECK(pthread_create(&opener, NULL, open_gate_later, &the_gate) == 0);
    nde_pool_free(pool); /* joins the two running jobs, discards 500 */
    CHECK_EQ(atomic_load(&ran), 2);
    CHECK_EQ(atomic_load(&freed), 502);
    pthread_join(opener, NULL);
    gate_destroy(&the_gate);
}

/* ---- calls from inside a job ---- */
static nde_pool *self_pool;
static atomic_int self_checks;

static void self_calling_job(void *jobdata, void *opaque)
{
    (void)opaque;
    item *it = jobdata;
    if (it->seq == 0) {
        CHECK_EQ(nde_pool_drain(self_pool), NDE_ERR_WOULD_DEADLOCK);
        CHECK_EQ(nde_pool_wait_idle(self_pool, -1), NDE_ERR_WOULD_DEADLOCK);
        CHECK_EQ(nde_pool_get_current_workers(self_pool), 1);
        CHECK_EQ(nde_pool_get_free_workers(self_pool), 0);
        nde_pool_stats st;
        CHECK_EQ(nde_pool_get_stats(self_pool, &st), NDE_OK);
        CHECK_EQ(nde_pool_send_job_full(self_pool, 0, item_new(0, 1), item_free), NDE_OK);
        char name[16] = "";
        pthread_getname_np(pthread_self(), name, sizeof name);
        CHECK(strcmp(name, "self-calling-jo") == 0); /* cut to 15 bytes */
        atomic_fetch_add(&self_checks, 1);
    } else if (it->seq == 1) {
        atomic_fetch_add(&self_checks, 1);
    } else if (it->seq == 2) {
        gate_pass(&the_gate);
        nde_pool_free(self_pool); /* deferred: released when this job returns */
        atomic_fetch_add(&self_checks, 1);
    }
    atomic_fetch_add(&ran, 1);
}

static void test_calls_from_inside_a_job(void)
{
    reset_counts();
    atomic_store(&self_checks, 0);
    gate_init(&the_gate);
    self_pool = nde_pool_new_full(1, 1, 0, self_calling_job, "self-calling-job", NULL);
    CHECK(self_pool != NULL);
    CHECK_EQ(nde_pool_send_job_full(self_pool, 0, item_new(0, 0), item_free), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(self_pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&self_checks), 2);
    CHECK_EQ(atomic_load(&freed), 2);

    /* A job frees its own pool; 10 jobs queued behind it are discarded. */
    CHECK_EQ(nde_pool_send_job_full(self_pool, 0, item_new(0, 2), item_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(nde_pool_send_job_full(self_pool, 0, item_new(0, 100 + i), item_free), NDE_OK);
    gate_open(&the_gate);
    /* The pool is gone for us now; wait (without a time bound) for the
     * deferred release to free everything. */
    for (int i = 0; atomic_load(&freed) < 2 + 1 + 10; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
    CHECK_EQ(atomic_load(&self_checks), 3);
    CHECK_EQ(atomic_load(&ran), 3);
    nap_ms(20); /* let the detached worker finish exiting */
    gate_destroy(&the_gate);
}

/* ---- worker growth and the min > max clamp ---- */
static void test_worker_growth(void)
{
    reset_counts();
    gate_init(&the_gate);
    nde_pool *pool = nde_pool_new_full(0, 4, 0, blocking_job, "grow", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_get_current_workers(pool), 0);
    CHECK_EQ(nde_pool_get_min_workers(pool), 0);
    CHECK_EQ(nde_pool_get_max_workers(pool), 4);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK);
    gate_wait_for(&the_gate, 4);
    CHECK_EQ(nde_pool_get_current_workers(pool), 4);
    CHECK_EQ(nde_pool_get_free_workers(pool), 0);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 2);
    gate_open(&the_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&ran), 6);
    CHECK_EQ(nde_pool_get_free_workers(pool), 4);
    nde_pool_free(pool);
    gate_destroy(&the_gate);

    pool = nde_pool_new_full(5, 2, 0, blocking_job, "clamp", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_get_min_workers(pool), 2);
    CHECK_EQ(nde_pool_get_current_workers(pool), 2);
    nde_pool_free(pool);
}

/* ---- priority workers ---- */
static atomic_int prio_ran;
static char prio_thread_name[16];

static void prio_or_block_job(void *jobdata, void *opaque)
{
    (void)opaque;
    if (jobdata == (void *)1) {
        pthread_getname_np(pthread_self(), prio_thread_name, sizeof prio_thread_name);
        atomic_store(&prio_ran, 1);
    } else {
        gate_pass(&the_gate);
    }
}

static void test_priority_workers(void)
{
    gate_init(&the_gate);
    atomic_store(&prio_ran, 0);
    nde_pool *pool = nde_pool_new_full(1, 1, 1, prio_or_block_job, "pool-with-prio", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_get_priority_workers(pool), 1);
    CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK); /* blocks the ordinary worker */
    gate_wait_for(&the_gate, 1);
    CHECK_EQ(nde_pool_send_job(pool, 0, (void *)2), NDE_OK); /* ordinary: waits */
    CHECK_EQ(nde_pool_send_job(pool, 5, (void *)1), NDE_OK); /* priority: runs now */
    for (int i = 0; !atomic_load(&prio_ran); i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
    CHECK(strcmp(prio_thread_name, "prio-pool-with-") == 0);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 1);
    gate_open(&the_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    nde_pool_free(pool);
    gate_destroy(&the_gate);
}

/* ---- set_parameters ---- */
static void noop_job(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
}

static void test_set_parameters(void)
{
    nde_pool *pool = nde_pool_new_full(1, 1, 0, noop_job, NULL, NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_set_parameters(pool, -1, 4, -1), NDE_OK);
    CHECK_EQ(nde_pool_get_max_workers(pool), 4);
    CHECK_EQ(nde_pool_set_parameters(pool, 5, -1, -1), NDE_ERR_INVALID);
    CHECK_EQ(nde_pool_set_parameters(pool, -1, 0, -1), NDE_ERR_INVALID);
    CHECK_EQ(nde_pool_get_min_workers(pool), 1);
    CHECK_EQ(nde_pool_get_max_workers(pool), 4);
    CHECK_EQ(nde_pool_set_parameters(pool, 3, -1, -1), NDE_OK);
    CHECK_EQ(nde_pool_get_current_workers(pool), 3);
    CHECK_EQ(nde_pool_set_parameters(pool, -1, -1, 2), NDE_OK);
    CHECK_EQ(nde_pool_get_priority_workers(pool), 2);
    /* Shrinking: surplus workers exit as they finish. */
    CHECK_EQ(nde_pool_set_parameters(pool, 1, 1, 0), NDE_OK);
    for (int i = 0; nde_pool_get_current_workers(pool) != 1 || nde_pool_get_priority_workers(pool) != 0; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
    CHECK_EQ(nde_pool_set_parameters(NULL, 1, 1, 0), NDE_ERR_INVALID);
    nde_pool_stop(pool);
    CHECK_EQ(nde_pool_set_parameters(pool, 1, 1, 0), NDE_ERR_STOPPED);
    nde_pool_free(pool);
}

/* ---- wait_idle: timeout and stopped ---- */
static void test_wait_idle(void)
{
    reset_counts();
    gate_init(&the_gate);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, blocking_job, "idle", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_wait_idle(pool, 0), NDE_OK);
    CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK);
    gate_wait_for(&the_gate, 1);
    CHECK_EQ(nde_pool_wait_idle(pool, 10), NDE_ERR_TIMEOUT);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, i), item_free), NDE_OK);
    nde_pool_stop(pool);
    gate_open(&the_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&freed), 0); /* still queued */
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&freed), 3);
    gate_destroy(&the_gate);
}

/* ---- issue 12 item 7: the high-water mark covers every reported depth ---- */
static void test_high_water_covers_the_reported_depth(void)
{
    reset_counts();
    gate_init(&the_gate);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, blocking_job, "highwater", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, 0), item_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    /* The worker is blocked: these wait in the lock-free intake. */
    for (int i = 1; i <= 1000; i++)
        CHECK_EQ(nde_pool_send_job_full(pool, 0, item_new(0, i), item_free), NDE_OK);
    size_t depth = nde_pool_get_job_queue_depth(pool);
    CHECK_EQ(depth, 1000);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK(st.queue_high_water >= depth);
    gate_open(&the_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 0);
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK(st.queue_high_water >= 1000); /* a mark, not the current depth */
    CHECK(st.queue_high_water <= 1001);
    CHECK_EQ(atomic_load(&ran), 1001);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&freed), 1001);
    gate_destroy(&the_gate);
}

/* ---- issue 12 item 2: stop from inside a job of a lone worker's batch ---- */
static nde_pool *batch_pool;

static void stop_at_job_one(void *jobdata, void *opaque)
{
    (void)opaque;
    item *it = jobdata;
    if (it->seq == 0)
        gate_pass(&the_gate);
    if (it->seq == 1)
        nde_pool_stop(batch_pool);
    atomic_fetch_add(&ran, 1);
}

static void test_stop_inside_a_lone_workers_batch(void)
{
    reset_counts();
    gate_init(&the_gate);
    batch_pool = nde_pool_new_full(1, 1, 0, stop_at_job_one, "batchstop", NULL);
    CHECK(batch_pool != NULL);
    CHECK_EQ(nde_pool_send_job_full(batch_pool, 0, item_new(0, 0), item_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    for (int i = 1; i <= 10; i++)
        CHECK_EQ(nde_pool_send_job_full(batch_pool, 0, item_new(0, i), item_free), NDE_OK);
    gate_open(&the_gate);
    /* Job 1 stops the pool: jobs 2..10 stay queued for drain. */
    CHECK_EQ(nde_pool_wait_idle(batch_pool, -1), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&ran), 2);
    CHECK_EQ(nde_pool_get_job_queue_depth(batch_pool), 9);
    CHECK_EQ(nde_pool_drain(batch_pool), NDE_OK);
    CHECK_EQ(atomic_load(&freed), 11);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(batch_pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, 11);
    CHECK_EQ(st.completed, 2);
    CHECK_EQ(st.discarded, 9);
    nde_pool_free(batch_pool);
    gate_destroy(&the_gate);
}

/* ---- worker hooks (nde_pool_new_config) ---- */
typedef struct {
    atomic_int starts, stops, prio_starts, prio_stops, freed, unhooked_jobs;
} hook_counts;

/* 0: no hook ran on this thread; 1 / 2: started as ordinary / priority
 * worker; 3: stopped. */
static _Thread_local int hook_state;

static void hook_start(void *userdata, int priority_worker)
{
    hook_counts *c = userdata;
    CHECK_EQ(hook_state, 0);
    hook_state = priority_worker ? 2 : 1;
    atomic_fetch_add(priority_worker ? &c->prio_starts : &c->starts, 1);
}

static void hook_stop(void *userdata, int priority_worker)
{
    hook_counts *c = userdata;
    CHECK_EQ(hook_state, priority_worker ? 2 : 1);
    hook_state = 3;
    CHECK_EQ(atomic_load(&c->freed), 0);
    atomic_fetch_add(priority_worker ? &c->prio_stops : &c->stops, 1);
}

static void hook_free(void *userdata)
{
    hook_counts *c = userdata;
    /* After the last worker's stop hook. */
    CHECK_EQ(atomic_load(&c->starts), atomic_load(&c->stops));
    CHECK_EQ(atomic_load(&c->prio_starts), atomic_load(&c->prio_stops));
    atomic_fetch_add(&c->freed, 1);
}

static void hooked_job(void *jobdata, void *opaque)
{
    hook_counts *c = opaque;
    if (hook_state != 1 && hook_state != 2)
        atomic_fetch_add(&c->unhooked_jobs, 1);
    if (jobdata == (void *)1)
        gate_pass(&the_gate);
    atomic_fetch_add(&ran, 1);
}

static void wait_until_equal(atomic_int *v, int want)
{
    for (int i = 0; atomic_load(v) != want; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
}

static nde_pool_config hooked_config(hook_counts *c)
{
    nde_pool_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.min_workers = 1;
    cfg.max_workers = 3;
    cfg.prio_workers = 1;
    cfg.func = hooked_job;
    cfg.name = "hooked";
    cfg.opaque = c;
    cfg.worker_start = hook_start;
    cfg.worker_stop = hook_stop;
    cfg.hook_userdata = c;
    cfg.hook_userdata_free = hook_free;
    return cfg;
}

static void test_worker_hooks(void)
{
    static hook_counts c;
    memset(&c, 0, sizeof c);
    reset_counts();
    gate_init(&the_gate);
    nde_pool_config cfg = hooked_config(&c);
    nde_pool *pool = nde_pool_new_config(&cfg);
    CHECK(pool != NULL);
    wait_until_equal(&c.starts, 1);
    wait_until_equal(&c.prio_starts, 1);

    /* Growth: three blocked jobs need three ordinary workers. */
    for (int i = 0; i < 3; i++)
        CHECK_EQ(nde_pool_send_job(pool, 0, (void *)1), NDE_OK);
    gate_wait_for(&the_gate, 3);
    CHECK_EQ(nde_pool_get_current_workers(pool), 3);
    CHECK_EQ(atomic_load(&c.starts), 3);
    /* The priority worker runs a priority job meanwhile. */
    CHECK_EQ(nde_pool_send_job(pool, 1, NULL), NDE_OK);
    for (int i = 0; atomic_load(&ran) != 1; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
    gate_open(&the_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);

    /* set_parameters starts workers of both kinds ... */
    CHECK_EQ(nde_pool_set_parameters(pool, 4, 4, 2), NDE_OK);
    wait_until_equal(&c.starts, 4);
    wait_until_equal(&c.prio_starts, 2);
    /* ... and a shrink ends them, each running its stop hook. */
    CHECK_EQ(nde_pool_set_parameters(pool, 1, 1, 0), NDE_OK);
    wait_until_equal(&c.stops, 3);
    wait_until_equal(&c.prio_stops, 2);
    CHECK_EQ(atomic_load(&c.freed), 0);
    for (int i = 0; i < 100; i++)
        CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(nde_pool_drain(pool), NDE_OK);
    CHECK_EQ(atomic_load(&c.stops), 4);
    CHECK_EQ(atomic_load(&c.freed), 0); /* freed with the pool */
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&c.starts), 4);
    CHECK_EQ(atomic_load(&c.prio_starts), 2);
    CHECK_EQ(atomic_load(&c.prio_stops), 2);
    CHECK_EQ(atomic_load(&c.freed), 1);
    CHECK_EQ(atomic_load(&c.unhooked_jobs), 0);
    CHECK_EQ(atomic_load(&ran), 104);
    gate_destroy(&the_gate);

    /* NULL hooks: the userdata still lives as long as the pool. */
    memset(&c, 0, sizeof c);
    cfg = hooked_config(&c);
    cfg.worker_start = NULL;
    cfg.worker_stop = NULL;
    pool = nde_pool_new_config(&cfg);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&c.freed), 0);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&c.freed), 1);
    CHECK_EQ(atomic_load(&c.unhooked_jobs), 1); /* no start hook ran */

    /* Refused configs free the userdata once before returning NULL. */
    memset(&c, 0, sizeof c);
    cfg = hooked_config(&c);
    cfg.func = NULL;
    CHECK(nde_pool_new_config(&cfg) == NULL);
    CHECK_EQ(atomic_load(&c.freed), 1);
    cfg = hooked_config(&c);
    cfg.max_workers = 0;
    CHECK(nde_pool_new_config(&cfg) == NULL);
    CHECK_EQ(atomic_load(&c.freed), 2);
    CHECK(nde_pool_new_config(NULL) == NULL);
    /* Too short to reach the hook fields: nothing beyond size is read. */
    cfg = hooked_config(&c);
    cfg.size = 4;
    CHECK(nde_pool_new_config(&cfg) == NULL);
    CHECK_EQ(atomic_load(&c.freed), 2);
    /* A config of an older header, without the hook fields, works. */
    cfg = hooked_config(&c);
    cfg.size = (uint32_t)offsetof(nde_pool_config, worker_start);
    pool = nde_pool_new_config(&cfg);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_send_job(pool, 0, NULL), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&c.starts), 0);
    CHECK_EQ(atomic_load(&c.freed), 2);
}

/* ---- bad input ---- */
static void test_bad_input(void)
{
    reset_counts();
    CHECK(nde_pool_new_full(1, 1, 0, NULL, "x", NULL) == NULL);
    CHECK(nde_pool_new_full(0, 0, 0, noop_job, "x", NULL) == NULL);
    CHECK_EQ(nde_pool_send_job_full(NULL, 0, item_new(0, 0), item_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&freed), 1);
    CHECK_EQ(nde_pool_send_job(NULL, 0, NULL), NDE_ERR_INVALID);
    CHECK_EQ(nde_pool_drain(NULL), NDE_ERR_INVALID);
    CHECK_EQ(nde_pool_wait_idle(NULL, -1), NDE_ERR_INVALID);
    nde_pool_stop(NULL);
    nde_pool_free(NULL);
    CHECK_EQ(nde_pool_get_min_workers(NULL), 0);
    CHECK_EQ(nde_pool_get_max_workers(NULL), 0);
    CHECK_EQ(nde_pool_get_priority_workers(NULL), 0);
    CHECK_EQ(nde_pool_get_current_workers(NULL), 0);
    CHECK_EQ(nde_pool_get_free_workers(NULL), 0);
    CHECK_EQ(nde_pool_get_job_queue_depth(NULL), 0);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(NULL, &st), NDE_ERR_INVALID);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, noop_job, "x", NULL);
    CHECK_EQ(nde_pool_get_stats(pool, NULL), NDE_ERR_INVALID);
    nde_pool_free(pool);

    /* Every code has its own text; unknown codes still get one. */
    for (int a = NDE_ERR_PANIC; a <= NDE_OK; a++) {
        CHECK(nde_result_str(a) != NULL);
        for (int b = a + 1; b <= NDE_OK; b++)
            CHECK(strcmp(nde_result_str(a), nde_result_str(b)) != 0);
    }
    CHECK(nde_result_str(-12345) != NULL);
    CHECK(strcmp(nde_version(), NDE_VERSION_STRING) == 0);
}

int main(void)
{
    nde_test_begin();
    test_bad_input();
    test_fifo_order();
    test_four_producers();
    test_stop_drain_with_queued_jobs();
    test_free_with_queued_jobs();
    test_calls_from_inside_a_job();
    test_worker_growth();
    test_priority_workers();
    test_set_parameters();
    test_wait_idle();
    test_high_water_covers_the_reported_depth();
    test_stop_inside_a_lone_workers_batch();
    test_worker_hooks();
    nde_test_end();
    printf("pool_test: ok\n");
    return 0;
}
