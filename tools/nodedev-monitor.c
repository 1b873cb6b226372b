/*
 * nodedev-monitor: the node-device inventory as a tree, then live lifecycle
 * events, in the formats of `virsh nodedev-list --tree` and `virsh
 * nodedev-event --loop`, using only the public header of nodedev-events.
 *
 *   nodedev-monitor [--list] [--timeout SECONDS] [--subsystem NAME]...
 *                   [--timestamp] [--kernel | --udev] [--help]
 *
 * Ctrl-C (SIGINT), SIGTERM and the timeout end it cleanly: the monitor is
 * stopped, every listener released, every object freed (exit status 0).
 * See man/nodedev-monitor.1.
 */
#define _GNU_SOURCE 1
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "nodedev_events.h"

static const char usage_text[] =
    "usage: nodedev-monitor [OPTION]...\n"
    "Print the node devices as a tree (like `virsh nodedev-list --tree`), then\n"
    "their lifecycle events as they happen (like `virsh nodedev-event --loop`).\n"
    "\n"
    "  -l, --list              print the inventory and exit\n"
    "  -t, --timeout SECONDS   stop after SECONDS (default: run until Ctrl-C)\n"
    "  -s, --subsystem NAME    only devices of subsystem NAME (repeatable)\n"
    "  -T, --timestamp         prefix each event with the time\n"
    "  -k, --kernel            read the kernel's uevents (no udevd needed)\n"
    "  -u, --udev              read udevd's processed uevents\n"
    "                          (default: --udev when udevd runs, else --kernel)\n"
    "  -h, --help              this text\n";

/* ---- the inventory tree -------------------------------------------------- */

typedef struct {
    char *name;
    char *parent; /* NULL for the root ("computer") */
} tree_node;

typedef struct {
    tree_node *nodes;
    size_t n, cap;
    bool oom;
} tree;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int collect(void *userdata, const nde_device *dev)
{
    tree *t = userdata;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        tree_node *grown = realloc(t->nodes, cap * sizeof *grown);
        if (!grown) {
            t->oom = true;
            return 1; /* stop */
        }
        t->nodes = grown;
        t->cap = cap;
    }
    tree_node *n = &t->nodes[t->n];
    const char *name = nde_device_get_name(dev);
    const char *parent = nde_device_get_parent(dev);
    if (!name)
        return 0;
    if (parent && (!*parent || strcmp(parent, name) == 0))
        parent = NULL; /* the root */
    n->name = strdup(name);
    n->parent = dup_or_null(parent);
    if (!n->name || (parent && !n->parent)) {
        free(n->name);
        free(n->parent);
        t->oom = true;
        return 1;
    }
    t->n++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const tree_node *)a)->name, ((const tree_node *)b)->name);
}

static bool is_child(const tree *t, size_t i, const char *parent)
{
    return t->nodes[i].parent && strcmp(t->nodes[i].parent, parent) == 0;
}

/* virsh's layout: "+- " before each child, "|" below a node that has more
 * siblings to come, a "  |" line before the first child, and an empty line
 * after the last leaf of a list. */
static void print_subtree(const tree *t, size_t id, size_t last_sibling, bool root,
                          char *indent, size_t len, size_t cap)
{
    printf("%.*s%s%s\n", (int)len, indent, root ? "" : "+- ", t->nodes[id].name);
    if (!root && len + 2 < cap) {
        indent[len++] = id == last_sibling ? ' ' : '|';
        indent[len++] = ' ';
    }
    size_t last_child = (size_t)-1;
    for (size_t i = 0; i < t->n; i++)
        if (i != id && is_child(t, i, t->nodes[id].name))
            last_child = i;
    if (last_child != (size_t)-1)
        printf("%.*s  |\n", (int)len, indent);
    if (len + 2 < cap) {
        indent[len] = ' ';
        indent[len + 1] = ' ';
        for (size_t i = 0; i < t->n; i++)
            if (i != id && is_child(t, i, t->nodes[id].name))
                print_subtree(t, i, last_child, false, indent, len + 2, cap);
    }
    if (last_child == (size_t)-1 && id == last_sibling)
        printf("%.*s\n", (int)len, indent);
}

