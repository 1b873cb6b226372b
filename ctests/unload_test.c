/*
 * A host that loads the library as a plugin, uses the pool and events
 * layers, frees everything and unloads it, 200 times, while two other host
 * threads keep running: one that never touches the library, and a second
 * "plugin" that loads, uses and unloads the library through its own handle
 * at the same time. Nothing may crash, hang or leak, at dlclose or at exit.
 *
 * Each cycle starts every kind of thread the library makes (ordinary,
 * lazily started and priority workers, the events worker, the debounce
 * timer thread), leaves jobs and events queued at free, and every fourth
 * cycle frees a pool from inside its own job and dlcloses right away, while
 * that pool's last worker may still be finishing the deferred release: the
 * case `-z nodelete` is there for.
 *
 * Every function is resolved with dlsym from the handle (the program never
 * links against the library's symbols), so this runs the same way in every
 * mode of tests/ctests.rs. The library is NDE_TEST_LIBRARY when set, else
 * the soname (found through the rpath in the linked modes), else the
 * libnodedev_events.so.0 two directories above this executable
 * (target/<profile>/ctests/<mode>/unload_test).
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodedev_events.h"

#include "nde_check.h"

static void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

/* ---- the functions, resolved per load ---- */
#define NDE_FUNCTIONS(X)                                                    \
    X(nde_version) X(nde_result_str) X(nde_pool_new_full)                  \
    X(nde_pool_send_job_full) X(nde_pool_wait_idle) X(nde_pool_free)       \
    X(nde_pool_stop) X(nde_pool_get_stats) X(nde_events_new)               \
    X(nde_events_register) X(nde_events_deregister) X(nde_events_submit)   \
    X(nde_events_schedule) X(nde_events_wait_idle)                         \
    X(nde_events_shutdown_prepare) X(nde_events_free)

typedef struct {
#define FIELD(name) __typeof__(&name) name;
    NDE_FUNCTIONS(FIELD)
#undef FIELD
} api;

static char library[PATH_MAX];

static void *try_open(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h)
        snprintf(library, sizeof library, "%s", path);
    return h;
}

/* Finds the library once; later loads use the same path. */
static void *open_library(void)
{
    if (library[0])
        return dlopen(library, RTLD_NOW | RTLD_LOCAL);
    const char *env = getenv("NDE_TEST_LIBRARY");
    if (env)
        return try_open(env);
    void *h = try_open("libnodedev_events.so.0");
    if (h)
        return h;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    CHECK(slash != NULL);
    *slash = '\0';
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/../../libnodedev_events.so.0", exe);
    CHECK(strlen(path) < sizeof library);
    return try_open(path);
}

static void *load(api *a)
{
    void *h = open_library();
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        exit(1);
    }
