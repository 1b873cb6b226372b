/*
 * The monitor with several workers (nde_monitor_config.workers, issue 15
 * item 3): per-device order, moves and settle, on both receive paths.
 *
 * - storm: many injected uevents (add / change / remove / move) over many
 *   devices, a quarter of them children of another (the table names a
 *   device's parent when it builds its record, so a child must see its
 *   parent's add or remove as one worker would), a lifecycle callback with
 *   random delays; each device's lifecycle sequence equals the model of
 *   what was sent (and what one worker gives), a move runs alone (it is
 *   ordered with both its names), the final table (with each device's
 *   parent) equals the model and one worker's, and with several
 *   workers two callbacks were seen running at the same time (a handshake,
 *   not a timing: the first callbacks wait, boundedly, for a second one).
 * - settle: a slow early device and fast later ones; when settle returns,
 *   the slow device's callback has returned (a count of finished events
 *   would be reached by later events finishing first).
 * - config: the layout before `workers` is accepted (one worker), too many
 *   workers are refused.
 *
 * Injection runs as root in a forked child inside a private network
 * namespace (injected messages never reach the host). Not root: skipped.
 */
#include "netlink_inject.h"

#include <stddef.h>

/* ---- helpers ------------------------------------------------------------ */

/* Sends to the udev group, as udevd would. */
static void inject(int fd, const char *action, const char *rel, const char *old)
{
    CHECK_EQ(inject_net(fd, 2, action, rel, old), 0);
}

static void ignore_raw(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
}

/* A started monitor on the udev group with `workers`; `raw`: a raw
 * NDE_EVENT_UDEV_ADD handler is registered, so every uevent goes through
 * libudev (the raw path) instead of the fast path. */
static nde_monitor *monitor_new(unsigned workers, int raw)
{
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = NDE_MONITOR_UDEV_EVENTS | NDE_MONITOR_NO_MDEVCTL;
    cfg.name = "ctest-keyed";
    cfg.workers = workers;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    if (raw)
        CHECK(nde_events_register(nde_monitor_get_events(mon), NDE_EVENT_UDEV_ADD, ignore_raw, NULL, NULL) >= 0);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    return mon;
}

/* ---- the storm ------------------------------------------------------------ */

#define DEVICES 40
#define OPS 600
#define MAXSEQ (OPS + 8)

/* Per device: its k (first) name and its m (moved) name, 'C'/'U'/'D'. */
typedef struct {
    char seq[2][DEVICES][MAXSEQ];
    int len[2][DEVICES];
    int present[2][DEVICES];
    char parent[2][DEVICES][24]; /* in the final table (runs only) */
    /* Per callback: 'p' the device hung under a device, 'c' under
     * `computer` (runs only: one worker's is the reference). */
    char pseq[2][DEVICES][MAXSEQ];
} outcome;

/* Device d % 4 == 1 is a child of device d - 1 (net/k<d-1>/k<d>); it never
 * moves. The others are net/k<d> (net/m<d> once moved). */
static int is_child(int d)
{
    return d % 4 == 1;
}

static void device_rel(int which, int d, char *out, size_t n)
{
    if (is_child(d))
        snprintf(out, n, "k%d/k%d", d - 1, d);
    else
        snprintf(out, n, "%c%d", which ? 'm' : 'k', d);
}

static outcome model, seen, one_worker;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int active, overlap_seen, move_not_alone, wait_budget_ms, storm_workers;
static atomic_uint delay_seed;

static void note(outcome *o, int which, int dev, char c)
{
    CHECK(o->len[which][dev] < MAXSEQ);
    o->seq[which][dev][o->len[which][dev]++] = c;
}

/* "net_k12" -> (0, 12), "net_m3" -> (1, 3); -1 for other devices. */
static int parse_name(const char *name, int *dev)
{
    if (strncmp(name, "net_", 4) != 0 || (name[4] != 'k' && name[4] != 'm'))
        return -1;
    char *end;
    long d = strtol(name + 5, &end, 10);
    if (*end != 0 || d < 0 || d >= DEVICES)
        return -1;
    *dev = (int)d;
    return name[4] == 'm';
}

