//! The Rust core of the events layer: order, debounce, shutdown discards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nodedev_events::events::{nde_event_type, EventData, Events};
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
    ev.register(None, Box::new(move |t, _| s2.lock().unwrap().push(t)), None).unwrap();
    let freed = Arc::new(AtomicUsize::new(0));
    let types = [nde_event_type::NDE_EVENT_UDEV_ADD, nde_event_type::NDE_EVENT_UDEV_REMOVE];
    for i in 0..1000 {
        ev.submit(types[i % 2], counted(&freed)).unwrap();
    }
    ev.wait_idle(-1).unwrap();
    let expected: Vec<_> = (0..1000).map(|i| types[i % 2]).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert_eq!(freed.load(Ordering::SeqCst), 1000);
    assert_eq!(
        ev.submit(nde_event_type::NDE_EVENT_LAST, counted(&freed)),
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
    .unwrap();
    let freed = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        ev.submit(nde_event_type::NDE_EVENT_UDEV_ADD, counted(&freed)).unwrap();
    }
    while entered.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    ev.shutdown_prepare();
    assert_eq!(ev.shutdown_wait(10), Err(nde_result::NDE_ERR_TIMEOUT));
    drop(held);
    ev.shutdown_wait(-1).unwrap();
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
            .unwrap();
        }
    }
    assert_eq!(released.load(Ordering::SeqCst), 3);
}

/// Internal events carry a Rust value that only internal handlers receive;
/// a C-visible event with NULL data stays a C event for everyone (issue 13
/// item 1: nothing internal travels in-band with C values). The value is
/// dropped once, after the handlers, or when the event is refused.
#[test]
fn internal_payloads_reach_only_internal_handlers_in_order() {
    use nodedev_events::events::Delivery;
    struct Batch(Vec<u32>, Arc<AtomicUsize>);
    impl Drop for Batch {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ev = Events::new("rust-internal").unwrap();
    let public = Arc::new(Mutex::new(Vec::new()));
    let p2 = public.clone();
    ev.register(None, Box::new(move |t, data| p2.lock().unwrap().push((t, data.is_null()))), None).unwrap();
    let internal = Arc::new(Mutex::new(Vec::new()));
    let i2 = internal.clone();
    ev.register_internal_handler(
        Box::new(move |t, delivery| {
            let what = match delivery {
                Delivery::Data(p) => format!("data null={}", p.is_null()),
                Delivery::Internal(v) => format!("batch {:?}", v.downcast_mut::<Batch>().unwrap().0),
            };
            i2.lock().unwrap().push((t, what));
        }),
        None,
    )
    .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    ev.submit(nde_event_type::NDE_EVENT_UDEV_ADD, EventData::none()).unwrap();
    ev.submit_internal(nde_event_type::NDE_EVENT_UDEV_ADD, Box::new(Batch(vec![1, 2], dropped.clone()))).unwrap();
    ev.submit(nde_event_type::NDE_EVENT_INIT, EventData::none()).unwrap();
    ev.wait_idle(-1).unwrap();
    use nde_event_type::*;
    assert_eq!(*public.lock().unwrap(), vec![(NDE_EVENT_UDEV_ADD, true), (NDE_EVENT_INIT, true)]);
    assert_eq!(
        *internal.lock().unwrap(),
        vec![
            (NDE_EVENT_UDEV_ADD, "data null=true".to_string()),
            (NDE_EVENT_UDEV_ADD, "batch [1, 2]".to_string()),
            (NDE_EVENT_INIT, "data null=true".to_string()),
        ]
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    ev.shutdown_prepare();
    let refused = ev.submit_internal(NDE_EVENT_UDEV_ADD, Box::new(Batch(vec![3], dropped.clone())));
    assert_eq!(refused, Err(nde_result::NDE_ERR_STOPPED));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}
