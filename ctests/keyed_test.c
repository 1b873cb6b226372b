/*
 * Keyed jobs and barriers from C (nde_pool_send_job_keyed,
 * nde_pool_send_barrier): per-key order and barrier placement under a storm
 * of producers, several workers and random handler delays, checked as a
 * partial order (any run the API allows passes, any it forbids fails);
 * no head-of-line blocking; free callbacks exactly once on stop/drain/free
 * and on refused sends; bad input.
 */
#include "storm_order.h"

/* ---- the storm ------------------------------------------------------------ */

enum { PRODUCERS = 3, PER_PRODUCER = 400, KEYS_PER_PRODUCER = 4, JOBS = PRODUCERS * PER_PRODUCER };
enum kind { KEYED, UNKEYED, BARRIER };

static storm_span rec[JOBS];

typedef struct {
    int id;
    unsigned delay_us;
} storm_job;

static void storm_run(void *jobdata, void *opaque)
{
    storm_job *j = jobdata;
    CHECK(opaque == (void *)rec);
    rec[j->id].start = tick();
    if (j->delay_us) {
        struct timespec ts = {0, (long)j->delay_us * 1000L};
        nanosleep(&ts, NULL);
    } else {
        sched_yield();
    }
    rec[j->id].end = tick();
}

typedef struct {
    nde_pool *pool;
    int producer;
    uint64_t seed;
} producer_arg;

static void *produce(void *p)
{
    producer_arg *a = p;
    uint64_t s = a->seed;
    for (int i = 0; i < PER_PRODUCER; i++) {
        int id = a->producer * PER_PRODUCER + i;
        uint64_t r = xorshift(&s);
        storm_span *rc = &rec[id];
        rc->index = i;
        enum kind kind = r % 40 == 0 ? BARRIER : r % 40 < 6 ? UNKEYED : KEYED;
        rc->keyed = kind == KEYED;
        rc->barrier = kind == BARRIER;
        rc->key = (uint64_t)a->producer * KEYS_PER_PRODUCER + 1 + (r >> 8) % KEYS_PER_PRODUCER;
        storm_job *j = malloc(sizeof *j);
        CHECK(j != NULL);
        j->id = id;
        j->delay_us = (r >> 20) % 4 == 0 ? (unsigned)((r >> 24) % 30) : 0;
        rc->send_begin = tick();
        int rv = kind == KEYED ? nde_pool_send_job_keyed(a->pool, rc->key, 0, j, count_free)
               : kind == UNKEYED ? nde_pool_send_job_full(a->pool, 0, j, count_free)
                                     : nde_pool_send_barrier(a->pool, j, count_free);
        rc->send_end = tick();
        CHECK_EQ(rv, NDE_OK);
        if ((r >> 32) % 3 == 0) {
            /* Let keys go idle now and then. */
            struct timespec ts = {0, (long)((r >> 40) % 20) * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void storm(size_t workers, uint64_t seed)
{
    memset(rec, 0, sizeof rec);
    atomic_store(&freed, 0);
    nde_pool *pool = nde_pool_new_full(workers, workers, 0, storm_run, "keyed-storm", rec);
    CHECK(pool != NULL);
    pthread_t t[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        args[p] = (producer_arg){pool, p, seed * 7919 + (uint64_t)p * 104729 + 1};
        CHECK(pthread_create(&t[p], NULL, produce, &args[p]) == 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        CHECK(pthread_join(t[p], NULL) == 0);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&freed), JOBS);
    check_storm_order(rec, JOBS);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, JOBS);
    CHECK_EQ(st.completed, JOBS);
    nde_pool_key_stats ks;
    CHECK_EQ(nde_pool_get_key_stats(pool, &ks), NDE_OK);
    long keyed = 0, barriers = 0;
    for (int a = 0; a < JOBS; a++) {
        keyed += rec[a].keyed;
        barriers += rec[a].barrier;
    }
    CHECK_EQ(ks.keyed_submitted, keyed);
    CHECK_EQ(ks.barriers_submitted, barriers);
    CHECK_EQ(ks.active_keys, 0);
    CHECK(ks.active_keys_high_water <= PRODUCERS * KEYS_PER_PRODUCER);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 0);
    nde_pool_free(pool);
}

/* ---- a busy key holds no worker ------------------------------------------ */

static gate hol_gate;
static atomic_long hol_done;

static void hol_run(void *jobdata, void *opaque)
{
    (void)opaque;
    if (*(long *)jobdata == 0)
        gate_pass(&hol_gate);
    atomic_fetch_add(&hol_done, 1);
}

static void test_no_head_of_line_blocking(void)
{
    gate_init(&hol_gate);
    atomic_store(&freed, 0);
    atomic_store(&hol_done, 0);
    nde_pool *pool = nde_pool_new_full(2, 2, 0, hol_run, "keyed-hol", NULL);
    CHECK(pool != NULL);
    /* Key 1: job 0 blocks a worker, jobs 1-4 wait behind it. */
    for (long i = 0; i < 5; i++) {
        long *v = malloc(sizeof *v);
        *v = i;
        CHECK_EQ(nde_pool_send_job_keyed(pool, 1, 0, v, count_free), NDE_OK);
    }
    gate_wait_for(&hol_gate, 1);
    /* Other keys all run on the one worker left. */
    for (long i = 0; i < 40; i++) {
        long *v = malloc(sizeof *v);
        *v = 100 + i;
        CHECK_EQ(nde_pool_send_job_keyed(pool, 2 + (uint64_t)i % 4, 0, v, count_free), NDE_OK);
    }
    while (atomic_load(&hol_done) < 40)
        nap_ms(1);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 4);
    CHECK_EQ(nde_pool_wait_idle(pool, 10), NDE_ERR_TIMEOUT);
    gate_open(&hol_gate);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&hol_done), 45);
    CHECK_EQ(atomic_load(&freed), 45);
    nde_pool_key_stats ks;
    CHECK_EQ(nde_pool_get_key_stats(pool, &ks), NDE_OK);
    CHECK(ks.waited_behind_key >= 4);
    CHECK(ks.key_backlog_high_water >= 4);
    nde_pool_free(pool);
    gate_destroy(&hol_gate);
}

