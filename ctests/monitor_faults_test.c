/*
 * The monitor against a hostile or unlucky host: the process-wide log
 * callback (overflow and mdevctl warnings reach it; replacing it frees the
 * previous userdata once), and the defects of issue 12 that a C user can
 * see.
 *
 * Scenarios that inject netlink messages run as root in a forked child
 * inside a private network namespace (unshare(CLONE_NEWNET)): injected
 * messages never reach the host's listeners. Not root: they are skipped.
 */
#include "netlink_inject.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------ */

static int under_valgrind(void)
{
    return getenv("NDE_TEST_UNDER_VALGRIND") != NULL;
}

/* A directory with an executable `mdevctl` whose body is `script`. */
static char *fake_mdevctl_dir(const char *script)
{
    char *dir = strdup("/tmp/nde-fake-mdevctl-XXXXXX");
    CHECK(dir != NULL);
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/mdevctl", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "#!/bin/sh\n%s\n", script);
    CHECK(fclose(f) == 0);
    CHECK(chmod(path, 0755) == 0);
    return dir;
}

static void remove_fake_mdevctl_dir(char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/mdevctl", dir);
    unlink(path);
    rmdir(dir);
    free(dir);
}

/* PATH = dir:old PATH; returns the old value (to restore). */
static char *prepend_path(const char *dir)
{
    const char *old = getenv("PATH");
    char *saved = strdup(old ? old : "/usr/bin:/bin");
    CHECK(saved != NULL);
    size_t n = strlen(dir) + strlen(saved) + 2;
    char *p = malloc(n);
    CHECK(p != NULL);
    snprintf(p, n, "%s:%s", dir, saved);
    CHECK(setenv("PATH", p, 1) == 0);
    free(p);
    return saved;
}

static void restore_path(char *saved)
{
    CHECK(setenv("PATH", saved, 1) == 0);
    free(saved);
}

/* A message about net device `ifname` to `group` (see netlink_inject.h). */
static int inject(int fd, unsigned group, const char *action, const char *ifname)
{
    return inject_net(fd, group, action, ifname, NULL);
}

static nde_monitor_config base_config(uint32_t flags)
{
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = flags;
    cfg.name = "ctest-faults";
    return cfg;
}

/* ---- the log callback --------------------------------------------------- */

typedef struct {
    int id;
    atomic_int calls, warnings, overflow_warnings, mdevctl_warnings;
    atomic_int freed;
} log_sink;

static void on_log(void *userdata, nde_log_level level, const char *message)
{
    log_sink *s = userdata;
    CHECK(message != NULL);
    CHECK(level >= NDE_LOG_ERROR && level <= NDE_LOG_DEBUG);
    CHECK(strchr(message, '\n') == NULL);
    atomic_fetch_add(&s->calls, 1);
    if (level == NDE_LOG_WARNING) {
        atomic_fetch_add(&s->warnings, 1);
        if (strstr(message, "overflow"))
            atomic_fetch_add(&s->overflow_warnings, 1);
        if (strstr(message, "mdevctl"))
            atomic_fetch_add(&s->mdevctl_warnings, 1);
    }
}

static void free_sink(void *userdata)
{
    log_sink *s = userdata;
    atomic_fetch_add(&s->freed, 1);
}

static log_sink sink_a = {.id = 1}, sink_b = {.id = 2};

/* A failing mdevctl: its refresh is refused with a warning. */
static void log_mdevctl_failure(void)
{
    char *dir = fake_mdevctl_dir("echo broken >&2; exit 3");
    char *saved = prepend_path(dir);
    nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS);
    cfg.mdevctl_dir = dir;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK(st.mdevctl_failures >= 1);
    CHECK(atomic_load(&sink_a.mdevctl_warnings) >= 1);
    nde_monitor_free(mon);
    restore_path(saved);
    remove_fake_mdevctl_dir(dir);
}

