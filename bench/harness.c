/*
 * bench/harness.c: one process = one repetition of one scenario for one
 * implementation.  bench/run.py drives it and aggregates the JSON line that
 * it prints on stdout.
 *
 *   harness --impl IMPL --scenario SCEN [--n N] [--producers P]
 *           [--idle-ms MS] [--warm W] [--lib PATH]
 *   harness --scenario version [--lib PATH]
 *
 * IMPL: libvirt | glib | glib-exclusive | glib-full | nde-pool | nde-events
 *       | nde-pool-keyed (nde_pool_send_job_keyed, keys 1..1000 in turn: the
 *         cost of keyed dispatch over unkeyed; 77 until the library has it)
 *       | ring (the ceiling reference of bench/ring.h: a bounded lock-free
 *         MPSC pointer ring whose worker spins, then parks; not a product)
 *       | inline (no hand-off at all: the floor of the harness itself)
 * SCEN: burst | latency | memory | shutdown | idle | version
 *
 * Every implementation runs with exactly one worker.  Job data is a 16-byte
 * heap object allocated before anything is timed; whoever runs the job (or
 * discards it) frees it through item_free(), which records that it did, so
 * the harness can check "freed exactly once" (and count leaks at shutdown).
 * The peers have no per-job free function, so their job function is a
 * trampoline that does the work and then calls item_free(); our pool and
 * events layer get item_free() as the job's free_fn.
 *
 * Exit codes: 0 ok, 77 implementation not available here (skip), 1 usage,
 * 2 a check failed (lost / double-freed / unexpected job), 3 library call
 * failed.  A crash is a signal, which the driver reports as a failure.
 */
#define _GNU_SOURCE
#include <dirent.h>
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
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

/* Under valgrind --tool=callgrind (bench/callgrind.py) the counters are
 * dumped when the timed part ends, so what follows is left out.  Outside
 * valgrind this is a few no-op instructions. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_DUMP_STATS_AT
#define CALLGRIND_DUMP_STATS_AT(what)
#endif

#include "ring.h"

/* ------------------------------------------------------------------------ */
/* Our C ABI, as API.md declares it.  When the generated header is present
 * (-Iinclude) it is included first, so any declaration below that does not
 * match it is a compile error: the harness follows the real ABI. */
#if defined(__has_include)
#if __has_include("nodedev_events.h") && !defined(BENCH_NO_HEADER)
#include "nodedev_events.h"
#endif
#endif

struct nde_pool;
struct nde_events;
const char *nde_version(void);
struct nde_pool *nde_pool_new_full(size_t min_workers, size_t max_workers,
                                   size_t prio_workers,
                                   void (*func)(void *jobdata, void *opaque),
                                   const char *name, void *opaque);
int nde_pool_send_job_full(struct nde_pool *pool, unsigned int priority,
                           void *jobdata, void (*free_fn)(void *data));
int nde_pool_wait_idle(struct nde_pool *pool, int timeout_ms);
/* issue 15, not in every library: resolved when present */
typedef int (*bench_send_keyed_fn)(struct nde_pool *pool, uint64_t key,
                                   unsigned int priority, void *data,
                                   void (*free_fn)(void *data));
void nde_pool_free(struct nde_pool *pool);
/* the callback's type argument is the enum nde_event_type, which has no
 * negative value: GCC gives such an enum the type unsigned int */
struct nde_events *nde_events_new(const char *name);
int nde_events_register(struct nde_events *ev, int type,
                        void (*cb)(void *userdata, unsigned int type,
                                   void *data),
                        void *userdata, void (*userdata_free)(void *));
int nde_events_submit(struct nde_events *ev, int type, void *data,
                      void (*data_free)(void *data));
int nde_events_shutdown_prepare(struct nde_events *ev);
int nde_events_shutdown_wait(struct nde_events *ev, int timeout_ms);
void nde_events_free(struct nde_events *ev);

#define BENCH_EVENT_ANY (-1)      /* NDE_EVENT_ANY */
#define BENCH_EVENT_UDEV_ADD 1    /* NDE_EVENT_UDEV_ADD */

/* Resolved with dlsym: the harness builds and the peers run before our
 * library exists, and a call through these pointers costs what a call
 * through the PLT costs. */
static struct {
    __typeof__(&nde_version) version;
    __typeof__(&nde_pool_new_full) pool_new_full;
    __typeof__(&nde_pool_send_job_full) pool_send_job_full;
    __typeof__(&nde_pool_free) pool_free;
    bench_send_keyed_fn pool_send_job_keyed;
    __typeof__(&nde_events_new) events_new;
    __typeof__(&nde_events_register) events_register;
    __typeof__(&nde_events_submit) events_submit;
    __typeof__(&nde_events_shutdown_prepare) events_shutdown_prepare;
    __typeof__(&nde_events_shutdown_wait) events_shutdown_wait;
    __typeof__(&nde_events_free) events_free;
} nde;

