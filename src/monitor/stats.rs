//! The monitor's counters: one `#[repr(C)]` struct for Rust and C alike.

/// Counters of a monitor (`nde_monitor_get_stats`), safe to read at any
/// time. Members are only ever appended.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
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

/// The Rust name of [`nde_monitor_stats`].
pub type MonitorStats = nde_monitor_stats;