/* A tiny receive buffer and a storm: ENOBUFS, a warning, a resync. */
static void log_overflow_child(void)
{
    nde_monitor_config cfg = base_config(NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL);
    cfg.receive_buffer_bytes = 4096;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    int fd = injector_open();
    nde_monitor_stats st;
    memset(&st, 0, sizeof st);
    for (int round = 0; round < 200 && st.overflows == 0; round++) {
        for (int i = 0; i < 2000; i++) {
            char name[32];
            snprintf(name, sizeof name, "ov%d", i);
            inject(fd, 2, "add", name);
        }
        CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    }
    CHECK(st.overflows >= 1);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    CHECK(atomic_load(&sink_a.overflow_warnings) >= 1);
    close(fd);
    nde_monitor_free(mon);
}

static void test_log_callback(void)
{
    CHECK_EQ(nde_set_log_callback(on_log, &sink_a, free_sink), NDE_OK);
    log_mdevctl_failure();
    in_private_netns("monitor_faults_test", "the overflow warning", log_overflow_child);
    CHECK_EQ(atomic_load(&sink_a.freed), 0);

    /* Replaced: A's userdata is released once, before the call returns; B
     * gets what follows. */
    CHECK_EQ(nde_set_log_callback(on_log, &sink_b, free_sink), NDE_OK);
    CHECK_EQ(atomic_load(&sink_a.freed), 1);
    int a_calls = atomic_load(&sink_a.calls);
    log_mdevctl_failure();
    CHECK(atomic_load(&sink_b.mdevctl_warnings) >= 1);
    CHECK_EQ(atomic_load(&sink_a.calls), a_calls);

    /* Back to the default: B released once, A never again. */
    CHECK_EQ(nde_set_log_callback(NULL, NULL, NULL), NDE_OK);
    CHECK_EQ(atomic_load(&sink_b.freed), 1);
    CHECK_EQ(atomic_load(&sink_a.freed), 1);
    int b_calls = atomic_load(&sink_b.calls);
    log_mdevctl_failure();
    CHECK_EQ(atomic_load(&sink_b.calls), b_calls);

    /* NULL callback with userdata: released at once. */
    log_sink c = {.id = 3};
    CHECK_EQ(nde_set_log_callback(NULL, &c, free_sink), NDE_OK);
    CHECK_EQ(atomic_load(&c.freed), 1);
}


/* ---- issue 12 item 3: a wedged mdevctl ---------------------------------- */

/* The helper closes its stdout, then lingers: stop ends it (kill + reap). */
static void test_wedged_mdevctl_does_not_block_stop(void)
{
    /* (The pause lets the library see the end of the output first.) */
    char *dir = fake_mdevctl_dir("exec 1>&-; sleep 0.3; echo $$ > \"$(dirname \"$0\")/pid\"; exec sleep 25");
    char *saved = prepend_path(dir);
    nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS);
    cfg.mdevctl_dir = dir;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    char pidfile[256];
    snprintf(pidfile, sizeof pidfile, "%s/pid", dir);
    long pid = 0;
    for (int i = 0; i < 3000 && pid <= 0; i++) {
        FILE *f = fopen(pidfile, "r");
        if (f) {
            if (fscanf(f, "%ld", &pid) != 1)
                pid = 0;
            fclose(f);
        }
        if (pid <= 0)
            nap_ms(10);
    }
    CHECK(pid > 0);
    /* The refresh is stuck after EOF: stop must still end it. */
    CHECK_EQ(nde_monitor_stop(mon, 5000), NDE_OK);
    /* Killed and reaped: no such process any more. */
    CHECK(kill((pid_t)pid, 0) == -1 && errno == ESRCH);
    nde_monitor_free(mon);
    restore_path(saved);
    unlink(pidfile);
    remove_fake_mdevctl_dir(dir);
}

/* ---- issue 12 item 11: the environment and SIGCHLD ----------------------- */

