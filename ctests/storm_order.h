/*
 * Shared by the keyed storms (keyed_test.c, events_keyed_test.c): a logical
 * clock, a PRNG, a counting free function, and the checker of the partial
 * order the header promises for keyed work and barriers: any run the API
 * allows passes, any it forbids fails.
 */
#ifndef STORM_ORDER_H
#define STORM_ORDER_H

#include "nde_test.h"

static atomic_long freed;
static atomic_ulong clock_ticks;

/* A logical clock: every call is later than every call before it. */
static unsigned long tick(void)
{
    return atomic_fetch_add(&clock_ticks, 1) + 1;
}

static void count_free(void *p)
{
    atomic_fetch_add(&freed, 1);
    free(p);
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One job's (or event's) life on the logical clock. */
typedef struct {
    int keyed;        /* ordered with the other spans of its key */
    int barrier;      /* overlaps nothing; ordered with all by send time */
    uint64_t key;
    int index;        /* send order; each key has one producer */
    unsigned long send_begin, send_end, start, end;
} storm_span;

/* What the header promises, nothing more:
 * - one key: its spans never overlap and run in send order;
 * - a barrier overlaps nothing; what was sent before its send began ended
 *   before it started; what was sent after its send returned started
 *   after it ended. */
static void check_storm_order(const storm_span *s, int n)
{
    for (int a = 0; a < n; a++) {
        CHECK(s[a].start > s[a].send_begin);
        CHECK(s[a].end > s[a].start);
    }
    for (int a = 0; a < n; a++) {
        for (int b = 0; b < n; b++) {
            if (a == b)
                continue;
            const storm_span *x = &s[a], *y = &s[b];
            if (x->keyed && y->keyed && x->key == y->key && x->index < y->index)
                CHECK(x->end < y->start);
            if (y->barrier) {
                CHECK(x->end < y->start || x->start > y->end);
                if (x->send_end < y->send_begin)
                    CHECK(x->end < y->start);
                if (x->send_begin > y->send_end)
                    CHECK(x->start > y->end);
            }
        }
    }
}

#endif
