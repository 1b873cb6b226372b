/*
 * libvirt-port: the structure of libvirt's node_device_udev driver after the
 * worker-pool series, ported to nodedev-events.
 *
 * What libvirt does with virThreadPool + struct _nodeDeviceEvent +
 * nodeDeviceEventSubmit + a virEventAddTimeout debounce, this file does with
 * nde_events_*:
 *
 *   libvirt                                     here
 *   ------------------------------------------  -------------------------------------------
 *   virThreadPoolNewFull(1, 1, 0, handler, ..)  nde_events_new() + nde_events_register(ANY)
 *   nodeDeviceEventSubmit(type, data, freecb)   nde_events_submit(ev, type, data, freecb)
 *   nodeDeviceEventHandler: switch + autoptr    node_device_event_handler: the same switch;
 *                                               the library frees the data afterwards
 *   udev_device_ref for the event, unref of     the monitor's one reference moves into the
 *     the caller's on the udev thread (racy)      event: one thread at a time owns it
 *   scheduleMdevctlUpdate: 100 ms main-loop     nde_events_schedule(ev, MDEVCTL_.., 100)
 *     timer, then submit                        (0 = libvirt's "force")
 *   ShutdownPrepare: quit flag, PoolStop        quit flag, nde_events_shutdown_prepare()
 *   ShutdownWait: join under the priv lock,     join with no lock held, then
 *     PoolDrain (queued events leak)            nde_events_shutdown_wait() (queued data freed)
 *   nodeDeviceInitWait: waits for ever          driver_wait_initialized(timeout); woken
 *                                               with an error by shutdown
 *
 * The device table is deliberately small (an array, libvirt-style names) so
 * the event flow stays visible; the monitor layer of the library
 * (nde_monitor_*) is the complete version of it.
 *
 * Usage:
 *   libvirt-port --self-test          run the driver, feed it synthetic udev
 *                                     events and an mdevctl burst, check
 *                                     every count, shut down, exit 0
 *   libvirt-port --watch SECONDS      print the inventory size, then live
 *                                     events in virsh nodedev-event's format
 *   options: --kernel | --udev (netlink group; default: udev when udevd
 *            runs), --mdevctl-dir DIR (default /etc/mdevctl.d)
 *
 * Build: cc -std=c11 libvirt_port.c $(pkg-config --cflags --libs
 *        nodedev-events libudev) -lpthread     (or: make examples)
 */
#define _GNU_SOURCE 1
#include <ctype.h>
#include <errno.h>
#include <libudev.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nodedev_events.h"

/* ---- the driver state: virNodeDeviceDriverState + udevEventData -------- */

typedef struct {
    char *name;    /* libvirt's <subsystem>_<sysname> */
    char *syspath;
    bool seen;     /* mark-and-sweep for re-enumeration */
} node_device;

typedef struct {
    pthread_mutex_t lock;     /* protects everything below */
    pthread_cond_t init_cond;
    bool initialized;
    int init_result;          /* 0, or -1 when shut down before INIT ran */
    node_device *devs;
    size_t ndevs, cap;
    long created, deleted, updated, mdevctl_refreshes;
    bool print_events;        /* after the inventory, in --watch mode */
} driver_state;

typedef struct {
    struct udev *udev;
    struct udev_monitor *monitor;
    int inotify_fd;           /* mdevctl's config directory, -1 = none */
    pthread_t udev_thread;
    bool udev_thread_started;
    atomic_bool udev_thread_quit;
    nde_events *events;       /* replaces virThreadPool *workerPool */
} udev_event_data;

static driver_state driver_storage;
static driver_state *driver;
static udev_event_data priv;

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* ---- the device table (the worker is its only writer) ------------------- */

static char *device_name(struct udev_device *dev)
{
    const char *subsystem = udev_device_get_subsystem(dev);
    const char *sysname = udev_device_get_sysname(dev);
    size_t len = strlen(subsystem ? subsystem : "unknown") + strlen(sysname ? sysname : "") + 2;
    char *name = malloc(len);
    if (!name)
        return NULL;
    snprintf(name, len, "%s_%s", subsystem ? subsystem : "unknown", sysname ? sysname : "");
    for (char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p))
            *p = '_';
    return name;
}