/* libvirt 9.0: private symbols of libvirt.so.0, no header. */
typedef struct virThreadPool virThreadPool;
typedef void (*virThreadPoolJobFunc)(void *jobdata, void *opaque);
static struct {
    int (*initialize)(void);
    int (*get_version)(unsigned long *libVer, const char *type,
                       unsigned long *typeVer);
    virThreadPool *(*pool_new_full)(size_t minWorkers, size_t maxWorkers,
                                    size_t prioWorkers,
                                    virThreadPoolJobFunc func,
                                    const char *name, void *identity,
                                    void *opaque);
    int (*pool_send_job)(virThreadPool *pool, unsigned int priority,
                         void *jobdata);
    void (*pool_free)(virThreadPool *pool);
} virt;

/* ------------------------------------------------------------------------ */
enum { EXIT_USAGE = 1, EXIT_CHECK = 2, EXIT_LIB = 3, EXIT_SKIP = 77 };

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "harness: ");
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
#define MONO() now_ns(CLOCK_MONOTONIC)

/* ------------------------------------------------------------------------ */
/* Job data and what a job does. */
enum { K_WORK = 0, K_GATE = 1, K_PING = 2 };
struct item {
    uint64_t seq;
    uint32_t idx;
    uint32_t kind;
};

static struct item **items;
/* --data malloc (default): one malloc per job, free() in item_free.
 * --data slab: the jobs live in one array and item_free only marks them:
 * shows what the allocator costs, which every implementation pays. */
static int data_slab;
static struct item *slab;
static uint8_t *freed_flag;     /* per item: how many times it was freed */
static size_t n_items;

/* Counters bumped by one thread at a time (the single worker, or the thread
 * that discards after the worker was joined): a relaxed load + store, no
 * locked instruction, so the harness's own cost stays small. */
static _Atomic uint64_t ran_cnt, freed_cnt;
static _Atomic uint64_t target_freed = UINT64_MAX;
static _Atomic uint32_t bad_job;
static volatile uint64_t sink;
static sem_t done_sem, gate_sem, gate_started_sem, pong_sem;
/* latency: the producer spins on this instead of sleeping on pong_sem
 * (--pong spin, the default), so only the library's wake-up is measured */
static _Atomic uint64_t pong;
/* The worker's own CPU clock when the gate opened and when the last job
 * was freed (scenario memory: the drain of a full queue, no waiting in it). */
static uint64_t drain_cpu0, drain_cpu1, drain_mono0;
static int pong_spin = 1;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void sem_wait_intr(sem_t *s)
{
    while (sem_wait(s) < 0 && errno == EINTR)
        ;
}

static inline uint64_t bump(_Atomic uint64_t *c)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed) + 1;
    atomic_store_explicit(c, v, memory_order_relaxed);
    return v;
}

static struct item *new_item(size_t i, uint32_t kind)
{
    struct item *it = malloc(sizeof *it);
    if (!it)
        die(EXIT_LIB, "out of memory");
    it->seq = i;
    it->idx = (uint32_t)i;
    it->kind = kind;
    return it;
}

static void alloc_items(size_t n, uint32_t kind)
{
    n_items = n;
    items = malloc(n * sizeof *items);
    freed_flag = calloc(n, 1);
    if (!items || !freed_flag)
        die(EXIT_LIB, "out of memory");
    if (data_slab && !(slab = calloc(n, sizeof *slab)))
        die(EXIT_LIB, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (data_slab) {
            slab[i] = (struct item){.seq = i, .idx = (uint32_t)i, .kind = kind};
            items[i] = &slab[i];
        } else {
            items[i] = new_item(i, kind);
        }
    }
}

static inline void do_work(struct item *it)
{
    switch (it->kind) {
    case K_WORK:
        sink += it->seq;
        break;
    case K_GATE:
        sem_post(&gate_started_sem);
        sem_wait_intr(&gate_sem);
        drain_cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        drain_mono0 = now_ns(CLOCK_MONOTONIC);
        break;
    case K_PING:
        if (pong_spin)
            atomic_store_explicit(&pong, it->seq + 1, memory_order_release);
        else
            sem_post(&pong_sem);
        break;
    default:
        atomic_store(&bad_job, 1);
    }
    bump(&ran_cnt);
}

/* The one free function every implementation ends up calling. */
static void item_free(void *p)
{
    struct item *it = p;
    freed_flag[it->idx]++;
    if (!data_slab)
        free(it);
    if (bump(&freed_cnt) == atomic_load_explicit(&target_freed,
                                                 memory_order_relaxed)) {
        drain_cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        sem_post(&done_sem);
    }
}

