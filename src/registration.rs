//! The handle a Rust registration returns: dropping it deregisters.

use std::fmt;

use crate::error::Error;

type Remove = Box<dyn FnOnce() -> Result<(), Error> + Send + Sync>;

/// A registered callback (from [`crate::Events::register`] or
/// [`crate::Monitor::register`]). Dropping the handle deregisters the
/// callback, with the same promises as [`Registration::deregister`];
/// [`Registration::forget`] keeps it registered for the life of its object
/// instead.
///
/// The handle does not keep its object alive: once the object is dropped
/// (which releases every callback), dropping the handle does nothing.
/// It may be sent to and dropped on any thread.
#[must_use = "dropping a Registration deregisters its callback at once"]
pub struct Registration {
    remove: Option<Remove>,
}

impl Registration {
    pub(crate) fn new(remove: impl FnOnce() -> Result<(), Error> + Send + Sync + 'static) -> Registration {
        Registration { remove: Some(Box::new(remove)) }
    }

    /// Removes the callback. From another thread: blocks until the
    /// callback is not running, and when this returns it never runs again
    /// and its `on_remove` has completed. From inside the callback itself:
    /// returns at once, and the callback is released after it returns.
    /// `Ok(())` also when the object is already gone (it released the
    /// callback then).
    pub fn deregister(mut self) -> Result<(), Error> {
        self.remove.take().map_or(Ok(()), |remove| remove())
    }

    /// Keeps the callback registered until its object is dropped (what a
    /// C id that is never passed to deregister does).
    pub fn forget(mut self) {
        self.remove = None;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(remove) = self.remove.take() {
            // The only errors are "already gone", nothing to report.
            let _ = remove();
        }
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("registered", &self.remove.is_some()).finish()
    }
}
