/*
 * uevent-inject: sends libudev-format uevent messages to the udev netlink
 * group (2) of the current network namespace, as systemd-udevd would
 * broadcast them, for the storm and overflow checks. Needs root (libudev
 * drops messages from other users). The same wire format as
 * tests/support/mod.rs (Injector).
 *
 *   uevent-inject [--action add|remove|pairs] [--count N] [--first K]
 *                 [--prefix NAME] [--type sg|net|css] [--ifname IFNAME]
 *                 [--pad BYTES] [--rate MSGS_PER_S]
 *
 * Each message describes a device NAME<i> (i = K .. K+N-1) with no sysfs
 * entry:
 *   sg (default): SUBSYSTEM=scsi_generic, DEVPATH=/devices/virtual/
 *       scsi_generic/NAME<i>, DEVNAME=/dev/NAME<i>: a SCSI generic node,
 *       which libvirt's driver describes from the message alone (libvirt
 *       "scsi_generic_NAME<i>");
 *   net: SUBSYSTEM=net, DEVPATH=/devices/virtual/net/NAME<i>,
 *       INTERFACE=NAME<i>, or INTERFACE=IFNAME with --ifname (libvirt 9.0
 *       drops a net device whose sysfs entry is missing; the library's
 *       monitor keeps it; libvirt 11.3 reads the interface's operstate in
 *       sysfs and asks ethtool about it, and drops the device when that
 *       fails: --ifname names a real interface, e.g. a veth, so that each
 *       synthetic device costs libvirt its real per-interface work);
 *   css: SUBSYSTEM=css, DRIVER=vfio_ccw, DEVPATH=NAME/0.0.<i as 4 hex
 *       digits>: an s390 channel subsystem device (libvirt
 *       "css_0_0_<devno>"); NAME is a directory under /sys (the mdevctl
 *       check mounts a tmpfs there and gives each device an
 *       mdev_supported_types directory: a stand-in for mdev-capable
 *       hardware, which libvirt reads from sysfs).
 * "pairs" sends add then remove of each device (the table stays small).
 * --pad adds an ID_NDE_PAD property of that many bytes: udevd's messages
 * carry many properties (often 1 KB or more), which is what fills a
 * receive buffer.
 * Prints the number of messages sent and the wall time (s) of the first
 * send, as "sent N first_send_unix_s".
 */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* MurmurHash2, seed 0: systemd's string_hash32, used for the subsystem
 * and devtype hashes of the header (libudev's socket filter reads them). */
static uint32_t murmur2(const char *s)
{
    const uint32_t m = 0x5bd1e995;
    size_t len = strlen(s);
    uint32_t h = (uint32_t)len;
    const unsigned char *p = (const unsigned char *)s;
    while (len >= 4) {
        uint32_t k;
        memcpy(&k, p, 4);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        len -= 4;
    }
    switch (len) {
    case 3:
        h ^= (uint32_t)p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

static int sock = -1;
static unsigned long long seqnum = 1000;
static long long sent;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum dev_type { TYPE_SG, TYPE_NET, TYPE_CSS };
static enum dev_type type = TYPE_SG;
static char pad[2048];
static const char *ifname;

static void send_dev(const char *action, const char *name, long long i)
{
    char body[1024 + sizeof pad + 16];
    int len;
    const char *subsystem = type == TYPE_SG ? "scsi_generic" : type == TYPE_NET ? "net" : "css";
    if (type == TYPE_SG)
        len = snprintf(body, sizeof body,
                       "ACTION=%s%cDEVPATH=/devices/virtual/scsi_generic/%s%c"
                       "SUBSYSTEM=scsi_generic%cDEVNAME=/dev/%s%cMAJOR=21%cMINOR=%lld%c"
                       "SEQNUM=%llu%cUSEC_INITIALIZED=1%c",
                       action, 0, name, 0, 0, name, 0, 0, i % 1048576, 0, ++seqnum, 0, 0);
    else if (type == TYPE_CSS)
        len = snprintf(body, sizeof body,
                       "ACTION=%s%cDEVPATH=%s%cSUBSYSTEM=css%cDRIVER=vfio_ccw%c"
                       "SEQNUM=%llu%cUSEC_INITIALIZED=1%c",
                       action, 0, name, 0, 0, 0, ++seqnum, 0, 0);
    else
        len = snprintf(body, sizeof body,
                       "ACTION=%s%cDEVPATH=/devices/virtual/net/%s%cSUBSYSTEM=net%c"
                       "INTERFACE=%s%cIFINDEX=7%cSEQNUM=%llu%cUSEC_INITIALIZED=1%c",
                       action, 0, name, 0, 0, ifname ? ifname : name, 0, 0, ++seqnum, 0, 0);
    if (pad[0])
        len += snprintf(body + len, sizeof body - (size_t)len, "ID_NDE_PAD=%s%c", pad, 0);
    unsigned char msg[40 + sizeof body];
    uint32_t v;
    memcpy(msg, "libudev", 8);
    v = htonl(0xfeedcafe);
    memcpy(msg + 8, &v, 4);
    v = 40; /* header size */
    memcpy(msg + 12, &v, 4);
    memcpy(msg + 16, &v, 4); /* properties offset */
    v = (uint32_t)len;
    memcpy(msg + 20, &v, 4);
    v = htonl(murmur2(subsystem));
    memcpy(msg + 24, &v, 4);
    v = 0; /* no devtype */
    memcpy(msg + 28, &v, 4);
    memcpy(msg + 32, &v, 4); /* tag bloom filter */
    memcpy(msg + 36, &v, 4);
    memcpy(msg + 40, body, (size_t)len);

    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = 2};
    for (;;) {
        if (sendto(sock, msg, 40 + (size_t)len, 0, (struct sockaddr *)&sa, sizeof sa) >= 0)
            break;
        if (errno == EINTR)
            continue;
        /* No listener, or its buffer is full: the kernel drops the message
         * for that listener (which is what the overflow check wants). */
        if (errno == ESRCH || errno == ENOBUFS)
            break;
        perror("uevent-inject: sendto");
        exit(1);
    }
    sent++;
}

int main(int argc, char **argv)
{
    const char *action = "add", *prefix = "storm";
    long long count = 1, first = 0, rate = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--action") == 0 && i + 1 < argc)
            action = argv[++i];
        else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = atoll(argv[++i]);
        else if (strcmp(argv[i], "--first") == 0 && i + 1 < argc)
            first = atoll(argv[++i]);
        else if (strcmp(argv[i], "--prefix") == 0 && i + 1 < argc)
            prefix = argv[++i];
        else if (strcmp(argv[i], "--pad") == 0 && i + 1 < argc) {
            long n = atol(argv[++i]);
            if (n < 0 || n >= (long)sizeof pad)
                n = sizeof pad - 1;
            memset(pad, 'x', (size_t)n);
            pad[n] = 0;
        } else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) {
            i++;
            type = strcmp(argv[i], "net") == 0 ? TYPE_NET : strcmp(argv[i], "css") == 0 ? TYPE_CSS : TYPE_SG;
        }
        else if (strcmp(argv[i], "--ifname") == 0 && i + 1 < argc)
            ifname = argv[++i];
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--action add|remove|pairs] [--count N] [--first K] "
                            "[--prefix NAME] [--type sg|net|css] [--ifname IFNAME] [--pad BYTES] [--rate MSGS_PER_S]\n", argv[0]);
            return 2;
        }
    }
    if (strcmp(action, "add") && strcmp(action, "remove") && strcmp(action, "pairs")) {
        fprintf(stderr, "uevent-inject: unknown action '%s'\n", action);
        return 2;
    }

    sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
    struct sockaddr_nl self = {.nl_family = AF_NETLINK};
    if (sock < 0 || bind(sock, (struct sockaddr *)&self, sizeof self) < 0) {
        perror("uevent-inject: netlink socket");
        return 1;
    }
    seqnum += (unsigned long long)first * 2;

    double start = now_s();
    char name[256];
    for (long long i = first; i < first + count; i++) {
        if (type == TYPE_CSS)
            snprintf(name, sizeof name, "%s/0.0.%04llx", prefix, i & 0xffff);
        else
            snprintf(name, sizeof name, "%s%lld", prefix, i);
        if (strcmp(action, "pairs") == 0) {
            send_dev("add", name, i);
            send_dev("remove", name, i);
        } else {
            send_dev(action, name, i);
        }
        if (rate > 0) {
            /* pace: never ahead of i / rate seconds */
            double due = start + (double)(sent) / (double)rate;
            double t = now_s();
            if (due > t) {
                struct timespec ts = {(time_t)(due - t), (long)((due - t - (double)(time_t)(due - t)) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
    }
    printf("sent %lld %.6f\n", sent, start);
    return 0;
}
