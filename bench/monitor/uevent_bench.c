/*
 * bench/monitor/uevent_bench.c: the monitor's fast path against what the
 * machine can do with the same udev-group messages.  One process = one
 * measurement; bench/run.py drives it and reads the JSON line it prints.
 *
 *   uevent-bench --mode MODE [--n N] [--probes P] [--lib PATH]
 *                [--workers W] [--cost-us U] [--sleep-us S]
 *
 * MODE (drains: N udev-group adds injected while the receiver is stopped):
 *   bare-drain         a socket bound to the udev group that only
 *                      recvmmsg()s and counts: the ceiling
 *   libudev-drain      libudev's own loop: udev_monitor_receive_device()
 *                      and udev_device_unref() per message
 *   monitor-drain      our monitor: lifecycle callback per event, table
 *                      updated (the fast path)
 *   monitor-raw-drain  our monitor with a raw NDE_EVENT_UDEV_ADD handler
 *                      registered, so every uevent goes through libudev
 * --workers W (monitor modes): the monitor's worker count (config
 * `workers`; default 1); --cost-us U: the lifecycle callback burns U us of
 * thread CPU per CREATED (default 0), as a driver that reads sysfs and
 * builds a definition per device would; --sleep-us S: it sleeps S us (as
 * I/O would).  With W > 1 the N devices are
 * handled in parallel (one key each), so 1 vs 2 vs 4 workers at U = 100
 * shows what keyed dispatch buys on this machine.
 * MODE (latency: P probes, one message at a time on an idle socket):
 *   bare-latency       send -> recvmmsg() returned in the bare receiver
 *   monitor-latency    send -> our lifecycle callback ran
 *
 * Everything runs in a private network namespace (and mount namespace,
 * with sysfs remounted there), which the program enters itself: root only,
 * else exit 77 (skip).  The messages are libudev's wire format (what udevd
 * sends), `add` of net devices s0..s(N-1) that do not exist in sysfs.
 *
 * A drain: the receiver is a child process; when it is ready (socket open,
 * monitor initialized and settled) the parent stops it (SIGSTOP, confirmed
 * with waitpid), sends the N messages, which queue in its socket (256 MiB
 * receive buffer), notes the time and continues it (SIGCONT).  The child
 * notes when its N-th message was counted (bare, libudev) or its N-th
 * CREATED callback ran (ours); CLOCK_MONOTONIC is the same in both
 * processes.  Rate = N / (that time - continue time).  CPU per message =
 * the child's process CPU time from ready to done, over N (it uses none
 * while stopped).  Bytes per device = the child's RSS growth over N.
 *
 * Exit codes: 0 ok, 77 not possible here, 1 usage, 2 a check failed
 * (messages lost, table wrong), 3 a call failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <libudev.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/netlink.h>

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

#if defined(__has_include)
#if __has_include("nodedev_events.h")
#include "nodedev_events.h" /* checks the declarations below */
#endif
#endif

enum { EXIT_USAGE = 1, EXIT_CHECK = 2, EXIT_LIB = 3, EXIT_SKIP = 77 };
#define UDEV_GROUP 2u
#define RCVBUF (256u << 20)

static void die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "uevent-bench: ");
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
#define CPU() now_ns(CLOCK_PROCESS_CPUTIME_ID)

