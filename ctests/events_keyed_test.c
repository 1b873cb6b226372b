/*
 * The events layer with several workers (nde_events_new_full,
 * nde_events_submit_keyed): per-key order and barrier placement under a
 * storm of producers with random handler delays, checked as a partial order
 * (any run the header allows passes, any it forbids fails); one worker keeps
 * the total order; keys really run in parallel; deregister while a callback
 * runs on several workers at once, from another thread and from a callback;
 * every data_free exactly once, also when freed with a backlog; bad input.
 */
#include "storm_order.h"

#include <limits.h>

/* ---- the storm ------------------------------------------------------------ */

enum { PRODUCERS = 3, PER_PRODUCER = 300, KEYS_PER_PRODUCER = 4, EVENTS = PRODUCERS * PER_PRODUCER };

/* KEYED: submit_keyed with a UDEV type and a non-zero key. The rest are
 * barriers: UNKEYED (nde_events_submit), KEY0 (submit_keyed, key 0),
 * TYPE_BARRIER (submit_keyed, INIT or MDEVCTL_CONFIG_CHANGED, with a key). */
enum kind { KEYED, UNKEYED, KEY0, TYPE_BARRIER };

static storm_span rec[EVENTS];
static atomic_int calls_first[EVENTS], calls_second[EVENTS]; /* each callback once per event */

typedef struct {
    int id;
    unsigned delay_us;
} storm_event;

/* Registered first: the event starts. */
static void storm_first(void *userdata, nde_event_type type, void *data)
{
    (void)type;
    CHECK(userdata == (void *)rec);
    storm_event *e = data;
    rec[e->id].start = tick();
    atomic_fetch_add(&calls_first[e->id], 1);
    if (e->delay_us) {
        struct timespec ts = {0, (long)e->delay_us * 1000L};
        nanosleep(&ts, NULL);
    } else {
        sched_yield();
    }
}

/* Registered second: runs after the first, on the same worker; the event
 * ends. */
static void storm_second(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    storm_event *e = data;
    CHECK_EQ(atomic_load(&calls_first[e->id]), 1);
    atomic_fetch_add(&calls_second[e->id], 1);
    rec[e->id].end = tick();
}

typedef struct {
    nde_events *ev;
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
        unsigned k = (unsigned)(r % 60);
        enum kind kind = k == 0 ? UNKEYED : k == 1 ? KEY0 : k == 2 ? TYPE_BARRIER : KEYED;
        rc->keyed = kind == KEYED;
        rc->barrier = kind != KEYED;
        rc->key = (uint64_t)a->producer * KEYS_PER_PRODUCER + 1 + (r >> 8) % KEYS_PER_PRODUCER;
        storm_event *e = malloc(sizeof *e);
        CHECK(e != NULL);
        e->id = id;
        e->delay_us = (r >> 20) % 4 == 0 ? (unsigned)((r >> 24) % 40) : 0;
        int udev_type = NDE_EVENT_UDEV_ADD + (int)((r >> 16) % 4);
        rc->send_begin = tick();
        int rv;
        switch (kind) {
        case KEYED:
            rv = nde_events_submit_keyed(a->ev, udev_type, rc->key, e, count_free);
            break;
        case UNKEYED:
            rv = nde_events_submit(a->ev, udev_type, e, count_free);
            break;
        case KEY0:
            rv = nde_events_submit_keyed(a->ev, udev_type, 0, e, count_free);
            break;
        default:
            rv = nde_events_submit_keyed(a->ev, (r >> 12) % 2 ? NDE_EVENT_INIT : NDE_EVENT_MDEVCTL_CONFIG_CHANGED,
                                         rc->key, e, count_free);
            break;
        }
        rc->send_end = tick();
        CHECK_EQ(rv, NDE_OK);
        if ((r >> 32) % 3 == 0) {
            struct timespec ts = {0, (long)((r >> 40) % 20) * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Each callback ran once per event, and the order is what the header
 * promises. */
static void check_storm(void)
{
    for (int a = 0; a < EVENTS; a++) {
        CHECK_EQ(atomic_load(&calls_first[a]), 1);
        CHECK_EQ(atomic_load(&calls_second[a]), 1);
    }
    check_storm_order(rec, EVENTS);
}

static void storm(unsigned workers, uint64_t seed)
{
    memset(rec, 0, sizeof rec);
    for (int a = 0; a < EVENTS; a++) {
        atomic_store(&calls_first[a], 0);
        atomic_store(&calls_second[a], 0);
    }
    atomic_store(&freed, 0);
    nde_events *ev = nde_events_new_full("ev-storm", workers);
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, storm_first, rec, NULL) >= 0);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, storm_second, rec, NULL) >= 0);
    pthread_t t[PRODUCERS];
    producer_arg args[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        args[p] = (producer_arg){ev, p, seed * 7919 + (uint64_t)p * 104729 + 1};
        CHECK(pthread_create(&t[p], NULL, produce, &args[p]) == 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        CHECK(pthread_join(t[p], NULL) == 0);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&freed), EVENTS);
    check_storm();
    nde_pool_stats st;
    CHECK_EQ(nde_events_get_stats(ev, &st), NDE_OK);
    CHECK_EQ(st.submitted, EVENTS);
    CHECK_EQ(st.completed, EVENTS);
    nde_pool_key_stats ks;
    CHECK_EQ(nde_events_get_key_stats(ev, &ks), NDE_OK);
    long keyed = 0;
    for (int a = 0; a < EVENTS; a++)
        keyed += rec[a].keyed;
    if (workers > 1) {
        CHECK_EQ(ks.keyed_submitted, keyed);
        CHECK_EQ(ks.barriers_submitted, EVENTS - keyed);
    } else {
        CHECK_EQ(ks.keyed_submitted, 0);
        CHECK_EQ(ks.barriers_submitted, 0);
    }
    CHECK_EQ(ks.active_keys, 0);
    nde_events_free(ev);
}

