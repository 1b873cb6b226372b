/*
 * The nde_monitor / nde_device C API on this machine's real devices:
 * start, initial inventory as CREATED, lookups, foreach, device
 * accessors, references that outlive the monitor, settle, a real kernel
 * "change" uevent on lo (as root), stop/free, and bad input.
 *
 * Uses the kernel netlink group (no udevd runs here) and no mdevctl.
 */
#include "nde_test.h"

#include <fcntl.h>

static atomic_long ud_freed;
static atomic_int created, updated, lo_updates;

static void count_ud_free(void *p)
{
    (void)p;
    atomic_fetch_add(&ud_freed, 1);
}

static void on_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    CHECK(userdata == (void *)&created);
    CHECK(dev != NULL);
    CHECK(nde_device_get_name(dev) != NULL);
    if (event == NDE_LIFECYCLE_CREATED)
        atomic_fetch_add(&created, 1);
    if (event == NDE_LIFECYCLE_UPDATED)
        atomic_fetch_add(&updated, 1);
}

static void on_lo(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)userdata;
    CHECK(strcmp(nde_device_get_subsystem(dev), "net") == 0);
    if (event == NDE_LIFECYCLE_UPDATED)
        atomic_fetch_add(&lo_updates, 1);
}

static atomic_int raw_udev_events;

/* A raw handler on the monitor's events: UDEV_* events always carry the
 * struct udev_device * (never an internal NULL marker). */
static void raw_handler(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    if (type >= NDE_EVENT_UDEV_ADD && type <= NDE_EVENT_UDEV_MOVE) {
        CHECK(data != NULL);
        atomic_fetch_add(&raw_udev_events, 1);
    }
}

static int count_visit(void *userdata, const nde_device *dev)
{
    CHECK(nde_device_get_parent(dev) != NULL);
    (*(size_t *)userdata)++;
    return 0;
}

static int stop_at_second(void *userdata, const nde_device *dev)
{
    (void)dev;
    return ++(*(int *)userdata) == 2 ? 42 : 0;
}

static void test_bad_input(void)
{
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg - 1; /* wrong size: refused */
    CHECK(nde_monitor_new(&cfg) == NULL);
    cfg.size = sizeof cfg;
    cfg.flags = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_UDEV_EVENTS;
    CHECK(nde_monitor_new(&cfg) == NULL);
    cfg.flags = 1u << 20;
    CHECK(nde_monitor_new(&cfg) == NULL);

    atomic_store(&ud_freed, 0);
    CHECK_EQ(nde_monitor_register(NULL, NULL, on_lifecycle, NULL, count_ud_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&ud_freed), 1);
    CHECK_EQ(nde_monitor_deregister(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_monitor_start(NULL), NDE_ERR_INVALID);
    CHECK_EQ(nde_monitor_wait_initialized(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_monitor_settle(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_monitor_stop(NULL, 0), NDE_ERR_INVALID);
    CHECK_EQ(nde_monitor_device_count(NULL), 0);
    CHECK_EQ(nde_monitor_foreach(NULL, count_visit, NULL), NDE_ERR_INVALID);
    CHECK(nde_monitor_lookup(NULL, "computer") == NULL);
    CHECK(nde_monitor_lookup_by_syspath(NULL, "/sys") == NULL);
    CHECK(nde_monitor_get_events(NULL) == NULL);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(NULL, &st), NDE_ERR_INVALID);
    nde_monitor_free(NULL);
    CHECK(nde_device_ref(NULL) == NULL);
    nde_device_unref(NULL);
    CHECK(nde_device_get_name(NULL) == NULL);
    CHECK(nde_device_get_property(NULL, "X") == NULL);

    /* A monitor that never started: waits say STOPPED after stop, never hang */
    cfg.flags = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_wait_initialized(mon, 10), NDE_ERR_TIMEOUT);
    CHECK_EQ(nde_monitor_register(mon, NULL, NULL, NULL, count_ud_free), NDE_ERR_INVALID);
    CHECK_EQ(atomic_load(&ud_freed), 2);
    CHECK_EQ(nde_monitor_deregister(mon, 999), NDE_ERR_NOT_FOUND);
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_ERR_STOPPED);
    CHECK_EQ(nde_monitor_start(mon), NDE_ERR_STOPPED);
    nde_monitor_free(mon);
}

