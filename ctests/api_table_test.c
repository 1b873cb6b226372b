/*
 * A plugin host that knows one symbol: nde_get_api.
 *
 * It dlopen()s the library, resolves only nde_get_api, checks the table's
 * version and size, and runs a pool round trip and an events round trip
 * through the table. Then it loads, uses, frees and unloads the library 200
 * times while other host threads stay alive (one that never touches the
 * library, and, for the second half, one that uses it through its own
 * handle, as a second plugin would).
 *
 * tests/ctests.rs builds this file in every mode. With NDE_TEST_DLOPEN the
 * program is not linked to the library at all and loads NDE_TEST_LIBRARY.
 * Linked to the .so, it finds the file it was linked to with dladdr() and
 * dlopen()s that; linked to the .a there is no file to load, so it calls
 * nde_get_api directly and skips the load/unload loop.
 *
 * This file deliberately does not include nde_test.h: that header resolves
 * every nde_* function with dlsym, and this host must not.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodedev_events.h"

#include "nde_check.h"

typedef const nde_api *(*get_api_fn)(uint32_t abi_version);
typedef void (*any_fn)(void);

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- the loader: one dlopen, one dlsym ---------------------------------- */

static void *load(const char *path, const nde_api **api_out)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(1);
    }
    void *sym = dlsym(handle, "nde_get_api");
    CHECK(sym != NULL);
    get_api_fn get_api;
    memcpy(&get_api, &sym, sizeof get_api); /* ISO C: no object-to-function cast */
    const nde_api *api = get_api(NDE_API_VERSION);
    CHECK(api != NULL);
    CHECK_EQ(api->abi_version, NDE_API_VERSION);
    CHECK(api->size >= sizeof(nde_api));
    *api_out = api;
    return handle;
}

/* The file to dlopen, or NULL when the library is linked in statically. */
static const char *library_path(void)
{
#ifdef NDE_TEST_DLOPEN
    const char *path = getenv("NDE_TEST_LIBRARY");
    return path ? path : "libnodedev_events.so.0";
#else
    get_api_fn self = nde_get_api;
    void *addr;
    memcpy(&addr, &self, sizeof addr);
    Dl_info info;
    if (dladdr(addr, &info) && info.dli_fname && strstr(info.dli_fname, "libnodedev_events"))
        return info.dli_fname; /* stays valid: the linked library is never unloaded */
    return NULL;
#endif
}

/* ---- checks through a table --------------------------------------------- */

static atomic_long freed;

static void count_free(void *p)
{
    atomic_fetch_add(&freed, 1);
    free(p);
}

static void sum_job(void *jobdata, void *opaque)
{
    atomic_fetch_add((atomic_long *)opaque, *(long *)jobdata);
}

typedef struct {
    atomic_long events, mdevctl, sum;
} event_counts;

static void count_event(void *userdata, nde_event_type type, void *data)
{
    event_counts *c = userdata;
    atomic_fetch_add(&c->events, 1);
    if (type == NDE_EVENT_MDEVCTL_CONFIG_CHANGED)
        atomic_fetch_add(&c->mdevctl, 1);
    if (data)
        atomic_fetch_add(&c->sum, *(long *)data);
}

static atomic_int userdata_released;
static void release_userdata(void *p)
{
    (void)p;
    atomic_fetch_add(&userdata_released, 1);
}

static long *boxed(long v)
{
    long *p = malloc(sizeof *p);
    CHECK(p != NULL);
    *p = v;
    return p;
}

static void check_table_shape(const nde_api *api)
{
    CHECK_EQ(api->abi_version, 1);
    /* Built from the same tree: the library's table is this header's. */
    CHECK_EQ(api->size, sizeof(nde_api));
    /* Every member within size is a function (never NULL). */
    const unsigned char *base = (const unsigned char *)api;
    size_t members = 0;
    for (size_t off = offsetof(nde_api, result_str); off + sizeof(any_fn) <= api->size;
         off += sizeof(any_fn)) {
        any_fn f;
        memcpy(&f, base + off, sizeof f);
        CHECK(f != NULL);
        members++;
    }
    /* common 2 + pool 15 + events 10, then the monitor tail: 14 + 10,
     * then pool_new_config, the keyed pool 3, set_log_callback */
    CHECK(members >= 56);
    /* The way a host tests for a member a newer header may have added. */
    CHECK(offsetof(nde_api, events_get_stats) + sizeof(any_fn) <= api->size);
    CHECK(offsetof(nde_api, device_get_property) + sizeof(any_fn) <= api->size);
    CHECK(offsetof(nde_api, pool_new_config) + sizeof(any_fn) <= api->size);
    CHECK(api->pool_new_config(NULL) == NULL);
    CHECK(offsetof(nde_api, pool_get_key_stats) + sizeof(any_fn) <= api->size);
    CHECK(offsetof(nde_api, set_log_callback) + sizeof(any_fn) <= api->size);
    /* Restoring the default log frees nothing but what it is given. */
    atomic_store(&userdata_released, 0);
    CHECK_EQ(api->set_log_callback(NULL, NULL, release_userdata), NDE_OK);
    CHECK_EQ(atomic_load(&userdata_released), 1);
    /* The monitor tail answers bad input as the exported functions do. */
    CHECK(api->monitor_start(NULL) == NDE_ERR_INVALID);
    CHECK(api->monitor_device_count(NULL) == 0);
    CHECK(api->monitor_get_events(NULL) == NULL);
    CHECK(api->device_get_name(NULL) == NULL);
    CHECK(api->device_ref(NULL) == NULL);
    api->device_unref(NULL);
    api->monitor_free(NULL);
    CHECK(strcmp(api->version(), NDE_VERSION_STRING) == 0);
    CHECK(strcmp(api->result_str(NDE_ERR_STOPPED), api->result_str(NDE_OK)) != 0);
}