static long rss_bytes(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
        die(EXIT_LIB, "cannot read /proc/self/statm");
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------------------ */
/* Our C ABI (dlopen'ed, as in bench/harness.c). */
struct nde_monitor;
struct nde_device;
struct nde_events;
struct nde_monitor_config_v1 { /* nde_monitor_config as API.md has it */
    uint32_t size;
    uint32_t flags;
    const char *name;
    const char *const *subsystems;
    const char *mdevctl_dir;
    uint32_t mdevctl_debounce_ms;
    size_t receive_buffer_bytes;
};
#ifdef NDE_MONITOR_UDEV_EVENTS
_Static_assert(sizeof(struct nde_monitor_config_v1) <=
                   sizeof(nde_monitor_config),
               "nde_monitor_config lost fields");
#define BENCH_CONFIG_SIZE sizeof(nde_monitor_config)
#else
#define BENCH_CONFIG_SIZE sizeof(struct nde_monitor_config_v1)
#endif
#define BENCH_UDEV_EVENTS (1u << 2) /* NDE_MONITOR_UDEV_EVENTS */
#define BENCH_NO_MDEVCTL (1u << 1)  /* NDE_MONITOR_NO_MDEVCTL */
#define BENCH_CREATED 0             /* NDE_LIFECYCLE_CREATED */
#define BENCH_EVENT_UDEV_ADD 1      /* NDE_EVENT_UDEV_ADD */

static struct {
    struct nde_monitor *(*monitor_new)(const void *config);
    struct nde_events *(*monitor_get_events)(struct nde_monitor *);
    int (*monitor_register)(struct nde_monitor *, const char *,
                            void (*)(void *, const struct nde_device *,
                                     unsigned int),
                            void *, void (*)(void *));
    int (*monitor_start)(struct nde_monitor *);
    int (*monitor_wait_initialized)(struct nde_monitor *, int);
    int (*monitor_settle)(struct nde_monitor *, int);
    size_t (*monitor_device_count)(struct nde_monitor *);
    void (*monitor_free)(struct nde_monitor *);
    const char *(*device_get_name)(const struct nde_device *);
    int (*events_register)(struct nde_events *, int,
                           void (*)(void *, unsigned int, void *), void *,
                           void (*)(void *));
} nde;

static const char *lib_path = "target/release/libnodedev_events.so";

static void load_nde(void)
{
    void *h = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "uevent-bench: %s\n", dlerror());
        exit(EXIT_SKIP);
    }
#define SYM(field, name)                                                   \
    do {                                                                   \
        void *s_ = dlsym(h, name);                                         \
        if (!s_)                                                           \
            die(EXIT_LIB, "%s: missing %s", lib_path, name);               \
        memcpy(&nde.field, &s_, sizeof s_);                                \
    } while (0)
    SYM(monitor_new, "nde_monitor_new");
    SYM(monitor_get_events, "nde_monitor_get_events");
    SYM(monitor_register, "nde_monitor_register");
    SYM(monitor_start, "nde_monitor_start");
    SYM(monitor_wait_initialized, "nde_monitor_wait_initialized");
    SYM(monitor_settle, "nde_monitor_settle");
    SYM(monitor_device_count, "nde_monitor_device_count");
    SYM(monitor_free, "nde_monitor_free");
    SYM(device_get_name, "nde_device_get_name");
    SYM(events_register, "nde_events_register");
#undef SYM
}

/* ------------------------------------------------------------------------ */
/* The injector: libudev's wire format to the udev group. */

static uint32_t murmur2(const char *s) /* systemd's string_hash32 */
{
    const uint32_t m = 0x5bd1e995;
    size_t len = strlen(s);
    uint32_t h = (uint32_t)len;
    const unsigned char *p = (const unsigned char *)s;
    for (; len >= 4; len -= 4, p += 4) {
        uint32_t k;
        memcpy(&k, p, 4);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h = h * m ^ k;
    }
    switch (len) {
    case 3: h ^= (uint32_t)p[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)p[1] << 8;  /* fall through */
    case 1: h ^= p[0]; h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

struct msg {
    size_t len;
    char buf[512];
};

static uint64_t seqnum = 1000;

/* `action` of net device `ifname`, as udevd sends it (small). */
static void build_msg(struct msg *m, const char *action, const char *ifname)
{
    char body[400];
    int blen = snprintf(body, sizeof body,
                        "ACTION=%s%cDEVPATH=/devices/virtual/net/%s%c"
                        "SUBSYSTEM=net%cINTERFACE=%s%cIFINDEX=7%c"
                        "SEQNUM=%llu%cUSEC_INITIALIZED=1%c",
                        action, 0, ifname, 0, 0, ifname, 0, 0,
                        (unsigned long long)++seqnum, 0, 0);
    uint32_t magic = htonl(0xfeedcafe), hsize = 40, off = 40,
             len = (uint32_t)blen, sub = htonl(murmur2("net")), zero = 0;
    char *b = m->buf;
    memcpy(b, "libudev", 8);
    memcpy(b + 8, &magic, 4);
    memcpy(b + 12, &hsize, 4);
    memcpy(b + 16, &off, 4);
    memcpy(b + 20, &len, 4);
    memcpy(b + 24, &sub, 4);
    memcpy(b + 28, &zero, 4); /* devtype hash */
    memcpy(b + 32, &zero, 4); /* tag bloom hi */
    memcpy(b + 36, &zero, 4); /* tag bloom lo */
    memcpy(b + 40, body, (size_t)blen);
    m->len = 40 + (size_t)blen;
}

static int sender_fd = -1;

static void open_sender(void)
{
    sender_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
                       NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (sender_fd < 0 || bind(sender_fd, (void *)&sa, sizeof sa) < 0)
        die(EXIT_LIB, "netlink sender: %s", strerror(errno));
    int big = 64 << 20;
    setsockopt(sender_fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
}

static void send_msg(const struct msg *m)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = UDEV_GROUP};
    while (sendto(sender_fd, m->buf, m->len, 0, (void *)&sa, sizeof sa) < 0) {
        if (errno != EINTR)
            die(EXIT_CHECK, "sendto: %s (a receiver's buffer is full?)",
                strerror(errno));
    }
}

/* ------------------------------------------------------------------------ */
/* Receivers. */

static int open_bare_receiver(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
                    NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                             .nl_groups = UDEV_GROUP};
    if (fd < 0 || bind(fd, (void *)&sa, sizeof sa) < 0)
        die(EXIT_LIB, "netlink receiver: %s", strerror(errno));
    int sz = (int)RCVBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
        die(EXIT_LIB, "SO_RCVBUFFORCE: %s", strerror(errno));
    return fd;
}