static node_device *find_by_syspath(const char *syspath)
{
    for (size_t i = 0; i < driver->ndevs; i++)
        if (strcmp(driver->devs[i].syspath, syspath) == 0)
            return &driver->devs[i];
    return NULL;
}

/* Called with driver->lock held. */
static void emit(const char *name, const char *what, long *counter, bool lifecycle)
{
    (*counter)++;
    if (driver->print_events) {
        if (lifecycle)
            say("event 'lifecycle' for node device %s: %s\n", name, what);
        else
            say("event 'update' for node device %s\n", name);
    }
}

/* processNodeDeviceAddAndChangeEvent */
static int process_add_change(struct udev_device *dev, bool enumerating)
{
    const char *syspath = udev_device_get_syspath(dev);
    if (!syspath)
        return -1;
    pthread_mutex_lock(&driver->lock);
    node_device *known = find_by_syspath(syspath);
    if (known) {
        known->seen = true;
        if (!enumerating)
            emit(known->name, "Updated", &driver->updated, false);
        pthread_mutex_unlock(&driver->lock);
        return 0;
    }
    if (driver->ndevs == driver->cap) {
        size_t cap = driver->cap ? driver->cap * 2 : 256;
        node_device *grown = realloc(driver->devs, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&driver->lock);
            return -1;
        }
        driver->devs = grown;
        driver->cap = cap;
    }
    node_device *d = &driver->devs[driver->ndevs];
    d->name = device_name(dev);
    d->syspath = strdup(syspath);
    d->seen = true;
    if (!d->name || !d->syspath) {
        free(d->name);
        free(d->syspath);
        pthread_mutex_unlock(&driver->lock);
        return -1;
    }
    driver->ndevs++;
    emit(d->name, "Created", &driver->created, true);
    pthread_mutex_unlock(&driver->lock);
    return 0;
}

/* processNodeDeviceRemoveEvent */
static int process_remove(const char *syspath)
{
    pthread_mutex_lock(&driver->lock);
    node_device *d = syspath ? find_by_syspath(syspath) : NULL;
    if (!d) {
        pthread_mutex_unlock(&driver->lock);
        return -1;
    }
    emit(d->name, "Deleted", &driver->deleted, true);
    free(d->name);
    free(d->syspath);
    *d = driver->devs[--driver->ndevs];
    pthread_mutex_unlock(&driver->lock);
    return 0;
}

static bool table_has(const char *name)
{
    bool found = false;
    pthread_mutex_lock(&driver->lock);
    for (size_t i = 0; i < driver->ndevs && !found; i++)
        found = strcmp(driver->devs[i].name, name) == 0;
    pthread_mutex_unlock(&driver->lock);
    return found;
}

/* nodeDeviceUpdateMediatedDevices: ask mdevctl, when it is installed. */
static int update_mediated_devices(void)
{
    pthread_mutex_lock(&driver->lock);
    driver->mdevctl_refreshes++;
    pthread_mutex_unlock(&driver->lock);
    if (system("command -v mdevctl >/dev/null 2>&1") != 0)
        return 0; /* no mdevctl: nothing is defined */
    FILE *out = popen("mdevctl list --defined --dumpjson 2>/dev/null", "r");
    if (!out)
        return -1;
    char buf[4096];
    while (fread(buf, 1, sizeof buf, out) > 0)
        ; /* a real driver parses the JSON into mdev definitions here */
    return pclose(out) == -1 ? -1 : 0;
}

/* processNodeStateInitializeEnumerate; also the resync after an overflow:
 * devices that disappeared meanwhile are deleted (mark and sweep). */