static void storm_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)userdata;
    int d, which = parse_name(nde_device_get_name(dev), &d);
    if (which < 0)
        return;
    int now = atomic_fetch_add(&active, 1) + 1;
    if (now > 1)
        atomic_store(&overlap_seen, 1);
    /* A move's CREATED (of the m name) runs alone: it is a barrier. */
    int move_created = which == 1 && event == NDE_LIFECYCLE_CREATED;
    if (move_created && now != 1)
        atomic_store(&move_not_alone, 1);
    char c = event == NDE_LIFECYCLE_CREATED ? 'C' : event == NDE_LIFECYCLE_UPDATED ? 'U' : event == NDE_LIFECYCLE_DELETED ? 'D' : '?';
    pthread_mutex_lock(&seen_lock);
    seen.pseq[which][d][seen.len[which][d]] = strncmp(nde_device_get_parent(dev), "net_", 4) == 0 ? 'p' : 'c';
    note(&seen, which, d, c);
    pthread_mutex_unlock(&seen_lock);
    /* Handshake: with several workers, a keyed callback waits (bounded by
     * a shared budget) until a second callback runs beside it. */
    if (atomic_load(&storm_workers) > 1 && which == 0 && event != NDE_LIFECYCLE_DELETED) {
        while (!atomic_load(&overlap_seen) && atomic_fetch_sub(&wait_budget_ms, 1) > 0)
            nap_ms(1);
    }
    /* A random delay of 0 to 300 us; parents 2 to 4 ms, so that their
     * uevents back up behind them while their children's run. */
    unsigned r = atomic_fetch_add(&delay_seed, 2654435761u);
    long us = d % 4 == 0 ? 2000 + (long)((r >> 8) % 2000) : (long)((r >> 8) % 300);
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
    if (move_created && atomic_load(&active) != 1)
        atomic_store(&move_not_alone, 1);
    atomic_fetch_sub(&active, 1);
}

/* Holds every worker while the storm is injected (a C event on the
 * monitor's events is a barrier), so that the whole storm is queued when
 * they start: the most room for a wrong order to show. */
static gate hold;

static void hold_workers(void *userdata, nde_event_type type, void *data)
{
    (void)userdata;
    (void)type;
    (void)data;
    gate_pass(&hold);
}

/* The ops of the storm, generated once (same for every run). */
typedef struct {
    char action[8];
    int dev;
    int which; /* the name it is about (after a move: the new one) */
} op;
static op ops[OPS];

static void make_ops(void)
{
    memset(&model, 0, sizeof model);
    unsigned x = 12345;
    for (int i = 0; i < OPS; i++) {
        x = x * 1103515245u + 12345u;
        int d = (int)((x >> 16) % DEVICES);
        unsigned pick = (x >> 8) % 10;
        op *o = &ops[i];
        o->dev = d;
        int k = model.present[0][d], m = model.present[1][d];
        if (!k && !m) {
            strcpy(o->action, "add");
            o->which = 0;
            model.present[0][d] = 1;
            note(&model, 0, d, 'C');
        } else if (k && pick == 0 && (x >> 20) % 8 == 0 && !is_child(d)) { /* rare: a move is a barrier */
            strcpy(o->action, "move");
            o->which = 1;
            model.present[0][d] = 0;
            model.present[1][d] = 1;
            note(&model, 0, d, 'D');
            note(&model, 1, d, 'C');
        } else if (pick < 4) {
            strcpy(o->action, "remove");
            o->which = m;
            model.present[m][d] = 0;
            note(&model, m, d, 'D');
        } else {
            strcpy(o->action, pick < 7 ? "change" : "add");
            o->which = m;
            note(&model, m, d, 'U');
        }
    }
}

