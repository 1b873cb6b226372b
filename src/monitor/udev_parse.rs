//! Reading a libudev device into a [`DeviceSpec`]: a raw `struct
//! udev_device *` (the raw path, whose pointer also reaches C handlers) or
//! the `udev` crate's safe `Device` (enumeration).
//!
//! Strings are borrowed from the device, which must outlive the spec.
//! Non-UTF-8 keys or values are skipped (a syspath or subsystem that is not
//! UTF-8 makes the device unusable: `None`).
//!
//! `DRIVER` is read from the properties, never with
//! `udev_device_get_driver`: for a received device without a `DRIVER`
//! property libudev would go and read the sysfs `driver` link.

use std::ffi::{c_char, CStr, OsStr};
use std::path::Path;

use udev::ffi;

use super::table::{is_event_key, DeviceSpec};

/// `ptr` as a UTF-8 string borrowed for `'a`.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string valid for `'a`.
pub unsafe fn cstr<'a>(ptr: *const c_char) -> Option<&'a str> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string
    // valid for 'a.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    std::str::from_utf8(bytes).ok()
}

/// The raw `ACTION` of a received device (the crate maps `move` to
/// Unknown, so we never use its enum).
///
/// # Safety
/// `dev` is a live device used by this thread only.
pub unsafe fn action<'a>(dev: *mut ffi::udev_device) -> Option<&'a str> {
    // SAFETY: `dev` is live and ours (the caller's promise); the string
    // lives as long as the device.
    unsafe { cstr(ffi::udev_device_get_action(dev)) }
}

/// A property value.
///
/// # Safety
/// `dev` is a live device used by this thread only.
pub unsafe fn property<'a>(dev: *mut ffi::udev_device, key: &CStr) -> Option<&'a str> {
    // SAFETY: as in `action`; `key` is NUL-terminated.
    unsafe { cstr(ffi::udev_device_get_property_value(dev, key.as_ptr())) }
}

/// The most properties read from one device (hostile lists are cut).
const MAX_PROPERTIES: usize = 4096;

/// Files property `key` = `value` into `spec`: `DRIVER` is a field, the
/// keys of an event (not of the device) are left out.
fn add_property<'a>(spec: &mut DeviceSpec<'a>, key: &'a str, value: &'a str) {
    if key == "DRIVER" {
        spec.driver = Some(value);
    } else if !is_event_key(key) {
        spec.props.push((key, value));
    }
}

/// Reused text of one device's properties: the `udev` crate lends a
/// property's name and value only while its list entry lives, so they are
/// copied here (one buffer for all devices of an enumeration).
#[derive(Default)]
pub struct PropertyText {
    text: String,
    ends: Vec<(usize, usize)>,
}

/// Fills a spec from a safe `udev::Device` (without `mac`, see `mac.rs`);
/// property names and values are copied into `text`.
pub fn spec_from_udev<'a>(dev: &'a udev::Device, text: &'a mut PropertyText) -> Option<DeviceSpec<'a>> {
    let mut spec = DeviceSpec {
        syspath: dev.syspath().to_str()?,
        subsystem: dev.subsystem().and_then(OsStr::to_str),
        devtype: dev.devtype().and_then(OsStr::to_str),
        driver: None,
        devnode: dev.devnode().and_then(Path::to_str),
        mac: None,
        props: Vec::with_capacity(16),
    };
    text.text.clear();
    text.ends.clear();
    for entry in dev.properties().take(MAX_PROPERTIES) {
        if let (Some(k), Some(v)) = (entry.name().to_str(), entry.value().to_str()) {
            text.text.push_str(k);
            let key_end = text.text.len();
            text.text.push_str(v);
            text.ends.push((key_end, text.text.len()));
        }
    }
    let text: &'a PropertyText = text;
    let mut start = 0;
    for &(key_end, end) in &text.ends {
        add_property(&mut spec, &text.text[start..key_end], &text.text[key_end..end]);
        start = end;
    }
    Some(spec)
}

/// Fills a spec from `dev` (without `mac`, see `mac.rs`).
///
/// # Safety
/// `dev` is a live device used by this thread only, and outlives `'a`.
pub unsafe fn spec_from_device<'a>(dev: *mut ffi::udev_device) -> Option<DeviceSpec<'a>> {
    // SAFETY: `dev` is live, used by this thread only and outlives 'a (the
    // caller's promise); the strings and list entries libudev returns live
    // as long as the device. The same holds for every call below.
    let syspath = unsafe { cstr(ffi::udev_device_get_syspath(dev)) }?;
    let mut spec = DeviceSpec {
        syspath,
        // SAFETY: see above.
        subsystem: unsafe { cstr(ffi::udev_device_get_subsystem(dev)) },
        // SAFETY: see above.
        devtype: unsafe { cstr(ffi::udev_device_get_devtype(dev)) },
        driver: None,
        // SAFETY: see above.
        devnode: unsafe { cstr(ffi::udev_device_get_devnode(dev)) },
        mac: None,
        props: Vec::with_capacity(16),
    };
    // SAFETY: see above.
    let mut e = unsafe { ffi::udev_device_get_properties_list_entry(dev) };
    let mut n = 0usize;
    while !e.is_null() {
        n += 1;
        if n > MAX_PROPERTIES {
            break; // hostile property lists: keep a sane bound
        }
        // SAFETY: `e` is a non-NULL entry of the device's list (see above).
        let k = unsafe { cstr(ffi::udev_list_entry_get_name(e)) };
        // SAFETY: as for the name.
        let v = unsafe { cstr(ffi::udev_list_entry_get_value(e)) };
        if let (Some(k), Some(v)) = (k, v) {
            add_property(&mut spec, k, v);
        }
        // SAFETY: as for the name.
        e = unsafe { ffi::udev_list_entry_get_next(e) };
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use udev::AsRawWithContext;

    /// Enumeration (the crate's safe device) and the raw path (a
    /// `struct udev_device *`) read the same device into the same spec.
    #[test]
    fn the_safe_and_the_raw_readers_agree() {
        let dev = udev::Device::from_syspath(Path::new("/sys/devices/virtual/net/lo")).expect("lo exists");
        let mut text = PropertyText::default();
        let safe = spec_from_udev(&dev, &mut text).expect("a usable device");
        // SAFETY: the crate's live device, used by this thread only, and
        // outliving `raw`.
        let raw = unsafe { spec_from_device(dev.as_raw()) }.expect("a usable device");
        assert_eq!(format!("{safe:?}"), format!("{raw:?}"));
        assert_eq!(safe.subsystem, Some("net"));
        assert!(safe.props.iter().any(|&(k, v)| k == "INTERFACE" && v == "lo"), "{safe:?}");
    }
}
