//! nodedev-events: ordered, leak-free Linux device hotplug events for C
//! hypervisor drivers.
//!
//! Three layers, each usable alone:
//! - [`pool`]: a job pool with libvirt's `virThreadPool` semantics, plus a
//!   per-job free callback that runs exactly once on every path;
//! - [`events`]: typed events handled in order on one worker, with per-type
//!   callbacks, debounced scheduling and a two-phase shutdown;
//! - [`monitor`]: the udev and mdevctl sources and a node-device table that
//!   emits libvirt's lifecycle events.
//!
//! The safe Rust core lives in these modules; every `extern "C"` item lives
//! under [`ffi`].

pub mod callbacks;
pub mod debounce;
pub mod events;
pub mod monitor;
pub mod pool;
pub mod result;
pub mod owned;
pub mod thread;
pub(crate) mod sync;
pub(crate) mod tsan;

pub mod ffi;

pub use result::{nde_result, Error};
