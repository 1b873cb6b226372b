/*
 * bench/keyed.c: ordered per key, parallel across keys (issue 15's
 * benchmark).  One process = one run of one design; bench/run.py drives it
 * and reads the JSON line it prints.
 *
 *   keyed-bench --design single|static-hash|nde-keyed --workers W
 *               --handler cpu|sleep --dist uniform|skewed
 *               [--n 100000] [--keys 1000] [--cost-us 100] [--lib PATH]
 *
 * The workload: N events over KEYS keys (devices), sent as fast as the
 * designs take them from one producer; the handler costs COST µs of CPU
 * (it spins on its thread's CPU clock), or sleeps COST µs (as I/O would).
 * `uniform`: each event's key drawn uniformly; `skewed`: 10 % of the events
 * on key 0, the rest uniform over the others.  The key sequence is the same
 * for every design (fixed seed).
 *
 * Designs:
 *   single       one worker thread, one FIFO (bench/ring.h): total order
 *   static-hash  W worker threads, each with its own FIFO; an event goes to
 *                thread key mod W (as some Java executors do): per-key
 *                order, but a slow key blocks every key on its thread
 *   nde-keyed    our pool with W workers: nde_pool_send_job_keyed(pool,
 *                key + 1, 0, ev, free_fn), and one
 *                nde_pool_send_barrier() after the last event, which checks
 *                that every event before it has finished.  Resolved with
 *                dlsym: "not available" (exit 77) until the library has
 *                them.
 *
 * Every handler checks per-key order and that no two events of one key
 * overlap; every event's data is freed exactly once (exit 2 otherwise).
 * Figure: events/s from the first send until the last event finished.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

enum { EXIT_USAGE = 1, EXIT_CHECK = 2, EXIT_LIB = 3, EXIT_SKIP = 77 };

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "keyed-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The workload. */
enum { EV_EVENT = 0, EV_BARRIER = 1 };
struct ev {
    uint32_t seq; /* position in the stream */
    uint32_t key;
    uint32_t kind;
};

static size_t n_events = 100000, n_keys = 1000;
static unsigned cost_us = 100;
static int handler_sleeps;
static struct ev *evs;
static _Atomic uint8_t *freed;
static _Atomic uint8_t *busy;      /* per key: a handler is running */
static _Atomic int64_t *last_seq;  /* per key: last seq handled, -1 none */
static _Atomic size_t finished;
static _Atomic int violation;
static sem_t done_sem;

static void make_workload(int skewed)
{
    evs = calloc(n_events + 1, sizeof *evs);
    freed = calloc(n_events + 1, 1);
    busy = calloc(n_keys, 1);
    last_seq = malloc(n_keys * sizeof *last_seq);
    if (!evs || !freed || !busy || !last_seq)
        die(EXIT_LIB, "out of memory");
    for (size_t k = 0; k < n_keys; k++)
        atomic_init(&last_seq[k], -1);
    uint64_t x = 0x9E3779B97F4A7C15ull; /* xorshift64, fixed seed */
    for (size_t i = 0; i < n_events; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint32_t key;
        if (skewed)
            key = (x % 10 == 0) ? 0 : 1 + (uint32_t)((x / 10) % (n_keys - 1));
        else
            key = (uint32_t)(x % n_keys);
        evs[i] = (struct ev){.seq = (uint32_t)i, .key = key};
    }
    evs[n_events] = (struct ev){.seq = (uint32_t)n_events, .kind = EV_BARRIER};
}