static void process_initialize_enumerate(struct udev *udev)
{
    pthread_mutex_lock(&driver->lock);
    for (size_t i = 0; i < driver->ndevs; i++)
        driver->devs[i].seen = false;
    bool first = !driver->initialized;
    pthread_mutex_unlock(&driver->lock);

    struct udev_enumerate *en = udev_enumerate_new(udev);
    if (en && udev_enumerate_scan_devices(en) == 0) {
        struct udev_list_entry *e;
        udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en)) {
            struct udev_device *dev = udev_device_new_from_syspath(udev, udev_list_entry_get_name(e));
            if (dev) {
                process_add_change(dev, true);
                udev_device_unref(dev);
            }
        }
    }
    udev_enumerate_unref(en);

    for (;;) { /* sweep */
        char *gone = NULL;
        pthread_mutex_lock(&driver->lock);
        for (size_t i = 0; i < driver->ndevs && !gone; i++)
            if (!driver->devs[i].seen)
                gone = strdup(driver->devs[i].syspath);
        pthread_mutex_unlock(&driver->lock);
        if (!gone)
            break;
        process_remove(gone);
        free(gone);
    }

    if (update_mediated_devices() < 0)
        fprintf(stderr, "warning: mdevctl failed to update mediated devices\n");

    if (first) {
        pthread_mutex_lock(&driver->lock);
        driver->initialized = true;
        driver->init_result = 0;
        pthread_cond_broadcast(&driver->init_cond);
        pthread_mutex_unlock(&driver->lock);
    }
}

/* ---- the handler: libvirt's nodeDeviceEventHandler switch --------------- */

static void node_device_event_handler(void *opaque, nde_event_type type, void *data)
{
    (void)opaque; /* the driver state, registered as userdata */

    switch (type) {
    case NDE_EVENT_INIT:
        process_initialize_enumerate((struct udev *)data);
        break;
    case NDE_EVENT_UDEV_ADD:
    case NDE_EVENT_UDEV_CHANGE:
        process_add_change((struct udev_device *)data, false);
        break;
    case NDE_EVENT_UDEV_REMOVE:
        process_remove(udev_device_get_syspath((struct udev_device *)data));
        break;
    case NDE_EVENT_UDEV_MOVE: {
        struct udev_device *dev = data;
        const char *devpath_old = udev_device_get_property_value(dev, "DEVPATH_OLD");
        if (devpath_old) {
            char old[4096];
            snprintf(old, sizeof old, "/sys%s", devpath_old);
            process_remove(old);
        }
        process_add_change(dev, false);
        break;
    }
    case NDE_EVENT_MDEVCTL_CONFIG_CHANGED:
        if (update_mediated_devices() < 0)
            fprintf(stderr, "warning: mdevctl failed to update mediated devices\n");
        break;
    case NDE_EVENT_LAST:
        break; /* never delivered: submit refuses it */
    }
    /* No nodeDeviceEventFree: the library runs the data's free function
     * once every callback for this event has returned. */
}

/* ---- submitting: nodeDeviceEventSubmit is nde_events_submit ------------- */

/* Free functions with the exact nde_free_fn type (calling udev_device_unref
 * through a cast pointer, as libvirt does, is undefined behaviour). */
static void unref_device(void *dev)
{
    udev_device_unref(dev);
}

/* udevHandleOneDevice: takes the caller's reference. It moves into the
 * event and is released after the handler ran, or when the event is
 * discarded at shutdown, or right away if the submit fails. libvirt takes
 * a second reference here and drops its own on the udev thread while the
 * worker may drop the other: libudev's reference count is not atomic, so
 * only one thread at a time may own references to a device. */
static int handle_one_device(struct udev_device *device)
{
    const char *action = udev_device_get_action(device);
    int type;
    if (!action) {
        udev_device_unref(device);
        return 0;
    }
    if (strcmp(action, "add") == 0)
        type = NDE_EVENT_UDEV_ADD;
    else if (strcmp(action, "change") == 0)
        type = NDE_EVENT_UDEV_CHANGE;
    else if (strcmp(action, "remove") == 0)
        type = NDE_EVENT_UDEV_REMOVE;
    else if (strcmp(action, "move") == 0)
        type = NDE_EVENT_UDEV_MOVE;
    else {
        udev_device_unref(device); /* bind, unbind, ... */
        return 0;
    }
    return nde_events_submit(priv.events, type, device, unref_device);
}

/* scheduleMdevctlUpdate: collapse bursts into one refresh, 100 ms after
 * the last request; force = submit now and cancel the pending one. */
