/*
 * A storm of random calls from several host threads against shared pools
 * and events objects, through the C API, the way a hypervisor daemon's
 * threads would make them: send (in bursts, some with priority), stop,
 * drain, wait_idle, set_parameters, getters, register, deregister, submit,
 * schedule, shutdown_prepare, shutdown_wait, and free followed by a new
 * object. Jobs and callbacks send, submit, register and deregister
 * themselves, and check that the joining calls refuse from inside.
 *
 * The host's own rule is kept: no call on an object after its _free. A
 * read-write lock per slot stands for the daemon's own locking: every call
 * is made under the read side, free under the write side.
 *
 * At the end every job's free_fn, every event's data_free and every
 * callback's userdata_free has run exactly once, the objects' stats add up,
 * nde_events_free had released every userdata by the time it returned, and
 * no callback ran after nde_events_deregister returned. Bounded by a number
 * of operations per thread (smaller under valgrind) and a time budget that
 * only changes how much work is done, never what is checked.
 */
/* Only some of the shared helpers are used here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "nde_test.h"
#pragma GCC diagnostic pop

#include <stdint.h>

enum { THREADS = 3, POOL_SLOTS = 2, EV_SLOTS = 2, MAX_REGS = 1 << 16, SLOT_REGS = 256 };

static long ops_per_thread = 20000;
static double budget_s = 0.8;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: per-thread, seeded. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}
static unsigned below(uint64_t *s, unsigned n) { return (unsigned)(rnd(s) % n); }

/* ---- accounting ---- */
static atomic_long jobs_made, jobs_freed, jobs_ran, jobs_refused, bad_results;
static atomic_long data_made, data_freed, cb_calls, late_calls;
static atomic_long regs_made, regs_released, objects_made, ops_done;