static void spend(void)
{
    if (handler_sleeps) {
        struct timespec ts = {0, (long)cost_us * 1000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        return;
    }
    uint64_t until = now_ns(CLOCK_THREAD_CPUTIME_ID) + cost_us * 1000ull;
    while (now_ns(CLOCK_THREAD_CPUTIME_ID) < until)
        ;
}

static void handle(struct ev *e)
{
    if (e->kind == EV_BARRIER) {
        /* everything sent before the barrier has finished */
        if (atomic_load(&finished) != n_events)
            atomic_store(&violation, 3);
        return;
    }
    if (atomic_exchange(&busy[e->key], 1))
        atomic_store(&violation, 1); /* two events of one key at once */
    if (atomic_load(&last_seq[e->key]) >= (int64_t)e->seq)
        atomic_store(&violation, 2); /* out of order within the key */
    atomic_store(&last_seq[e->key], e->seq);
    spend();
    atomic_store(&busy[e->key], 0);
    if (atomic_fetch_add(&finished, 1) + 1 == n_events)
        sem_post(&done_sem);
}

static void ev_free(void *p)
{
    struct ev *e = p;
    atomic_fetch_add(&freed[e->seq], 1);
}

static void ring_run(void *p)
{
    handle(p);
    ev_free(p);
}

/* ------------------------------------------------------------------------ */
/* Our keyed pool, resolved at run time. */
struct nde_pool;
static struct {
    struct nde_pool *(*pool_new_full)(size_t, size_t, size_t,
                                      void (*)(void *, void *), const char *,
                                      void *);
    int (*send_job_keyed)(struct nde_pool *, uint64_t key,
                          unsigned int priority, void *data,
                          void (*free_fn)(void *));
    int (*send_barrier)(struct nde_pool *, void *data,
                        void (*free_fn)(void *));
    int (*wait_idle)(struct nde_pool *, int);
    void (*pool_free)(struct nde_pool *);
} nde;

static void nde_job(void *jobdata, void *opaque)
{
    (void)opaque;
    handle(jobdata);
}

static void load_nde(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "keyed-bench: %s\n", dlerror());
        exit(EXIT_SKIP);
    }
    void *s;
#define SYM(field, name, required)                                         \
    do {                                                                   \
        s = dlsym(h, name);                                                \
        if (!s) {                                                          \
            fprintf(stderr, "keyed-bench: not available: %s has no %s\n",  \
                    path, name);                                           \
            exit(required ? EXIT_LIB : EXIT_SKIP);                         \
        }                                                                  \
        memcpy(&nde.field, &s, sizeof s);                                  \
    } while (0)
    SYM(pool_new_full, "nde_pool_new_full", 1);
    SYM(wait_idle, "nde_pool_wait_idle", 1);
    SYM(pool_free, "nde_pool_free", 1);
    SYM(send_job_keyed, "nde_pool_send_job_keyed", 0);
    SYM(send_barrier, "nde_pool_send_barrier", 0);