/* ---- one worker: keys change nothing ------------------------------------- */

static int seen_order[64];
static atomic_int seen_count;

static void note_order(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    seen_order[atomic_fetch_add(&seen_count, 1)] = *(int *)data;
}

static int *boxed_int(int v)
{
    int *p = malloc(sizeof *p);
    CHECK(p != NULL);
    *p = v;
    return p;
}

static void test_one_worker_is_total_order(void)
{
    atomic_store(&seen_count, 0);
    atomic_store(&freed, 0);
    nde_events *ev = nde_events_new_full("ev-one", 1);
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, note_order, NULL, NULL) >= 0);
    for (int i = 0; i < 64; i++) {
        int rv = i % 5 == 0 ? nde_events_submit(ev, NDE_EVENT_UDEV_CHANGE, boxed_int(i), count_free)
                            : nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1 + (uint64_t)(i % 7), boxed_int(i),
                                                      count_free);
        CHECK_EQ(rv, NDE_OK);
    }
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&seen_count), 64);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(seen_order[i], i);
    CHECK_EQ(atomic_load(&freed), 64);
    nde_events_free(ev);
}

/* ---- keys run in parallel; a barrier waits for them ----------------------- */

static gate par_gate;
static atomic_int par_done, par_barrier_ran;

static void par_cb(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    if (type == NDE_EVENT_MDEVCTL_CONFIG_CHANGED) {
        CHECK_EQ(atomic_load(&par_done), 11); /* everything before it */
        atomic_store(&par_barrier_ran, 1);
        return;
    }
    if (*(int *)data == 0)
        gate_pass(&par_gate);
    atomic_fetch_add(&par_done, 1);
}

static void test_keys_in_parallel(void)
{
    gate_init(&par_gate);
    atomic_store(&par_done, 0);
    atomic_store(&par_barrier_ran, 0);
    atomic_store(&freed, 0);
    nde_events *ev = nde_events_new_full("ev-par", 2);
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, par_cb, NULL, NULL) >= 0);
    /* Key 1's first event holds a worker; key 2's events all run on the
     * other one meanwhile. */
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1, boxed_int(0), count_free), NDE_OK);
    gate_wait_for(&par_gate, 1);
    for (int i = 1; i <= 10; i++)
        CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_CHANGE, 2, boxed_int(i), count_free), NDE_OK);
    while (atomic_load(&par_done) < 10)
        nap_ms(1);
    /* A barrier waits for key 1. */
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, 10), NDE_ERR_TIMEOUT);
    CHECK_EQ(atomic_load(&par_barrier_ran), 0);
    gate_open(&par_gate);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&par_barrier_ran), 1);
    CHECK_EQ(atomic_load(&freed), 11);
    nde_events_free(ev);
    gate_destroy(&par_gate);
}

