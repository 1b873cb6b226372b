//! Reading a libudev `struct udev_device` into a [`DeviceSpec`].
//!
//! The only place (with `reader.rs` and `enumerate.rs`) that calls libudev.
//! Strings are borrowed from the device, which must outlive the spec.
//! Non-UTF-8 keys or values are skipped (a syspath or subsystem that is not
//! UTF-8 makes the device unusable: `None`).
//!
//! `DRIVER` is read from the properties, never with
//! `udev_device_get_driver`: for a received device without a `DRIVER`
//! property libudev would go and read the sysfs `driver` link.

use std::ffi::{c_char, CStr};

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
        if n > 4096 {
            break; // hostile property lists: keep a sane bound
        }
        // SAFETY: `e` is a non-NULL entry of the device's list (see above).
        let k = unsafe { cstr(ffi::udev_list_entry_get_name(e)) };
        // SAFETY: as for the name.
        let v = unsafe { cstr(ffi::udev_list_entry_get_value(e)) };
        if let (Some(k), Some(v)) = (k, v) {
            if k == "DRIVER" {
                spec.driver = Some(v);
            } else if !is_event_key(k) {
                spec.props.push((k, v));
            }
        }
        // SAFETY: as for the name.
        e = unsafe { ffi::udev_list_entry_get_next(e) };
    }
    Some(spec)
}