#define BATCH 64
#define MSG_MAX 8192
static char (*rbufs)[MSG_MAX];
static struct mmsghdr rmsgs[BATCH];
static struct iovec riov[BATCH];

/* Blocks until at least one message; returns how many (>= 1). */
static int bare_receive(int fd)
{
    if (!rbufs) {
        rbufs = malloc(sizeof *rbufs * BATCH);
        if (!rbufs)
            die(EXIT_LIB, "out of memory");
        for (int i = 0; i < BATCH; i++) {
            riov[i] = (struct iovec){rbufs[i], MSG_MAX};
            rmsgs[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i],
                                               .msg_iovlen = 1};
        }
    }
    for (;;) {
        int n = recvmmsg(fd, rmsgs, BATCH, MSG_WAITFORONE, NULL);
        if (n > 0)
            return n;
        if (n < 0 && errno != EINTR)
            die(EXIT_LIB, "recvmmsg: %s", strerror(errno));
    }
}

static unsigned workers = 1;
static unsigned cost_us, sleep_us;

/* Our monitor, udev group only, no mdevctl, 256 MiB buffer, `workers`. */
static struct nde_monitor *monitor_open(void)
{
    struct nde_monitor_config_v1 cfg_v1 = {
        .flags = BENCH_UDEV_EVENTS | BENCH_NO_MDEVCTL,
        .name = "bench",
        .receive_buffer_bytes = RCVBUF};
    /* zero-padded up to the header's size (fields appended later = 0) */
    static char cfg[1024];
    memcpy(cfg, &cfg_v1, sizeof cfg_v1);
    uint32_t size = BENCH_CONFIG_SIZE;
    memcpy(cfg, &size, sizeof size);
#ifdef NDE_MONITOR_UDEV_EVENTS
    memcpy(cfg + offsetof(nde_monitor_config, workers), &workers, sizeof workers);
#else
    if (workers > 1)
        die(EXIT_USAGE, "--workers needs nodedev_events.h at build time");
#endif
    struct nde_monitor *m = nde.monitor_new(cfg);
    if (!m)
        die(EXIT_LIB, "nde_monitor_new failed (NDE_DEBUG=1 says why)");
    return m;
}

static void monitor_ready(struct nde_monitor *m)
{
    if (nde.monitor_start(m) < 0 ||
        nde.monitor_wait_initialized(m, 60000) < 0 ||
        nde.monitor_settle(m, 60000) < 0)
        die(EXIT_LIB, "monitor start / wait_initialized / settle failed");
}

/* ------------------------------------------------------------------------ */
/* Drains. */

static size_t n_msgs = 100000;
static _Atomic size_t counted;
static _Atomic uint64_t t_done;
static sem_t done_sem;

struct child_result {
    uint64_t t_done, cpu_ns, ctxsw, sys_us, user_us;
    long rss_delta;
    size_t received, table_growth;
};

/* Context switches of every thread of this process so far: each time a
 * thread went to sleep (or was preempted), so about its wake-ups. */