/* Trampolines. */
static void tramp_work_free(void *jobdata, void *opaque)  /* libvirt */
{
    (void)opaque;
    do_work(jobdata);
    item_free(jobdata);
}
static void tramp_glib(gpointer data, gpointer user_data)  /* GLib */
{
    (void)user_data;
    do_work(data);
    item_free(data);
}
static void tramp_nde_job(void *jobdata, void *opaque)     /* nde pool */
{
    (void)opaque;
    do_work(jobdata);
}
static void tramp_nde_event(void *userdata, unsigned int type, void *data)
{
    (void)userdata;
    (void)type;
    do_work(data);
}

/* ------------------------------------------------------------------------ */
/* Implementations. */
struct impl {
    const char *name;
    int (*load)(void);
    void *(*create)(void);
    int (*submit)(void *pool, struct item *it); /* 0 = accepted */
    void (*release)(void *pool); /* the library's own stop + free */
    unsigned scenarios;          /* SC_* it can run; others exit 77 */
};

enum {
    SC_BURST1 = 1, SC_BURST4 = 2, SC_LATENCY = 4, SC_MEMORY = 8,
    SC_SHUTDOWN = 16, SC_IDLE = 32, SC_ALL = 63
};

static const char *nde_lib_path;
static void *nde_handle;

static void *nde_sym(const char *name)
{
    void *sym = dlsym(nde_handle, name);
    if (!sym)
        die(EXIT_LIB, "%s: missing symbol %s", nde_lib_path, name);
    return sym;
}
#define NDE_SYM(field, name)                                               \
    do {                                                                   \
        void *sym_ = nde_sym(name);                                        \
        memcpy(&nde.field, &sym_, sizeof sym_);                            \
    } while (0)

static int load_nde(void)
{
    if (nde_handle)
        return 0;
    nde_handle = dlopen(nde_lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!nde_handle) {
        fprintf(stderr, "harness: %s\n", dlerror());
        return EXIT_SKIP;
    }
    NDE_SYM(version, "nde_version");
    return 0;
}

static int load_nde_pool(void)
{
    int rc = load_nde();
    if (rc)
        return rc;
    NDE_SYM(pool_new_full, "nde_pool_new_full");
    NDE_SYM(pool_send_job_full, "nde_pool_send_job_full");
    NDE_SYM(pool_free, "nde_pool_free");
    return 0;
}

static int load_nde_pool_keyed(void)
{
    int rc = load_nde_pool();
    if (rc)
        return rc;
    void *sym = dlsym(nde_handle, "nde_pool_send_job_keyed");
    if (!sym) {
        fprintf(stderr, "harness: not available: %s has no "
                        "nde_pool_send_job_keyed\n", nde_lib_path);
        return EXIT_SKIP;
    }
    memcpy(&nde.pool_send_job_keyed, &sym, sizeof sym);
    return 0;
}

static int load_nde_events(void)
{
    int rc = load_nde();
    if (rc)
        return rc;
    NDE_SYM(events_new, "nde_events_new");
    NDE_SYM(events_register, "nde_events_register");
    NDE_SYM(events_submit, "nde_events_submit");
    NDE_SYM(events_shutdown_prepare, "nde_events_shutdown_prepare");
    NDE_SYM(events_shutdown_wait, "nde_events_shutdown_wait");
    NDE_SYM(events_free, "nde_events_free");
    return 0;
}

static int load_virt(void)
{
    if (virt.pool_new_full)
        return 0;
    void *h = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "harness: %s\n", dlerror());
        return EXIT_SKIP;
    }
    void *sym;
#define VSYM(field, name) (sym = dlsym(h, name), memcpy(&virt.field, &sym, sizeof sym))
    VSYM(initialize, "virInitialize");
    VSYM(get_version, "virGetVersion");
    VSYM(pool_new_full, "virThreadPoolNewFull");
    VSYM(pool_send_job, "virThreadPoolSendJob");
    VSYM(pool_free, "virThreadPoolFree");
#undef VSYM
    if (!virt.initialize || !virt.get_version || !virt.pool_new_full ||
        !virt.pool_send_job || !virt.pool_free) {
        fprintf(stderr, "harness: libvirt.so.0 lacks virThreadPool symbols\n");
        return EXIT_SKIP;
    }
    if (virt.initialize() < 0)
        die(EXIT_LIB, "virInitialize failed");
    return 0;
}

static int load_none(void) { return 0; }

