//! nodedev-events: ordered, leak-free Linux device hotplug events for C
//! hypervisor drivers (libvirt first) and for Rust programs.
//!
//! Three layers, each usable alone, re-exported here with the one error
//! type, [`Error`]:
//!
//! - [`Pool`]: a job pool with libvirt's `virThreadPool` semantics (minimum,
//!   maximum and priority workers, FIFO order, two-step shutdown); each job
//!   is handed over by value and dropped exactly once, run or not.
//! - [`Events`]: typed events handled in submission order on one worker
//!   (or, with several workers, in order per key, with barriers between),
//!   with per-type callbacks, debounced scheduling and a two-phase shutdown.
//! - [`Monitor`]: the udev and mdevctl sources and a table of node
//!   [`Device`]s named as libvirt names them, which reports each change as a
//!   [`Lifecycle`] event to registered callbacks.
//!
//! Every object owns its threads and joins them when dropped (from inside
//! one of its own callbacks the release is deferred until that callback
//! returns). Calls that would wait for the calling thread itself return
//! [`Error::WouldDeadlock`] instead of hanging. Every `extern "C"`
//! item lives under [`ffi`]; `include/nodedev_events.h` is generated from it.
//!
//! # A pool
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use nodedev_events::{Pool, PoolLimits, Priority};
//!
//! let total = Arc::new(AtomicUsize::new(0));
//! let sum = Arc::clone(&total);
//! // One ordinary worker: jobs run one at a time, in the order sent.
//! let limits = PoolLimits { min_workers: 1, max_workers: 1, prio_workers: 0 };
//! let pool = Pool::new(limits, "example", move |n: usize| {
//!     sum.fetch_add(n, Ordering::Relaxed);
//! })?;
//! for n in 1..=10 {
//!     pool.send(Priority::Normal, n).map_err(|(err, _job)| err)?;
//! }
//! pool.wait_idle(None)?; // None: no timeout
//! assert_eq!(total.load(Ordering::Relaxed), 55);
//! # Ok::<(), nodedev_events::Error>(())
//! ```
//!
//! # Events
//!
//! ```
//! use std::sync::mpsc;
//! use nodedev_events::{EventData, EventType, Events};
//!
//! let events = Events::new("example")?;
//! let (seen, rx) = mpsc::channel();
//! // Runs on the events' worker thread, in submission order, for as long
//! // as `callback` lives; dropping the handle drops the closure.
//! let callback = events.register(None, move |event_type, _data| {
//!     seen.send(event_type).unwrap();
//! })?;
//! events.submit(EventType::NDE_EVENT_UDEV_ADD, EventData::none())?;
//! events.submit(EventType::NDE_EVENT_UDEV_REMOVE, EventData::none())?;
//! events.wait_idle(None)?;
//! let order: Vec<_> = rx.try_iter().collect();
//! assert_eq!(order, [EventType::NDE_EVENT_UDEV_ADD, EventType::NDE_EVENT_UDEV_REMOVE]);
//! callback.deregister()?;
//! # Ok::<(), nodedev_events::Error>(())
//! ```
//!
//! # A monitor
//!
//! Reads the kernel's uevents (no udevd needed); see `examples/monitor.rs`
//! for a complete program and `examples/poll_loop.rs` for a monitor driven
//! from a plain `poll` loop instead of callbacks.
//!
//! ```
//! use std::time::Duration;
//! use nodedev_events::{EventSource, Monitor, MonitorConfig};
//!
//! let monitor = Monitor::new(MonitorConfig {
//!     source: EventSource::Kernel,
//!     watch_mdevctl: false,
//!     ..MonitorConfig::default()
//! })?;
//! // Runs on the monitor's worker for every device change, in udev order,
//! // for as long as `listener` lives.
//! let listener = monitor.register(None, |device, event| {
//!     println!("{}: {:?}", device.name(), event);
//! })?;
//! monitor.start()?;
//! monitor.wait_initialized(None)?; // None: no timeout
//! let computer = monitor.lookup("computer").expect("the root device");
//! assert_eq!(computer.name(), "computer");
//! listener.deregister()?;
//! monitor.stop(Some(Duration::from_secs(10)))?;
//! # Ok::<(), nodedev_events::Error>(())
//! ```
//!
//! Every `unsafe` operation sits in its own `unsafe` block with a
//! `// SAFETY:` line, also inside `unsafe fn`s.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod closure_slot;
mod debounce;
mod error;
mod events;
mod monitor;
mod owned;
mod pool;
mod registration;
mod registry;
mod result;
mod sync;
mod thread;
mod timeout;
mod tsan;

/// The C ABI (`include/nodedev_events.h` is generated from it). Public for
/// this crate's own tests of the C entry points from Rust; every entry that
/// takes a pointer is `unsafe`. Rust programs use the types above.
#[doc(hidden)]
pub mod ffi;
#[cfg(doctest)]
pub mod soundness;

pub use error::Error;
pub use events::{nde_event_type as EventType, EventData, Events, FreeFn, NDE_EVENTS_MAX_WORKERS};
pub use monitor::{
    Device, DeviceKind, EventSource, Lifecycle, Monitor, MonitorConfig, MonitorEvents, MonitorStats, Received, Subscription, DEFAULT_MAX_QUEUED_BYTES,
    DEFAULT_MAX_QUEUED_EVENTS, DEFAULT_RECEIVE_BUFFER, NDE_MONITOR_MAX_WORKERS,
};
pub use pool::{KeyStats, Pool, PoolLimits, PoolStats, Priority, WorkerHook, WorkerHooks};
pub use registration::Registration;

/// Hooks for this crate's own tests (feature `test-hooks`, which the
/// crate's dev-dependency on itself turns on); not part of the API.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[allow(missing_debug_implementations)]
pub mod test_hooks {
    pub use crate::monitor::mdevctl;
    pub use crate::monitor::naming::{generate_name, mdev_name};
    pub use crate::monitor::table::{Changes, DeviceSpec, Table};
    pub use crate::monitor::uevent;
    pub use crate::thread::fail_next_spawns;
}