#define MDEV_NAME "mdev_4b20d080_1b54_4048_85b3_a6a62d165c01_0000_00_02_0"
#define MDEV_SCRIPT                                                                          \
    "[ -n \"$NDE_HOST_VAR\" ] && exit 5\n"                                                   \
    "if [ \"$2\" = --defined ]; then\n"                                                      \
    "echo '[{\"0000:00:02.0\": [{\"4b20d080-1b54-4048-85b3-a6a62d165c01\": "                 \
    "{\"mdev_type\": \"i915-GVTg_V5_4\", \"start\": \"manual\", \"attrs\": []}}]}]'\n"      \
    "else echo '[]'; fi"

static void check_mdev_listed(nde_monitor *mon)
{
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.mdevctl_failures, 0);
    CHECK(st.mdevctl_refreshes >= 1);
    nde_device *d = nde_monitor_lookup(mon, MDEV_NAME);
    CHECK(d != NULL);
    CHECK(strcmp(nde_device_get_property(d, "MDEVCTL_TYPE"), "i915-GVTg_V5_4") == 0);
    nde_device_unref(d);
}

/* mdevctl is looked up when the monitor is made; the child sees only the
 * environment taken then, not what the host set later. */
static void test_mdevctl_environment_taken_at_new(void)
{
    char *dir = fake_mdevctl_dir(MDEV_SCRIPT);
    char *saved = prepend_path(dir);
    nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS);
    cfg.mdevctl_dir = dir;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    restore_path(saved); /* mdevctl is no longer on PATH ... */
    CHECK(setenv("NDE_HOST_VAR", "1", 1) == 0); /* ... and the host's env changed */
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    check_mdev_listed(mon);
    nde_monitor_free(mon);
    CHECK(unsetenv("NDE_HOST_VAR") == 0);
    remove_fake_mdevctl_dir(dir);
}

/* A host that ignores SIGCHLD: the kernel reaps the child, waitpid says
 * ECHILD; after a complete read that is a success. */
static void test_mdevctl_with_sigchld_ignored(void)
{
    char *dir = fake_mdevctl_dir(MDEV_SCRIPT);
    char *saved = prepend_path(dir);
    struct sigaction ign, old;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGCHLD, &ign, &old) == 0);
    nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS);
    cfg.mdevctl_dir = dir;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    check_mdev_listed(mon);
    nde_monitor_free(mon);
    CHECK(sigaction(SIGCHLD, &old, NULL) == 0);
    restore_path(saved);
    remove_fake_mdevctl_dir(dir);
}

/* ---- issue 12 item 6: a failed start releases what it opened ------------- */

static int count_fds(void)
{
    int n = 0;
    char path[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0)
            n++;
    }
    return n;
}

static void test_failed_start_releases_everything(void)
{
    int before = count_fds();
    for (int i = 0; i < 20; i++) {
        nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL);
        nde_monitor *mon = nde_monitor_new(&cfg);
        CHECK(mon != NULL);
        CHECK_EQ(nde_events_shutdown_prepare(nde_monitor_get_events(mon)), NDE_OK);
        CHECK_EQ(nde_monitor_start(mon), NDE_ERR_STOPPED);
        nde_monitor_free(mon);
    }
    CHECK_EQ(count_fds(), before);
}

/* ---- issue 22 item 5: nde_monitor_free from inside a lifecycle callback --- */

typedef struct {
    nde_monitor *mon;
    atomic_int freed;    /* the callback freed the monitor */
    atomic_int released; /* the listener's userdata_free ran */
} self_free;

static void free_from_callback(void *userdata, const struct nde_device *dev, enum nde_lifecycle event)
{
    (void)dev;
    (void)event;
    self_free *sf = userdata;
    if (atomic_exchange(&sf->freed, 1) == 0)
        nde_monitor_free(sf->mon);
}

static void count_release(void *userdata)
{
    atomic_fetch_add(&((self_free *)userdata)->released, 1);
}

/* Waits (bounded) until the fd count is back to `want`; returns the count. */
static int fds_back_to(int want)
{
    int n = count_fds();
    for (int i = 0; i < 2000 && n != want; i++) {
        nap_ms(10);
        n = count_fds();
    }
    return n;
}