#undef SYM
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *design = NULL, *handler = "cpu", *dist = "uniform";
    const char *lib = getenv("NDE_LIB") ? getenv("NDE_LIB")
                                        : "target/release/libnodedev_events.so";
    unsigned workers = 1;
    static const struct option opts[] = {
        {"design", required_argument, NULL, 'd'},
        {"workers", required_argument, NULL, 'w'},
        {"handler", required_argument, NULL, 'h'},
        {"dist", required_argument, NULL, 's'},
        {"n", required_argument, NULL, 'n'},
        {"keys", required_argument, NULL, 'k'},
        {"cost-us", required_argument, NULL, 'c'},
        {"lib", required_argument, NULL, 'l'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': design = optarg; break;
        case 'w': workers = (unsigned)atoi(optarg); break;
        case 'h': handler = optarg; break;
        case 's': dist = optarg; break;
        case 'n': n_events = strtoull(optarg, NULL, 10); break;
        case 'k': n_keys = strtoull(optarg, NULL, 10); break;
        case 'c': cost_us = (unsigned)atoi(optarg); break;
        case 'l': lib = optarg; break;
        default: design = NULL; optind = argc; break;
        }
    }
    int ok = design && workers >= 1 && workers <= 64 && n_events > 0 &&
             n_keys >= 2 && n_events < UINT32_MAX &&
             (!strcmp(handler, "cpu") || !strcmp(handler, "sleep")) &&
             (!strcmp(dist, "uniform") || !strcmp(dist, "skewed")) &&
             (!strcmp(design, "single") || !strcmp(design, "static-hash") ||
              !strcmp(design, "nde-keyed"));
    if (!ok || (!strcmp(design, "single") && workers != 1)) {
        fprintf(stderr,
                "usage: keyed-bench --design single|static-hash|nde-keyed "
                "--workers W --handler cpu|sleep --dist uniform|skewed\n"
                "                   [--n N] [--keys K] [--cost-us US] "
                "[--lib PATH]   (single: W = 1)\n");
        return EXIT_USAGE;
    }
    handler_sleeps = !strcmp(handler, "sleep");
    /* 1 ns timer slack, inherited by every thread created from here on:
     * a 100 µs sleep then costs what the kernel needs, not +50 µs slack */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    sem_init(&done_sem, 0, 0);
    make_workload(!strcmp(dist, "skewed"));

    int is_nde = !strcmp(design, "nde-keyed");
    struct ring *rings[64] = {0};
    struct nde_pool *pool = NULL;
    if (is_nde) {
        load_nde(lib);
        pool = nde.pool_new_full(workers, workers, 0, nde_job, "keyed", NULL);
        if (!pool)
            die(EXIT_LIB, "nde_pool_new_full failed");
    } else {
        for (unsigned w = 0; w < workers; w++)
            if (!(rings[w] = ring_new(n_events, ring_run)))
                die(EXIT_LIB, "ring_new failed");
    }

    uint64_t c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
    for (size_t i = 0; i < n_events; i++) {
        struct ev *e = &evs[i];
        if (!is_nde)
            ring_push(rings[e->key % workers], e);
        else if (nde.send_job_keyed(pool, (uint64_t)e->key + 1, 0, e,
                                    ev_free) < 0)
            die(EXIT_LIB, "nde_pool_send_job_keyed refused event %zu", i);
    }
    uint64_t t_sent = now_ns(CLOCK_MONOTONIC);
    if (is_nde && nde.send_barrier(pool, &evs[n_events], ev_free) < 0)
        die(EXIT_LIB, "nde_pool_send_barrier refused");
    while (sem_wait(&done_sem) < 0 && errno == EINTR)
        ;
    uint64_t t1 = now_ns(CLOCK_MONOTONIC);
    uint64_t c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);

    if (is_nde) {
        if (nde.wait_idle(pool, 60000) < 0)
            die(EXIT_LIB, "nde_pool_wait_idle failed");
        nde.pool_free(pool);
    } else {
        for (unsigned w = 0; w < workers; w++)
            ring_free(rings[w]);
    }
    for (size_t i = 0; i < n_events + (size_t)is_nde; i++)
        if (atomic_load(&freed[i]) != 1)
            die(EXIT_CHECK, "event %zu freed %u times", i,
                (unsigned)atomic_load(&freed[i]));
    static const char *why[] = {"", "two events of one key ran at once",
                                "events of one key ran out of order",
                                "the barrier ran before an earlier event "
                                "finished"};
    int v = atomic_load(&violation);
    if (v)
        die(EXIT_CHECK, "%s: %s", design, why[v]);

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"impl\":\"%s\",\"scenario\":\"keyed-%s-%s\",\"workers\":%u,"
           "\"n\":%zu,\"keys\":%zu,\"cost_us\":%u,\"secs\":%.6f,"
           "\"events_per_s\":%.0f,\"send_secs\":%.6f,"
           "\"cpu_us_per_event\":%.2f}\n",
           design, handler, dist, workers, n_events, n_keys, cost_us, secs,
           (double)n_events / secs, (double)(t_sent - t0) / 1e9,
           (double)(c1 - c0) / 1e3 / (double)n_events);
    return 0;
}
