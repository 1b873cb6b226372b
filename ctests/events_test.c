/*
 * The whole nde_events contract, from C: order across types and callbacks,
 * deregister semantics, calls from inside callbacks, debounce, shutdown with
 * queued events while a callback blocks, and bad input. Every data_free and
 * userdata_free is counted.
 */
#include "nde_test.h"

static atomic_long data_freed, ud_freed;

static void count_data_free(void *p)
{
    atomic_fetch_add(&data_freed, 1);
    free(p);
}

static void count_ud_free(void *p)
{
    (void)p;
    atomic_fetch_add(&ud_freed, 1);
}

static void reset(void)
{
    atomic_store(&data_freed, 0);
    atomic_store(&ud_freed, 0);
}

static long *seq_new(long v)
{
    long *p = malloc(sizeof *p);
    CHECK(p != NULL);
    *p = v;
    return p;
}

/* ---- order ---- */
enum { EVENTS = 3000, MAX_LOG = 4 * EVENTS };
static struct { int cb; long seq; int type; } event_log[MAX_LOG];
static int log_len;

static void logging_cb(void *userdata, nde_event_type type, void *data)
{
    CHECK(log_len < MAX_LOG);
    event_log[log_len].cb = (int)(long)userdata;
    event_log[log_len].seq = *(long *)data;
    event_log[log_len].type = (int)type;
    log_len++;
}

static void test_order(void)
{
    reset();
    log_len = 0;
    nde_events *ev = nde_events_new("order");
    CHECK(ev != NULL);
    /* A (any), B (add), C (remove), D (any): registration order = call order */
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, logging_cb, (void *)1L, count_ud_free) >= 0);
    CHECK(nde_events_register(ev, NDE_EVENT_UDEV_ADD, logging_cb, (void *)2L, count_ud_free) >= 0);
    CHECK(nde_events_register(ev, NDE_EVENT_UDEV_REMOVE, logging_cb, (void *)3L, count_ud_free) >= 0);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, logging_cb, (void *)4L, count_ud_free) >= 0);
    const int types[3] = {NDE_EVENT_UDEV_ADD, NDE_EVENT_UDEV_REMOVE, NDE_EVENT_UDEV_CHANGE};
    for (long i = 0; i < EVENTS; i++)
        CHECK_EQ(nde_events_submit(ev, types[i % 3], seq_new(i), count_data_free), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&data_freed), EVENTS);
    CHECK_EQ(log_len, EVENTS * 3 - EVENTS / 3); /* change events match only A and D */
    int pos = 0;
    for (long i = 0; i < EVENTS; i++) {
        int type = types[i % 3];
        int expect[3], n = 0;
        expect[n++] = 1;
        if (type == NDE_EVENT_UDEV_ADD)
            expect[n++] = 2;
        if (type == NDE_EVENT_UDEV_REMOVE)
            expect[n++] = 3;
        expect[n++] = 4;
        for (int k = 0; k < n; k++, pos++) {
            CHECK_EQ(event_log[pos].seq, i);
            CHECK_EQ(event_log[pos].cb, expect[k]);
            CHECK_EQ(event_log[pos].type, type);
        }
    }
    nde_pool_stats st;
    CHECK_EQ(nde_events_get_stats(ev, &st), NDE_OK);
    CHECK_EQ(st.submitted, EVENTS);
    CHECK_EQ(st.completed, EVENTS);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&ud_freed), 4);
}

/* ---- deregister from another thread waits for the running callback ---- */
static gate the_gate;
static atomic_int blocking_calls;

static void blocking_cb(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
    atomic_fetch_add(&blocking_calls, 1);
    gate_pass(&the_gate);
}

typedef struct {
    nde_events *ev;
    int id;
    atomic_int done;
    int rc;
} dereg_arg;

static void *deregister_thread(void *p)
{
    dereg_arg *a = p;
    a->rc = nde_events_deregister(a->ev, a->id);
    atomic_store(&a->done, 1);
    return NULL;
}