#define RESOLVE(name)                                                  \
    do {                                                               \
        void *sym = dlsym(h, #name);                                   \
        if (!sym) {                                                    \
            fprintf(stderr, "dlsym %s: %s\n", #name, dlerror());       \
            exit(1);                                                   \
        }                                                              \
        memcpy(&a->name, &sym, sizeof sym);                            \
    } while (0);
    NDE_FUNCTIONS(RESOLVE)
#undef RESOLVE
    return h;
}

/* ---- counting ---- */
typedef struct {
    atomic_long made, freed, ran, events, released;
    const api *a;
    nde_pool *self_freeing; /* freed by its own job... */
    atomic_int all_sent;    /* ...once the host has stopped using it */
} counts;

typedef struct {
    counts *c;
    long value;
} item;

static item *item_new(counts *c, long value)
{
    item *it = malloc(sizeof *it);
    CHECK(it != NULL);
    it->c = c;
    it->value = value;
    atomic_fetch_add(&c->made, 1);
    return it;
}

static void item_free(void *p)
{
    item *it = p;
    atomic_fetch_add(&it->c->freed, 1);
    free(it);
}

static void job(void *jobdata, void *opaque)
{
    item *it = jobdata;
    counts *c = opaque;
    CHECK(it->c == c);
    atomic_fetch_add(&c->ran, 1);
    if (it->value < 0) {
        /* release the pool from inside its own job, once the host has
         * queued the jobs that the deferred release will discard */
        for (long i = 0; i < 200000 && !atomic_load(&c->all_sent); i++)
            nap_us(50);
        CHECK(atomic_load(&c->all_sent));
        c->a->nde_pool_free(c->self_freeing);
    }
}

static void on_event(void *userdata, nde_event_type type, void *data)
{
    counts *c = userdata;
    (void)type;
    if (data)
        CHECK(((item *)data)->c == c);
    atomic_fetch_add(&c->events, 1);
}

static void release(void *userdata)
{
    counts *c = userdata;
    atomic_fetch_add(&c->released, 1);
}

static void counts_init(counts *c, const api *a)
{
    atomic_init(&c->made, 0);
    atomic_init(&c->freed, 0);
    atomic_init(&c->ran, 0);
    atomic_init(&c->events, 0);
    atomic_init(&c->released, 0);
    c->a = a;
    c->self_freeing = NULL;
    atomic_init(&c->all_sent, 0);
}

/* Waits (bounded by iterations, not time) for `*v == want`. */
static void await_eq(atomic_long *v, long want)
{
    for (long i = 0; i < 200000 && atomic_load(v) != want; i++)
        nap_us(50);
    CHECK_EQ(atomic_load(v), want);
}

/* One use of every layer; everything is freed before it returns, except
 * that a self-freeing pool's last worker may still be exiting. */
static void use_library(const api *a, int cycle, counts *c)
{
    counts_init(c, a);
    CHECK(a->nde_version() != NULL && a->nde_result_str(NDE_ERR_THREAD) != NULL);

    /* A pool with a lazily started worker and a priority worker; jobs
     * queued behind a running one are discarded by free. */
    nde_pool *pool = a->nde_pool_new_full(0, 2, 1, job, "unload-pool", c);
    CHECK(pool != NULL);
    for (long i = 0; i < 6; i++)
        CHECK_EQ(a->nde_pool_send_job_full(pool, i % 3 == 0, item_new(c, i), item_free), NDE_OK);
    if (cycle % 2 == 0)
        CHECK_EQ(a->nde_pool_wait_idle(pool, -1), NDE_OK);
    for (long i = 0; i < 4; i++)
        CHECK_EQ(a->nde_pool_send_job_full(pool, 0, item_new(c, i), item_free), NDE_OK);
    nde_pool_stats st;
    CHECK_EQ(a->nde_pool_get_stats(pool, &st), NDE_OK);
    a->nde_pool_free(pool);

    /* Events with a debounce timer armed at free. */
    nde_events *ev = a->nde_events_new("unload-ev");
    CHECK(ev != NULL);
    int any = a->nde_events_register(ev, NDE_EVENT_ANY, on_event, c, release);
    int one = a->nde_events_register(ev, NDE_EVENT_UDEV_ADD, on_event, c, release);
    CHECK(any >= 0 && one >= 0);
    for (long i = 0; i < 4; i++)
        CHECK_EQ(a->nde_events_submit(ev, NDE_EVENT_UDEV_ADD, item_new(c, i), item_free), NDE_OK);
    CHECK_EQ(a->nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 1), NDE_OK);
    if (cycle % 8 == 0) {
        /* let the timer fire once: its event reaches the ANY callback */
        CHECK_EQ(a->nde_events_wait_idle(ev, -1), NDE_OK);
        await_eq(&c->events, 4 * 2 + 1);
    }
    CHECK_EQ(a->nde_events_deregister(ev, one), NDE_OK);
    CHECK_EQ(atomic_load(&c->released), 1);
    CHECK_EQ(a->nde_events_schedule(ev, NDE_EVENT_UDEV_CHANGE, 50), NDE_OK);
    if (cycle % 3 == 0)
        CHECK_EQ(a->nde_events_shutdown_prepare(ev), NDE_OK);
    a->nde_events_free(ev);
    CHECK_EQ(atomic_load(&c->released), 2);

    if (cycle % 4 == 1) {
        /* A pool released from inside its own job: the job's pool_free
         * returns at once and the last worker finishes the release. */
        nde_pool *self = a->nde_pool_new_full(1, 1, 0, job, "unload-self", c);
        CHECK(self != NULL);
        c->self_freeing = self;
        CHECK_EQ(a->nde_pool_send_job_full(self, 0, item_new(c, -1), item_free), NDE_OK);
        for (long i = 0; i < 3; i++)
            CHECK_EQ(a->nde_pool_send_job_full(self, 0, item_new(c, i), item_free), NDE_OK);
        atomic_store(&c->all_sent, 1); /* from here on `self` is not ours to use */
    }
    /* every free_fn ran exactly once, whatever path it took */
    await_eq(&c->freed, atomic_load(&c->made));
}

/* ---- the other host threads ---- */
static atomic_int stop_hosts;
static atomic_long host_ticks, plugin_cycles;

static void *idle_host(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_hosts)) {
        atomic_fetch_add(&host_ticks, 1);
        nap_us(200);
    }
    return NULL;
}

static void *plugin_host(void *arg)
{
    (void)arg;
    for (int cycle = 0; !atomic_load(&stop_hosts); cycle++) {
        api a;
        void *h = load(&a);
        counts c;
        use_library(&a, cycle, &c);
        CHECK_EQ(dlclose(h), 0);
        atomic_fetch_add(&plugin_cycles, 1);
    }
    return NULL;
}

int main(void)
{
    int cycles = 200;
    if (getenv("NDE_TEST_UNDER_VALGRIND"))
        cycles = 50; /* every cycle starts ~6 threads; valgrind serialises them */

    /* First load, alone: finds the path. */
    api a;
    void *h = load(&a);
    counts c;
    use_library(&a, 0, &c);
    CHECK_EQ(dlclose(h), 0);

    pthread_t idle, plugin;
    CHECK_EQ(pthread_create(&idle, NULL, idle_host, NULL), 0);
    CHECK_EQ(pthread_create(&plugin, NULL, plugin_host, NULL), 0);
    for (int i = 1; i <= cycles; i++) {
        h = load(&a);
        use_library(&a, i, &c);
        CHECK_EQ(dlclose(h), 0);
    }
    atomic_store(&stop_hosts, 1);
    CHECK_EQ(pthread_join(idle, NULL), 0);
    CHECK_EQ(pthread_join(plugin, NULL), 0);
    CHECK(atomic_load(&host_ticks) > 0);

    /* -z nodelete: the code stays mapped after the last dlclose, so a
     * worker finishing a deferred release can never run into unmapped code. */
    void *still = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
    CHECK(still != NULL);
    CHECK_EQ(dlclose(still), 0);

    printf("unload_test: ok (%s, %d load/use/free/unload cycles, %ld more by a second plugin thread)\n",
           library, cycles, atomic_load(&plugin_cycles));
    return 0;
}