/* libvirt */
static void *virt_create(void)
{
    return virt.pool_new_full(1, 1, 0, tramp_work_free, "bench", NULL, NULL);
}
static int virt_submit(void *p, struct item *it)
{
    return virt.pool_send_job(p, 0, it) < 0 ? -1 : 0;
}
static void virt_release(void *p) { virt.pool_free(p); }

/* GLib */
static void *glib_new(gboolean exclusive, GDestroyNotify item_free_fn)
{
    GError *err = NULL;
    GThreadPool *p;
    if (item_free_fn)
        p = g_thread_pool_new_full(tramp_glib, NULL, item_free_fn, 1,
                                   exclusive, &err);
    else
        p = g_thread_pool_new(tramp_glib, NULL, 1, exclusive, &err);
    if (!p)
        die(EXIT_LIB, "g_thread_pool_new: %s", err ? err->message : "?");
    return p;
}
static void *glib_create(void) { return glib_new(FALSE, NULL); }
static void *glib_excl_create(void) { return glib_new(TRUE, NULL); }
static void *glib_full_create(void) { return glib_new(FALSE, item_free); }
static int glib_submit(void *p, struct item *it)
{
    return g_thread_pool_push(p, it, NULL) ? 0 : -1;
}
/* immediate: queued tasks are not run; wait: the running one is awaited. */
static void glib_release(void *p) { g_thread_pool_free(p, TRUE, TRUE); }

/* nde pool (1, 1, 0) */
static void *ndep_create(void)
{
    return nde.pool_new_full(1, 1, 0, tramp_nde_job, "bench", NULL);
}
static int ndep_submit(void *p, struct item *it)
{
    return nde.pool_send_job_full(p, 0, it, item_free) < 0 ? -1 : 0;
}
static void ndep_release(void *p) { nde.pool_free(p); }
static int ndek_submit(void *p, struct item *it)
{
    return nde.pool_send_job_keyed(p, it->idx % 1000 + 1, 0, it, item_free) < 0
               ? -1
               : 0;
}

/* nde events, one NDE_EVENT_ANY callback */
static void *ndee_create(void)
{
    struct nde_events *ev = nde.events_new("bench");
    if (ev && nde.events_register(ev, BENCH_EVENT_ANY, tramp_nde_event,
                                  NULL, NULL) < 0)
        die(EXIT_LIB, "nde_events_register failed");
    return ev;
}
static int ndee_submit(void *p, struct item *it)
{
    return nde.events_submit(p, BENCH_EVENT_UDEV_ADD, it, item_free) < 0 ? -1
                                                                      : 0;
}
static void ndee_release(void *p)
{
    nde.events_shutdown_prepare(p);
    nde.events_shutdown_wait(p, -1);
    nde.events_free(p);
}

/* inline: the producer runs the job itself: the harness's own ceiling */
static void *inline_create(void) { return (void *)1; }
static int inline_submit(void *p, struct item *it)
{
    (void)p;
    tramp_work_free(it, NULL);
    return 0;
}
static void inline_release(void *p) { (void)p; }

/* ring: the reference design (bench/ring.c); like the peers it has no free
 * function, so its job is the trampoline.  Bounded (65 536 slots, the
 * producer waits when full), so it has no memory or shutdown scenario. */
static void ring_run(void *p) { tramp_work_free(p, NULL); }
static void *ring_create(void) { return ring_new(65536, ring_run); }
static int ring_submit(void *p, struct item *it)
{
    ring_push(p, it);
    return 0;
}
static void ring_release(void *p) { ring_free(p); }

static const struct impl impls[] = {
    {"libvirt", load_virt, virt_create, virt_submit, virt_release, SC_ALL},
    {"glib", load_none, glib_create, glib_submit, glib_release, SC_ALL},
    {"glib-exclusive", load_none, glib_excl_create, glib_submit, glib_release,
     SC_ALL},
    {"glib-full", load_none, glib_full_create, glib_submit, glib_release,
     SC_ALL},
    {"nde-pool", load_nde_pool, ndep_create, ndep_submit, ndep_release,
     SC_ALL},
    {"nde-pool-keyed", load_nde_pool_keyed, ndep_create, ndek_submit,
     ndep_release, SC_BURST1 | SC_BURST4 | SC_LATENCY | SC_MEMORY},
    {"nde-events", load_nde_events, ndee_create, ndee_submit, ndee_release,
     SC_ALL},
    {"ring", load_none, ring_create, ring_submit, ring_release,
     SC_BURST1 | SC_BURST4 | SC_LATENCY | SC_IDLE},
    {"inline", load_none, inline_create, inline_submit, inline_release,
     SC_BURST1},
};

static const struct impl *impl;
static void *pool;

/* A scenario this implementation does not have: skip (exit 77). */
static void need(unsigned scenario)
{
    if (!(impl->scenarios & scenario)) {
        fprintf(stderr, "harness: %s has no such scenario\n", impl->name);
        exit(EXIT_SKIP);
    }
}

