/*
 * The whole nde_pool contract, from C: order, producers, stop/drain/free
 * with queued jobs, free callbacks counted exactly, calls from inside jobs,
 * worker growth, priority workers, parameters and bad input.
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
    nde_test_end();
    printf("pool_test: ok\n");
    return 0;
}
