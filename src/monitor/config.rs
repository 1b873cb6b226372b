//! The monitor's settings.

use std::path::PathBuf;
use std::time::Duration;

/// Force the kernel netlink group.
pub const NDE_MONITOR_KERNEL_EVENTS: u32 = 1 << 0;
/// Do not watch mdevctl's configuration.
pub const NDE_MONITOR_NO_MDEVCTL: u32 = 1 << 1;
/// Force the udev netlink group.
pub const NDE_MONITOR_UDEV_EVENTS: u32 = 1 << 2;

/// Default debounce of mdevctl configuration changes (libvirt's 100 ms).
pub const DEFAULT_MDEVCTL_DEBOUNCE_MS: u32 = 100;

/// Default receive buffer (systemd's and libvirt's 128 MiB).
pub const DEFAULT_RECEIVE_BUFFER: usize = 128 << 20;

/// Which netlink group the monitor reads (`nde_monitor_config.flags`).
///
/// ```
/// use nodedev_events::{EventSource, MonitorConfig};
/// let cfg = MonitorConfig { source: EventSource::Kernel, ..MonitorConfig::default() };
/// assert_eq!(MonitorConfig::default().source, EventSource::Auto);
/// # drop(cfg);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventSource {
    /// udevd's group when udevd runs, else the kernel's.
    #[default]
    Auto,
    /// The kernel's uevents (no udevd needed; no udev properties).
    Kernel,
    /// udevd's processed events.
    Udev,
}

/// Monitor settings (the Rust side of `nde_monitor_config`). Start from
/// [`MonitorConfig::default`] and set what differs.
///
/// ```
/// use std::time::Duration;
/// use nodedev_events::{EventSource, MonitorConfig};
///
/// let cfg = MonitorConfig {
///     source: EventSource::Kernel,
///     watch_mdevctl: false,
///     mdevctl_debounce: Duration::from_millis(250),
///     subsystems: Some(vec!["net".into()]),
///     ..MonitorConfig::default()
/// };
/// assert_eq!(cfg.name, "nodedev");
/// ```
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The netlink group to read.
    pub source: EventSource,
    /// Watch mdevctl's configuration (mediated devices); default true.
    pub watch_mdevctl: bool,
    /// Thread names; default `nodedev`.
    pub name: String,
    /// Subsystem filter (None = all).
    pub subsystems: Option<Vec<String>>,
    /// Default `/etc/mdevctl.d`.
    pub mdevctl_dir: PathBuf,
    /// How long mdevctl's directory must be quiet before its configuration
    /// is read again; default 100 ms (libvirt's). Zero means the default.
    pub mdevctl_debounce: Duration,
    /// Default 128 MiB (root only; failing to set it is logged).
    pub receive_buffer_bytes: usize,
    /// Past this many uevents queued and not yet handled, the reader stops
    /// reading (the kernel's buffer absorbs, then overflows into a
    /// resync). Default [`DEFAULT_MAX_QUEUED_EVENTS`].
    pub max_queued_events: usize,
    /// The same bound in bytes of queued uevents. Default
    /// [`DEFAULT_MAX_QUEUED_BYTES`].
    pub max_queued_bytes: usize,
    /// Worker threads of the monitor's events object; 0 and 1 (the
    /// default) mean one: every callback in udev order, one at a time.
    /// With more, the uevents of different devices are handled in
    /// parallel and those of one device in order; enumeration, resync,
    /// mdevctl refreshes and moves are barriers (see [`super::Monitor`]).
    /// At most [`NDE_MONITOR_MAX_WORKERS`].
    pub workers: usize,
}

/// The largest worker count a monitor accepts (`nde_monitor_config.workers`).
pub const NDE_MONITOR_MAX_WORKERS: usize = 256;

/// Default bound of queued uevents (see `MonitorConfig`).
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = 65536;
/// Default bound of queued uevent bytes (see `MonitorConfig`).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            source: EventSource::Auto,
            watch_mdevctl: true,
            name: "nodedev".into(),
            subsystems: None,
            mdevctl_dir: PathBuf::from("/etc/mdevctl.d"),
            mdevctl_debounce: Duration::from_millis(DEFAULT_MDEVCTL_DEBOUNCE_MS as u64),
            receive_buffer_bytes: DEFAULT_RECEIVE_BUFFER,
            max_queued_events: DEFAULT_MAX_QUEUED_EVENTS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            workers: 1,
        }
    }
}
