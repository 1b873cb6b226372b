/*
 * thread-freeze: holds one thread of a running process stopped, leaving
 * its other threads running, for the check that needs "the driver's worker
 * has not yet run its first job" to last (check 7c). Needs root (ptrace).
 *
 *   thread-freeze PID NAME [TIMEOUT_S]
 *
 * Polls /proc/PID/task/<tid>/comm until a thread named NAME appears (at
 * most TIMEOUT_S seconds, default 30), stops that thread alone with ptrace
 * (PTRACE_SEIZE + PTRACE_INTERRUPT: a stopped, traced thread is never
 * chosen for a process-directed signal, so the process still gets its
 * SIGTERM), prints "frozen TID", and keeps it stopped until its standard
 * input reaches end of file; then it detaches, which lets the thread run
 * on, and prints "released TID". Exit status 0, or 1 (no such thread in
 * time, or ptrace refused).
 */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The tid of PID's thread named NAME, or 0. */
static pid_t find_thread(pid_t pid, const char *name)
{
    char path[64], comm[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        char cpath[sizeof path + sizeof e->d_name + 8];
        snprintf(cpath, sizeof cpath, "%s/%s/comm", path, e->d_name);
        FILE *f = fopen(cpath, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            if (strcmp(comm, name) == 0)
                found = (pid_t)atoi(e->d_name);
        }
        fclose(f);
    }
    closedir(dir);
    return found;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PID NAME [TIMEOUT_S]\n", argv[0]);
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    const char *name = argv[2];
    double timeout = argc > 3 ? atof(argv[3]) : 30;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    pid_t tid;
    for (;;) {
        tid = find_thread(pid, name);
        if (tid < 0) {
            fprintf(stderr, "thread-freeze: process %d is gone\n", (int)pid);
            return 1;
        }
        if (tid > 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > timeout) {
            fprintf(stderr, "thread-freeze: no thread named %s in %d\n", name, (int)pid);
            return 1;
        }
    }
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0 || ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0) {
        perror("thread-freeze: ptrace");
        return 1;
    }
    int status;
    if (waitpid(tid, &status, __WALL) < 0) {
        perror("thread-freeze: waitpid");
        return 1;
    }
    printf("frozen %d\n", (int)tid);
    fflush(stdout);

    char buf[256];
    while (read(0, buf, sizeof buf) > 0)
        ;
    /* A signal sent to this very thread meanwhile is passed on. */
    int sig = WIFSTOPPED(status) && (status >> 16) == 0 ? WSTOPSIG(status) : 0;
    if (sig == SIGTRAP || sig == SIGSTOP)
        sig = 0;
    if (ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)sig) < 0 && errno != ESRCH) {
        perror("thread-freeze: detach");
        return 1;
    }
    printf("released %d\n", (int)tid);
    return 0;
}