static void test_deregister_waits(void)
{
    reset();
    gate_init(&the_gate);
    atomic_store(&blocking_calls, 0);
    nde_events *ev = nde_events_new("dereg");
    CHECK(ev != NULL);
    int id = nde_events_register(ev, NDE_EVENT_UDEV_ADD, blocking_cb, NULL, count_ud_free);
    CHECK(id >= 0);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL), NDE_OK);
    gate_wait_for(&the_gate, 1);
    dereg_arg a = {ev, id, 0, 99};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, deregister_thread, &a) == 0);
    nap_ms(30);
    CHECK_EQ(atomic_load(&a.done), 0); /* still blocked: the callback runs */
    CHECK_EQ(atomic_load(&ud_freed), 0);
    gate_open(&the_gate);
    pthread_join(t, NULL);
    CHECK_EQ(a.rc, NDE_OK);
    CHECK_EQ(atomic_load(&ud_freed), 1);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&blocking_calls), 1); /* never ran again */
    CHECK_EQ(nde_events_deregister(ev, id), NDE_ERR_NOT_FOUND);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&ud_freed), 1);
    gate_destroy(&the_gate);
}

/* ---- calls from inside callbacks ---- */
static nde_events *inner_ev;
static int self_id, victim_id, late_id;
static atomic_int victim_calls, late_calls, self_calls, late_seen_first;

static void victim_cb(void *u, nde_event_type t, void *d)
{
    (void)u; (void)t; (void)d;
    atomic_fetch_add(&victim_calls, 1);
}

static void late_cb(void *u, nde_event_type t, void *d)
{
    (void)u; (void)t;
    if (*(long *)d == 0)
        atomic_store(&late_seen_first, 1);
    atomic_fetch_add(&late_calls, 1);
}

static void reentrant_cb(void *u, nde_event_type t, void *d)
{
    (void)u; (void)t;
    atomic_fetch_add(&self_calls, 1);
    if (*(long *)d != 0)
        return;
    CHECK_EQ(nde_events_wait_idle(inner_ev, -1), NDE_ERR_WOULD_DEADLOCK);
    CHECK_EQ(nde_events_shutdown_wait(inner_ev, -1), NDE_ERR_WOULD_DEADLOCK);
    /* registered now: sees events from the next one on */
    late_id = nde_events_register(inner_ev, NDE_EVENT_ANY, late_cb, NULL, count_ud_free);
    CHECK(late_id >= 0);
    /* removed mid-event: must not run for this event */
    CHECK_EQ(nde_events_deregister(inner_ev, victim_id), NDE_OK);
    CHECK_EQ(atomic_load(&ud_freed), 1); /* victim is not running: freed now */
    /* removing itself: userdata freed right after this callback returns */
    CHECK_EQ(nde_events_deregister(inner_ev, self_id), NDE_OK);
    CHECK_EQ(atomic_load(&ud_freed), 1);
    CHECK_EQ(nde_events_submit(inner_ev, NDE_EVENT_UDEV_CHANGE, seq_new(1), count_data_free), NDE_OK);
}

static void test_calls_from_inside_callbacks(void)
{
    reset();
    atomic_store(&victim_calls, 0);
    atomic_store(&late_calls, 0);
    atomic_store(&self_calls, 0);
    atomic_store(&late_seen_first, 0);
    inner_ev = nde_events_new("reentrant");
    CHECK(inner_ev != NULL);
    self_id = nde_events_register(inner_ev, NDE_EVENT_ANY, reentrant_cb, NULL, count_ud_free);
    victim_id = nde_events_register(inner_ev, NDE_EVENT_ANY, victim_cb, NULL, count_ud_free);
    CHECK(self_id >= 0 && victim_id >= 0);
    CHECK_EQ(nde_events_submit(inner_ev, NDE_EVENT_UDEV_ADD, seq_new(0), count_data_free), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(inner_ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&ud_freed), 2);     /* victim + self */
    CHECK_EQ(atomic_load(&self_calls), 1);   /* not called for event 1 */
    CHECK_EQ(atomic_load(&victim_calls), 0);
    CHECK_EQ(atomic_load(&late_calls), 1);   /* event 1 only */
    CHECK_EQ(atomic_load(&late_seen_first), 0);
    CHECK_EQ(atomic_load(&data_freed), 2);
    nde_events_free(inner_ev);
    CHECK_EQ(atomic_load(&ud_freed), 3);
}

