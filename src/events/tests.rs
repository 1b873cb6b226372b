//! The events layer's internal payloads (crate-private API, so tested
//! here rather than in tests/events.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{nde_event_type, Delivery, EventData, Events};
use crate::result::nde_result;

/// Internal events carry a Rust value that only internal handlers receive;
/// a C-visible event with NULL data stays a C event for everyone (issue 13
/// item 1: nothing internal travels in-band with C values). The value is
/// dropped once, after the handlers, or when the event is refused.
#[test]
fn internal_payloads_reach_only_internal_handlers_in_order() {
    struct Batch(Vec<u32>, Arc<AtomicUsize>);
    impl Drop for Batch {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ev = Events::new("rust-internal").unwrap();
    let public = Arc::new(Mutex::new(Vec::new()));
    let p2 = public.clone();
    let _public = ev.register(None, Box::new(move |t, data| p2.lock().unwrap().push((t, data.is_null()))), None).unwrap();
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
    ev.wait_idle(None).unwrap();
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
