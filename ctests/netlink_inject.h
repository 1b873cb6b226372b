/*
 * Shared by the monitor's C tests that inject uevents: a netlink socket
 * that sends to the uevent multicast groups, a libudev-format message about
 * a net device, and a forked child in a private network namespace (so the
 * injected messages never reach the host).
 */
#ifndef NETLINK_INJECT_H
#define NETLINK_INJECT_H

#include "nde_test.h"

#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <linux/netlink.h>

/* A netlink uevent socket that sends to multicast groups. */
static int injector_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
    CHECK(fd >= 0);
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

/* Sends a libudev-format message (header + KEY=VALUE\0 pairs) about the net
 * device at /devices/virtual/net/`rel` (its interface: the last component)
 * to `group`, with the next SEQNUM; `old` (NULL: none) is the DEVPATH_OLD
 * of a move, likewise. Returns 0, or -1 when the kernel dropped it (no
 * receiver, or a full one). */
static int inject_net(int fd, unsigned group, const char *action, const char *rel, const char *old)
{
    static unsigned seqnum;
    const char *ifname = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
    char body[512];
    int n = snprintf(body, sizeof body, "ACTION=%s%cDEVPATH=/devices/virtual/net/%s%cSUBSYSTEM=net%cINTERFACE=%s%cSEQNUM=%u%c",
                     action, 0, rel, 0, 0, ifname, 0, ++seqnum, 0);
    CHECK(n > 0 && (size_t)n < sizeof body);
    if (old) {
        int m = snprintf(body + n, sizeof body - (size_t)n, "DEVPATH_OLD=/devices/virtual/net/%s%c", old, 0);
        CHECK(m > 0 && (size_t)(n + m) < sizeof body);
        n += m;
    }
    unsigned char msg[40 + sizeof body];
    memset(msg, 0, 40);
    memcpy(msg, "libudev", 8);
    uint32_t magic = htonl(0xfeedcafe), hdr = 40, len = (uint32_t)n;
    memcpy(msg + 8, &magic, 4);
    memcpy(msg + 12, &hdr, 4);
    memcpy(msg + 16, &hdr, 4);
    memcpy(msg + 20, &len, 4);
    memcpy(msg + 40, body, (size_t)n);
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    sa.nl_groups = group;
    for (;;) {
        if (sendto(fd, msg, 40 + (size_t)n, 0, (struct sockaddr *)&sa, sizeof sa) >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        CHECK(errno == ENOBUFS || errno == ESRCH);
        return -1;
    }
}

/* Runs `body` in a forked child inside a private network namespace (root
 * only; `test` names the program in what it prints); fails the test when
 * the child fails. */
static void in_private_netns(const char *test, const char *what, void (*body)(void))
{
    if (geteuid() != 0) {
        printf("%s: not root: skipping %s\n", test, what);
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNET) != 0) {
            printf("%s: unshare(CLONE_NEWNET) failed: skipping %s\n", test, what);
            fflush(stdout);
            _exit(0);
        }
        body();
        fflush(stdout);
        exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "%s: %s failed in its child (status %d)\n", test, what, status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

#endif
