//! Compile-fail tests: safe Rust cannot reach undefined behaviour through
//! this crate (issue 22, item 6). Each call below compiled without
//! `unsafe` before the fix; each now needs `unsafe` or does not exist.
//! Built only by `cargo test --doc` (`cfg(doctest)`). Every refused call
//! is paired with the accepted form, so a refusal for another reason (a
//! typo) shows up as that form failing (stable rustdoc does not check the
//! error codes; nightly does).
//!
//! Data with a free function is an `unsafe fn`: dropping it calls `f` on
//! the pointer.
//!
//! ```compile_fail,E0133
//! use std::ffi::c_void;
//! unsafe extern "C" fn f(_p: *mut c_void) {}
//! let data = nodedev_events::EventData::new(0x10 as *mut c_void, Some(f));
//! ```
//!
//! ```
//! use std::ffi::c_void;
//! unsafe extern "C" fn f(_p: *mut c_void) {}
//! // SAFETY: `f` ignores its argument.
//! let data = unsafe { nodedev_events::EventData::new(0x10 as *mut c_void, Some(f)) };
//! drop(data);
//! ```
//!
//! Its fields are private (a safe write could pair any pointer with `f`):
//!
//! ```compile_fail,E0616
//! let data = nodedev_events::EventData::none();
//! let _p = data.ptr;
//! ```
//!
//! ```compile_fail,E0451
//! let _data = nodedev_events::EventData { ptr: std::ptr::null_mut(), free: None };
//! ```
//!
//! The C entry points are `unsafe` from Rust (`Box::from_raw` on any
//! address otherwise):
//!
//! ```compile_fail,E0133
//! nodedev_events::ffi::pool::nde_pool_free(0x1 as *mut _);
//! ```
//!
//! ```compile_fail,E0133
//! let _ = nodedev_events::ffi::events::nde_events_submit(0x1 as *mut _, 1, std::ptr::null_mut(), None);
//! ```
//!
//! ```compile_fail,E0133
//! let _ = nodedev_events::ffi::monitor::nde_monitor_new(std::ptr::null());
//! ```
//!
//! ```
//! // SAFETY: NULL is allowed (the header's contract).
//! unsafe { nodedev_events::ffi::pool::nde_pool_free(std::ptr::null_mut()) };
//! ```
//!
//! The monitor's events are a view that cannot queue (its built-in handler
//! would read any pointer as a `struct udev_device *`); registering works:
//!
//! ```compile_fail,E0599
//! use nodedev_events::{EventData, EventType, Monitor, MonitorConfig};
//! let monitor = Monitor::new(MonitorConfig::default()).unwrap();
//! monitor.events().submit(EventType::NDE_EVENT_UDEV_ADD, EventData::none()).unwrap();
//! ```
//!
//! ```
//! use nodedev_events::{EventType, Monitor, MonitorConfig};
//! let monitor = Monitor::new(MonitorConfig::default()).unwrap();
//! let _raw = monitor.events().register(Some(EventType::NDE_EVENT_UDEV_ADD), |_t, _data| {}).unwrap();
//! ```
