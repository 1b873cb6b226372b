//! A registered Rust closure whose release is its drop, at the moment the
//! registry releases it.
//!
//! The registry hands callbacks to workers through a cached snapshot
//! (`registry.rs`), which may keep a removed callback alive until the
//! worker's next event. A closure held there directly would be dropped
//! late, and so would whatever it owns (a channel's sender, a file). The
//! slot lets the registry's `on_remove`, which runs exactly once when no
//! worker runs the callback any more (before `deregister` returns from
//! another thread), take the closure out and drop it there.

use std::sync::{Arc, Mutex, RwLock};

use crate::registry::OnRemove;
use crate::sync::lock;

/// An `FnMut` closure, called one call at a time (under its lock).
pub(crate) struct Exclusive<F>(Arc<Mutex<Option<F>>>);

impl<F: Send + 'static> Exclusive<F> {
    pub(crate) fn new(f: F) -> Self {
        Exclusive(Arc::new(Mutex::new(Some(f))))
    }

    /// Calls the closure unless it was released.
    pub(crate) fn with(&self, call: impl FnOnce(&mut F)) {
        if let Some(f) = lock(&self.0).as_mut() {
            call(f)
        }
    }

    /// The release: drops the closure (outside the lock).
    pub(crate) fn release(&self) -> OnRemove {
        let slot = Arc::clone(&self.0);
        Box::new(move || {
            let f = lock(&slot).take();
            drop(f);
        })
    }
}

/// An `Fn` closure that may run on several workers at once.
pub(crate) struct Shared<F>(Arc<RwLock<Option<F>>>);

impl<F: Send + Sync + 'static> Shared<F> {
    pub(crate) fn new(f: F) -> Self {
        Shared(Arc::new(RwLock::new(Some(f))))
    }

    /// Calls the closure unless it was released.
    pub(crate) fn with(&self, call: impl FnOnce(&F)) {
        let guard = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(f) = guard.as_ref() {
            call(f)
        }
    }

    /// The release: drops the closure (outside the lock).
    pub(crate) fn release(&self) -> OnRemove {
        let slot = Arc::clone(&self.0);
        Box::new(move || {
            let f = slot.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            drop(f);
        })
    }
}