/* The header promises that the release completes once the callback
 * returns: every cycle's eventfd and sockets are closed again (each cycle
 * used to leave two open). */
static void test_free_from_callback_releases_everything(void)
{
    int cycles = under_valgrind() ? 3 : 10;
    unsigned workers[] = {1, 4};
    for (size_t w = 0; w < sizeof workers / sizeof workers[0]; w++) {
        int before = count_fds();
        for (int i = 0; i < cycles; i++) {
            static self_free sf;
            nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL);
            cfg.workers = workers[w];
            sf.mon = nde_monitor_new(&cfg);
            CHECK(sf.mon != NULL);
            atomic_store(&sf.freed, 0);
            atomic_store(&sf.released, 0);
            CHECK(nde_monitor_register(sf.mon, "computer", free_from_callback, &sf, count_release) >= 0);
            CHECK_EQ(nde_monitor_start(sf.mon), NDE_OK);
            for (int t = 0; t < 2000 && atomic_load(&sf.released) == 0; t++)
                nap_ms(10);
            CHECK_EQ(atomic_load(&sf.freed), 1);
            CHECK_EQ(atomic_load(&sf.released), 1);
        }
        int after = fds_back_to(before);
        printf("monitor_faults_test: freed from a callback, %u workers, %d cycles: fds %d -> %d\n", workers[w], cycles, before,
               after);
        CHECK_EQ(after, before);
    }
}

/* ---- issue 12 item 4: spoofed kernel-group messages ---------------------- */

static void on_udev_add_ignore(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
}

/* A root process sends a libudev-format message to the kernel group (1):
 * libudev refuses it (sender port id not 0), and so do both paths. */
static void spoof_child(void)
{
    for (int raw = 0; raw <= 1; raw++) {
        nde_monitor_config cfg = base_config(NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL);
        nde_monitor *mon = nde_monitor_new(&cfg);
        CHECK(mon != NULL);
        if (raw)
            CHECK(nde_events_register(nde_monitor_get_events(mon), NDE_EVENT_UDEV_ADD, on_udev_add_ignore, NULL,
                                      NULL) >= 0);
        CHECK_EQ(nde_monitor_start(mon), NDE_OK);
        CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
        int fd = injector_open();
        CHECK_EQ(inject(fd, 1, "add", "spoof0"), 0);
        close(fd);
        CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
        nde_monitor_stats st;
        CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
        if (!raw) {
            CHECK(st.received >= 1); /* it did arrive ... */
            CHECK(st.rejected >= 1); /* ... and was refused */
        }
        CHECK(nde_monitor_lookup(mon, "net_spoof0") == NULL);
        nde_monitor_free(mon);
    }
}

/* ---- issue 12 item 9: settle after the user shut the events down --------- */

static void settle_child(void)
{
    nde_monitor_config cfg = base_config(NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL);
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    CHECK_EQ(nde_events_shutdown_prepare(nde_monitor_get_events(mon)), NDE_OK);
    int fd = injector_open();
    for (int i = 0; i < 10; i++) {
        char name[32];
        snprintf(name, sizeof name, "st%d", i);
        CHECK_EQ(inject(fd, 2, "add", name), 0);
    }
    close(fd);
    /* The events it would wait for are never handled: STOPPED, not a hang. */
    CHECK_EQ(nde_monitor_settle(mon, 5000), NDE_ERR_STOPPED);
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.handled);
    nde_monitor_free(mon);
}

/* ---- issue 12 item 8: a NULL UDEV event from a C user is only C data ------- */

static gate null_gate;
static pthread_mutex_t null_order_lock = PTHREAD_MUTEX_INITIALIZER;
static char null_order[16];
static atomic_int null_udev_seen, null_udev_nonnull;

static void null_note(char c)
{
    pthread_mutex_lock(&null_order_lock);
    size_t n = strlen(null_order);
    if (n + 1 < sizeof null_order)
        null_order[n] = c;
    pthread_mutex_unlock(&null_order_lock);
}

