//! Lifecycle events for poll loops: a bounded queue beside the callbacks,
//! with an eventfd that is readable exactly while something is queued.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use super::device::Device;
use super::sys::EventFd;
use super::table::Lifecycle;
use crate::registration::Registration;
use crate::sync::lock;

/// One item of a [`Subscription`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Received {
    /// A device changed, in udev order (per device with several workers).
    Event(Arc<Device>, Lifecycle),
    /// This many events were dropped here because the queue was full (the
    /// reader fell behind by more than the capacity). Nothing else is
    /// lost silently: read [`crate::Monitor::snapshot`] to resynchronise.
    Lagged(u64),
}

/// The queue shared by the listener (producer) and the subscription.
struct Queue {
    state: Mutex<State>,
    /// Readable exactly while `state` has an item or a pending lag: both
    /// change only under the lock.
    ready: EventFd,
    capacity: usize,
}

struct State {
    items: VecDeque<Received>,
    /// Events dropped since the last `Lagged` was queued.
    lost: u64,
}

impl Queue {
    /// Called on the monitor's worker for each event.
    fn push(&self, device: &Arc<Device>, event: Lifecycle) {
        let mut st = lock(&self.state);
        let was_idle = st.items.is_empty() && st.lost == 0;
        let events = st.items.iter().filter(|i| matches!(i, Received::Event(..))).count();
        if events >= self.capacity {
            st.lost += 1;
        } else {
            if st.lost > 0 {
                // The marker goes where the loss happened, before this event.
                let lost = std::mem::take(&mut st.lost);
                st.items.push_back(Received::Lagged(lost));
            }
            st.items.push_back(Received::Event(Arc::clone(device), event));
        }
        if was_idle {
            self.ready.signal();
        }
    }

    fn pop(&self) -> Option<Received> {
        let mut st = lock(&self.state);
        let item = st.items.pop_front().or_else(|| match std::mem::take(&mut st.lost) {
            0 => None,
            lost => Some(Received::Lagged(lost)),
        });
        if st.items.is_empty() && st.lost == 0 {
            self.ready.drain();
        }
        item
    }
}

/// Lifecycle events queued for a poll loop (from
/// [`crate::Monitor::subscribe`]): the fd ([`AsFd`]) is readable while an
/// item is queued; [`Subscription::try_recv`] never blocks.
///
/// Bounded: at most `capacity` events wait; past that, new events are
/// dropped and counted, and a [`Received::Lagged`] with the count takes
/// their place in the order. Dropping the subscription removes its
/// listener.
///
/// ```
/// use nodedev_events::{EventSource, Monitor, MonitorConfig, Received};
///
/// let monitor = Monitor::new(MonitorConfig { source: EventSource::Kernel, watch_mdevctl: false, ..MonitorConfig::default() })?;
/// let events = monitor.subscribe(Some("computer"), 16)?;
/// monitor.start()?;
/// monitor.wait_initialized(None)?;
/// match events.try_recv() {
///     Some(Received::Event(device, _lifecycle)) => assert_eq!(device.name(), "computer"),
///     other => panic!("{other:?}"),
/// }
/// assert!(events.try_recv().is_none());
/// # Ok::<(), nodedev_events::Error>(())
/// ```
pub struct Subscription {
    queue: Arc<Queue>,
    _listener: Registration,
}

impl Subscription {
    /// The next item, if one is queued; never blocks.
    pub fn try_recv(&self) -> Option<Received> {
        self.queue.pop()
    }

    /// Every item queued now, then `None` (never blocks).
    ///
    /// ```
    /// # use nodedev_events::{Monitor, MonitorConfig};
    /// # let monitor = Monitor::new(MonitorConfig::default())?;
    /// let events = monitor.subscribe(None, 1024)?;
    /// assert_eq!(events.try_iter().count(), 0); // not started: nothing yet
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn try_iter(&self) -> impl Iterator<Item = Received> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }

    /// The most events that wait before new ones are dropped.
    pub fn capacity(&self) -> usize {
        self.queue.capacity
    }
}

impl AsFd for Subscription {
    /// An eventfd, readable while an item is queued (level-triggered: it
    /// stays readable until [`Subscription::try_recv`] took the last one).
    /// Wait on it for `POLLIN`/`EPOLLIN`; never read it yourself.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.queue.ready.as_fd()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let queued = lock(&self.queue.state).items.len();
        f.debug_struct("Subscription").field("capacity", &self.queue.capacity).field("queued", &queued).finish()
    }
}

/// The queue and the listener that fills it: `register` adds the listener
/// (with the closure `Monitor::register_concurrent` takes).
pub(crate) fn subscribe(
    capacity: usize,
    register: impl FnOnce(Box<dyn Fn(&Arc<Device>, Lifecycle) + Send + Sync>) -> Result<Registration, crate::Error>,
) -> Result<Subscription, crate::Error> {
    if capacity == 0 {
        return Err(crate::Error::InvalidArgument);
    }
    let queue = Arc::new(Queue {
        state: Mutex::new(State { items: VecDeque::new(), lost: 0 }),
        ready: EventFd::new()?,
        capacity,
    });
    let producer = Arc::clone(&queue);
    let listener = register(Box::new(move |device, event| producer.push(device, event)))?;
    Ok(Subscription { queue, _listener: listener })
}
