//! Typed events handled in order on one worker (layer 2).
//!
//! API SKETCH, implementation in progress: signatures are fixed, bodies come
//! next.

use std::ffi::c_void;

use crate::result::Error;

/// Event types of the seed driver (`nde_event_type` in C).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum nde_event_type {
    NDE_EVENT_INIT = 0,
    NDE_EVENT_UDEV_ADD = 1,
    NDE_EVENT_UDEV_REMOVE = 2,
    NDE_EVENT_UDEV_CHANGE = 3,
    NDE_EVENT_UDEV_MOVE = 4,
    NDE_EVENT_MDEVCTL_CONFIG_CHANGED = 5,
    NDE_EVENT_LAST = 6,
}

/// C free function for event data and userdata.
pub type FreeFn = unsafe extern "C" fn(*mut c_void);

/// Data carried by one event; `free` runs exactly once when the event is
/// done with (after dispatch, on discard, or when submit fails).
pub struct EventData {
    pub ptr: *mut c_void,
    pub free: Option<FreeFn>,
}

/// A Rust callback: receives the event type and the raw data pointer.
pub type Callback = Box<dyn FnMut(nde_event_type, *mut c_void) + Send>;

/// Typed event queue on one ordered worker.
pub struct Events {
    _private: (),
}

impl Events {
    /// New events object with one worker thread named after `name`.
    pub fn new(_name: &str) -> Result<Events, Error> {
        todo!()
    }
    /// Registers `cb` for `type_` (None = every type). Returns its id.
    /// `on_remove` runs exactly once when the callback is removed (deregister
    /// or free), or before returning on failure.
    pub fn register(
        &self,
        _type_: Option<nde_event_type>,
        _cb: Callback,
        _on_remove: Option<Box<dyn FnOnce() + Send>>,
    ) -> Result<i32, Error> {
        todo!()
    }
    pub fn deregister(&self, _id: i32) -> Result<(), Error> {
        todo!()
    }
    /// Queues an event; `data` is always consumed.
    pub fn submit(&self, _type_: nde_event_type, _data: EventData) -> Result<(), Error> {
        todo!()
    }
    /// Debounce: (re)arms the per-type one-shot timer; 0 = submit now.
    pub fn schedule(&self, _type_: nde_event_type, _delay_ms: u32) -> Result<(), Error> {
        todo!()
    }
    pub fn wait_idle(&self, _timeout_ms: i32) -> Result<(), Error> {
        todo!()
    }
    pub fn shutdown_prepare(&self) {
        todo!()
    }
    pub fn shutdown_wait(&self, _timeout_ms: i32) -> Result<(), Error> {
        todo!()
    }
    /// True when called from this object's worker thread.
    pub fn on_worker(&self) -> bool {
        todo!()
    }
}