static void pool_round_trip(const nde_api *api)
{
    atomic_long sum = 0;
    atomic_store(&freed, 0);
    nde_pool *pool = api->pool_new_full(1, 2, 0, sum_job, "api-pool", &sum);
    CHECK(pool != NULL);
    for (long i = 1; i <= 100; i++)
        CHECK_EQ(api->pool_send_job_full(pool, 0, boxed(i), count_free), NDE_OK);
    CHECK_EQ(api->pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&sum), 5050);
    CHECK_EQ(atomic_load(&freed), 100);
    CHECK_EQ(api->pool_get_max_workers(pool), 2);
    CHECK_EQ(api->pool_get_job_queue_depth(pool), 0);
    nde_pool_stats st;
    CHECK_EQ(api->pool_get_stats(pool, &st), NDE_OK);
    CHECK_EQ(st.completed, 100);
    /* Keyed jobs and a barrier through the table (appended members). */
    for (long i = 1; i <= 10; i++)
        CHECK_EQ(api->pool_send_job_keyed(pool, (uint64_t)(i % 3 + 1), 0, boxed(i), count_free), NDE_OK);
    CHECK_EQ(api->pool_send_barrier(pool, boxed(1000), count_free), NDE_OK);
    CHECK_EQ(api->pool_wait_idle(pool, -1), NDE_OK);
    CHECK_EQ(atomic_load(&sum), 5050 + 55 + 1000);
    CHECK_EQ(atomic_load(&freed), 111);
    nde_pool_key_stats ks;
    CHECK_EQ(api->pool_get_key_stats(pool, &ks), NDE_OK);
    CHECK_EQ(ks.keyed_submitted, 10);
    CHECK_EQ(ks.barriers_submitted, 1);
    CHECK_EQ(ks.active_keys, 0);
    api->pool_stop(pool);
    CHECK_EQ(api->pool_send_job_full(pool, 0, boxed(1), count_free), NDE_ERR_STOPPED);
    CHECK_EQ(atomic_load(&freed), 112); /* freed on the failed send */
    CHECK_EQ(api->pool_drain(pool), NDE_OK);
    api->pool_free(pool);
}

static void events_round_trip(const nde_api *api, int debounce)
{
    event_counts c;
    atomic_store(&c.events, 0);
    atomic_store(&c.mdevctl, 0);
    atomic_store(&c.sum, 0);
    atomic_store(&freed, 0);
    atomic_store(&userdata_released, 0);
    nde_events *ev = api->events_new("api-events");
    CHECK(ev != NULL);
    int id = api->events_register(ev, NDE_EVENT_ANY, count_event, &c, release_userdata);
    CHECK(id >= 0);
    for (long i = 1; i <= 10; i++)
        CHECK_EQ(api->events_submit(ev, NDE_EVENT_UDEV_ADD, boxed(i), count_free), NDE_OK);
    if (debounce) {
        /* five requests well within the delay collapse into one event */
        for (int i = 0; i < 5; i++)
            CHECK_EQ(api->events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 300), NDE_OK);
        for (int i = 0; i < 2000 && atomic_load(&c.mdevctl) == 0; i++)
            nap_ms(5);
    } else {
        CHECK_EQ(api->events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 0), NDE_OK);
    }
    CHECK_EQ(api->events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&c.sum), 55);
    CHECK_EQ(atomic_load(&c.mdevctl), 1);
    CHECK_EQ(atomic_load(&freed), 10);
    nde_pool_stats st;
    CHECK_EQ(api->events_get_stats(ev, &st), NDE_OK);
    CHECK_EQ(st.completed, 11);
    CHECK_EQ(api->events_deregister(ev, id), NDE_OK);
    CHECK_EQ(atomic_load(&userdata_released), 1);
    CHECK_EQ(api->events_deregister(ev, id), NDE_ERR_NOT_FOUND);
    CHECK_EQ(api->events_shutdown_prepare(ev), NDE_OK);
    CHECK_EQ(api->events_submit(ev, NDE_EVENT_UDEV_ADD, boxed(1), count_free), NDE_ERR_STOPPED);
    CHECK_EQ(api->events_shutdown_wait(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&freed), 11);
    CHECK_EQ(atomic_load(&c.mdevctl), 1); /* still one: the burst fired once */
    api->events_free(ev);
}