static uint64_t ctxsw(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

/* CPU time in the kernel (sys) or in user space, µs; the kernel splits
 * the exact total by sampled ticks, so the split is approximate. */
static uint64_t cpu_us(int sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct timeval tv = sys ? ru.ru_stime : ru.ru_utime;
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static void count_one(void)
{
    if (atomic_fetch_add_explicit(&counted, 1, memory_order_relaxed) + 1 ==
        n_msgs) {
        atomic_store(&t_done, MONO());
        sem_post(&done_sem);
    }
}

/* Burns `us` microseconds of this thread's CPU. */
static void burn_us(unsigned us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec <
           (uint64_t)us * 1000u);
}

static void on_lifecycle(void *ud, const struct nde_device *dev,
                         unsigned int event)
{
    (void)ud;
    if (event == BENCH_CREATED && !strncmp(nde.device_get_name(dev), "net_s", 5)) {
        if (cost_us)
            burn_us(cost_us);
        if (sleep_us) {
            struct timespec ts = {sleep_us / 1000000u, (long)(sleep_us % 1000000u) * 1000L};
            nanosleep(&ts, NULL);
        }
        count_one();
    }
}

static void on_raw_add(void *ud, unsigned int type, void *udev_device)
{
    (void)ud;
    (void)type;
    (void)udev_device; /* the event owns it; a driver would read it here */
}

/* In the child: set up, say ready, drain (stopped and continued by the
 * parent in between), report. */
static void drain_child(const char *mode, int ready_fd, int result_fd)
{
    struct child_result r = {0};
    sem_init(&done_sem, 0, 0);
    int fd = -1;
    struct udev *udev = NULL;
    struct udev_monitor *um = NULL;
    struct nde_monitor *mon = NULL;
    size_t base = 0;

    if (!strcmp(mode, "bare-drain")) {
        fd = open_bare_receiver();
    } else if (!strcmp(mode, "libudev-drain")) {
        udev = udev_new();
        um = udev ? udev_monitor_new_from_netlink(udev, "udev") : NULL;
        if (!um || udev_monitor_set_receive_buffer_size(um, (int)RCVBUF) < 0 ||
            udev_monitor_enable_receiving(um) < 0)
            die(EXIT_LIB, "libudev monitor setup failed");
        fd = udev_monitor_get_fd(um);
    } else {
        load_nde();
        mon = monitor_open();
        if (nde.monitor_register(mon, NULL, on_lifecycle, NULL, NULL) < 0)
            die(EXIT_LIB, "nde_monitor_register failed");
        if (!strcmp(mode, "monitor-raw-drain") &&
            nde.events_register(nde.monitor_get_events(mon),
                                BENCH_EVENT_UDEV_ADD, on_raw_add, NULL,
                                NULL) < 0)
            die(EXIT_LIB, "nde_events_register failed");
        monitor_ready(mon);
        base = nde.monitor_device_count(mon);
    }

    long rss0 = rss_bytes();
    uint64_t cpu0 = CPU(), sw0 = ctxsw(), sys0 = cpu_us(1), user0 = cpu_us(0);
    if (write(ready_fd, "r", 1) != 1)
        die(EXIT_LIB, "ready pipe");

    if (!strcmp(mode, "bare-drain")) {
        size_t got = 0;
        while (got < n_msgs)
            got += (size_t)bare_receive(fd);
        r.t_done = MONO();
        r.received = got;
    } else if (um) {
        size_t got = 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        while (got < n_msgs) {
            struct udev_device *d = udev_monitor_receive_device(um);
            if (!d) {
                poll(&pfd, 1, -1);
                continue;
            }
            got++;
            udev_device_unref(d);
        }
        r.t_done = MONO();
        r.received = got;
    } else {
        while (sem_wait(&done_sem) < 0 && errno == EINTR)
            ;
        r.t_done = atomic_load(&t_done);
        r.received = atomic_load(&counted);
    }
    r.cpu_ns = CPU() - cpu0;
    r.ctxsw = ctxsw() - sw0;
    r.sys_us = cpu_us(1) - sys0;
    r.user_us = cpu_us(0) - user0;
    CALLGRIND_DUMP_STATS_AT("drain");
    r.rss_delta = rss_bytes() - rss0;
    if (mon) {
        if (nde.monitor_settle(mon, 60000) < 0)
            die(EXIT_LIB, "settle failed");
        r.table_growth = nde.monitor_device_count(mon) - base;
    }
    if (write(result_fd, &r, sizeof r) != (ssize_t)sizeof r)
        die(EXIT_LIB, "result pipe");
    if (mon)
        nde.monitor_free(mon);
    if (um) {
        udev_monitor_unref(um);
        udev_unref(udev);
    }
    exit(0);
}

static void drain(const char *mode)
{
    int ready[2], result[2];
    if (pipe(ready) < 0 || pipe(result) < 0)
        die(EXIT_LIB, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die(EXIT_LIB, "fork");
    if (pid == 0) {
        /* killed with its parent (a timeout in run.py kills the parent) */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ready[0]);
        close(result[0]);
        drain_child(mode, ready[1], result[1]);
    }
    close(ready[1]);
    close(result[1]);
    /* All messages built before anything is measured (after the fork, so
     * the receiver's profile under callgrind does not include this). */
    struct msg *msgs = malloc(n_msgs * sizeof *msgs);
    if (!msgs)
        die(EXIT_LIB, "out of memory");
    for (size_t i = 0; i < n_msgs; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%zu", i);
        build_msg(&msgs[i], "add", name);
    }
    open_sender();
    char c;
    if (read(ready[0], &c, 1) != 1)
        die(EXIT_LIB, "the receiver died while starting");

    int st;
    kill(pid, SIGSTOP);
    if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st))
        die(EXIT_LIB, "the receiver did not stop");
    uint64_t t_send0 = MONO();
    for (size_t i = 0; i < n_msgs; i++)
        send_msg(&msgs[i]);
    uint64_t t_cont = MONO();
    kill(pid, SIGCONT);

    struct child_result r;
    ssize_t got = read(result[0], &r, sizeof r);
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
        die(EXIT_LIB, "the receiver failed (status %d)", st);
    if (got != (ssize_t)sizeof r)
        die(EXIT_LIB, "no result from the receiver");
    if (r.received != n_msgs)
        die(EXIT_CHECK, "%s: %zu of %zu messages arrived", mode, r.received,
            n_msgs);
    if (strstr(mode, "monitor") && r.table_growth != n_msgs)
        die(EXIT_CHECK, "%s: the table grew by %zu, not %zu", mode,
            r.table_growth, n_msgs);

    double secs = (double)(r.t_done - t_cont) / 1e9;
    printf("{\"impl\":\"%s\",\"scenario\":\"uevent-drain\",\"n\":%zu,"
           "\"secs\":%.6f,\"msgs_per_s\":%.0f,\"cpu_us_per_msg\":%.3f,"
           "\"bytes_per_device\":%.1f,\"inject_secs\":%.3f,"
           "\"ctxsw_per_1000\":%.1f,\"sys_share\":%.2f,"
           "\"workers\":%u,\"cost_us\":%u,\"sleep_us\":%u}\n",
           mode, n_msgs, secs, (double)n_msgs / secs,
           (double)r.cpu_ns / 1e3 / (double)n_msgs,
           (double)r.rss_delta / (double)n_msgs,
           (double)(t_cont - t_send0) / 1e9,
           (double)r.ctxsw * 1000.0 / (double)n_msgs,
           r.sys_us + r.user_us
               ? (double)r.sys_us / (double)(r.sys_us + r.user_us)
               : 0.0,
           workers, cost_us, sleep_us);
    free(msgs);
}