static void check_outcome(const outcome *got, const outcome *want, const char *what, unsigned workers, int raw)
{
    for (int w = 0; w < 2; w++)
        for (int d = 0; d < DEVICES; d++) {
            int same = got->len[w][d] == want->len[w][d] && memcmp(got->seq[w][d], want->seq[w][d], (size_t)got->len[w][d]) == 0 &&
                       got->present[w][d] == want->present[w][d];
            if (want == &one_worker && same && memcmp(got->pseq[w][d], want->pseq[w][d], (size_t)got->len[w][d]) != 0) {
                fprintf(stderr, "storm (%u workers, %s path): net_%c%d was built under (p)arent / (c)omputer %.*s, one worker %.*s\n",
                        workers, raw ? "raw" : "fast", w ? 'm' : 'k', d, got->len[w][d], got->pseq[w][d], want->len[w][d],
                        want->pseq[w][d]);
                same = 0;
            }
            if (want == &one_worker && strcmp(got->parent[w][d], want->parent[w][d]) != 0) {
                fprintf(stderr, "storm (%u workers, %s path): net_%c%d has parent %s, one worker gives %s\n", workers,
                        raw ? "raw" : "fast", w ? 'm' : 'k', d, got->parent[w][d], want->parent[w][d]);
                same = 0;
            }
            if (!same)
                fprintf(stderr, "storm (%u workers, %s path): net_%c%d differs from %s: got %.*s%s, want %.*s%s\n", workers,
                        raw ? "raw" : "fast", w ? 'm' : 'k', d, what, got->len[w][d], got->seq[w][d],
                        got->present[w][d] ? " (present)" : "", want->len[w][d], want->seq[w][d],
                        want->present[w][d] ? " (present)" : "");
            CHECK(same);
        }
}

static void storm_run(unsigned workers, int raw)
{
    memset(&seen, 0, sizeof seen);
    atomic_store(&active, 0);
    atomic_store(&overlap_seen, 0);
    atomic_store(&move_not_alone, 0);
    atomic_store(&wait_budget_ms, 5000);
    atomic_store(&storm_workers, (int)workers);
    nde_monitor *mon = monitor_new(workers, raw);
    CHECK(nde_monitor_register(mon, NULL, storm_lifecycle, NULL, NULL) >= 0);
    nde_events *ev = nde_monitor_get_events(mon);
    gate_init(&hold);
    CHECK(nde_events_register(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, hold_workers, NULL, NULL) >= 0);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, NULL, NULL), NDE_OK);
    gate_wait_for(&hold, 1);
    int fd = injector_open();
    for (int i = 0; i < OPS; i++) {
        char rel[32], old[32];
        device_rel(ops[i].which, ops[i].dev, rel, sizeof rel);
        device_rel(0, ops[i].dev, old, sizeof old);
        inject(fd, ops[i].action, rel, strcmp(ops[i].action, "move") == 0 ? old : NULL);
    }
    close(fd);
    gate_open(&hold);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.overflows, 0); /* a resync would change what callbacks see */
    for (int w = 0; w < 2; w++)
        for (int d = 0; d < DEVICES; d++) {
            char name[24];
            snprintf(name, sizeof name, "net_%c%d", w ? 'm' : 'k', d);
            nde_device *dev = nde_monitor_lookup(mon, name);
            seen.present[w][d] = dev != NULL;
            if (dev) {
                char rel[32], syspath[64];
                device_rel(w, d, rel, sizeof rel);
                snprintf(syspath, sizeof syspath, "/sys/devices/virtual/net/%s", rel);
                CHECK(strcmp(nde_device_get_syspath(dev), syspath) == 0);
                snprintf(seen.parent[w][d], sizeof seen.parent[w][d], "%s", nde_device_get_parent(dev));
                nde_device_unref(dev);
            }
        }
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    /* Memory accounting stays exact: every uevent counted once each way. */
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.handled);
    nde_monitor_free(mon);
    gate_destroy(&hold);
    CHECK_EQ(atomic_load(&move_not_alone), 0);
    check_outcome(&seen, &model, "the model", workers, raw);
    if (workers == 1) {
        one_worker = seen;
        /* The parent check below can fail: some child hangs under its parent. */
        int under_parent = 0;
        for (int d = 0; d < DEVICES; d++)
            under_parent += is_child(d) && seen.present[0][d] && strncmp(seen.parent[0][d], "net_k", 5) == 0;
        CHECK(under_parent > 0);
        /* One worker: callbacks never overlap (so the check below can fail). */
        CHECK_EQ(atomic_load(&overlap_seen), 0);
    } else {
        check_outcome(&seen, &one_worker, "one worker", workers, raw);
        if (!atomic_load(&overlap_seen))
            fprintf(stderr, "storm (%u workers, %s path): callbacks never ran at the same time\n", workers, raw ? "raw" : "fast");
        CHECK(atomic_load(&overlap_seen));
    }
    printf("monitor_keyed_test: storm, %u worker(s), %s path: %d uevents, order and table as one worker\n", workers,
           raw ? "raw" : "fast", OPS);
}