static int print_inventory(nde_monitor *mon)
{
    tree t = {0};
    int rc = nde_monitor_foreach(mon, collect, &t);
    if (rc < 0 || t.oom) {
        fprintf(stderr, "nodedev-monitor: cannot list devices: %s\n",
                rc < 0 ? nde_result_str(rc) : "out of memory");
        rc = -1;
    } else {
        qsort(t.nodes, t.n, sizeof *t.nodes, by_name);
        /* A parent that is not listed (never expected: the library hangs
         * such devices under "computer") is replaced by the root. */
        for (size_t i = 0; i < t.n; i++) {
            tree_node key = {t.nodes[i].parent, NULL};
            if (t.nodes[i].parent &&
                !bsearch(&key, t.nodes, t.n, sizeof *t.nodes, by_name)) {
                free(t.nodes[i].parent);
                key.name = (char *)"computer";
                bool have_root = bsearch(&key, t.nodes, t.n, sizeof *t.nodes, by_name) != NULL &&
                                 strcmp(t.nodes[i].name, "computer") != 0;
                t.nodes[i].parent = have_root ? strdup("computer") : NULL;
            }
        }
        char indent[1024];
        /* roots: devices without a parent (normally "computer" alone) */
        size_t last_root = (size_t)-1;
        for (size_t i = 0; i < t.n; i++)
            if (!t.nodes[i].parent)
                last_root = i;
        for (size_t i = 0; i < t.n; i++)
            if (!t.nodes[i].parent)
                print_subtree(&t, i, last_root, true, indent, 0, sizeof indent);
        rc = 0;
    }
    for (size_t i = 0; i < t.n; i++) {
        free(t.nodes[i].name);
        free(t.nodes[i].parent);
    }
    free(t.nodes);
    fflush(stdout);
    return rc;
}

/* ---- live events --------------------------------------------------------- */

static bool timestamps;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

/* virsh's --timestamp: "YYYY-MM-DD HH:MM:SS.mmm+0000: " */
static void print_timestamp(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s.%03ld+0000: ", buf, ts.tv_nsec / 1000000L);
}

static void on_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)userdata;
    const char *name = nde_device_get_name(dev);
    const char *what = NULL;
    switch (event) {
    case NDE_LIFECYCLE_CREATED:
        what = "Created";
        break;
    case NDE_LIFECYCLE_DELETED:
        what = "Deleted";
        break;
    case NDE_LIFECYCLE_DEFINED:
        what = "Defined";
        break;
    case NDE_LIFECYCLE_UNDEFINED:
        what = "Undefined";
        break;
    case NDE_LIFECYCLE_UPDATED:
        break;
    }
    pthread_mutex_lock(&print_lock);
    if (timestamps)
        print_timestamp();
    if (what)
        printf("event 'lifecycle' for node device %s: %s\n", name, what);
    else if (event == NDE_LIFECYCLE_UPDATED)
        printf("event 'update' for node device %s\n", name);
    else
        printf("event 'lifecycle' for node device %s: %d\n", name, (int)event);
    fflush(stdout);
    pthread_mutex_unlock(&print_lock);
}

/* ---- stopping ------------------------------------------------------------ */

/* Ctrl-C, SIGTERM and SIGHUP are taken by one thread that stops the
 * monitor: a stopped monitor ends nde_monitor_wait_initialized at once, so
 * even an interrupted enumeration ends without polling. */
typedef struct {
    nde_monitor *mon;
    sigset_t signals;
    atomic_bool stopped; /* set before the monitor is stopped */
} stopper;

static void *stopper_thread(void *arg)
{
    stopper *s = arg;
    int sig;
    while (sigwait(&s->signals, &sig) != 0)
        ;
    atomic_store(&s->stopped, true);
    nde_monitor_stop(s->mon, 5000);
    return NULL;
}

/* ---- main ---------------------------------------------------------------- */

