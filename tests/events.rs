//! The Rust core of the events layer: order, debounce, shutdown discards.

use std::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nodedev_events::{EventData, EventType, Events};
use nodedev_events::nde_result;

unsafe extern "C" fn count_free(p: *mut std::ffi::c_void) {
    // SAFETY: p is a leaked Arc<AtomicUsize> made below.
    let c = unsafe { Arc::from_raw(p as *const AtomicUsize) };
    c.fetch_add(1, Ordering::SeqCst);
}

fn counted(c: &Arc<AtomicUsize>) -> EventData {
    EventData::new(Arc::into_raw(c.clone()) as *mut _, Some(count_free))
}

#[test]
fn events_are_handled_in_order_and_data_freed_once() {
    let ev = Events::new("rust-order").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    ev.register(None, Box::new(move |t, _| s2.lock().unwrap().push(t)), None).unwrap().forget();
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
        Err(nde_result::NDE_ERR_INVALID)
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
        Box::new(move |_, _| {
            e2.fetch_add(1, Ordering::SeqCst);
            drop(g2.lock().unwrap())
        }),
        None,
    )
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
    assert_eq!(ev.shutdown_wait(Some(Duration::from_millis(10))), Err(nde_result::NDE_ERR_TIMEOUT));
    drop(held);
    ev.shutdown_wait(None).unwrap();
    assert_eq!(freed.load(Ordering::SeqCst), 100);
    assert_eq!(ev.stats().completed, 1);
    assert_eq!(ev.stats().discarded, 99);
}

#[test]
fn userdata_is_released_once_on_drop() {
    let released = Arc::new(AtomicUsize::new(0));
    {
        let ev = Events::new("rust-release").unwrap();
        for _ in 0..3 {
            let r = released.clone();
            ev.register(None, Box::new(|_, _| {}), Some(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })))
            .unwrap()
            .forget();
        }
    }
    assert_eq!(released.load(Ordering::SeqCst), 3);
}