/* MDEVCTL_CONFIG_CHANGED (mdevctl is off: only this handler acts on it):
 * data 1 holds the worker at the gate, data 2 notes 'B'. */
static void null_on_mdev(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    if (data == (void *)1)
        gate_pass(&null_gate);
    else
        null_note('B');
}

static void null_on_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)userdata;
    if (event == NDE_LIFECYCLE_CREATED && strcmp(nde_device_get_name(dev), "net_inb0") == 0)
        null_note('D');
}

static void null_on_udev_add(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    atomic_fetch_add(&null_udev_seen, 1);
    if (data != NULL)
        atomic_fetch_add(&null_udev_nonnull, 1);
}

static uint64_t events_submitted(nde_events *ev)
{
    nde_pool_stats ps;
    CHECK_EQ(nde_events_get_stats(ev, &ps), NDE_OK);
    return ps.submitted;
}

/* Queue: [held worker] [C: UDEV_ADD, NULL] [C: barrier 'B'] [uevent inb0,
 * fast path]. The NULL event is a C user's event like any other: the
 * device must appear after 'B', as queued. (Before batches travelled in
 * their own event, the built-in handler read NULL UDEV data as "take the
 * next fast-path batch" and created net_inb0 before 'B'.) Then, with a C
 * UDEV_ADD handler registered, a NULL event reaches it as NULL data and
 * changes nothing in the table. */
static void null_udev_child(void)
{
    gate_init(&null_gate);
    nde_monitor_config cfg = base_config(NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL);
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    nde_events *ev = nde_monitor_get_events(mon);
    CHECK(nde_events_register(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, null_on_mdev, NULL, NULL) >= 0);
    CHECK(nde_monitor_register(mon, NULL, null_on_lifecycle, NULL, NULL) >= 0);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);

    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, (void *)1, NULL), NDE_OK);
    gate_wait_for(&null_gate, 1);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, (void *)2, NULL), NDE_OK);
    uint64_t before = events_submitted(ev);
    int fd = injector_open();
    CHECK_EQ(inject(fd, 2, "add", "inb0"), 0);
    close(fd);
    /* The reader queued the uevent's event (it is behind the held worker). */
    while (events_submitted(ev) < before + 1)
        nap_ms(1);
    gate_open(&null_gate);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    pthread_mutex_lock(&null_order_lock);
    if (strcmp(null_order, "BD") != 0)
        fprintf(stderr, "monitor_faults_test: order %s, want BD\n", null_order);
    CHECK(strcmp(null_order, "BD") == 0);
    pthread_mutex_unlock(&null_order_lock);

    size_t count = nde_monitor_device_count(mon);
    CHECK(nde_events_register(ev, NDE_EVENT_UDEV_ADD, null_on_udev_add, NULL, NULL) >= 0);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_UDEV_ADD, NULL, NULL), NDE_OK);
    CHECK_EQ(nde_events_wait_idle(ev, -1), NDE_OK);
    CHECK_EQ(atomic_load(&null_udev_seen), 1);
    CHECK_EQ(atomic_load(&null_udev_nonnull), 0);
    CHECK_EQ(nde_monitor_device_count(mon), count);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.handled);
    nde_monitor_free(mon);
    gate_destroy(&null_gate);
}

/* ---- issue 12 item 5: who touches a udev_device's reference count -------- */

/* This program's own udev_device_ref/unref take the library's calls (the
 * executable's definition comes first in symbol lookup; through dlopen the
 * library binds to libudev directly and the check is skipped), note the
 * thread, and forward to libudev. */
static _Atomic(pthread_t) handler_thread;
static atomic_int handler_thread_known, watching, ref_calls, handler_ref_calls, foreign_thread_calls;

static void note_ref_call(void)
{
    if (!atomic_load(&watching))
        return;
    atomic_fetch_add(&ref_calls, 1);
    if (atomic_load(&handler_thread_known) && !pthread_equal(pthread_self(), atomic_load(&handler_thread)))
        atomic_fetch_add(&foreign_thread_calls, 1);
}