static void submit_or_die(struct item *it)
{
    if (impl->submit(pool, it) < 0)
        die(EXIT_LIB, "%s: submit refused", impl->name);
}

/* ------------------------------------------------------------------------ */
/* Helpers shared by the scenarios. */

/* Run `warm` throw-away jobs and wait until all are freed, so thread start-up
 * and first-touch costs stay out of what is measured.  Their items are not in
 * items[]: a private flag array checks them. */
static void warm_up(size_t warm)
{
    if (warm == 0 || impl->submit == inline_submit)
        return;
    uint8_t *saved_flags = freed_flag;
    uint8_t *wflags = calloc(warm, 1);
    struct item **w = malloc(warm * sizeof *w);
    if (!wflags || !w)
        die(EXIT_LIB, "out of memory");
    for (size_t i = 0; i < warm; i++)
        w[i] = new_item(i, K_WORK);
    freed_flag = wflags;
    atomic_store(&freed_cnt, 0);
    atomic_store(&target_freed, warm);
    for (size_t i = 0; i < warm; i++)
        submit_or_die(w[i]);
    sem_wait_intr(&done_sem);
    for (size_t i = 0; i < warm; i++)
        if (wflags[i] != 1)
            die(EXIT_CHECK, "warm-up job %zu freed %u times", i, wflags[i]);
    if (data_slab) /* item_free only marked them */
        for (size_t i = 0; i < warm; i++)
            free(w[i]);
    /* The worker's last store happened before its sem_post. */
    atomic_store(&target_freed, UINT64_MAX);
    atomic_store(&freed_cnt, 0);
    atomic_store(&ran_cnt, 0);
    freed_flag = saved_flags;
    free(wflags);
    free(w);
}

static void check_all_freed_once(void)
{
    for (size_t i = 0; i < n_items; i++)
        if (freed_flag[i] != 1)
            die(EXIT_CHECK, "%s: job %zu freed %u times", impl->name, i,
                freed_flag[i]);
    if (atomic_load(&bad_job))
        die(EXIT_CHECK, "%s: a job with a corrupted kind ran", impl->name);
}

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
        die(EXIT_LIB, "cannot read /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* Profiling only the timed part: bench/profile.sh runs the harness under
 * `perf record -D -1 --control fifo:CTL,ACK` and passes the two fifos in
 * BENCH_PERF_CTL / BENCH_PERF_ACK. */
static void perf_ctl(const char *cmd)
{
    static FILE *ctl, *ack;
    static int tried;
    if (!strcmp(cmd, "disable"))
        CALLGRIND_DUMP_STATS_AT("timed part");
    if (!tried) {
        tried = 1;
        const char *c = getenv("BENCH_PERF_CTL"), *a = getenv("BENCH_PERF_ACK");
        if (c && a) {
            ctl = fopen(c, "w");
            ack = fopen(a, "r");
        }
    }
    if (!ctl || !ack)
        return;
    char buf[16];
    fprintf(ctl, "%s\n", cmd);
    fflush(ctl);
    if (!fgets(buf, sizeof buf, ack))
        fprintf(stderr, "harness: no ack from perf\n");
}

static void print_head(const char *scenario, size_t n)
{
    printf("{\"impl\":\"%s\",\"scenario\":\"%s\",\"n\":%zu", impl->name,
           scenario, n);
}

/* ------------------------------------------------------------------------ */
/* Scenario: burst of n jobs from `producers` threads. */
struct producer {
    pthread_t th;
    size_t from, to;
    pthread_barrier_t *start;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    pthread_barrier_wait(p->start);
    for (size_t i = p->from; i < p->to; i++)
        submit_or_die(items[i]);
    return NULL;
}

static void scen_burst(size_t n, unsigned producers, size_t warm)
{
    need(producers <= 1 ? SC_BURST1 : SC_BURST4);
    alloc_items(n, K_WORK);
    pool = impl->create();
    if (!pool)
        die(EXIT_LIB, "%s: create failed", impl->name);
    warm_up(warm);
    atomic_store(&target_freed, n);

    uint64_t t0, c0, t_sub;
    perf_ctl("enable");
    if (producers <= 1) {
        c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        t0 = MONO();
        for (size_t i = 0; i < n; i++)
            submit_or_die(items[i]);
        t_sub = MONO();
    } else {
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, producers + 1);
        struct producer *pr = calloc(producers, sizeof *pr);
        for (unsigned k = 0; k < producers; k++) {
            pr[k].from = n * k / producers;
            pr[k].to = n * (k + 1) / producers;
            pr[k].start = &start;
            if (pthread_create(&pr[k].th, NULL, producer_main, &pr[k]))
                die(EXIT_LIB, "pthread_create failed");
        }
        c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
        t0 = MONO();
        pthread_barrier_wait(&start);
        for (unsigned k = 0; k < producers; k++)
            pthread_join(pr[k].th, NULL);
        t_sub = MONO();
        free(pr);
    }
    sem_wait_intr(&done_sem);
    uint64_t t1 = MONO();
    uint64_t c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    perf_ctl("disable");

    impl->release(pool);
    check_all_freed_once();
    if (atomic_load(&ran_cnt) != n)
        die(EXIT_CHECK, "%s: %llu jobs ran, expected %zu", impl->name,
            (unsigned long long)atomic_load(&ran_cnt), n);

    double secs = (double)(t1 - t0) / 1e9;
    print_head(producers <= 1 ? "burst1" : "burst4", n);
    printf(",\"producers\":%u,\"secs\":%.6f,\"jobs_per_s\":%.0f,"
           "\"submit_secs\":%.6f,\"cpu_ns_per_job\":%.2f}\n",
           producers, secs, (double)n / secs, (double)(t_sub - t0) / 1e9,
           (double)(c1 - c0) / (double)n);
}