static void schedule_mdevctl_update(bool force)
{
    int rc = nde_events_schedule(priv.events, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, force ? 0 : 100);
    if (rc < 0 && rc != NDE_ERR_STOPPED)
        fprintf(stderr, "warning: mdevctl update not scheduled: %s\n", nde_result_str(rc));
}

/* udevEventHandleThread: one thread reads the monitor (and mdevctl's
 * directory), polls with a timeout so that the quit flag is seen. */
static void *udev_event_thread(void *arg)
{
    (void)arg;
    struct pollfd fds[2] = {
        {.fd = udev_monitor_get_fd(priv.monitor), .events = POLLIN},
        {.fd = priv.inotify_fd, .events = POLLIN},
    };
    nfds_t nfds = priv.inotify_fd >= 0 ? 2 : 1;
    while (!atomic_load(&priv.udev_thread_quit)) {
        if (poll(fds, nfds, 200) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents & POLLIN) {
            for (;;) { /* drain the socket on each wake-up */
                errno = 0;
                struct udev_device *dev = udev_monitor_receive_device(priv.monitor);
                if (!dev) {
                    if (errno == ENOBUFS) {
                        /* events were lost: resync instead of dying (the
                         * libvirt's thread exits here for good) */
                        nde_events_submit(priv.events, NDE_EVENT_INIT, priv.udev, NULL);
                        continue;
                    }
                    break;
                }
                handle_one_device(dev); /* the reference moves into the event */
            }
        }
        if (nfds == 2 && (fds[1].revents & POLLIN)) {
            char buf[4096];
            while (read(priv.inotify_fd, buf, sizeof buf) > 0)
                ;
            schedule_mdevctl_update(false); /* mdevctlEventHandleCallback */
        }
    }
    return NULL;
}

/* ---- driver life cycle -------------------------------------------------- */

/* nodeStateInitialize */
static int state_initialize(bool kernel_group, const char *mdevctl_dir, bool print_events)
{
    driver = &driver_storage;
    memset(driver, 0, sizeof *driver);
    pthread_mutex_init(&driver->lock, NULL);
    pthread_cond_init(&driver->init_cond, NULL);
    driver->print_events = print_events;
    memset(&priv, 0, sizeof priv);
    priv.inotify_fd = -1;

    /* The worker must exist before anything can submit (libvirt's rule);
     * one worker keeps order(udev events) == order(nodedev events). */
    priv.events = nde_events_new("nodedev-event");
    if (!priv.events)
        return -1;
    if (nde_events_register(priv.events, NDE_EVENT_ANY, node_device_event_handler, driver, NULL) < 0)
        return -1;

    priv.udev = udev_new();
    if (!priv.udev)
        return -1;
    /* the monitor is listening before INIT is queued: no device can fall
     * between the enumeration and the first hotplug event */
    priv.monitor = udev_monitor_new_from_netlink(priv.udev, kernel_group ? "kernel" : "udev");
    if (!priv.monitor || udev_monitor_enable_receiving(priv.monitor) < 0)
        return -1;
    if (geteuid() == 0)
        udev_monitor_set_receive_buffer_size(priv.monitor, 128 * 1024 * 1024);

    struct stat st;
    if (mdevctl_dir && stat(mdevctl_dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        priv.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (priv.inotify_fd >= 0 &&
            inotify_add_watch(priv.inotify_fd, mdevctl_dir,
                              IN_CREATE | IN_DELETE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
            close(priv.inotify_fd);
            priv.inotify_fd = -1;
        }
    }

    atomic_store(&priv.udev_thread_quit, false);
    if (pthread_create(&priv.udev_thread, NULL, udev_event_thread, NULL) != 0)
        return -1;
    priv.udev_thread_started = true;

    /* The udev context outlives the worker (state_cleanup releases it after
     * the shutdown joined the worker), so INIT carries it without taking a
     * reference: no reference count is touched from two threads. */
    return nde_events_submit(priv.events, NDE_EVENT_INIT, priv.udev, NULL);
}

/* nodeDeviceInitWait, with a timeout; shutdown wakes it with -1. */
static int driver_wait_initialized(int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&driver->lock);
    int rc = 0;
    while (!driver->initialized && rc == 0)
        rc = pthread_cond_timedwait(&driver->init_cond, &driver->lock, &deadline);
    int result = driver->initialized ? driver->init_result : -1;
    pthread_mutex_unlock(&driver->lock);
    return result;
}

/* nodeStateShutdownPrepare: never blocks; safe after a failed initialize. */
static int state_shutdown_prepare(void)
{
    atomic_store(&priv.udev_thread_quit, true);
    if (priv.events)
        nde_events_shutdown_prepare(priv.events); /* timers cancelled, intake closed */
    return 0;
}

/* nodeStateShutdownWait: joins without holding any lock. */
static int state_shutdown_wait(void)
{
    if (priv.udev_thread_started) {
        pthread_join(priv.udev_thread, NULL);
        priv.udev_thread_started = false;
    }
    if (priv.events) {
        int rc = nde_events_shutdown_wait(priv.events, 5000);
        if (rc < 0) /* a handler hangs: call again later, nothing is broken */
            return rc;
    }
    pthread_mutex_lock(&driver->lock);
    if (!driver->initialized) { /* INIT never ran: wake the waiters */
        driver->initialized = true;
        driver->init_result = -1;
        pthread_cond_broadcast(&driver->init_cond);
    }
    pthread_mutex_unlock(&driver->lock);
    return 0;
}

/* nodeStateCleanup */
static void state_cleanup(void)
{
    nde_events_free(priv.events); /* releases callbacks; queued data already freed */
    priv.events = NULL;
    if (priv.inotify_fd >= 0)
        close(priv.inotify_fd);
    udev_monitor_unref(priv.monitor);
    udev_unref(priv.udev);
    for (size_t i = 0; i < driver->ndevs; i++) {
        free(driver->devs[i].name);
        free(driver->devs[i].syspath);
    }
    free(driver->devs);
    pthread_cond_destroy(&driver->init_cond);
    pthread_mutex_destroy(&driver->lock);
}

/* ---- the two modes ------------------------------------------------------ */

#define EXPECT(cond)                                                        \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "self-test: %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                 \
            exit(1);                                                        \
        }                                                                   \
    } while (0)