/* ---- deregister while the callback runs on two workers -------------------- */

static gate dr_gate;
static atomic_int dr_running, dr_calls, dr_freed, dr_freed_while_running, dr_returned, dr_late;

static void dr_cb(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
    atomic_fetch_add(&dr_running, 1);
    atomic_fetch_add(&dr_calls, 1);
    if (atomic_load(&dr_returned))
        atomic_store(&dr_late, 1);
    gate_pass(&dr_gate);
    atomic_fetch_sub(&dr_running, 1);
}

static void dr_free(void *userdata)
{
    (void)userdata;
    if (atomic_load(&dr_running) != 0)
        atomic_store(&dr_freed_while_running, 1);
    atomic_fetch_add(&dr_freed, 1);
}

typedef struct {
    nde_events *ev;
    int id;
    atomic_int done;
} dereg_arg;

static void *deregister_thread(void *p)
{
    dereg_arg *a = p;
    CHECK_EQ(nde_events_deregister(a->ev, a->id), NDE_OK);
    /* The promise: not running on any worker, userdata_free done. */
    CHECK_EQ(atomic_load(&dr_running), 0);
    CHECK_EQ(atomic_load(&dr_freed), 1);
    atomic_store(&dr_returned, 1);
    atomic_store(&a->done, 1);
    return NULL;
}

static void reset_dr(void)
{
    gate_init(&dr_gate);
    atomic_store(&dr_running, 0);
    atomic_store(&dr_calls, 0);
    atomic_store(&dr_freed, 0);
    atomic_store(&dr_freed_while_running, 0);
    atomic_store(&dr_returned, 0);
    atomic_store(&dr_late, 0);
}

static void test_deregister_from_another_thread(void)
{
    reset_dr();
    nde_events *ev = nde_events_new_full("ev-dereg", 3);
    CHECK(ev != NULL);
    int id = nde_events_register(ev, NDE_EVENT_ANY, dr_cb, NULL, dr_free);
    CHECK(id >= 0);
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 2, NULL, NULL), NDE_OK);
    gate_wait_for(&dr_gate, 2); /* the callback runs on two workers */
    CHECK_EQ(atomic_load(&dr_running), 2);
    dereg_arg a = {ev, id, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, deregister_thread, &a) == 0);
    nap_ms(20);
    CHECK_EQ(atomic_load(&a.done), 0); /* both calls are still running */
    CHECK_EQ(atomic_load(&dr_freed), 0);
    gate_open(&dr_gate);
    CHECK(pthread_join(t, NULL) == 0);
    /* Never called again. */
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 3, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&dr_calls), 2);
    CHECK_EQ(atomic_load(&dr_late), 0);
    CHECK_EQ(atomic_load(&dr_freed_while_running), 0);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&dr_freed), 1);
    gate_destroy(&dr_gate);
}

/* From a callback on another worker: returns at once (no wait, so two
 * callbacks removing each other cannot deadlock); the removed callback's
 * userdata_free runs once its running call returned. */
static nde_events *inner_ev;
static atomic_int inner_id, inner_rv, inner_done;

static void remover_cb(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
    atomic_store(&inner_rv, nde_events_deregister(inner_ev, atomic_load(&inner_id)));
    atomic_store(&inner_done, 1);
}

