/*
 * A node-device driver that handles udev events on several workers with
 * keyed jobs: events about one device run one at a time in the order they
 * arrived, events about different devices run in parallel, and the initial
 * enumeration and an mdevctl refresh are barriers (they see every event
 * before them and none after).
 *
 *   make examples && target/release/keyed-driver [--self-test] [WORKERS]
 *
 * Each handler sleeps 100 us, as reading sysfs and building a device
 * definition would. The program prints how long the same storm takes with
 * one worker and with WORKERS (default 4); with --self-test it also checks
 * the result and exits non-zero if anything is out of order.
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nodedev_events.h>

enum { DEVICES = 200, EVENTS = 4000 };
enum action { ACT_INIT, ACT_ADD, ACT_CHANGE, ACT_REMOVE, ACT_MDEVCTL_REFRESH };

/* The driver's device table: one slot per device, written only by jobs of
 * that device's key (or by a barrier, which runs alone), so no lock. */
typedef struct {
    int present;
    unsigned generation;       /* the last event applied to this device */
} device;

typedef struct {
    device table[DEVICES];
    atomic_int running;         /* jobs running now */
    atomic_int max_running;     /* most at once */
    atomic_int errors;
    int refreshes;              /* written by barriers only */
} driver;

typedef struct {
    enum action action;
    int dev;
    unsigned generation;        /* per device, in arrival order */
} event;

static void busy_100us(void)
{
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
}

/* The pool's job function: libvirt's nodeDeviceEvent handler would be here. */
static void handle_event(void *jobdata, void *opaque)
{
    driver *drv = opaque;
    event *ev = jobdata;
    int now = atomic_fetch_add(&drv->running, 1) + 1;
    int max = atomic_load(&drv->max_running);
    while (now > max && !atomic_compare_exchange_weak(&drv->max_running, &max, now))
        ;
    switch (ev->action) {
    case ACT_INIT:
    case ACT_MDEVCTL_REFRESH:
        /* A barrier: nothing else runs, every earlier event was applied. */
        if (now != 1)
            atomic_fetch_add(&drv->errors, 1);
        drv->refreshes++;
        busy_100us();
        break;
    default: {
        device *d = &drv->table[ev->dev];
        /* Same key: the previous event of this device has finished. */
        if (ev->generation != d->generation + 1)
            atomic_fetch_add(&drv->errors, 1);
        busy_100us();
        d->present = ev->action != ACT_REMOVE;
        d->generation = ev->generation;
        break;
    }
    }
    atomic_fetch_sub(&drv->running, 1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        perror("malloc");
        exit(1);
    }
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sends the storm the way the udev monitor thread would, then waits. */
static int run(size_t workers, driver *drv, double *seconds)
{
    memset(drv->table, 0, sizeof drv->table);
    atomic_store(&drv->running, 0);
    atomic_store(&drv->max_running, 0);
    atomic_store(&drv->errors, 0);
    drv->refreshes = 0;
    unsigned generation[DEVICES] = {0};
    nde_pool *pool = nde_pool_new_full(workers, workers, 0, handle_event, "nodedev-event", drv);
    if (!pool)
        return -1;
    double t0 = now_s();

    event *init = xmalloc(sizeof *init);
    *init = (event){ACT_INIT, -1, 0};
    if (nde_pool_send_barrier(pool, init, free) < 0) /* init is freed even on failure */
        return -1;
    uint64_t seed = 88172645463325252ULL;
    for (int i = 0; i < EVENTS; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        event *ev = xmalloc(sizeof *ev);
        if (i == EVENTS / 2) {
            *ev = (event){ACT_MDEVCTL_REFRESH, -1, 0};
            if (nde_pool_send_barrier(pool, ev, free) < 0)
                return -1;
            continue;
        }
        /* 10 % of the events are about one busy device. */
        int dev = seed % 10 == 0 ? 0 : (int)((seed >> 8) % DEVICES);
        *ev = (event){(enum action)(ACT_ADD + (seed >> 32) % 3), dev, ++generation[dev]};
        /* The key: anything that names the device for the whole event; here
         * its index + 1 (0 would mean "no key"). libvirt would hash the
         * sysfs path. */
        if (nde_pool_send_job_keyed(pool, (uint64_t)dev + 1, 0, ev, free) < 0)
            return -1;
    }
    if (nde_pool_wait_idle(pool, -1) < 0)
        return -1;
    *seconds = now_s() - t0;
    nde_pool_key_stats ks;
    if (nde_pool_get_key_stats(pool, &ks) == 0)
        printf("  %zu worker(s): %.3f s, %d at once at most, %llu events waited behind "
               "their device (deepest backlog %llu)\n",
               workers, *seconds, atomic_load(&drv->max_running),
               (unsigned long long)ks.waited_behind_key,
               (unsigned long long)ks.key_backlog_high_water);
    nde_pool_free(pool);
    for (int d = 0; d < DEVICES; d++)
        if (drv->table[d].generation != generation[d])
            atomic_fetch_add(&drv->errors, 1);
    if (drv->refreshes != 2)
        atomic_fetch_add(&drv->errors, 1);
    return atomic_load(&drv->errors);
}

int main(int argc, char **argv)
{
    int self_test = 0;
    size_t workers = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--self-test") == 0)
            self_test = 1;
        else
            workers = (size_t)strtoul(argv[i], NULL, 10);
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