/* ---- debounce ---- */
static atomic_int mdev_events;

static void count_cb(void *u, nde_event_type t, void *d)
{
    (void)u;
    CHECK(d == NULL);
    CHECK_EQ(t, NDE_EVENT_MDEVCTL_CONFIG_CHANGED);
    atomic_fetch_add(&mdev_events, 1);
}

static void wait_for_count(atomic_int *c, int n)
{
    for (int i = 0; atomic_load(c) < n; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
}

static void test_debounce(void)
{
    atomic_store(&mdev_events, 0);
    nde_events *ev = nde_events_new("debounce");
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, count_cb, NULL, NULL) >= 0);
    for (int i = 0; i < 20; i++)
        CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 100), NDE_OK);
    wait_for_count(&mdev_events, 1);
    nap_ms(250); /* a second event would have come by now */
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&mdev_events), 1);

    /* force: delay 0 submits now and cancels the pending timer */
    CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 150), NDE_OK);
    CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 0), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&mdev_events), 2);
    nap_ms(300);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&mdev_events), 2);

    /* shutdown cancels pending timers: none fires afterwards */
    CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 50), NDE_OK);
    CHECK_EQ(nde_events_shutdown_prepare(ev), NDE_OK);
    CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 50), NDE_ERR_STOPPED);
    nap_ms(200);
    CHECK_EQ(atomic_load(&mdev_events), 2);
    CHECK_EQ(nde_events_shutdown_wait(ev, -1), NDE_OK);
    nde_events_free(ev);
}

/* ---- shutdown with 1000 queued while a callback blocks ---- */
static void test_shutdown_with_queued_events(void)
{
    reset();
    gate_init(&the_gate);
    atomic_store(&blocking_calls, 0);
    nde_events *ev = nde_events_new("shutdown");
    CHECK(ev != NULL);
    CHECK(nde_events_register(ev, NDE_EVENT_ANY, blocking_cb, NULL, count_ud_free) >= 0);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, seq_new(0), count_data_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    for (long i = 1; i <= 1000; i++)
        CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, seq_new(i), count_data_free), NDE_OK);
    CHECK_EQ(nde_events_shutdown_prepare(ev), NDE_OK); /* returns although a callback blocks */
    CHECK_EQ(nde_events_shutdown_prepare(ev), NDE_OK);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, seq_new(-1), count_data_free), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&data_freed), 1);
    CHECK_EQ(nde_events_shutdown_wait(ev, 20), NDE_ERR_TIMEOUT);
    CHECK_EQ(atomic_load(&data_freed), 1); /* nothing discarded yet */
    gate_open(&the_gate);
    CHECK_EQ(nde_events_shutdown_wait(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&data_freed), 1 + 1 + 1000);
    CHECK_EQ(atomic_load(&blocking_calls), 1);
    CHECK_EQ(nde_events_shutdown_wait(ev, 0), NDE_OK);
    nde_pool_stats st;
    CHECK_EQ(nde_events_get_stats(ev, &st), NDE_OK);
    CHECK_EQ(st.discarded, 1000);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&ud_freed), 1);
    gate_destroy(&the_gate);
}

/* ---- free from inside a callback ---- */
static nde_events *doomed;
static void freeing_cb(void *u, nde_event_type t, void *d)
{
    (void)u; (void)t; (void)d;
    nde_events_free(doomed);
}