static void test_deregister_from_a_callback(void)
{
    reset_dr();
    atomic_store(&inner_done, 0);
    inner_ev = nde_events_new_full("ev-dereg2", 2);
    CHECK(inner_ev != NULL);
    int id = nde_events_register(inner_ev, NDE_EVENT_UDEV_ADD, dr_cb, NULL, dr_free);
    CHECK(id >= 0);
    atomic_store(&inner_id, id);
    CHECK(nde_events_register(inner_ev, NDE_EVENT_UDEV_REMOVE, remover_cb, NULL, NULL) >= 0);
    CHECK_EQ(nde_events_submit_keyed(inner_ev, NDE_EVENT_UDEV_ADD, 1, NULL, NULL), NDE_OK);
    gate_wait_for(&dr_gate, 1);
    CHECK_EQ(nde_events_submit_keyed(inner_ev, NDE_EVENT_UDEV_REMOVE, 2, NULL, NULL), NDE_OK);
    while (!atomic_load(&inner_done))
        nap_ms(1);
    CHECK_EQ(atomic_load(&inner_rv), NDE_OK);
    CHECK_EQ(atomic_load(&dr_freed), 0); /* still running on the other worker */
    gate_open(&dr_gate);
    CHECK_EQ(nde_events_wait_idle(inner_ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&dr_freed), 1);
    CHECK_EQ(atomic_load(&dr_freed_while_running), 0);
    CHECK_EQ(nde_events_submit_keyed(inner_ev, NDE_EVENT_UDEV_ADD, 1, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(inner_ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&dr_calls), 1);
    nde_events_free(inner_ev);
    CHECK_EQ(atomic_load(&dr_freed), 1);
    gate_destroy(&dr_gate);
}

/* ---- free with a keyed backlog; bad input --------------------------------- */

static gate bl_gate;
static atomic_int refused_freed;

static void count_refused(void *p)
{
    atomic_fetch_add(&refused_freed, 1);
    free(p);
}

static void bl_cb(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    if (*(int *)data == 0)
        gate_pass(&bl_gate);
}

static void test_free_with_backlog(void)
{
    gate_init(&bl_gate);
    atomic_store(&freed, 0);
    nde_events *ev = nde_events_new_full("ev-backlog", 2);
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, bl_cb, NULL, NULL) >= 0);
    int sent = 0;
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1, boxed_int(0), count_free), NDE_OK);
    sent++;
    gate_wait_for(&bl_gate, 1);
    for (int i = 1; i < 30; i++, sent++) {
        int rv = i % 10 == 0 ? nde_events_submit(ev, NDE_EVENT_UDEV_CHANGE, boxed_int(i), count_free)
                             : nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1 + (uint64_t)(i % 3), boxed_int(i),
                                                       count_free);
        CHECK_EQ(rv, NDE_OK);
    }
    CHECK_EQ(nde_events_shutdown_prepare(ev), NDE_OK);
    atomic_store(&refused_freed, 0);
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_UDEV_ADD, 1, boxed_int(-1), count_refused), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&refused_freed), 1); /* before returning */
    gate_open(&bl_gate);
    nde_events_free(ev); /* handled or discarded: each freed once */
    CHECK_EQ(atomic_load(&freed), sent);
    CHECK_EQ(atomic_load(&refused_freed), 1);
    gate_destroy(&bl_gate);
}

static void test_bad_input(void)
{
    atomic_store(&freed, 0);
    CHECK(nde_events_new_full("ev-zero", 0) == NULL);
    /* issue 22 item 8: refused before any thread starts */
    CHECK(nde_events_new_full("ev-many", NDE_EVENTS_MAX_WORKERS + 1) == NULL);
    CHECK(nde_events_new_full("ev-huge", UINT_MAX) == NULL);
    CHECK_EQ(nde_events_submit_keyed(NULL, NDE_EVENT_UDEV_ADD, 1, boxed_int(1), count_free), NDE_ERR_INVALID);
    nde_events *ev = nde_events_new_full(NULL, 2);
    CHECK(ev != NULL);
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_LAST, 1, boxed_int(1), count_free), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_submit_keyed(ev, NDE_EVENT_ANY, 1, boxed_int(1), count_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&freed), 3);
    nde_pool_key_stats ks;
    CHECK_EQ(nde_events_get_key_stats(NULL, &ks), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_get_key_stats(ev, NULL), NDE_ERR_INVALID);
    nde_events_free(ev);
}

int main(void)
{
    nde_test_begin();
    storm(2, 1);
    storm(3, 2);
    storm(4, 3);
    storm(1, 4);
    test_one_worker_is_total_order();
    test_keys_in_parallel();
    test_deregister_from_another_thread();
    test_deregister_from_a_callback();
    test_free_with_backlog();
    test_bad_input();
    nde_test_end();
    printf("events_keyed_test: ok\n");
    return 0;
}
