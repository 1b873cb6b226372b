//! The monitor's counters: one `#[repr(C)]` struct for Rust and C alike.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a monitor (`nde_monitor_get_stats`), safe to read at any
/// time. Members are only ever appended.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct nde_monitor_stats {
    /// uevents read from the socket.
    pub received: u64,
    /// Raw events queued (uevents with a handled action, plus INITs).
    pub submitted: u64,
    /// Raw events done with (handled or discarded).
    pub handled: u64,
    /// Datagrams refused by the parser (untrusted sender, bad header,
    /// missing ACTION/DEVPATH/SUBSYSTEM, truncated).
    pub rejected: u64,
    /// uevents with another action (bind, unbind, ...), dropped.
    pub ignored: u64,
    /// Receive buffer overflows (`ENOBUFS`); each one triggers a resync.
    pub overflows: u64,
    /// Other receive errors (the reader carries on).
    pub receive_errors: u64,
    /// Resyncs run after overflows (INIT events handled after the first).
    pub resyncs: u64,
    /// mdevctl refreshes run.
    pub mdevctl_refreshes: u64,
    /// mdevctl refreshes that failed (table unchanged).
    pub mdevctl_failures: u64,
    /// Panics caught in lifecycle callbacks.
    pub listener_panics: u64,
    /// uevents read without a libudev object (no raw `NDE_EVENT_UDEV_*`
    /// handler was registered).
    pub fast_path: u64,
}

/// The Rust name of [`nde_monitor_stats`](crate::ffi::monitor::nde_monitor_stats).
pub type MonitorStats = nde_monitor_stats;

impl super::Monitor {
    /// The counters now (each read on its own: not one snapshot).
    pub fn stats(&self) -> MonitorStats {
        let (s, sh) = (&self.shared.reader, &self.shared);
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MonitorStats {
            received: n(&s.received),
            submitted: n(&s.progress.submitted),
            handled: n(&s.progress.handled),
            ignored: n(&s.ignored),
            rejected: n(&s.rejected),
            fast_path: n(&s.fast),
            overflows: n(&s.overflows),
            receive_errors: n(&s.receive_errors),
            resyncs: n(&sh.resyncs),
            mdevctl_refreshes: n(&sh.mdev_refreshes),
            mdevctl_failures: n(&sh.mdev_failures),
            listener_panics: sh.listeners.panics() as u64,
        }
    }

    /// Times the reader stopped reading because its queue was full (Rust
    /// only: the C stats struct has no size field to grow safely).
    pub fn reader_pauses(&self) -> u64 {
        self.shared.reader.progress.pauses.load(Ordering::Relaxed)
    }
}
