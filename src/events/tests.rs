//! The events layer's internal payloads (crate-private API, so tested
//! here rather than in tests/events.rs).

use crate::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{nde_event_type, Delivery, EventData, Events};

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
    let _public = ev.register(None, move |t, data| p2.lock().unwrap().push((t, data.is_null()))).unwrap();
    let internal = Arc::new(Mutex::new(Vec::new()));
    let i2 = internal.clone();
    ev.register_internal_handler(
        Box::new(move |t, delivery| {
            let what = match delivery {
                Delivery::Data(p) => format!("data null={}", p.is_null()),
                Delivery::Owned(v) => format!("owned ptr={:p}", v.as_ptr()),
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
    assert_eq!(refused, Err(Error::Stopped));
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

/// The intake stores an event as a tag byte and a 16-byte body: every
/// variant with every type comes back as it went in, payload included, and
/// an owned value is dropped once, by the rebuilt event.
#[test]
fn packed_events_come_back_whole() {
    use super::{CData, Event, EventPacking};
    use crate::pool::Packing;
    struct Value(Arc<AtomicUsize>);
    impl CData for Value {
        fn as_ptr(&self) -> *mut std::ffi::c_void {
            0x5eed as *mut std::ffi::c_void
        }
    }
    impl Drop for Value {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    for t in (0..nde_event_type::NDE_EVENT_LAST as i32).filter_map(nde_event_type::from_i32) {
        let events = [
            // SAFETY: no free function: the pointer is never used.
            Event::C(t, unsafe { EventData::new(0xc0de as *mut std::ffi::c_void, None) }),
            Event::Owned(t, Box::new(Box::new(Value(drops.clone())))),
            Event::Internal(t, Box::new(Box::new(42u64))),
        ];
        for (variant, ev) in events.into_iter().enumerate() {
            let (tag, body) = EventPacking::pack(ev);
            // SAFETY: the two halves of the `pack` above.
            let back = unsafe { EventPacking::unpack(tag, body) };
            match back {
                Event::C(bt, data) => {
                    assert_eq!((variant, bt, data.ptr as usize), (0, t, 0xc0de));
                }
                Event::Owned(bt, value) => assert_eq!((variant, bt, value.as_ptr() as usize), (1, t, 0x5eed)),
                Event::Internal(bt, mut value) => {
                    assert_eq!((variant, bt, value.downcast_mut::<u64>().copied()), (2, t, Some(42)));
                }
            }
        }
    }
    assert_eq!(drops.load(Ordering::SeqCst), nde_event_type::NDE_EVENT_LAST as usize);
}