/* ------------------------------------------------------------------------ */
/* Scenario: ping-pong latency: submit one job, wait for it to signal back. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void scen_latency(size_t n, size_t warm)
{
    need(SC_LATENCY);
    size_t total = n + warm;
    alloc_items(total, K_PING);
    uint64_t *lat = malloc(n * sizeof *lat);
    pool = impl->create();
    if (!pool)
        die(EXIT_LIB, "%s: create failed", impl->name);
    atomic_store(&target_freed, total);
    for (size_t i = 0; i < total; i++) {
        uint64_t t0 = MONO();
        submit_or_die(items[i]);
        if (pong_spin) {
            while (atomic_load_explicit(&pong, memory_order_acquire) != i + 1)
                cpu_relax();
        } else {
            sem_wait_intr(&pong_sem);
        }
        uint64_t t1 = MONO();
        if (i >= warm)
            lat[i - warm] = t1 - t0;
    }
    sem_wait_intr(&done_sem);
    impl->release(pool);
    check_all_freed_once();

    qsort(lat, n, sizeof *lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)lat[i];
#define PCT(p) ((double)lat[(size_t)((double)(n - 1) * (p))] / 1e3)
    print_head("latency", n);
    printf(",\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,"
           "\"max_us\":%.3f,\"mean_us\":%.3f}\n",
           PCT(0.50), PCT(0.99), PCT(0.999), (double)lat[n - 1] / 1e3,
           sum / (double)n / 1e3);
#undef PCT
    free(lat);
}

/* ------------------------------------------------------------------------ */
/* Scenario: memory per queued job: RSS delta while the worker is blocked. */
static void scen_memory(size_t n, size_t warm)
{
    need(SC_MEMORY);
    alloc_items(n + 1, K_WORK);
    items[n]->kind = K_GATE;
    pool = impl->create();
    if (!pool)
        die(EXIT_LIB, "%s: create failed", impl->name);
    warm_up(warm);
    atomic_store(&target_freed, n + 1);

    submit_or_die(items[n]);
    sem_wait_intr(&gate_started_sem);
    long rss0 = rss_bytes();
    uint64_t submit_cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    for (size_t i = 0; i < n; i++)
        submit_or_die(items[i]);
    uint64_t submit_cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    long rss1 = rss_bytes();
    sem_post(&gate_sem);
    sem_wait_intr(&done_sem);
    uint64_t drain_mono1 = now_ns(CLOCK_MONOTONIC);
    impl->release(pool);
    check_all_freed_once();

    /* Each side's own CPU clock, so time the thread spent descheduled on a
     * shared machine does not count: sending into a queue nobody takes
     * from, and draining a full queue (the job runs on the worker, so the
     * drain includes it and item_free for every implementation). */
    print_head("memory", n);
    printf(",\"rss_delta\":%ld,\"bytes_per_job\":%.2f"
           ",\"submit_cpu_ns_per_job\":%.2f,\"drain_cpu_ns_per_job\":%.2f"
           ",\"drain_secs\":%.6f}\n", rss1 - rss0,
           (double)(rss1 - rss0) / (double)n,
           (double)(submit_cpu1 - submit_cpu0) / (double)n,
           (double)(drain_cpu1 - drain_cpu0) / (double)n,
           (double)(drain_mono1 - drain_mono0) / 1e9);
}

/* ------------------------------------------------------------------------ */
/* Scenario: shutdown with n queued jobs behind a running one. */
static unsigned release_delay_ms = 100;
static uint64_t t_released;