static void storm_child(void)
{
    make_ops();
    for (int raw = 0; raw <= 1; raw++) {
        storm_run(1, raw);
        storm_run(2, raw);
        storm_run(4, raw);
    }
}

/* ---- settle ---------------------------------------------------------------- */

static atomic_int slow_started, slow_done, settle_returned, slow_done_at_settle, fast_created;

static void settle_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)userdata;
    if (event != NDE_LIFECYCLE_CREATED)
        return;
    const char *name = nde_device_get_name(dev);
    if (strcmp(name, "net_slow") == 0) {
        atomic_store(&slow_started, 1);
        /* Returns when settle returned (the bug) or after a bounded wait. */
        for (int i = 0; i < 3000 && !atomic_load(&settle_returned); i++)
            nap_ms(1);
        atomic_store(&slow_done, 1);
    } else if (strncmp(name, "net_fast", 8) == 0) {
        atomic_fetch_add(&fast_created, 1);
    }
}

static void *settle_thread(void *arg)
{
    nde_monitor *mon = arg;
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    atomic_store(&slow_done_at_settle, atomic_load(&slow_done));
    atomic_store(&settle_returned, 1);
    return NULL;
}

static void settle_run(int raw)
{
    atomic_store(&slow_started, 0);
    atomic_store(&slow_done, 0);
    atomic_store(&settle_returned, 0);
    atomic_store(&slow_done_at_settle, 0);
    atomic_store(&fast_created, 0);
    nde_monitor *mon = monitor_new(2, raw);
    CHECK(nde_monitor_register(mon, NULL, settle_lifecycle, NULL, NULL) >= 0);
    int fd = injector_open();
    inject(fd, "add", "slow", NULL);
    while (!atomic_load(&slow_started))
        nap_ms(1);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, settle_thread, mon), 0);
    /* Later devices, each finishing at once on the other worker: under a
     * count-based settle they make up for the slow one and settle returns
     * while it still runs. */
    int sent = 0;
    while (!atomic_load(&settle_returned) && sent < 2000) {
        char name[16];
        snprintf(name, sizeof name, "fast%d", sent++);
        inject(fd, "add", name, NULL);
        nap_ms(2);
    }
    CHECK_EQ(pthread_join(t, NULL), 0);
    if (!atomic_load(&slow_done_at_settle))
        fprintf(stderr, "settle (%s path) returned while an earlier device's callback still ran\n", raw ? "raw" : "fast");
    CHECK_EQ(atomic_load(&slow_done_at_settle), 1);
    close(fd);
    CHECK_EQ(nde_monitor_settle(mon, -1), NDE_OK);
    CHECK_EQ(atomic_load(&fast_created), sent);
    CHECK_EQ(nde_monitor_stop(mon, -1), NDE_OK);
    nde_monitor_stats st;
    CHECK_EQ(nde_monitor_get_stats(mon, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.handled);
    nde_monitor_free(mon);
    printf("monitor_keyed_test: settle, 2 workers, %s path: waited for the slow device (%d later devices)\n",
           raw ? "raw" : "fast", sent);
}

static void settle_child(void)
{
    settle_run(0);
    settle_run(1);
}

/* ---- config ------------------------------------------------------------------ */

static void test_config(void)
{
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = NDE_MONITOR_NO_MDEVCTL;
    cfg.workers = 257;
    CHECK(nde_monitor_new(&cfg) == NULL);
    cfg.workers = 4;
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    nde_monitor_free(mon);
    /* The layout before `workers`: what lies beyond `size` is not read (a
     * worker count of 100000 would be refused). */
    cfg.size = offsetof(nde_monitor_config, workers);
    cfg.workers = 100000;
    mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    nde_monitor_free(mon);
}

int main(void)
{
    nde_test_begin();
    test_config();
    in_private_netns("monitor_keyed_test", "storm", storm_child);
    in_private_netns("monitor_keyed_test", "settle", settle_child);
    nde_test_end();
    return 0;
}
