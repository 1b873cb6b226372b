//! The Rust core of the events layer: order, debounce, shutdown discards.

use std::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nodedev_events::{EventData, EventType, Events, NDE_EVENTS_MAX_WORKERS};
use nodedev_events::Error;

unsafe extern "C" fn count_free(p: *mut std::ffi::c_void) {
    // SAFETY: p is a leaked Arc<AtomicUsize> made below.
    let c = unsafe { Arc::from_raw(p as *const AtomicUsize) };
    c.fetch_add(1, Ordering::SeqCst);
}

fn counted(c: &Arc<AtomicUsize>) -> EventData {
    // SAFETY: count_free releases the Arc made here, once.
    unsafe { EventData::new(Arc::into_raw(c.clone()) as *mut _, Some(count_free)) }
}

#[test]
fn events_are_handled_in_order_and_data_freed_once() {
    let ev = Events::new("rust-order").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    ev.register(None, move |t, _| s2.lock().unwrap().push(t)).unwrap().forget();
    let freed = Arc::new(AtomicUsize::new(0));
    let types = [EventType::NDE_EVENT_UDEV_ADD, EventType::NDE_EVENT_UDEV_REMOVE];
    for i in 0..1000 {
        ev.submit(types[i % 2], counted(&freed)).unwrap();
    }
    ev.wait_idle(None).unwrap();
    let expected: Vec<_> = (0..1000).map(|i| types[i % 2]).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert_eq!(freed.load(Ordering::SeqCst), 1000);
    assert_eq!(
        ev.submit(EventType::NDE_EVENT_LAST, counted(&freed)),
        Err(Error::InvalidArgument)
    );
    assert_eq!(freed.load(Ordering::SeqCst), 1001);
}

#[test]
fn shutdown_wait_discards_queued_events_and_frees_their_data() {
    let ev = Events::new("rust-shutdown").unwrap();
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let g2 = gate.clone();
    let entered = Arc::new(AtomicUsize::new(0));
    let e2 = entered.clone();
    ev.register(
        None,
        move |_, _| {
            e2.fetch_add(1, Ordering::SeqCst);
            drop(g2.lock().unwrap())
        })
    .unwrap()
    .forget();
    let freed = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        ev.submit(EventType::NDE_EVENT_UDEV_ADD, counted(&freed)).unwrap();
    }
    while entered.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    ev.shutdown_prepare();
    assert_eq!(ev.shutdown_wait(Some(Duration::from_millis(10))), Err(Error::Timeout));
    drop(held);
    ev.shutdown_wait(None).unwrap();
    assert_eq!(freed.load(Ordering::SeqCst), 100);
    assert_eq!(ev.stats().completed, 1);
    assert_eq!(ev.stats().discarded, 99);
}

#[test]
fn the_closure_is_released_once_on_drop() {
    let released = Arc::new(AtomicUsize::new(0));
    {
        let ev = Events::new("rust-release").unwrap();
        for _ in 0..3 {
            let r = released.clone();
            let guard = OnDrop(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            ev.register(None, move |_, _| {
                let _released_with_the_closure = &guard;
            })
            .unwrap()
            .forget();
        }
    }
    assert_eq!(released.load(Ordering::SeqCst), 3);
}

/// Several workers (issue 15 item 2): an `FnMut` callback (`register`)
/// never runs on two workers at once; a `register_concurrent` callback
/// does, for events of different keys; a barrier sees everything before
/// it. Zero workers is refused.
#[test]
fn several_workers_serialise_fnmut_and_run_concurrent_callbacks_in_parallel() {
    use std::sync::Condvar;
    use EventType::*;
    assert_eq!(Events::with_workers("rust-zero", 0).err(), Some(Error::InvalidArgument));
    let ev = Events::with_workers("rust-multi", 4).unwrap();
    assert_eq!(ev.workers(), 4);

    // FnMut: one call at a time, whatever the keys.
    let inside = Arc::new(AtomicUsize::new(0));
    let overlap = Arc::new(AtomicUsize::new(0));
    let (i2, o2) = (inside.clone(), overlap.clone());
    let fnmut = ev
        .register(
            Some(NDE_EVENT_UDEV_ADD),
            move |_, _| {
                if i2.fetch_add(1, Ordering::SeqCst) != 0 {
                    o2.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_micros(200));
                i2.fetch_sub(1, Ordering::SeqCst);
            })
        .unwrap();
    for key in 1..=40u64 {
        ev.submit_keyed(NDE_EVENT_UDEV_ADD, key, EventData::none()).unwrap();
    }
    ev.wait_idle(None).unwrap();
    assert_eq!(overlap.load(Ordering::SeqCst), 0);
    fnmut.deregister().unwrap();

    // Concurrent: two keys meet inside the callback (each waits for the
    // other; a serialising dispatcher would leave both waiting).
    let met = Arc::new((Mutex::new(0usize), Condvar::new()));
    let m2 = met.clone();
    let _concurrent = ev
        .register_concurrent(
            Some(NDE_EVENT_UDEV_CHANGE),
            move |_, _| {
                let (lock, cv) = &*m2;
                let mut n = lock.lock().unwrap();
                *n += 1;
                cv.notify_all();
                let (n, _) = cv.wait_timeout_while(n, Duration::from_secs(30), |n| *n < 2).unwrap();
                assert!(*n >= 2, "the two keys never ran at the same time");
            })
        .unwrap();
    ev.submit_keyed(NDE_EVENT_UDEV_CHANGE, 1, EventData::none()).unwrap();
    ev.submit_keyed(NDE_EVENT_UDEV_CHANGE, 2, EventData::none()).unwrap();
    // A barrier: handled after both.
    let after = Arc::new(AtomicUsize::new(usize::MAX));
    let (a2, m3) = (after.clone(), met.clone());
    let _barrier = ev
        .register(Some(NDE_EVENT_INIT), move |_, _| a2.store(*m3.0.lock().unwrap(), Ordering::SeqCst))
        .unwrap();
    ev.submit_keyed(NDE_EVENT_INIT, 7, EventData::none()).unwrap();
    ev.wait_idle(None).unwrap();
    assert_eq!(after.load(Ordering::SeqCst), 2);
    assert_eq!(ev.caught_panics(), 0);
    let ks = ev.key_stats();
    assert_eq!(ks.keyed_submitted, 42);
    assert_eq!(ks.barriers_submitted, 1);
}

/// Issue 22 item 8: a worker count over the cap is refused before any
/// thread starts (`u32::MAX` from C used to spawn until thread creation
/// failed); the cap itself is accepted.
#[test]
fn worker_count_over_the_cap_is_refused_before_any_thread_starts() {
    let over = NDE_EVENTS_MAX_WORKERS + 1;
    assert_eq!(Events::with_workers("too-many", over).err(), Some(Error::InvalidArgument));
    assert_eq!(Events::with_workers("huge", u32::MAX as usize).err(), Some(Error::InvalidArgument));
    let ev = Events::with_workers("at-cap", NDE_EVENTS_MAX_WORKERS).unwrap();
    assert_eq!(ev.workers(), NDE_EVENTS_MAX_WORKERS);
}

/// Runs its function when dropped (a registered closure's release).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
