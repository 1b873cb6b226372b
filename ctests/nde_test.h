/*
 * Shared helpers of the C tests: assertions, a gate that blocks jobs, and
 * the dlopen mode.
 *
 * Each test program is built four ways by tests/ctests.rs: linked to the .so,
 * linked to the .a, with NDE_TEST_DLOPEN (every nde_ call goes through a
 * pointer resolved with dlsym from a dlopen'ed library), and under
 * sanitizers / valgrind.
 */
#ifndef NDE_TEST_H
#define NDE_TEST_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodedev_events.h"

#include "nde_check.h"

#ifdef NDE_TEST_DLOPEN
#include <dlfcn.h>
/* Generated from the header by tests/ctests.rs: one pointer per function,
 * `#define nde_x (*nde_dl_nde_x)`, and nde_dl_load_all(handle). */
#include "nde_dl_symbols.h"
static void *nde_test_handle;
static void nde_test_begin(void)
{
    const char *path = getenv("NDE_TEST_LIBRARY");
    nde_test_handle = dlopen(path ? path : "libnodedev_events.so.0",
                             RTLD_NOW | RTLD_LOCAL);
    if (!nde_test_handle) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        exit(1);
    }
    if (nde_dl_load_all(nde_test_handle) != 0)
        exit(1);
}
static void nde_test_end(void)
{
    CHECK(dlclose(nde_test_handle) == 0);
}
#else
static void nde_test_begin(void) {}
static void nde_test_end(void) {}
#endif

/* A gate that jobs can wait on until the test opens it. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;
    int waiting;
} gate;

static inline void gate_init(gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = 0;
    g->waiting = 0;
}

static inline void gate_pass(gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->waiting++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    g->waiting--;
    pthread_mutex_unlock(&g->lock);
}

/* Waits until `n` threads are blocked in gate_pass. */
static inline void gate_wait_for(gate *g, int n)
{
    pthread_mutex_lock(&g->lock);
    while (g->waiting < n)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static inline void gate_open(gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static inline void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

/* Sleeps a little without asserting anything about time. */
static inline void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif /* NDE_TEST_H */