static int parse_seconds(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"list", no_argument, NULL, 'l'},
        {"timeout", required_argument, NULL, 't'},
        {"subsystem", required_argument, NULL, 's'},
        {"timestamp", no_argument, NULL, 'T'},
        {"kernel", no_argument, NULL, 'k'},
        {"udev", no_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool list_only = false;
    double timeout = -1;
    unsigned int flags = 0;
    const char **subsystems = calloc((size_t)argc + 1, sizeof *subsystems);
    size_t nsub = 0;
    if (!subsystems)
        return 1;

    int c;
    while ((c = getopt_long(argc, argv, "lt:s:Tkuh", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            list_only = true;
            break;
        case 't':
            if (parse_seconds(optarg, &timeout) < 0) {
                fprintf(stderr, "nodedev-monitor: bad --timeout '%s'\n", optarg);
                free(subsystems);
                return 2;
            }
            break;
        case 's':
            subsystems[nsub++] = optarg;
            break;
        case 'T':
            timestamps = true;
            break;
        case 'k':
            flags = (flags & ~NDE_MONITOR_UDEV_EVENTS) | NDE_MONITOR_KERNEL_EVENTS;
            break;
        case 'u':
            flags = (flags & ~NDE_MONITOR_KERNEL_EVENTS) | NDE_MONITOR_UDEV_EVENTS;
            break;
        case 'h':
            fputs(usage_text, stdout);
            free(subsystems);
            return 0;
        default:
            fputs(usage_text, stderr);
            free(subsystems);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nodedev-monitor: unexpected argument '%s'\n", argv[optind]);
        fputs(usage_text, stderr);
        free(subsystems);
        return 2;
    }

    /* Ctrl-C, SIGTERM and SIGHUP are taken synchronously by the stop thread:
     * block them before any thread starts (threads inherit the mask). */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = flags;
    cfg.name = "nodedev-mon";
    cfg.subsystems = nsub ? subsystems : NULL;

    int status = 1;
    stopper stop;
    pthread_t stop_thread;
    bool have_stop_thread = false;
    nde_monitor *mon = nde_monitor_new(&cfg);
    if (!mon) {
        fprintf(stderr, "nodedev-monitor: cannot create the monitor\n");
        goto out;
    }
    int rc = nde_monitor_start(mon);
    if (rc < 0) {
        fprintf(stderr, "nodedev-monitor: cannot start: %s\n", nde_result_str(rc));
        goto out;
    }
    /* From here on a signal (or the timeout) stops the monitor. */
    stop.mon = mon;
    stop.signals = stop_signals;
    atomic_init(&stop.stopped, false);
    if ((errno = pthread_create(&stop_thread, NULL, stopper_thread, &stop)) != 0) {
        perror("nodedev-monitor: cannot start the signal thread");
        goto out;
    }
    have_stop_thread = true;

    /* The enumeration: a stop ends this wait at once. */
    rc = nde_monitor_wait_initialized(mon, -1);
    if (rc == NDE_ERR_STOPPED && atomic_load(&stop.stopped)) {
        status = 0;
        goto out;
    }
    if (rc < 0) {
        fprintf(stderr, "nodedev-monitor: enumeration failed: %s\n", nde_result_str(rc));
        goto out;
    }

    /* Live events from here on; the tree is a snapshot taken after the
     * listener is in place, so no device falls between the two. The print
     * lock keeps events from interleaving with the tree. */
    if (!list_only) {
        pthread_mutex_lock(&print_lock);
        rc = nde_monitor_register(mon, NULL, on_lifecycle, NULL, NULL);
        if (rc < 0) {
            pthread_mutex_unlock(&print_lock);
            fprintf(stderr, "nodedev-monitor: cannot register: %s\n", nde_result_str(rc));
            goto out;
        }
    }
    rc = print_inventory(mon);
    if (!list_only)
        pthread_mutex_unlock(&print_lock);
    if (rc < 0)
        goto out;
    status = 0;
    if (list_only)
        goto out;

    /* Run until a signal (the stop thread then ends) or the timeout. */
    if (timeout < 0) {
        pthread_join(stop_thread, NULL);
        have_stop_thread = false;
    } else {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        double whole = (double)(long)(timeout < 1e9 ? timeout : 1e9);
        deadline.tv_sec += (time_t)whole;
        deadline.tv_nsec += (long)((timeout - whole) * 1e9);
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        if (pthread_clockjoin_np(stop_thread, NULL, CLOCK_MONOTONIC, &deadline) == 0)
            have_stop_thread = false;
    }

out:
    if (have_stop_thread) {
        /* Ended by an error, --list or the timeout: wake the stop thread
         * (the signal is blocked everywhere, so its sigwait takes it). */
        pthread_kill(stop_thread, SIGTERM);
        pthread_join(stop_thread, NULL);
    }
    if (mon) {
        nde_monitor_stop(mon, 5000);
        nde_monitor_free(mon); /* releases the listener; joins every thread */
    }
    free(subsystems);
    fflush(stdout);
    return status;
}
