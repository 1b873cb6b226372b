/* bench/ring.c: the bounded MPSC pointer ring of bench/ring.h. */
#define _GNU_SOURCE
#include "ring.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* seq == position: free for the producer that claimed `position`;
 * seq == position + 1: holds that producer's pointer. */
struct cell {
    _Atomic size_t seq;
    void *ptr;
};

struct ring {
    _Alignas(64) _Atomic size_t tail;   /* next position to claim */
    _Alignas(64) _Atomic uint32_t parked; /* futex word: worker parks */
    _Atomic int stop;
    _Alignas(64) struct cell *cells;
    size_t mask;
    void (*run)(void *ptr);
    pthread_t worker;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void futex(_Atomic uint32_t *word, int op, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

static inline int ready(struct ring *r, size_t head)
{
    return atomic_load_explicit(&r->cells[head & r->mask].seq,
                                memory_order_acquire) == head + 1;
}

/* Returns 1 when the cell at `head` is ready, 0 when stopping and empty. */
static int wait_ready(struct ring *r, size_t head)
{
    for (;;) {
        uint64_t until = mono_ns() + RING_SPIN_NS;
        do {
            for (int i = 0; i < 32; i++) {
                if (ready(r, head))
                    return 1;
                cpu_relax();
            }
        } while (mono_ns() < until);
        /* Announce, then look again (a producer publishes, then looks at
         * `parked`: one of the two sees the other). */
        atomic_store(&r->parked, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (ready(r, head)) {
            atomic_store(&r->parked, 0);
            return 1;
        }
        if (atomic_load(&r->stop)) {
            atomic_store(&r->parked, 0);
            return ready(r, head);
        }
        futex(&r->parked, FUTEX_WAIT_PRIVATE, 1);
        atomic_store(&r->parked, 0);
    }
}

static void *worker_main(void *arg)
{
    struct ring *r = arg;
    for (size_t head = 0;; head++) {
        if (!ready(r, head) && !wait_ready(r, head))
            return NULL;
        struct cell *c = &r->cells[head & r->mask];
        void *p = c->ptr;
        /* free the slot for the producer one lap ahead, then run */
        atomic_store_explicit(&c->seq, head + r->mask + 1,
                              memory_order_release);
        r->run(p);
    }
}

struct ring *ring_new(size_t capacity, void (*run)(void *ptr))
{
    size_t cap = 2;
    while (cap < capacity)
        cap <<= 1;
    struct ring *r = aligned_alloc(64, sizeof *r);
    if (!r)
        return NULL;
    *r = (struct ring){.mask = cap - 1, .run = run};
    r->cells = calloc(cap, sizeof *r->cells);
    if (!r->cells) {
        free(r);
        return NULL;
    }
    for (size_t i = 0; i < cap; i++)
        atomic_init(&r->cells[i].seq, i);
    if (pthread_create(&r->worker, NULL, worker_main, r)) {
        free(r->cells);
        free(r);
        return NULL;
    }
    return r;
}

void ring_push(struct ring *r, void *ptr)
{
    size_t pos = atomic_fetch_add_explicit(&r->tail, 1, memory_order_relaxed);
    struct cell *c = &r->cells[pos & r->mask];
    for (unsigned spins = 0; atomic_load_explicit(&c->seq, memory_order_acquire)
                             != pos; spins++) {
        if (spins < 256)
            cpu_relax();
        else
            sched_yield(); /* full: let the worker run */
    }
    c->ptr = ptr;
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->parked, memory_order_relaxed) &&
        atomic_exchange(&r->parked, 0))
        futex(&r->parked, FUTEX_WAKE_PRIVATE, 1);
}

void ring_free(struct ring *r)
{
    atomic_store(&r->stop, 1);
    atomic_store(&r->parked, 0);
    futex(&r->parked, FUTEX_WAKE_PRIVATE, 1);
    pthread_join(r->worker, NULL);
    free(r->cells);
    free(r);
}
