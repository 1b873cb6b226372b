/*
 * plugin-host: load nodedev-events at run time through its one entry point.
 *
 * A host that dlopen()s the library resolves nde_get_api alone, asks for the
 * ABI version its header describes, and calls everything through the
 * returned table. The program is not linked to the library: it needs only
 * the header (for the nde_api layout) and libdl.
 *
 *   cc -std=c11 plugin_host.c $(pkg-config --cflags nodedev-events) -o plugin-host
 *   ./plugin-host [path/to/libnodedev_events.so.0]
 *
 * Rules a host follows (see nde_api in nodedev_events.h):
 *  - NULL from nde_get_api: the library does not provide that ABI version;
 *  - a member is there when offsetof(nde_api, member) + sizeof(fn) <= size,
 *    so a host built against a newer header still runs on an older library
 *    that lacks the newest members;
 *  - free every object made through the table before dlclose().
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodedev_events.h"

/* True when the library's table has `member` (a member added after the
 * host's oldest supported library would be tested this way). */
#define NDE_API_HAS(api, member) \
    (offsetof(nde_api, member) + sizeof((api)->member) <= (size_t)(api)->size)

typedef const nde_api *(*nde_get_api_fn)(uint32_t abi_version);

static void print_event(void *userdata, nde_event_type type, void *data)
{
    (void)data;
    printf("  %s: event type %d\n", (const char *)userdata, (int)type);
}

static void square(void *jobdata, void *opaque)
{
    long *v = jobdata;
    (void)opaque;
    *v = *v * *v;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "libnodedev_events.so.0";
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "plugin-host: %s\n", dlerror());
        return 1;
    }
    nde_get_api_fn get_api;
    void *sym = dlsym(lib, "nde_get_api");
    if (!sym) {
        fprintf(stderr, "plugin-host: %s is not nodedev-events: %s\n", path, dlerror());
        dlclose(lib);
        return 1;
    }
    memcpy(&get_api, &sym, sizeof get_api); /* ISO C has no object-to-function cast */

    const nde_api *api = get_api(NDE_API_VERSION);
    if (!api || !NDE_API_HAS(api, events_get_stats)) {
        fprintf(stderr, "plugin-host: %s does not provide ABI %d\n", path, NDE_API_VERSION);
        dlclose(lib);
        return 1;
    }
    printf("loaded nodedev-events %s (ABI %u, table of %u bytes)\n", api->version(),
           (unsigned)api->abi_version, (unsigned)api->size);
    /* An optional part: a host that can live without the monitor tests
     * for it instead of refusing an older library. */
    printf("monitor layer: %s\n", NDE_API_HAS(api, device_get_property) ? "yes" : "no");

    /* a pool: four squares on up to two workers */
    long values[4] = {1, 2, 3, 4};
    nde_pool *pool = api->pool_new_full(1, 2, 0, square, "plugin-pool", NULL);
    if (!pool)
        return 1;
    for (int i = 0; i < 4; i++)
        if (api->pool_send_job(pool, 0, &values[i]) < 0)
            return 1;
    int rc = api->pool_wait_idle(pool, -1);
    printf("pool: %s; squares %ld %ld %ld %ld\n", api->result_str(rc), values[0], values[1],
           values[2], values[3]);
    api->pool_free(pool);

    /* events: ordered, with the debounced type collapsing a burst */
    nde_events *ev = api->events_new("plugin-events");
    if (!ev)
        return 1;
    api->events_register(ev, NDE_EVENT_ANY, print_event, "handler", NULL);
    api->events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL);
    api->events_submit(ev, NDE_EVENT_UDEV_REMOVE, NULL, NULL);
    api->events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 0);
    api->events_wait_idle(ev, -1);
    api->events_shutdown_prepare(ev);
    printf("events: submit after shutdown_prepare: %s\n",
           api->result_str(api->events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL)));
    api->events_free(ev);

    /* everything made through the table is freed: unloading is safe */
    if (dlclose(lib) != 0) {
        fprintf(stderr, "plugin-host: dlclose: %s\n", dlerror());
        return 1;
    }
    printf("plugin-host: ok\n");
    return values[3] == 16 ? 0 : 1;
}