static long counter(long *field)
{
    pthread_mutex_lock(&driver->lock);
    long v = *field;
    pthread_mutex_unlock(&driver->lock);
    return v;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct udev_device *loopback(void)
{
    struct udev_device *lo = udev_device_new_from_syspath(priv.udev, "/sys/class/net/lo");
    EXPECT(lo != NULL);
    return lo;
}

static int self_test(bool kernel_group)
{
    char dir[] = "/tmp/libvirt-port-mdevctl.XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    EXPECT(state_initialize(kernel_group, dir, false) == 0);
    EXPECT(driver_wait_initialized(30000) == 0);
    pthread_mutex_lock(&driver->lock);
    size_t inventory = driver->ndevs;
    pthread_mutex_unlock(&driver->lock);
    EXPECT(inventory > 0);
    EXPECT(table_has("net_lo"));
    EXPECT(counter(&driver->mdevctl_refreshes) == 1); /* the one INIT runs */

    /* Synthetic udev events for the loopback device, in libvirt's order.
     * Each event gets its own device object: its one reference moves to
     * the worker. */
    long updated = counter(&driver->updated), created = counter(&driver->created),
         deleted = counter(&driver->deleted);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_UDEV_CHANGE, loopback(), unref_device) == NDE_OK);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_UDEV_REMOVE, loopback(), unref_device) == NDE_OK);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_UDEV_ADD, loopback(), unref_device) == NDE_OK);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_UDEV_MOVE, loopback(), unref_device) == NDE_OK);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_LAST, loopback(), unref_device) == NDE_ERR_INVALID);
    EXPECT(nde_events_wait_idle(priv.events, 30000) == NDE_OK);
    /* (a real hotplug event may have slipped in: compare at least) */
    EXPECT(counter(&driver->updated) >= updated + 2); /* change, move */
    EXPECT(counter(&driver->deleted) >= deleted + 1);
    EXPECT(counter(&driver->created) >= created + 1);
    EXPECT(table_has("net_lo"));

    /* A burst of mdevctl change notifications: one refresh. */
    for (int i = 0; i < 20; i++)
        schedule_mdevctl_update(false);
    for (int i = 0; i < 3000 && counter(&driver->mdevctl_refreshes) < 2; i++)
        nap_ms(5);
    EXPECT(counter(&driver->mdevctl_refreshes) == 2);
    nap_ms(300); /* longer than the debounce: nothing else fires */
    EXPECT(counter(&driver->mdevctl_refreshes) == 2);

    /* Files written into mdevctl's directory: the thread's inotify watch
     * schedules the debounced refresh. */
    EXPECT(priv.inotify_fd >= 0);
    char path[sizeof dir + 32];
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/mdev-%d", dir, i);
        FILE *f = fopen(path, "w");
        EXPECT(f != NULL);
        fputs("{}\n", f);
        fclose(f);
    }
    for (int i = 0; i < 3000 && counter(&driver->mdevctl_refreshes) < 3; i++)
        nap_ms(5);
    EXPECT(counter(&driver->mdevctl_refreshes) >= 3);

    /* force: submitted now */
    long before = counter(&driver->mdevctl_refreshes);
    schedule_mdevctl_update(true);
    EXPECT(nde_events_wait_idle(priv.events, 30000) == NDE_OK);
    EXPECT(counter(&driver->mdevctl_refreshes) == before + 1);

    /* Two-phase shutdown. After prepare, submits fail and still release
     * the udev reference they were given (libvirt leaks it). */
    EXPECT(state_shutdown_prepare() == 0);
    EXPECT(nde_events_submit(priv.events, NDE_EVENT_UDEV_ADD, loopback(), unref_device) == NDE_ERR_STOPPED);
    EXPECT(nde_events_schedule(priv.events, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, 100) == NDE_ERR_STOPPED);
    EXPECT(state_shutdown_wait() == 0);
    EXPECT(state_shutdown_wait() == 0); /* idempotent */
    nde_pool_stats st;
    EXPECT(nde_events_get_stats(priv.events, &st) == NDE_OK);
    EXPECT(st.completed >= 8 && st.discarded == 0 && st.rejected >= 1);
    state_cleanup();

    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/mdev-%d", dir, i);
        unlink(path);
    }
    rmdir(dir);
    printf("self-test: ok (%zu devices, %llu events handled)\n", inventory,
           (unsigned long long)st.completed);
    return 0;
}

