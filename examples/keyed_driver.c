/*
 * A node-device driver that handles its events on several workers
 * (nde_events_new_full): events about one device reach the callbacks one at
 * a time in the order they were submitted, events about different devices
 * are handled in parallel, and INIT and the mdevctl refresh are barriers
 * (they see every event before them and none after).
 *
 *   make examples && target/release/keyed-driver [--self-test] [WORKERS]
 *
 * Each device event sleeps 100 us, as reading sysfs and building a device
 * definition would. The program prints how long the same storm takes with
 * one worker and with WORKERS (default 4); with --self-test it also checks
 * the result and exits non-zero if anything is out of order.
 */
#define _GNU_SOURCE 1
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nodedev_events.h>

enum { DEVICES = 200, EVENTS = 4000 };

/* The driver's device table: one slot per device, written only by that
 * device's events (one at a time) or by a barrier (alone), so no lock. */
typedef struct {
    int present;
    unsigned generation;        /* the last event applied to this device */
} device;

typedef struct {
    device table[DEVICES];
    atomic_int running;         /* callbacks running now */
    atomic_int max_running;     /* most at once */
    atomic_int errors;
    int barriers;               /* written by barriers only */
    int released;               /* the callbacks' userdata_free ran */
} driver;

/* What the udev thread would queue: which device, and its nth event. */
typedef struct {
    int dev;
    unsigned generation;
} device_event;

static void sleep_100us(void)
{
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
}

static int enter(driver *drv)
{
    int now = atomic_fetch_add(&drv->running, 1) + 1;
    int max = atomic_load(&drv->max_running);
    while (now > max && !atomic_compare_exchange_weak(&drv->max_running, &max, now))
        ;
    return now;
}

/* INIT and MDEVCTL_CONFIG_CHANGED: libvirt's enumeration and mdevctl
 * refresh. A barrier runs alone, after every earlier event. */
static void on_barrier(void *userdata, nde_event_type type, void *data)
{
    (void)type;
    (void)data;
    driver *drv = userdata;
    if (enter(drv) != 1)
        atomic_fetch_add(&drv->errors, 1);
    drv->barriers++;
    sleep_100us();
    atomic_fetch_sub(&drv->running, 1);
}

/* ADD / CHANGE / REMOVE: libvirt's udevAddOneDevice / udevRemoveOneDevice.
 * May run on several workers at once, never twice at once for one device. */
static void on_device(void *userdata, nde_event_type type, void *data)
{
    driver *drv = userdata;
    device_event *ev = data;
    enter(drv);
    device *d = &drv->table[ev->dev];
    if (ev->generation != d->generation + 1) /* the device's previous event ran */
        atomic_fetch_add(&drv->errors, 1);
    sleep_100us();
    d->present = type != NDE_EVENT_UDEV_REMOVE;
    d->generation = ev->generation;
    atomic_fetch_sub(&drv->running, 1);
}

static void release_driver(void *userdata)
{
    ((driver *)userdata)->released++;
}

/* The key: anything that names the device for the whole event, never 0;
 * libvirt would hash the sysfs path, as here (FNV-1a). */
static uint64_t device_key(const char *syspath)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)syspath; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Submits the storm the way the udev monitor thread would, then waits. */
static int run(unsigned workers, driver *drv, double *seconds)
{
    memset(drv, 0, sizeof *drv);
    unsigned generation[DEVICES] = {0};
    nde_events *ev = nde_events_new_full("nodedev-event", workers);
    if (!ev)
        return -1;
    static const int device_types[] = {NDE_EVENT_UDEV_ADD, NDE_EVENT_UDEV_CHANGE, NDE_EVENT_UDEV_REMOVE};
    for (size_t i = 0; i < 3; i++)
        if (nde_events_register(ev, device_types[i], on_device, drv, release_driver) < 0)
            return -1;
    if (nde_events_register(ev, NDE_EVENT_INIT, on_barrier, drv, release_driver) < 0 ||
        nde_events_register(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, on_barrier, drv, release_driver) < 0)
        return -1;
    double t0 = now_s();

    if (nde_events_submit(ev, NDE_EVENT_INIT, NULL, NULL) < 0)
        return -1;
    uint64_t seed = 88172645463325252ULL;
    for (int i = 0; i < EVENTS; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if (i == EVENTS / 2) {
            /* An mdevctl refresh now (delay 0); a barrier, as every
             * scheduled event is. */
            if (nde_events_schedule(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 0) < 0)
                return -1;
            continue;
        }
        /* 10 % of the events are about one busy device. */
        int dev = seed % 10 == 0 ? 0 : (int)((seed >> 8) % DEVICES);
        char syspath[64];
        snprintf(syspath, sizeof syspath, "/sys/devices/virtual/net/veth%d", dev);
        device_event *e = malloc(sizeof *e);
        if (!e)
            return -1;
        *e = (device_event){dev, ++generation[dev]};
        /* e is taken even when this fails. */
        if (nde_events_submit_keyed(ev, device_types[(seed >> 32) % 3], device_key(syspath), e, free) < 0)
            return -1;
    }
    if (nde_events_wait_idle(ev, -1) < 0)
        return -1;
    *seconds = now_s() - t0;
    nde_pool_key_stats ks;
    if (nde_events_get_key_stats(ev, &ks) == 0)
        printf("  %u worker(s): %.3f s, %d at once at most, %llu events waited behind "
               "their device (deepest backlog %llu)\n",
               workers, *seconds, atomic_load(&drv->max_running),
               (unsigned long long)ks.waited_behind_key,
               (unsigned long long)ks.key_backlog_high_water);
    nde_events_shutdown_prepare(ev);
    if (nde_events_shutdown_wait(ev, -1) < 0)
        return -1;
    nde_events_free(ev);
    for (int d = 0; d < DEVICES; d++)
        if (drv->table[d].generation != generation[d])
            atomic_fetch_add(&drv->errors, 1);
    if (drv->barriers != 2 || drv->released != 5)
        atomic_fetch_add(&drv->errors, 1);
    return atomic_load(&drv->errors);
}

int main(int argc, char **argv)
{
    int self_test = 0;
    unsigned workers = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--self-test") == 0)
            self_test = 1;
        else
            workers = (unsigned)strtoul(argv[i], NULL, 10);
    }
    if (workers == 0)
        workers = 1;
    static driver drv;
    double one, many;
    printf("%d events over %d devices, 100 us each:\n", EVENTS, DEVICES);
    int e1 = run(1, &drv, &one);
    int e2 = run(workers, &drv, &many);
    printf("  speed-up: %.2fx\n", one / many);
    if (e1 != 0 || e2 != 0) {
        fprintf(stderr, "keyed-driver: %d / %d ordering errors\n", e1, e2);
        return 1;
    }
    if (self_test)
        printf("keyed-driver: ok\n");
    return 0;
}