static void test_free_from_inside(void)
{
    reset();
    doomed = nde_events_new("doomed");
    CHECK(doomed != NULL);
    CHECK(nde_events_register(doomed, NDE_EVENT_UDEV_ADD, freeing_cb, NULL, count_ud_free) >= 0);
    CHECK(nde_events_register(doomed, NDE_EVENT_ANY, logging_cb, NULL, count_ud_free) >= 0);
    gate_init(&the_gate);
    /* hold the worker so that the freeing event and 10 more are queued */
    CHECK(nde_events_register(doomed, NDE_EVENT_UDEV_CHANGE, blocking_cb, NULL, count_ud_free) >= 0);
    CHECK_EQ(nde_events_submit(doomed, NDE_EVENT_UDEV_CHANGE, seq_new(0), count_data_free), NDE_OK);
    gate_wait_for(&the_gate, 1);
    CHECK_EQ(nde_events_submit(doomed, NDE_EVENT_UDEV_ADD, seq_new(1), count_data_free), NDE_OK);
    for (long i = 2; i < 12; i++)
        CHECK_EQ(nde_events_submit(doomed, NDE_EVENT_UDEV_REMOVE, seq_new(i), count_data_free), NDE_OK);
    log_len = 0;
    gate_open(&the_gate);
    for (int i = 0; atomic_load(&ud_freed) < 3 || atomic_load(&data_freed) < 12; i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
    CHECK_EQ(atomic_load(&data_freed), 12);
    CHECK_EQ(atomic_load(&ud_freed), 3);
    nap_ms(20); /* let the worker thread finish exiting */
    gate_destroy(&the_gate);
}

/* ---- bad input ---- */
static void test_bad_input(void)
{
    reset();
    nde_events *ev = nde_events_new(NULL);
    CHECK(ev != NULL);
    const int bad_types[] = {-2, NDE_EVENT_LAST, 1000, -1000};
    for (unsigned i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        CHECK_EQ(nde_events_register(ev, bad_types[i], logging_cb, NULL, count_ud_free), NDE_ERR_INVALID);
        CHECK_EQ(nde_events_submit(ev, bad_types[i], seq_new(0), count_data_free), NDE_ERR_INVALID);
        CHECK_EQ(nde_events_schedule(ev, bad_types[i], 10), NDE_ERR_INVALID);
    }
    CHECK_EQ(atomic_load(&ud_freed), 4);
    CHECK_EQ(atomic_load(&data_freed), 4);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_ANY, seq_new(0), count_data_free), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_schedule(ev, NDE_EVENT_ANY, 10), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&data_freed), 5);
    CHECK_EQ(nde_events_register(ev, NDE_EVENT_INIT, NULL, NULL, count_ud_free), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_register(NULL, NDE_EVENT_INIT, logging_cb, NULL, count_ud_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&ud_freed), 6);
    CHECK_EQ(nde_events_submit(NULL, NDE_EVENT_INIT, seq_new(0), count_data_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&data_freed), 6);
    CHECK_EQ(nde_events_deregister(ev, 12345), NDE_ERR_NOT_FOUND);
    CHECK_EQ(nde_events_deregister(ev, -5), NDE_ERR_NOT_FOUND);
    CHECK_EQ(nde_events_deregister(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_schedule(NULL, NDE_EVENT_INIT, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_wait_idle(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_shutdown_prepare(NULL), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_shutdown_wait(NULL, 0), NDE_ERR_INVALID);
    nde_pool_stats st;
    CHECK_EQ(nde_events_get_stats(NULL, &st), NDE_ERR_INVALID);
    CHECK_EQ(nde_events_get_stats(ev, NULL), NDE_ERR_INVALID);
    nde_events_free(NULL);
    int id = nde_events_register(ev, NDE_EVENT_INIT, logging_cb, NULL, count_ud_free);
    CHECK(id >= 0);
    CHECK_EQ(nde_events_deregister(ev, id), NDE_OK);
    CHECK_EQ(nde_events_deregister(ev, id), NDE_ERR_NOT_FOUND);
    CHECK_EQ(atomic_load(&ud_freed), 7);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&ud_freed), 7);
}

int main(void)
{
    nde_test_begin();
    test_bad_input();
    test_order();
    test_deregister_waits();
    test_calls_from_inside_callbacks();
    test_debounce();
    test_shutdown_with_queued_events();
    test_free_from_inside();
    nde_test_end();
    printf("events_test: ok\n");
    return 0;
}