static void *gate_releaser(void *arg)
{
    (void)arg;
    struct timespec ts = {release_delay_ms / 1000,
                          (long)(release_delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    t_released = MONO();
    sem_post(&gate_sem);
    return NULL;
}

static void scen_shutdown(size_t n, size_t warm)
{
    need(SC_SHUTDOWN);
    alloc_items(n + 1, K_WORK);
    items[0]->kind = K_GATE;
    pool = impl->create();
    if (!pool)
        die(EXIT_LIB, "%s: create failed", impl->name);
    warm_up(warm);

    submit_or_die(items[0]);
    sem_wait_intr(&gate_started_sem);
    for (size_t i = 1; i <= n; i++)
        submit_or_die(items[i]);

    /* The shutdown call starts while the gate job is still running; the
     * gate opens release_delay_ms later. */
    pthread_t th;
    if (pthread_create(&th, NULL, gate_releaser, NULL))
        die(EXIT_LIB, "pthread_create failed");
    uint64_t t_call = MONO();
    impl->release(pool);
    uint64_t t_end = MONO();
    pthread_join(th, NULL);

    size_t freed = 0, twice = 0;
    for (size_t i = 0; i <= n; i++) {
        freed += freed_flag[i] != 0;
        twice += freed_flag[i] > 1;
    }
    if (twice)
        die(EXIT_CHECK, "%s: %zu jobs freed more than once", impl->name,
            twice);
    uint64_t ran = atomic_load(&ran_cnt);
    print_head("shutdown", n);
    /* queued = the n jobs behind the running gate job */
    printf(",\"ran\":%llu,\"dropped\":%llu,\"leaked\":%zu,"
           "\"waited_for_running\":%s,\"ms_after_release\":%.3f,"
           "\"call_ms\":%.3f}\n",
           (unsigned long long)ran, (unsigned long long)(n + 1 - ran),
           n + 1 - freed, t_end >= t_released ? "true" : "false",
           t_end >= t_released ? (double)(t_end - t_released) / 1e6 : 0.0,
           (double)(t_end - t_call) / 1e6);
}

/* ------------------------------------------------------------------------ */
/* Scenario: CPU burnt by the library's threads while idle. */
struct thread_cpu {
    pid_t tid;
    uint64_t sched_ns; /* per-thread CPU clock */
    uint64_t ticks;    /* utime + stime from /proc/self/task/TID/stat */
    uint64_t ctxsw;    /* voluntary + involuntary context switches */
};

static uint64_t read_ticks(pid_t tid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *p = strrchr(buf, ')'); /* the comm field may hold spaces */
    if (!p)
        return 0;
    unsigned long utime = 0, stime = 0;
    /* after ')': state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &utime, &stime) != 2)
        return 0;
    return utime + stime;
}

static uint64_t read_ctxsw(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t total = 0;
    unsigned long v;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1 ||
            sscanf(line, "nonvoluntary_ctxt_switches: %lu", &v) == 1)
            total += v;
    }
    fclose(f);
    return total;
}

static size_t snapshot_threads(struct thread_cpu *out, size_t cap)
{
    pid_t self = getpid();
    DIR *d = opendir("/proc/self/task");
    if (!d)
        die(EXIT_LIB, "cannot open /proc/self/task");
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        pid_t tid = (pid_t)atoi(de->d_name);
        if (tid <= 0 || tid == self)
            continue;
        /* MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED) of the kernel */
        clockid_t clk = (clockid_t)((~(unsigned)tid << 3) | 6);
        struct timespec ts;
        out[n].tid = tid;
        out[n].sched_ns = clock_gettime(clk, &ts) == 0
                              ? (uint64_t)ts.tv_sec * 1000000000ull +
                                    (uint64_t)ts.tv_nsec
                              : 0;
        out[n].ticks = read_ticks(tid);
        out[n].ctxsw = read_ctxsw(tid);
        n++;
    }
    closedir(d);
    return n;
}

static void scen_idle(unsigned idle_ms, size_t warm)
{
    need(SC_IDLE);
    pool = impl->create();
    if (!pool)
        die(EXIT_LIB, "%s: create failed", impl->name);
    warm_up(warm ? warm : 1);

    /* The idle window starts the moment the last job was freed. */
    struct thread_cpu a[256], b[256];
    size_t na = snapshot_threads(a, 256);
    struct timespec ts = {idle_ms / 1000, (long)(idle_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    size_t nb = snapshot_threads(b, 256);

    uint64_t ns = 0, ticks = 0, sw = 0;
    for (size_t j = 0; j < nb; j++) {
        struct thread_cpu base = {0};
        for (size_t i = 0; i < na; i++)
            if (a[i].tid == b[j].tid)
                base = a[i];
        ns += b[j].sched_ns - base.sched_ns;
        ticks += b[j].ticks - base.ticks;
        sw += b[j].ctxsw - base.ctxsw;
    }
    impl->release(pool);

    double per_s = 1000.0 / idle_ms;
    print_head("idle", 0);
    printf(",\"idle_ms\":%u,\"threads\":%zu,\"cpu_us_per_s\":%.3f,"
           "\"stat_ms_per_s\":%.1f,\"wakeups_per_s\":%.1f}\n",
           idle_ms, nb, (double)ns / 1e3 * per_s,
           (double)ticks * 1000.0 / (double)sysconf(_SC_CLK_TCK) * per_s,
           (double)sw * per_s);
}

/* ------------------------------------------------------------------------ */
static void print_versions(void)
{
    printf("{\"glib\":\"%u.%u.%u\"", glib_major_version, glib_minor_version,
           glib_micro_version);
    if (load_virt() == 0) {
        unsigned long v = 0;
        virt.get_version(&v, NULL, NULL);
        printf(",\"libvirt\":\"%lu.%lu.%lu\"", v / 1000000, v / 1000 % 1000,
               v % 1000);
    }
    if (load_nde() == 0)
        printf(",\"nde\":\"%s\"", nde.version());
    printf("}\n");
}

static void usage(void)
{
    fprintf(stderr,
            "usage: harness --impl IMPL --scenario "
            "burst|latency|memory|shutdown|idle|version\n"
            "               [--n N] [--producers P] [--idle-ms MS] "
            "[--warm W] [--lib PATH]\n"
            "               [--release-delay-ms MS] [--pong spin|sem] "
            "[--data malloc|slab]\n"
            "IMPL:");
    for (size_t i = 0; i < sizeof impls / sizeof *impls; i++)
        fprintf(stderr, " %s", impls[i].name);
    fputc('\n', stderr);
    exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
    const char *impl_name = NULL, *scenario = NULL;
    size_t n = 0, warm = 1000;
    unsigned producers = 1, idle_ms = 1000;
    nde_lib_path = getenv("NDE_LIB") ? getenv("NDE_LIB")
                                     : "target/release/libnodedev_events.so";
    static const struct option opts[] = {
        {"impl", required_argument, NULL, 'i'},
        {"scenario", required_argument, NULL, 's'},
        {"n", required_argument, NULL, 'n'},
        {"producers", required_argument, NULL, 'p'},
        {"idle-ms", required_argument, NULL, 't'},
        {"warm", required_argument, NULL, 'w'},
        {"release-delay-ms", required_argument, NULL, 'd'},
        {"lib", required_argument, NULL, 'l'},
        {"pong", required_argument, NULL, 'g'},
        {"data", required_argument, NULL, 'D'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': impl_name = optarg; break;
        case 's': scenario = optarg; break;
        case 'n': n = strtoull(optarg, NULL, 10); break;
        case 'p': producers = (unsigned)atoi(optarg); break;
        case 't': idle_ms = (unsigned)atoi(optarg); break;
        case 'w': warm = strtoull(optarg, NULL, 10); break;
        case 'd': release_delay_ms = (unsigned)atoi(optarg); break;
        case 'l': nde_lib_path = optarg; break;
        case 'g': pong_spin = strcmp(optarg, "sem") != 0; break;
        case 'D': data_slab = !strcmp(optarg, "slab"); break;
        default: usage();
        }
    }
    if (!scenario)
        usage();
    if (!strcmp(scenario, "version")) {
        print_versions();
        return 0;
    }
    if (!impl_name)
        usage();
    for (size_t i = 0; i < sizeof impls / sizeof *impls; i++)
        if (!strcmp(impls[i].name, impl_name))
            impl = &impls[i];
    if (!impl)
        usage();
    if (idle_ms == 0 || producers == 0)
        usage();

    sem_init(&done_sem, 0, 0);
    sem_init(&gate_sem, 0, 0);
    sem_init(&gate_started_sem, 0, 0);
    sem_init(&pong_sem, 0, 0);
    int rc = impl->load();
    if (rc)
        return rc;

    if (!strcmp(scenario, "burst"))
        scen_burst(n ? n : 1000000, producers, warm);
    else if (!strcmp(scenario, "latency"))
        scen_latency(n ? n : 100000, warm);
    else if (!strcmp(scenario, "memory"))
        scen_memory(n ? n : 1000000, warm);
    else if (!strcmp(scenario, "shutdown"))
        scen_shutdown(n ? n : 100000, warm);
    else if (!strcmp(scenario, "idle"))
        scen_idle(idle_ms, warm);
    else
        usage();
    fflush(stdout);
    return 0;
}
