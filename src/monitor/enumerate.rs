//! Enumeration of sysfs through libudev, into a fresh [`Table`].
//!
//! As libvirt: every subsystem except `acpi`, `tty`, `vc` and `i2c` (those
//! are enumerated when a subsystem filter names them), one
//! device made from its syspath per entry, linear (the parent of each
//! device is found through the table's syspath index). The sysfs scan is
//! our own (the same directories libudev's enumerator reads), so that the
//! `stop` check, made between directories and between devices, lets
//! `stop` end even a huge enumeration at once.

use std::path::Path;
use std::sync::Arc;

use super::device::Device;
use super::mac;
use super::table::Table;
use super::udev_parse::{spec_from_udev, PropertyText};

/// Subsystems libvirt leaves out of its enumeration.
pub const SKIPPED: [&str; 4] = ["acpi", "tty", "vc", "i2c"];

/// Why an enumeration ended early or failed.
#[derive(Debug, PartialEq, Eq)]
pub enum EnumError {
    /// libudev could not create the enumerator or scan (errno).
    Os(i32),
    /// `stop` said so.
    Stopped,
}

/// Lists the syspaths of every device below `/sys/bus/*/devices` and
/// `/sys/class/*` (what `udev_enumerate_scan_devices` does), resolved,
/// deduplicated and sorted so parents come before their children. `stop`
/// is polled between directories and every 64 entries, so even the scan of a huge sysfs can be
/// cut short (libudev's own scan cannot).
pub fn scan(subsystems: Option<&[String]>, stop: &dyn Fn() -> bool) -> Result<Vec<String>, EnumError> {
    let wanted = |sub: &str| match subsystems {
        Some(list) => list.iter().any(|s| s == sub),
        None => !SKIPPED.contains(&sub),
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (root, suffix) in [("/sys/bus", "devices"), ("/sys/class", "")] {
        let Ok(rd) = std::fs::read_dir(root) else { continue };
        for sub in rd.flatten() {
            if stop() {
                return Err(EnumError::Stopped);
            }
            let name = sub.file_name();
            let Some(sub_name) = name.to_str() else { continue };
            if !wanted(sub_name) {
                continue;
            }
            let dir = if suffix.is_empty() { sub.path() } else { sub.path().join(suffix) };
            let Ok(devs) = std::fs::read_dir(&dir) else { continue };
            for (i, d) in devs.flatten().enumerate() {
                if i % 64 == 63 && stop() {
                    return Err(EnumError::Stopped);
                }
                // Entries are symlinks into /sys/devices: one readlink and
                // a lexical join (sysfs links are relative and contain no
                // further links) instead of a full realpath walk.
                let real = match std::fs::read_link(d.path()) {
                    Ok(l) => match (dir.to_str(), l.to_str()) {
                        (Some(base), Some(l)) => join_lexically(base, l),
                        _ => continue,
                    },
                    Err(_) => match std::fs::canonicalize(d.path()).ok().and_then(|p| p.to_str().map(str::to_owned)) {
                        Some(p) => p,
                        None => continue,
                    },
                };
                let real = real.as_str();
                if !real.starts_with("/sys/") {
                    continue;
                }
                if seen.insert(real.to_owned()) {
                    out.push(real.to_owned());
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// `base` + `/` + `rel`, with `.` and `..` resolved without touching the
/// filesystem.
pub fn join_lexically(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if rel.starts_with('/') { Vec::new() } else { base.split('/').filter(|p| !p.is_empty()).collect() };
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = String::with_capacity(base.len() + rel.len());
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}

/// Enumerates the devices (filtered by `subsystems` if given) into a new
/// table; returns it and the kept devices in enumeration order. Runs on
/// the events worker with a libudev context of its own: no object it
/// makes reaches C, so the `udev` crate's safe types do the job.
pub fn enumerate(subsystems: Option<&[String]>, stop: &dyn Fn() -> bool) -> Result<(Table, Vec<Arc<Device>>), EnumError> {
    let paths = scan(subsystems, stop)?;
    let udev = udev::Udev::new().map_err(|e| EnumError::Os(e.raw_os_error().unwrap_or(libc::ENOMEM)))?;
    let mut table = Table::with_capacity(paths.len());
    let mut order = Vec::with_capacity(paths.len());
    let mut mac = String::new();
    let mut text = PropertyText::default();
    for p in &paths {
        if stop() {
            return Err(EnumError::Stopped);
        }
        let Ok(dev) = udev::Device::from_syspath_with_context(udev.clone(), Path::new(p)) else {
            continue; // vanished between the scan and now
        };
        if let Some(mut spec) = spec_from_udev(&dev, &mut text) {
            if spec.subsystem == Some("net") && mac::read_sysfs(spec.syspath, &mut mac) {
                spec.mac = Some(&mac);
                spec.props.push(("ADDRESS", &mac));
            }
            table.push_enumerated(&spec, &mut order);
        }
    }
    Ok((table, order))
}

#[cfg(test)]
mod tests {
    #[test]
    fn lexical_join() {
        assert_eq!(super::join_lexically("/sys/class/net", "../../devices/virtual/net/lo"), "/sys/devices/virtual/net/lo");
        assert_eq!(super::join_lexically("/sys/bus/pci/devices", "../../../devices/pci0000:00/0000:00:01.0"), "/sys/devices/pci0000:00/0000:00:01.0");
        assert_eq!(super::join_lexically("/a", "/b/./c"), "/b/c");
    }
}
