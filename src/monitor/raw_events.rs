//! The monitor's events object as Rust users see it: a view that can
//! register raw handlers and read counters, but cannot submit, schedule or
//! shut down. The built-in handler reads an `NDE_EVENT_UDEV_*` event's data
//! as a `struct udev_device *`, so a safe `submit` of any pointer there
//! would let safe code reach undefined behaviour (issue 22, item 6).

use std::ffi::c_void;
use std::fmt;
use std::time::Duration;

use crate::events::{nde_event_type, Events};
use crate::pool::{KeyStats, PoolStats};
use crate::registration::Registration;
use crate::error::Error;

/// The monitor's raw event queue, borrowed from [`crate::Monitor::events`]:
/// handlers registered here see every udev event (data: the
/// `struct udev_device *`) after the built-in handler that keeps the table.
///
/// Only the monitor queues events; this view cannot, so no handler ever
/// sees data the monitor did not make:
///
/// ```compile_fail,E0599
/// # use nodedev_events::{EventData, EventType, Monitor, MonitorConfig};
/// let monitor = Monitor::new(MonitorConfig::default())?;
/// monitor.events().submit(EventType::NDE_EVENT_UDEV_ADD, EventData::none())?;
/// # Ok::<(), nodedev_events::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct MonitorEvents<'a> {
    events: &'a Events,
}

impl<'a> MonitorEvents<'a> {
    pub(crate) fn new(events: &'a Events) -> MonitorEvents<'a> {
        MonitorEvents { events }
    }

    /// [`Events::register`] on the monitor's queue.
    ///
    /// ```
    /// use nodedev_events::{EventType, Monitor, MonitorConfig};
    ///
    /// let monitor = Monitor::new(MonitorConfig::default())?;
    /// // `data` is the event's `struct udev_device *`, owned by the event.
    /// let _raw = monitor.events().register(Some(EventType::NDE_EVENT_UDEV_ADD), |_t, data| assert!(!data.is_null()))?;
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn register(
        &self,
        event_type: Option<nde_event_type>,
        cb: impl FnMut(nde_event_type, *mut c_void) + Send + 'static,
    ) -> Result<Registration, Error> {
        self.events.register(event_type, cb)
    }

    /// [`Events::register_concurrent`] on the monitor's queue.
    pub fn register_concurrent(
        &self,
        event_type: Option<nde_event_type>,
        cb: impl Fn(nde_event_type, *mut c_void) + Send + Sync + 'static,
    ) -> Result<Registration, Error> {
        self.events.register_concurrent(event_type, cb)
    }

    /// [`Events::wait_idle`]: every event queued so far was handled.
    pub fn wait_idle(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.events.wait_idle(timeout)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.events.workers()
    }

    /// Counters of the queue.
    pub fn stats(&self) -> PoolStats {
        self.events.stats()
    }

    /// Counters of key and barrier contention (all zero with one worker).
    pub fn key_stats(&self) -> KeyStats {
        self.events.key_stats()
    }

    /// Events queued and not yet handled.
    pub fn queue_depth(&self) -> usize {
        self.events.queue_depth()
    }

    /// True when a handler other than the built-in one would receive
    /// `event_type`.
    pub fn has_callback_for(&self, event_type: nde_event_type) -> bool {
        self.events.has_callback_for(event_type)
    }

    /// Panics caught inside handlers.
    pub fn caught_panics(&self) -> usize {
        self.events.caught_panics()
    }

    /// True when called from one of the monitor's worker threads.
    pub fn on_worker(&self) -> bool {
        self.events.on_worker()
    }
}

impl fmt::Debug for MonitorEvents<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorEvents").field("workers", &self.workers()).field("queue_depth", &self.queue_depth()).finish()
    }
}