#define BAD(cond)                                                              \
    do {                                                                       \
        if (cond) {                                                            \
            fprintf(stderr, "%s:%d: unexpected: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                    \
            atomic_fetch_add(&bad_results, 1);                                 \
        }                                                                      \
    } while (0)

/* ---- pools ---- */
typedef struct {
    nde_pool *pool;
    atomic_long refused;
    atomic_int stopped; /* the host knows it stopped it */
} pool_ctx;

typedef struct {
    long magic;
    int generation;
    int action;
} job;

#define JOB_MAGIC 0x4a4f42L

static job *job_new(int generation, int action)
{
    job *j = malloc(sizeof *j);
    CHECK(j != NULL);
    j->magic = JOB_MAGIC;
    j->generation = generation;
    j->action = action;
    atomic_fetch_add(&jobs_made, 1);
    return j;
}

static void job_free(void *p)
{
    job *j = p;
    CHECK(j->magic == JOB_MAGIC);
    j->magic = 0;
    atomic_fetch_add(&jobs_freed, 1);
    free(j);
}

static void send_counted(pool_ctx *c, unsigned prio, job *j)
{
    int r = nde_pool_send_job_full(c->pool, prio, j, job_free);
    if (r != NDE_OK) {
        BAD(r != NDE_ERR_STOPPED);
        atomic_store(&c->stopped, 1);
        atomic_fetch_add(&c->refused, 1);
        atomic_fetch_add(&jobs_refused, 1);
    }
}

static void run_job(void *jobdata, void *opaque)
{
    job *j = jobdata;
    pool_ctx *c = opaque;
    CHECK(j->magic == JOB_MAGIC);
    atomic_fetch_add(&jobs_ran, 1);
    if (j->action == 1 && j->generation < 2) {
        send_counted(c, 0, job_new(j->generation + 1, 1));
    } else if (j->action == 2) {
        BAD(nde_pool_drain(c->pool) != NDE_ERR_WOULD_DEADLOCK);
        BAD(nde_pool_wait_idle(c->pool, -1) != NDE_ERR_WOULD_DEADLOCK);
        nde_pool_stats st;
        BAD(nde_pool_get_stats(c->pool, &st) != NDE_OK);
    }
}

static pool_ctx *pool_ctx_new(unsigned kind)
{
    static const size_t shapes[4][3] = {{1, 1, 0}, {0, 3, 0}, {1, 2, 1}, {2, 2, 0}};
    pool_ctx *c = malloc(sizeof *c);
    CHECK(c != NULL);
    atomic_init(&c->refused, 0);
    atomic_init(&c->stopped, 0);
    const size_t *s = shapes[kind % 4];
    c->pool = nde_pool_new_full(s[0], s[1], s[2], run_job, "stress-pool", c);
    CHECK(c->pool != NULL);
    atomic_fetch_add(&objects_made, 1);
    return c;
}

static void pool_ctx_free(pool_ctx *c)
{
    CHECK_EQ(nde_pool_drain(c->pool), NDE_OK);
    nde_pool_stats st;
    CHECK_EQ(nde_pool_get_stats(c->pool, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.completed + st.discarded);
    CHECK_EQ(st.rejected, atomic_load(&c->refused));
    CHECK_EQ(nde_pool_get_job_queue_depth(c->pool), 0);
    nde_pool_free(c->pool);
    free(c);
}

/* ---- events ---- */
typedef struct ev_ctx ev_ctx;

typedef struct {
    atomic_int deregistered;
    atomic_int released;
    atomic_int id;
    ev_ctx *owner;
} reg_record;

static reg_record regs[MAX_REGS];

struct ev_ctx {
    nde_events *ev;
    pthread_mutex_t lock;
    int reg_idx[SLOT_REGS];
    int nregs;
    atomic_long registered, released;
    atomic_int stopped; /* the host knows it shut it down */
};

typedef struct {
    long magic;
    int generation;
} datum;

#define DATUM_MAGIC 0x444154L

static datum *datum_new(int generation)
{
    datum *d = malloc(sizeof *d);
    CHECK(d != NULL);
    d->magic = DATUM_MAGIC;
    d->generation = generation;
    atomic_fetch_add(&data_made, 1);
    return d;
}

static void datum_free(void *p)
{
    datum *d = p;
    CHECK(d->magic == DATUM_MAGIC);
    d->magic = 0;
    atomic_fetch_add(&data_freed, 1);
    free(d);
}

static void reg_release(void *userdata)
{
    reg_record *r = &regs[(intptr_t)userdata];
    CHECK_EQ(atomic_fetch_add(&r->released, 1), 0); /* exactly once */
    atomic_fetch_add(&r->owner->released, 1);
    atomic_fetch_add(&regs_released, 1);
}

static void submit_counted(ev_ctx *c, int type, int generation)
{
    int r = nde_events_submit(c->ev, type, datum_new(generation), datum_free);
    BAD(r != NDE_OK && r != NDE_ERR_STOPPED);
    if (r == NDE_ERR_STOPPED)
        atomic_store(&c->stopped, 1);
}

static int register_counted(ev_ctx *c, int type);

static void on_event(void *userdata, nde_event_type type, void *data)
{
    intptr_t idx = (intptr_t)userdata;
    reg_record *r = &regs[idx];
    ev_ctx *c = r->owner;
    (void)type;
    atomic_fetch_add(&cb_calls, 1);
    if (atomic_load(&r->deregistered))
        atomic_fetch_add(&late_calls, 1);
    datum *d = data;
    if (d)
        CHECK(d->magic == DATUM_MAGIC);
    unsigned pick = (unsigned)((atomic_load(&cb_calls) * 2654435761u) % 100);
    if (pick < 2) {
        /* deregister itself: returns at once, released after return */
        if (nde_events_deregister(c->ev, atomic_load(&r->id)) == NDE_OK)
            atomic_store(&r->deregistered, 1);
    } else if (pick < 4) {
        register_counted(c, NDE_EVENT_ANY);
    } else if (pick < 12 && d && d->generation < 2) {
        submit_counted(c, NDE_EVENT_UDEV_CHANGE, d->generation + 1);
    } else if (pick == 12) {
        BAD(nde_events_wait_idle(c->ev, -1) != NDE_ERR_WOULD_DEADLOCK);
        BAD(nde_events_shutdown_wait(c->ev, -1) != NDE_ERR_WOULD_DEADLOCK);
    }
}

static atomic_int next_reg;

/* Returns the id, or -1 when no record is left (then nothing registered). */
static int register_counted(ev_ctx *c, int type)
{
    int idx = atomic_fetch_add(&next_reg, 1);
    if (idx >= MAX_REGS)
        return -1;
    pthread_mutex_lock(&c->lock);
    int full = c->nregs >= SLOT_REGS;
    pthread_mutex_unlock(&c->lock);
    if (full)
        return -1;
    reg_record *r = &regs[idx];
    r->owner = c;
    atomic_store(&r->id, -1);
    atomic_fetch_add(&c->registered, 1);
    atomic_fetch_add(&regs_made, 1);
    int id = nde_events_register(c->ev, type, on_event, (void *)(intptr_t)idx, reg_release);
    CHECK(id >= 0);
    atomic_store(&r->id, id);
    pthread_mutex_lock(&c->lock);
    if (c->nregs < SLOT_REGS)
        c->reg_idx[c->nregs++] = idx;
    pthread_mutex_unlock(&c->lock);
    return id;
}

static ev_ctx *ev_ctx_new(void)
{
    ev_ctx *c = malloc(sizeof *c);
    CHECK(c != NULL);
    pthread_mutex_init(&c->lock, NULL);
    c->nregs = 0;
    atomic_init(&c->registered, 0);
    atomic_init(&c->released, 0);
    atomic_init(&c->stopped, 0);
    c->ev = nde_events_new("stress-ev");
    CHECK(c->ev != NULL);
    atomic_fetch_add(&objects_made, 1);
    return c;
}

static void ev_ctx_free(ev_ctx *c)
{
    CHECK_EQ(nde_events_shutdown_wait(c->ev, -1), NDE_OK);
    nde_pool_stats st;
    CHECK_EQ(nde_events_get_stats(c->ev, &st), NDE_OK);
    CHECK_EQ(st.submitted, st.completed + st.discarded);
    nde_events_free(c->ev);
    /* free released every userdata before it returned */
    CHECK_EQ(atomic_load(&c->released), atomic_load(&c->registered));
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- slots: the host's own locking ---- */
typedef struct {
    pthread_rwlock_t lock;
    pool_ctx *pool;
} pool_slot;
typedef struct {
    pthread_rwlock_t lock;
    ev_ctx *ev;
} ev_slot;

static pool_slot pool_slots[POOL_SLOTS];
static ev_slot ev_slots[EV_SLOTS];
static double start_time;

static void pool_op(uint64_t *s)
{
    pool_slot *slot = &pool_slots[below(s, POOL_SLOTS)];
    unsigned op = below(s, 1000);
    pthread_rwlock_rdlock(&slot->lock);
    if (atomic_load(&slot->pool->stopped) && below(s, 8) == 0)
        op = 999; /* a stopped pool is soon replaced, as a host would */
    pthread_rwlock_unlock(&slot->lock);
    if (op >= 990) {
        pthread_rwlock_wrlock(&slot->lock);
        pool_ctx_free(slot->pool);
        slot->pool = pool_ctx_new(below(s, 4));
        pthread_rwlock_unlock(&slot->lock);
        return;
    }
    pthread_rwlock_rdlock(&slot->lock);
    pool_ctx *c = slot->pool;
    nde_pool_stats st;
    if (op < 650) {
        unsigned burst = below(s, 8) == 0 ? 1 + below(s, 16) : 1;
        for (unsigned i = 0; i < burst; i++) {
            unsigned a = below(s, 100);
            send_counted(c, below(s, 4) == 0 ? 1 : 0, job_new(0, a < 8 ? 1 : a < 10 ? 2 : 0));
        }
    } else if (op < 750) {
        int r = nde_pool_wait_idle(c->pool, (int)below(s, 3));
        BAD(r != NDE_OK && r != NDE_ERR_TIMEOUT && r != NDE_ERR_STOPPED);
    } else if (op < 850) {
        CHECK_EQ(nde_pool_get_stats(c->pool, &st), NDE_OK);
        BAD(st.completed + st.discarded > st.submitted);
        (void)nde_pool_get_current_workers(c->pool);
        (void)nde_pool_get_free_workers(c->pool);
        (void)nde_pool_get_job_queue_depth(c->pool);
        (void)nde_pool_get_priority_workers(c->pool);
    } else if (op < 930) {
        int r = nde_pool_set_parameters(c->pool, (long long)below(s, 3) - 1,
                                        (long long)below(s, 4) - 1, (long long)below(s, 3) - 1);
        BAD(r != NDE_OK && r != NDE_ERR_INVALID && r != NDE_ERR_STOPPED);
    } else if (op < 975) {
        (void)nde_pool_get_min_workers(c->pool);
        (void)nde_pool_get_max_workers(c->pool);
    } else if (op < 983) {
        nde_pool_stop(c->pool);
        atomic_store(&c->stopped, 1);
    } else {
        BAD(nde_pool_drain(c->pool) != NDE_OK);
        atomic_store(&c->stopped, 1);
    }
    pthread_rwlock_unlock(&slot->lock);
}

static void ev_op(uint64_t *s)
{
    ev_slot *slot = &ev_slots[below(s, EV_SLOTS)];
    unsigned op = below(s, 1000);
    pthread_rwlock_rdlock(&slot->lock);
    if (atomic_load(&slot->ev->stopped) && below(s, 8) == 0)
        op = 999;
    pthread_rwlock_unlock(&slot->lock);
    if (op >= 990) {
        pthread_rwlock_wrlock(&slot->lock);
        ev_ctx_free(slot->ev);
        slot->ev = ev_ctx_new();
        pthread_rwlock_unlock(&slot->lock);
        return;
    }
    pthread_rwlock_rdlock(&slot->lock);
    ev_ctx *c = slot->ev;
    nde_pool_stats st;
    if (op < 550) {
        unsigned burst = below(s, 8) == 0 ? 1 + below(s, 16) : 1;
        for (unsigned i = 0; i < burst; i++)
            submit_counted(c, (int)below(s, NDE_EVENT_LAST), 0);
    } else if (op < 620) {
        register_counted(c, below(s, 3) == 0 ? NDE_EVENT_ANY : (int)below(s, NDE_EVENT_LAST));
    } else if (op < 690) {
        int idx = -1;
        pthread_mutex_lock(&c->lock);
        if (c->nregs > 0) {
            int k = (int)below(s, (unsigned)c->nregs);
            idx = c->reg_idx[k];
            c->reg_idx[k] = c->reg_idx[--c->nregs];
        }
        pthread_mutex_unlock(&c->lock);
        if (idx >= 0) {
            int r = nde_events_deregister(c->ev, atomic_load(&regs[idx].id));
            if (r == NDE_OK)
                atomic_store(&regs[idx].deregistered, 1); /* never runs again */
            else
                BAD(r != NDE_ERR_NOT_FOUND);
        }
    } else if (op < 780) {
        int r = nde_events_schedule(c->ev, (int)below(s, NDE_EVENT_LAST), below(s, 3));
        BAD(r != NDE_OK && r != NDE_ERR_STOPPED);
    } else if (op < 860) {
        int r = nde_events_wait_idle(c->ev, (int)below(s, 3));
        BAD(r != NDE_OK && r != NDE_ERR_TIMEOUT && r != NDE_ERR_STOPPED);
    } else if (op < 975) {
        CHECK_EQ(nde_events_get_stats(c->ev, &st), NDE_OK);
        BAD(st.completed + st.discarded > st.submitted);
    } else if (op < 983) {
        CHECK_EQ(nde_events_shutdown_prepare(c->ev), NDE_OK);
        atomic_store(&c->stopped, 1);
    } else {
        int r = nde_events_shutdown_wait(c->ev, (int)below(s, 3) - 1);
        BAD(r != NDE_OK && r != NDE_ERR_TIMEOUT);
        atomic_store(&c->stopped, 1);
    }
    pthread_rwlock_unlock(&slot->lock);
}

static void *storm(void *arg)
{
    uint64_t s = 0x9E3779B97F4A7C15ULL * ((uint64_t)(intptr_t)arg + 1);
    for (long i = 0; i < ops_per_thread; i++) {
        if (i % 32 == 0 && now_s() - start_time > budget_s)
            break;
        atomic_fetch_add(&ops_done, 1);
        if (below(&s, 2))
            pool_op(&s);
        else
            ev_op(&s);
    }
    return NULL;
}

int main(void)
{
    nde_test_begin();
    if (getenv("NDE_TEST_UNDER_VALGRIND")) {
        ops_per_thread = 1500;
        budget_s = 4.0;
    }
    for (int i = 0; i < POOL_SLOTS; i++) {
        pthread_rwlock_init(&pool_slots[i].lock, NULL);
        pool_slots[i].pool = pool_ctx_new((unsigned)i);
    }
    for (int i = 0; i < EV_SLOTS; i++) {
        pthread_rwlock_init(&ev_slots[i].lock, NULL);
        ev_slots[i].ev = ev_ctx_new();
    }
    start_time = now_s();
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, storm, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < POOL_SLOTS; i++) {
        pool_ctx_free(pool_slots[i].pool);
        pthread_rwlock_destroy(&pool_slots[i].lock);
    }
    for (int i = 0; i < EV_SLOTS; i++) {
        ev_ctx_free(ev_slots[i].ev);
        pthread_rwlock_destroy(&ev_slots[i].lock);
    }
    CHECK_EQ(atomic_load(&bad_results), 0);
    CHECK_EQ(atomic_load(&jobs_freed), atomic_load(&jobs_made));
    CHECK_EQ(atomic_load(&data_freed), atomic_load(&data_made));
    CHECK_EQ(atomic_load(&regs_released), atomic_load(&regs_made));
    CHECK_EQ(atomic_load(&late_calls), 0);
    printf("stress_test: ok (%ld operations, %ld jobs (%ld ran, %ld refused), %ld events, "
           "%ld callback calls, %ld registrations, %ld objects)\n",
           atomic_load(&ops_done), atomic_load(&jobs_made), atomic_load(&jobs_ran),
           atomic_load(&jobs_refused), atomic_load(&data_made), atomic_load(&cb_calls),
           atomic_load(&regs_made), atomic_load(&objects_made));
    nde_test_end();
    return 0;
}