static void test_versions(get_api_fn get_api)
{
    CHECK(get_api(0) == NULL);
    CHECK(get_api(NDE_API_VERSION + 1) == NULL);
    CHECK(get_api(UINT32_MAX) == NULL);
    CHECK(get_api(NDE_API_VERSION) == get_api(NDE_API_VERSION)); /* static */
}

/* ---- load / use / free / unload, with host threads alive ---------------- */

static atomic_int stop_hosts;
static atomic_long host_ticks;

/* A thread of the host that has nothing to do with the library. */
static void *idle_host_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_hosts)) {
        atomic_fetch_add(&host_ticks, 1);
        nap_ms(1);
    }
    return NULL;
}

/* Another plugin of the host using the library through its own handle. */
static void *plugin_host_thread(void *arg)
{
    const nde_api *api;
    void *handle = load((const char *)arg, &api);
    event_counts c;
    atomic_store(&c.events, 0);
    atomic_store(&c.mdevctl, 0);
    atomic_store(&c.sum, 0);
    nde_events *ev = api->events_new("plugin");
    CHECK(ev != NULL);
    CHECK(api->events_register(ev, NDE_EVENT_ANY, count_event, &c, NULL) >= 0);
    long sent = 0;
    while (!atomic_load(&stop_hosts)) {
        CHECK_EQ(api->events_submit(ev, NDE_EVENT_UDEV_CHANGE, NULL, NULL), NDE_OK);
        sent++;
        if (sent % 16 == 0)
            CHECK_EQ(api->events_wait_idle(ev, -1), NDE_OK);
    }
    CHECK_EQ(api->events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&c.events), sent);
    api->events_free(ev);
    CHECK_EQ(dlclose(handle), 0);
    return NULL;
}

enum { LOOPS = 200 };

static void test_load_unload_loop(const char *path)
{
    pthread_t idle, plugin;
    int plugin_started = 0;
    atomic_store(&stop_hosts, 0);
    CHECK_EQ(pthread_create(&idle, NULL, idle_host_thread, NULL), 0);
    for (int i = 0; i < LOOPS; i++) {
        if (i == LOOPS / 2) {
            CHECK_EQ(pthread_create(&plugin, NULL, plugin_host_thread, (void *)path), 0);
            plugin_started = 1;
        }
        const nde_api *api;
        void *handle = load(path, &api);
        atomic_long sum = 0;
        atomic_store(&freed, 0);
        nde_pool *pool = api->pool_new_full(1, 1, 0, sum_job, "loop", &sum);
        CHECK(pool != NULL);
        for (long j = 1; j <= 4; j++)
            CHECK_EQ(api->pool_send_job_full(pool, 0, boxed(j), count_free), NDE_OK);
        nde_events *ev = api->events_new("loop-ev");
        CHECK(ev != NULL);
        event_counts c;
        atomic_store(&c.events, 0);
        atomic_store(&c.mdevctl, 0);
        atomic_store(&c.sum, 0);
        CHECK(api->events_register(ev, NDE_EVENT_ANY, count_event, &c, NULL) >= 0);
        CHECK_EQ(api->events_submit(ev, NDE_EVENT_UDEV_ADD, boxed(7), count_free), NDE_OK);
        /* leave a job of each queued or running at free: discarded or run,
         * its data is freed either way */
        api->pool_free(pool);
        api->events_free(ev);
        CHECK_EQ(atomic_load(&freed), 5);
        CHECK_EQ(dlclose(handle), 0);
    }
    atomic_store(&stop_hosts, 1);
    CHECK_EQ(pthread_join(idle, NULL), 0);
    if (plugin_started)
        CHECK_EQ(pthread_join(plugin, NULL), 0);
    CHECK(atomic_load(&host_ticks) > 0);
}

int main(void)
{
    const char *path = library_path();
    const nde_api *api;
    void *handle = NULL;
    get_api_fn get_api;
    if (path) {
        handle = load(path, &api);
        void *sym = dlsym(handle, "nde_get_api");
        memcpy(&get_api, &sym, sizeof get_api);
    } else {
#ifdef NDE_TEST_DLOPEN
        abort(); /* unreachable: dlopen mode always has a path */
#else
        get_api = nde_get_api; /* static build: the table is linked in */
        api = get_api(NDE_API_VERSION);
        CHECK(api != NULL);
#endif
    }
    test_versions(get_api);
    check_table_shape(api);
    pool_round_trip(api);
    events_round_trip(api, 1);
    if (handle)
        CHECK_EQ(dlclose(handle), 0);

    if (path) {
        test_load_unload_loop(path);
        printf("api_table_test: ok (%s, %d load/unload cycles)\n", path, LOOPS);
    } else {
        printf("api_table_test: ok (static build: no library file to load)\n");
    }
    return 0;
}