static int is_root(void)
{
    return geteuid() == 0;
}

static void test_inventory_and_events(void)
{
    atomic_store(&ud_freed, 0);
    atomic_store(&created, 0);
    atomic_store(&updated, 0);
    atomic_store(&lo_updates, 0);
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL;
    cfg.name = "ctest-mon";
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK(nde_monitor_get_events(mon) != NULL);
    int all = nde_monitor_register(mon, NULL, on_lifecycle, &created, count_ud_free);
    CHECK(all >= 0);
    CHECK(nde_monitor_register(mon, "net_lo_00_00_00_00_00_00", on_lo, NULL, count_ud_free) >= 0);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_start(mon), NDE_ERR_INVALID); /* already started */
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);

    size_t count = nde_monitor_device_count(mon);
    CHECK(count >= 2); /* at least computer and lo */
    /* registered before start: the whole initial inventory came as CREATED */
    CHECK_EQ(atomic_load(&created), (long)count);
    size_t visited = 0;
    CHECK_EQ(nde_monitor_foreach(mon, count_visit, &visited), NDE_OK);
    CHECK_EQ(visited, count);
    int seen = 0;
    CHECK_EQ(nde_monitor_foreach(mon, stop_at_second, &seen), 42);
    CHECK_EQ(seen, 2);

    nde_device *root = nde_monitor_lookup(mon, "computer");
    CHECK(root != NULL);
    CHECK(strcmp(nde_device_get_name(root), "computer") == 0);
    nde_device *lo = nde_monitor_lookup(mon, "net_lo_00_00_00_00_00_00");
    CHECK(lo != NULL);
    CHECK(strcmp(nde_device_get_subsystem(lo), "net") == 0);
    CHECK(strcmp(nde_device_get_syspath(lo), "/sys/devices/virtual/net/lo") == 0);
    CHECK(strcmp(nde_device_get_parent(lo), "computer") == 0);
    CHECK(strcmp(nde_device_get_property(lo, "INTERFACE"), "lo") == 0);
    CHECK(nde_device_get_property(lo, "NO_SUCH_PROPERTY") == NULL);
    CHECK(nde_device_get_property(lo, NULL) == NULL);
    nde_device *same = nde_monitor_lookup_by_syspath(mon, "/sys/devices/virtual/net/lo");
    CHECK(same == lo); /* the same immutable record */
    CHECK(nde_device_ref(same) == same);
    nde_device_unref(same);
    nde_device_unref(same);
    CHECK(nde_monitor_lookup(mon, "no_such_device") == NULL);
    CHECK(nde_monitor_lookup(mon, NULL) == NULL);

    atomic_store(&raw_udev_events, 0);
    int raw = nde_events_register(nde_monitor_get_events(mon), NDE_EVENT_ANY, raw_handler, NULL, count_ud_free);
    CHECK(raw >= 0);
    if (is_root()) {
        /* A real kernel uevent: "change" on lo, then settle. */
        int fd = open("/sys/class/net/lo/uevent", O_WRONLY);
        CHECK(fd >= 0);
        const char msg[] = "change";
        CHECK(write(fd, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1));
        close(fd);
        CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
        CHECK(atomic_load(&lo_updates) >= 1);
        CHECK(atomic_load(&updated) >= 1);
        CHECK(atomic_load(&raw_udev_events) >= 1);
    } else {
        printf("monitor_test: not root: skipping the real uevent on lo\n");
    }

    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.overflows, 0);
    CHECK_EQ(nde_events_deregister(nde_monitor_get_events(mon), raw), NDE_OK);
    CHECK_EQ(nde_monitor_deregister(mon, all), NDE_OK);
    CHECK_EQ(atomic_load(&ud_freed), 2);
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    CHECK_EQ(nde_monitor_settle(mon, 0), NDE_ERR_STOPPED);
    nde_monitor_free(mon);
    CHECK_EQ(atomic_load(&ud_freed), 3);

    /* references outlive the monitor */
    CHECK(strcmp(nde_device_get_name(lo), "net_lo_00_00_00_00_00_00") == 0);
    nde_device_unref(lo);
    nde_device_unref(root);
}

int main(void)
{
    nde_test_begin();
    test_bad_input();
    test_inventory_and_events();
    nde_test_end();
    printf("monitor_test: ok\n");
    return 0;
}
