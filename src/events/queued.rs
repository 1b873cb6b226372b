//! A queued event and how the pool's intake stores it: the three kinds of
//! payload (C data, library-owned C-visible data, internal values), their
//! packing into a tag byte and 16 bytes, and the dispatch to the callbacks
//! that want each kind.

use std::any::Any;
use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::num::NonZeroU8;

use super::{nde_event_type, CData, Delivery, EventData, Filter, RegistryCallback};
use crate::pool::Packing;
use crate::registry::{CachedSnapshot, Registry};

/// One queued event. An enum with the type in each variant and thin boxes
/// keeps it at 24 bytes (a separate type field beside a payload enum made
/// it 32): the memory per queued event of `make bench`.
pub(super) enum Event {
    /// C data with its free function (from a C user, or a timer's NULL).
    C(nde_event_type, EventData),
    /// C-visible data owned by a Rust value.
    Owned(nde_event_type, Box<Box<dyn CData>>),
    /// A value of the library's own, seen only by internal handlers.
    Internal(nde_event_type, Box<Box<dyn Any + Send>>),
}

const _: () = assert!(std::mem::size_of::<Event>() == 24);

/// How the pool's intake stores an event: the variant and the type in the
/// slot's tag byte, the payload in 16 bytes, so a queued event costs 17
/// bytes as a pool job does (`pool/packing.rs`).
pub(super) struct EventPacking;

/// An event's payload without its variant: the tag says which field is set.
pub(super) union EventBody {
    c: ManuallyDrop<EventData>,
    owned: ManuallyDrop<Box<Box<dyn CData>>>,
    internal: ManuallyDrop<Box<Box<dyn Any + Send>>>,
}

const _: () = assert!(std::mem::size_of::<EventBody>() == 16);

/// Tag bits: bit 7 always set (a tag is never 0), the variant in bits 3-4,
/// the type in bits 0-2.
const TAG_SET: NonZeroU8 = NonZeroU8::new(0x80).unwrap();
const TAG_OWNED: u8 = 1 << 3;
const TAG_INTERNAL: u8 = 2 << 3;
const TAG_VARIANT: u8 = 3 << 3;
const TAG_TYPE: u8 = 7;

impl EventPacking {
    /// `pack` of `Event::C(t, data)`, without building the event (the
    /// submit path: see `Core::submit`).
    #[inline(always)]
    pub(super) fn pack_c(t: nde_event_type, data: EventData) -> (NonZeroU8, EventBody) {
        (TAG_SET | t as u8, EventBody { c: ManuallyDrop::new(data) })
    }
}

impl Packing<Event> for EventPacking {
    type Body = EventBody;

    fn pack(ev: Event) -> (NonZeroU8, EventBody) {
        let (variant, t, body) = match ev {
            Event::C(t, data) => return Self::pack_c(t, data),
            Event::Owned(t, value) => (TAG_OWNED, t, EventBody { owned: ManuallyDrop::new(value) }),
            Event::Internal(t, value) => (TAG_INTERNAL, t, EventBody { internal: ManuallyDrop::new(value) }),
        };
        (TAG_SET | variant | t as u8, body)
    }

    unsafe fn unpack(tag: NonZeroU8, body: EventBody) -> Event {
        let t = nde_event_type::from_i32((tag.get() & TAG_TYPE) as i32).unwrap_or(nde_event_type::NDE_EVENT_INIT);
        // SAFETY: `tag` and `body` come from one `pack` (the caller's
        // promise), which set the field that the tag's variant names.
        unsafe {
            match tag.get() & TAG_VARIANT {
                0 => Event::C(t, ManuallyDrop::into_inner(body.c)),
                TAG_OWNED => Event::Owned(t, ManuallyDrop::into_inner(body.owned)),
                _ => Event::Internal(t, ManuallyDrop::into_inner(body.internal)),
            }
        }
    }
}

impl Event {
    /// Types that see everything before them and nothing after, whatever
    /// their key: the enumeration and the mdevctl refresh.
    pub(super) fn is_barrier_type(&self) -> bool {
        let (Event::C(t, _) | Event::Owned(t, _) | Event::Internal(t, _)) = self;
        matches!(t, nde_event_type::NDE_EVENT_INIT | nde_event_type::NDE_EVENT_MDEVCTL_CONFIG_CHANGED)
    }

    /// Runs the callbacks of `registry` that want this event; the payload
    /// is dropped (C data freed) after every callback returned.
    pub(super) fn dispatch(mut self, registry: &Registry<RegistryCallback, Filter>) {
        // This worker's snapshot, taken out of its slot while in use (a
        // nested dispatch on this thread, if any, takes a fresh one).
        let mut cache = CALLBACKS.try_with(Cell::take).unwrap_or(None);
        let snapshot = registry.current(&mut cache);
        match &mut self {
            Event::C(t, data) => {
                let (t, ptr) = (*t as i32, data.ptr);
                registry.dispatch(snapshot, |f: &Filter| f.event_type.is_none_or(|w| w == t), |cb| cb(t, Delivery::Data(ptr)));
            }
            Event::Owned(t, value) => {
                let (t, value): (i32, &dyn CData) = (*t as i32, &***value);
                registry.dispatch(snapshot, |f: &Filter| f.event_type.is_none_or(|w| w == t), |cb| cb(t, Delivery::Owned(value)));
            }
            Event::Internal(t, value) => {
                let t = *t as i32;
                registry.dispatch(snapshot, |f: &Filter| f.internal, |cb| cb(t, Delivery::Internal(&mut ***value)));
            }
        }
        let _ = CALLBACKS.try_with(|c| c.set(cache));
    }
}

thread_local! {
    /// A worker's snapshot of its object's callbacks, refreshed only when
    /// one was registered or removed: an unchanged registry costs one
    /// atomic load per event instead of a lock and a reference count. (A
    /// removed callback's closure may stay in it until the worker's next
    /// event or its exit; its release, `on_remove`, is not delayed.)
    static CALLBACKS: Cell<Option<CachedSnapshot<RegistryCallback, Filter>>> = const { Cell::new(None) };
}