static int watch(bool kernel_group, const char *mdevctl_dir, int seconds)
{
    if (state_initialize(kernel_group, mdevctl_dir, false) < 0) {
        fprintf(stderr, "libvirt-port: cannot start the driver\n");
        return 1;
    }
    if (driver_wait_initialized(30000) < 0) {
        fprintf(stderr, "libvirt-port: enumeration did not finish\n");
        state_shutdown_prepare();
        state_shutdown_wait();
        state_cleanup();
        return 1;
    }
    pthread_mutex_lock(&driver->lock);
    say("%zu node devices; watching the %s group for %d s\n", driver->ndevs,
        kernel_group ? "kernel" : "udev", seconds);
    driver->print_events = true;
    pthread_mutex_unlock(&driver->lock);
    for (int i = 0; i < seconds * 10; i++)
        nap_ms(100);
    state_shutdown_prepare();
    state_shutdown_wait();
    state_cleanup();
    return 0;
}

int main(int argc, char **argv)
{
    bool kernel_group = access("/run/udev/control", F_OK) != 0;
    const char *mdevctl_dir = "/etc/mdevctl.d";
    int seconds = -1;
    bool test = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--self-test") == 0)
            test = true;
        else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc)
            seconds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--kernel") == 0)
            kernel_group = true;
        else if (strcmp(argv[i], "--udev") == 0)
            kernel_group = false;
        else if (strcmp(argv[i], "--mdevctl-dir") == 0 && i + 1 < argc)
            mdevctl_dir = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s --self-test | --watch SECONDS [--kernel|--udev] [--mdevctl-dir DIR]\n",
                    argv[0]);
            return 2;
        }
    }
    if (test)
        return self_test(kernel_group);
    if (seconds >= 0)
        return watch(kernel_group, mdevctl_dir, seconds);
    fprintf(stderr, "usage: %s --self-test | --watch SECONDS\n", argv[0]);
    return 2;
}