/* ---- free exactly once on stop / drain / free ------------------------------ */

static gate block_gate;

static void block_first(void *jobdata, void *opaque)
{
    (void)opaque;
    if (*(long *)jobdata == 0)
        gate_pass(&block_gate);
}

static long *boxed(long v)
{
    long *p = malloc(sizeof *p);
    CHECK(p != NULL);
    *p = v;
    return p;
}

/* Queues keyed backlogs, a pending barrier and jobs held behind it, with
 * the first job blocked; returns the pool, stopped. */
static nde_pool *queue_everything(long *sent)
{
    gate_init(&block_gate);
    atomic_store(&freed, 0);
    nde_pool *pool = nde_pool_new_full(2, 2, 0, block_first, "keyed-stop", NULL);
    CHECK(pool != NULL);
    *sent = 0;
    for (long i = 0; i < 10; i++, (*sent)++)
        CHECK_EQ(nde_pool_send_job_keyed(pool, 7, 0, boxed(i), count_free), NDE_OK);
    gate_wait_for(&block_gate, 1);
    CHECK_EQ(nde_pool_send_barrier(pool, boxed(50), count_free), NDE_OK);
    (*sent)++;
    for (long i = 0; i < 8; i++, *sent += 3) {
        CHECK_EQ(nde_pool_send_job_keyed(pool, 100 + (uint64_t)i, 1, boxed(100 + i), count_free), NDE_OK);
        CHECK_EQ(nde_pool_send_job_full(pool, 0, boxed(200 + i), count_free), NDE_OK);
        CHECK_EQ(nde_pool_send_barrier(pool, boxed(300 + i), count_free), NDE_OK);
    }
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), (size_t)*sent - 1);
    nde_pool_stop(pool);
    CHECK_EQ(nde_pool_send_job_keyed(pool, 7, 0, boxed(-1), count_free), NDE_ERR_STOPPED);
    CHECK_EQ(nde_pool_send_barrier(pool, boxed(-2), count_free), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&freed), 2); /* refused sends free before returning */
    gate_open(&block_gate);
    return pool;
}

static void test_stop_drain_frees_once(void)
{
    long sent;
    nde_pool *pool = queue_everything(&sent);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_ERR_STOPPED);
    CHECK_EQ(nde_pool_drain(pool), NDE_OK);
    CHECK_EQ(atomic_load(&freed), sent + 2);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, sent);
    CHECK_EQ(st.rejected, 2);
    CHECK_EQ(st.completed + st.discarded, sent);
    CHECK_EQ(nde_pool_get_job_queue_depth(pool), 0);
    CHECK_EQ(nde_pool_drain(pool), NDE_OK);
    CHECK_EQ(atomic_load(&freed), sent + 2);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&freed), sent + 2);
    gate_destroy(&block_gate);
}

static void test_free_frees_once(void)
{
    long sent;
    nde_pool *pool = queue_everything(&sent);
    nde_pool_free(pool);
    CHECK_EQ(atomic_load(&freed), sent + 2);
    gate_destroy(&block_gate);
}

static void nothing(void *jobdata, void *opaque)
{
    (void)jobdata;
    (void)opaque;
}

static void test_bad_input(void)
{
    atomic_store(&freed, 0);
    CHECK_EQ(nde_pool_send_job_keyed(NULL, 1, 0, boxed(1), count_free), NDE_ERR_INVALID);
    CHECK_EQ(nde_pool_send_barrier(NULL, boxed(1), count_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&freed), 2);
    nde_pool_key_stats ks;
    CHECK_EQ(nde_pool_get_key_stats(NULL, &ks), NDE_ERR_INVALID);
    nde_pool *pool = nde_pool_new_full(1, 1, 0, nothing, "keyed-bad", NULL);
    CHECK(pool != NULL);
    CHECK_EQ(nde_pool_get_key_stats(pool, NULL), NDE_ERR_INVALID);
    /* Key 0 is an unkeyed send; NULL data and free function are allowed. */
    CHECK_EQ(nde_pool_send_job_keyed(pool, 0, 0, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_pool_send_barrier(pool, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(nde_pool_get_key_stats(pool, &ks), NDE_OK);
    CHECK_EQ(ks.keyed_submitted, 0);
    CHECK_EQ(ks.barriers_submitted, 1);
    nde_pool_free(pool);
}

int main(void)
{
    nde_test_begin();
    for (uint64_t seed = 1; seed <= 3; seed++)
        storm(1 + 2 * (seed - 1), seed); /* 1, 3 and 5 workers */
    storm(4, 11);
    test_no_head_of_line_blocking();
    test_stop_drain_frees_once();
    test_free_frees_once();
    test_bad_input();
    nde_test_end();
    printf("keyed_test: ok\n");
    return 0;
}
