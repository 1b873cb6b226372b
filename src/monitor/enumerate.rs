//! Enumeration of sysfs through libudev, into a fresh [`Table`].
//!
//! As libvirt: every subsystem except `acpi`, `tty`, `vc` and `i2c` (those
//! are enumerated when a subsystem filter names them), one
//! `udev_device_new_from_syspath` per entry, linear (the parent of each
//! device is found through the table's syspath index). The `stop` check
//! between devices lets `stop` end a long enumeration at once.

use std::ffi::CString;
use std::sync::Arc;

use udev::ffi;

use super::device::Device;
use super::table::Table;
use super::udev_parse::{read_mac, spec_from_device};

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

/// Enumerates the devices `udev` sees (filtered by `subsystems` if given)
/// into a new table; returns it and the kept devices in enumeration order.
///
/// # Safety
/// `udev` is a live context used by this thread only for the call.
pub unsafe fn enumerate(
    udev: *mut ffi::udev,
    subsystems: Option<&[String]>,
    stop: &dyn Fn() -> bool,
) -> Result<(Table, Vec<Arc<Device>>), EnumError> {
    let en = ffi::udev_enumerate_new(udev);
    if en.is_null() {
        return Err(EnumError::Os(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    struct Guard(*mut ffi::udev_enumerate);
    impl Drop for Guard {
        fn drop(&mut self) {
            // SAFETY: created above, released once.
            unsafe { ffi::udev_enumerate_unref(self.0) };
        }
    }
    let _g = Guard(en);
    match subsystems {
        Some(list) => {
            for s in list {
                if let Ok(c) = CString::new(s.as_str()) {
                    ffi::udev_enumerate_add_match_subsystem(en, c.as_ptr());
                }
            }
        }
        None => {
            for s in SKIPPED {
                let c = CString::new(s).unwrap();
                ffi::udev_enumerate_add_nomatch_subsystem(en, c.as_ptr());
            }
        }
    }
    let rc = ffi::udev_enumerate_scan_devices(en);
    if rc < 0 {
        // libvirt only warns; a partial list is still useful.
        super::log::warn(&format!("enumeration: udev_enumerate_scan_devices failed: errno {}", -rc));
    }
    let mut paths: Vec<CString> = Vec::new();
    let mut e = ffi::udev_enumerate_get_list_entry(en);
    while !e.is_null() {
        let name = ffi::udev_list_entry_get_name(e);
        if !name.is_null() {
            paths.push(std::ffi::CStr::from_ptr(name).to_owned());
        }
        e = ffi::udev_list_entry_get_next(e);
    }
    let mut table = Table::with_capacity(paths.len());
    let mut order = Vec::with_capacity(paths.len());
    let mut mac = String::new();
    for p in &paths {
        if stop() {
            return Err(EnumError::Stopped);
        }
        let dev = ffi::udev_device_new_from_syspath(udev, p.as_ptr());
        if dev.is_null() {
            continue; // vanished between the scan and now
        }
        if let Some(mut spec) = spec_from_device(dev) {
            if spec.subsystem == Some("net") && read_mac(spec.syspath, &mut mac) {
                spec.mac = Some(&mac);
                spec.props.push(("ADDRESS", &mac));
            }
            table.push_enumerated(&spec, &mut order);
        }
        ffi::udev_device_unref(dev);
    }
    Ok((table, order))
}