struct udev_device;
struct udev_device *udev_device_ref(struct udev_device *d);
struct udev_device *udev_device_unref(struct udev_device *d);

typedef struct udev_device *(*udev_device_fn)(struct udev_device *);

static udev_device_fn real_udev_fn(const char *name)
{
    udev_device_fn f;
    void *p = dlsym(RTLD_NEXT, name);
#ifdef NDE_TEST_DLOPEN
    if (!p) /* libudev came in with the dlopen'ed library, locally */
        p = dlsym(nde_test_handle, name);
#endif
    CHECK(p != NULL);
    memcpy(&f, &p, sizeof f);
    return f;
}

struct udev_device *udev_device_ref(struct udev_device *d)
{
    static _Atomic(udev_device_fn) real;
    if (!atomic_load(&real))
        atomic_store(&real, real_udev_fn("udev_device_ref"));
    note_ref_call();
    return atomic_load(&real)(d);
}

struct udev_device *udev_device_unref(struct udev_device *d)
{
    static _Atomic(udev_device_fn) real;
    if (!atomic_load(&real))
        atomic_store(&real, real_udev_fn("udev_device_unref"));
    note_ref_call();
    return atomic_load(&real)(d);
}

static _Atomic(struct udev_device *) kept;

/* Keeps a reference to each device until the next event, as the header
 * allows ("take your own reference to keep it"). */
static void keep_device(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    if (!atomic_load(&handler_thread_known)) {
        atomic_store(&handler_thread, pthread_self());
        atomic_store(&handler_thread_known, 1);
    }
    struct udev_device *old = atomic_load(&kept);
    if (old) {
        atomic_fetch_add(&handler_ref_calls, 1);
        udev_device_unref(old);
    }
    atomic_fetch_add(&handler_ref_calls, 1);
    atomic_store(&kept, udev_device_ref(data));
}

static void refcount_child(void)
{
    nde_monitor_config cfg = base_config(NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL);
    cfg.receive_buffer_bytes = 64 << 20;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    CHECK(nde_events_register(nde_monitor_get_events(mon), NDE_EVENT_UDEV_ADD, keep_device, NULL, NULL) >= 0);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    atomic_store(&watching, 1);
    int fd = injector_open();
    for (int i = 0; i < 2000; i++) {
        char name[32];
        snprintf(name, sizeof name, "rc%d", i);
        CHECK_EQ(inject(fd, 2, "add", name), 0);
    }
    close(fd);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    atomic_store(&watching, 0);
    int library_calls = atomic_load(&ref_calls) - atomic_load(&handler_ref_calls);
    if (library_calls == 0) {
        printf("monitor_faults_test: the library's udev_device_unref is not interposed (dlopen): thread check skipped\n");
    } else {
        /* the library released each device, and every ref/unref (the
         * handler's and the library's) ran on the handler's thread */
        CHECK(library_calls >= 2000);
        CHECK_EQ(atomic_load(&foreign_thread_calls), 0);
    }
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.overflows, 0);
    CHECK(atomic_load(&kept) != NULL);
    udev_device_unref(atomic_exchange(&kept, NULL));
    nde_monitor_free(mon);
}

int main(void)
{
    nde_test_begin();
    (void)under_valgrind;
    test_log_callback();
    test_failed_start_releases_everything();
    test_free_from_callback_releases_everything();
    test_wedged_mdevctl_does_not_block_stop();
    test_mdevctl_environment_taken_at_new();
    test_mdevctl_with_sigchld_ignored();
    in_private_netns("monitor_faults_test", "spoofed kernel-group messages", spoof_child);
    in_private_netns("monitor_faults_test", "settle after the events were shut down", settle_child);
    in_private_netns("monitor_faults_test", "udev_device references on one thread", refcount_child);
    in_private_netns("monitor_faults_test", "a NULL UDEV event from a C user", null_udev_child);
    nde_test_end();
    printf("monitor_faults_test: ok\n");
    return 0;
}
