//! Data handed over by C together with the function that frees it.

use std::ffi::c_void;

/// A C function that releases data handed to the library.
pub type FreeFn = unsafe extern "C" fn(data: *mut c_void);

/// Data owned by the library with the function that frees it. Dropping it
/// calls the function once; this is how every path frees exactly once.
pub struct OwnedData {
    pub ptr: *mut c_void,
    pub free: Option<FreeFn>,
}

// SAFETY: the caller handed the data over to the library, to be used and
// freed on the library's threads (documented in the header).
unsafe impl Send for OwnedData {}

impl OwnedData {
    pub fn new(ptr: *mut c_void, free: Option<FreeFn>) -> Self {
        OwnedData { ptr, free }
    }

    /// No data at all (timer-made events).
    pub fn none() -> Self {
        OwnedData { ptr: std::ptr::null_mut(), free: None }
    }
}

impl Drop for OwnedData {
    fn drop(&mut self) {
        if let Some(free) = self.free.take() {
            // SAFETY: the caller gave us `free` for `ptr`; it runs once.
            unsafe { free(self.ptr) };
        }
    }
}
