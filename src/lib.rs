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
//!
//! Every `unsafe` operation sits in its own `unsafe` block with a
//! `// SAFETY:` line, also inside `unsafe fn`s.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod debounce;
pub mod events;
// Until the restructuring of these layers lands, their unsafe operations
// inside `unsafe fn`s and their SAFETY comments are not yet checked.
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
pub mod monitor;
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
pub mod pool;
pub mod result;
pub mod owned;
#[allow(clippy::undocumented_unsafe_blocks)]
pub mod thread;
pub(crate) mod registry;
pub(crate) mod sync;
pub(crate) mod tsan;

pub mod ffi;

pub use result::{nde_result, Error};
