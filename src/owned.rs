//! Data handed over by C together with the function that frees it.

use std::ffi::c_void;

/// A C function that releases data handed to the library.
pub type FreeFn = unsafe extern "C" fn(data: *mut c_void);

/// Data owned by the library with the function that frees it. Dropping it
/// calls the function once; this is how every path frees exactly once.
pub struct OwnedData {
    pub(crate) ptr: *mut c_void,
    free: Option<FreeFn>,
}

// SAFETY: the caller handed the data over to the library, to be used and
// freed on the library's threads (documented in the header).
unsafe impl Send for OwnedData {}

impl OwnedData {
    /// Data at `ptr` that `free` (if any) releases once, when the event is
    /// done with (after its callbacks, or when it is refused or discarded).
    ///
    /// # Safety
    ///
    /// `free` must be sound to call once with `ptr`, on any thread of the
    /// library, at any later time; callbacks receive `ptr` as it is.
    pub unsafe fn new(ptr: *mut c_void, free: Option<FreeFn>) -> Self {
        OwnedData { ptr, free }
    }

    /// No data at all (a NULL pointer, nothing to free).
    pub fn none() -> Self {
        OwnedData { ptr: std::ptr::null_mut(), free: None }
    }
}

impl std::fmt::Debug for OwnedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventData").field("ptr", &self.ptr).field("has_free", &self.free.is_some()).finish()
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
