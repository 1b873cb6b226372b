/*
 * Deregistering a callback that is running, from another thread: when the
 * call returns, the callback is not running and its userdata_free has
 * completed. Both registries: nde_events_deregister (a raw callback) and
 * nde_monitor_deregister (a lifecycle listener on this machine's real
 * inventory). The callback sleeps 300 ms, the userdata_free 50 ms, so a
 * deregister that returned early would be seen at once.
 */
#include "nde_test.h"

typedef struct {
    atomic_int running;   /* 1 while the callback runs */
    atomic_int entered;   /* the callback started at least once */
    atomic_int freeing;   /* userdata_free has started */
    atomic_int freed;     /* userdata_free has completed */
} slow_state;

static void slow_free(void *p)
{
    slow_state *s = p;
    atomic_fetch_add(&s->freeing, 1);
    nap_ms(50);
    CHECK_EQ(atomic_load(&s->running), 0); /* never while it runs */
    atomic_fetch_add(&s->freed, 1);
}

static void slow_body(slow_state *s)
{
    atomic_store(&s->running, 1);
    atomic_store(&s->entered, 1);
    nap_ms(300);
    atomic_store(&s->running, 0);
}

static void slow_event(void *userdata, nde_event_type type, void *data)
{
    (void)type;
    (void)data;
    slow_body(userdata);
}

static void slow_lifecycle(void *userdata, const nde_device *dev, nde_lifecycle event)
{
    (void)dev;
    (void)event;
    slow_body(userdata);
}

static void wait_entered(slow_state *s)
{
    for (int i = 0; !atomic_load(&s->entered); i++) {
        CHECK(i < 60000);
        nap_ms(1);
    }
}

static void check_released_at_return(slow_state *s)
{
    CHECK_EQ(atomic_load(&s->running), 0);
    CHECK_EQ(atomic_load(&s->freed), 1);
}

static void test_events_deregister_while_running(void)
{
    static slow_state s;
    memset(&s, 0, sizeof s);
    nde_events *ev = nde_events_new("dereg-ev");
    CHECK(ev != NULL);
    int id = nde_events_register(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, slow_event, &s, slow_free);
    CHECK(id >= 0);
    CHECK_EQ(nde_events_submit(ev, NDE_EVENT_MDEVCTL_CONFIG_CHANGED, NULL, NULL), NDE_OK);
    wait_entered(&s);
    CHECK_EQ(nde_events_deregister(ev, id), NDE_OK);
    check_released_at_return(&s);
    nde_events_free(ev);
    CHECK_EQ(atomic_load(&s.freed), 1);
}

static void test_monitor_deregister_while_running(void)
{
    static slow_state s;
    memset(&s, 0, sizeof s);
    nde_monitor_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.flags = NDE_MONITOR_KERNEL_EVENTS | NDE_MONITOR_NO_MDEVCTL;
    cfg.name = "dereg-mon";
    nde_monitor *mon = nde_monitor_new(&cfg);
    CHECK(mon != NULL);
    /* Registered before start: the initial inventory (at least "computer")
     * comes as CREATED, one device at a time, 300 ms each. */
    int id = nde_monitor_register(mon, NULL, slow_lifecycle, &s, slow_free);
    CHECK(id >= 0);
    CHECK_EQ(nde_monitor_start(mon), NDE_OK);
    wait_entered(&s);
    CHECK_EQ(nde_monitor_deregister(mon, id), NDE_OK);
    check_released_at_return(&s);
    CHECK_EQ(nde_monitor_wait_initialized(mon, -1), NDE_OK);
    nde_monitor_free(mon);
    CHECK_EQ(atomic_load(&s.freed), 1);
}

int main(void)
{
    nde_test_begin();
    for (int i = 0; i < 3; i++) {
        test_events_deregister_while_running();
        test_monitor_deregister_while_running();
    }
    nde_test_end();
    printf("deregister_test: ok\n");
    return 0;
}