/* ------------------------------------------------------------------------ */
/* Latency. */

static _Atomic uint64_t t_seen;
static sem_t seen_sem;

static void *bare_latency_reader(void *arg)
{
    int fd = *(int *)arg;
    for (;;) {
        int n = bare_receive(fd);
        atomic_store(&t_seen, MONO());
        for (int i = 0; i < n; i++)
            sem_post(&seen_sem);
    }
    return NULL;
}

static void on_lifecycle_probe(void *ud, const struct nde_device *dev,
                               unsigned int event)
{
    (void)ud;
    (void)event;
    if (!strncmp(nde.device_get_name(dev), "net_probe", 9)) {
        atomic_store(&t_seen, MONO());
        sem_post(&seen_sem);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void latency(const char *mode, size_t probes, size_t warm)
{
    sem_init(&seen_sem, 0, 0);
    open_sender();
    struct nde_monitor *mon = NULL;
    if (!strcmp(mode, "bare-latency")) {
        static int fd;
        fd = open_bare_receiver();
        pthread_t th;
        if (pthread_create(&th, NULL, bare_latency_reader, &fd))
            die(EXIT_LIB, "pthread_create");
        pthread_detach(th);
    } else {
        load_nde();
        mon = monitor_open();
        if (nde.monitor_register(mon, NULL, on_lifecycle_probe, NULL, NULL) < 0)
            die(EXIT_LIB, "nde_monitor_register failed");
        monitor_ready(mon);
    }
    uint64_t *lat = malloc(probes * sizeof *lat);
    struct timespec gap = {0, 1000000}; /* 1 ms: every thread asleep */
    for (size_t i = 0; i < warm + probes; i++) {
        /* add probe<k>, then remove it (CREATED, DELETED): the table
         * stays small */
        char name[32];
        struct msg m;
        snprintf(name, sizeof name, "probe%zu", i / 2);
        build_msg(&m, i % 2 ? "remove" : "add", name);
        nanosleep(&gap, NULL);
        uint64_t t0 = MONO();
        send_msg(&m);
        while (sem_wait(&seen_sem) < 0 && errno == EINTR)
            ;
        uint64_t t1 = atomic_load(&t_seen);
        if (t1 < t0)
            die(EXIT_CHECK, "%s: probe %zu answered before it was sent",
                mode, i);
        if (i >= warm)
            lat[i - warm] = t1 - t0;
    }
    if (mon)
        nde.monitor_free(mon);
    qsort(lat, probes, sizeof *lat, cmp_u64);
#define PCT(p) ((double)lat[(size_t)((double)(probes - 1) * (p))] / 1e3)
    printf("{\"impl\":\"%s\",\"scenario\":\"uevent-latency\",\"n\":%zu,"
           "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
           "\"max_us\":%.2f}\n",
           mode, probes, PCT(0.5), PCT(0.9), PCT(0.99), PCT(1.0));
#undef PCT
    free(lat);
}

/* ------------------------------------------------------------------------ */

static void enter_namespaces(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "uevent-bench: needs root (private network "
                        "namespace, injected udev-group messages)\n");
        exit(EXIT_SKIP);
    }
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
        fprintf(stderr, "uevent-bench: unshare: %s\n", strerror(errno));
        exit(EXIT_SKIP);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("sysfs", "/sys", "sysfs", 0, NULL) < 0) {
        fprintf(stderr, "uevent-bench: sysfs in the namespace: %s\n",
                strerror(errno));
        exit(EXIT_SKIP);
    }
}

