/*
 * bench/ring.h: the ceiling reference of the benchmark, not a product.
 *
 * A bounded lock-free ring of pointers with many producers and one worker
 * thread.  A producer claims a slot with one fetch_add and publishes the
 * pointer with a per-slot sequence number (so laps cannot mix); it waits
 * when the ring is full.  The worker runs `run(ptr)` for each pointer in
 * claim order; when the ring is empty it spins for up to RING_SPIN_NS, then
 * parks on a futex, which a producer wakes only when the worker said it was
 * parking.  What it does not have (and the pool must): no bound, a free
 * function per job, priorities, stop/drain, stats.
 */
#ifndef BENCH_RING_H
#define BENCH_RING_H

#include <stddef.h>

/* How long the worker spins on an empty ring before it parks. */
#define RING_SPIN_NS 5000

struct ring;

/* capacity: rounded up to a power of two.  NULL when out of memory or the
 * thread cannot be created. */
struct ring *ring_new(size_t capacity, void (*run)(void *ptr));
/* Any thread; blocks (spins, then yields) while the ring is full. */
void ring_push(struct ring *r, void *ptr);
/* Runs what is queued, stops the worker, joins it, frees the ring. */
void ring_free(struct ring *r);

#endif