int main(int argc, char **argv)
{
    const char *mode = NULL;
    size_t probes = 1000, warm = 50;
    if (getenv("NDE_LIB"))
        lib_path = getenv("NDE_LIB");
    static const struct option opts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"n", required_argument, NULL, 'n'},
        {"probes", required_argument, NULL, 'p'},
        {"warm", required_argument, NULL, 'w'},
        {"lib", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'W'},
        {"cost-us", required_argument, NULL, 'c'},
        {"sleep-us", required_argument, NULL, 's'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mode = optarg; break;
        case 'n': n_msgs = strtoull(optarg, NULL, 10); break;
        case 'p': probes = strtoull(optarg, NULL, 10); break;
        case 'w': warm = strtoull(optarg, NULL, 10); break;
        case 'l': lib_path = optarg; break;
        case 'W': workers = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': cost_us = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': sleep_us = (unsigned)strtoul(optarg, NULL, 10); break;
        default: mode = NULL; optind = argc; break;
        }
    }
    int is_drain = mode && (!strcmp(mode, "bare-drain") ||
                            !strcmp(mode, "libudev-drain") ||
                            !strcmp(mode, "monitor-drain") ||
                            !strcmp(mode, "monitor-raw-drain"));
    int is_lat = mode && (!strcmp(mode, "bare-latency") ||
                          !strcmp(mode, "monitor-latency"));
    if ((!is_drain && !is_lat) || n_msgs == 0 || probes == 0) {
        fprintf(stderr,
                "usage: uevent-bench --mode bare-drain|libudev-drain|"
                "monitor-drain|monitor-raw-drain|bare-latency|"
                "monitor-latency [--n N] [--probes P] [--warm W] "
                "[--lib PATH] [--workers W] [--cost-us U] [--sleep-us S]\n");
        return EXIT_USAGE;
    }
    enter_namespaces();
    if (is_drain)
        drain(mode);
    else
        latency(mode, probes, warm);
    fflush(stdout);
    return 0;
}
