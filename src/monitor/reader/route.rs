//! How the reader queues a uevent when the monitor has several workers:
//! under its device's key (a hash of the devpath: one device's uevents in
//! order, different devices in parallel), or as a barrier (after
//! everything queued before it, before everything after it).
//!
//! A uevent is a barrier when handling it may read or change another
//! device's entry in the table, so that its result could depend on the
//! order of two devices:
//! - a move (it removes the old devpath and adds the new one);
//! - a uevent whose device is an ancestor or a descendant of a device with
//!   a uevent queued since the last barrier: the table names a device's
//!   parent after the nearest ancestor it holds, so a child's add must see
//!   its parent's add (or remove) exactly as one worker would.
//!
//! The set of devpaths queued since the last barrier is bounded: past
//! [`MAX_TRACKED`] the next uevent is made a barrier, which empties it.
//! Paths are kept as 64-bit hashes (no allocation per uevent): a collision
//! only makes an unrelated uevent a barrier, never the reverse.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::monitor::uevent::Action;

/// How to queue one uevent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Under this (non-zero) key.
    Key(u64),
    /// As a barrier.
    Barrier,
}

/// Devpaths tracked between two barriers, at most.
const MAX_TRACKED: usize = 4096;

/// The reader's routing state (see the module comment).
#[derive(Default)]
pub(crate) struct Router {
    /// Hashes of the devpaths queued under a key since the last barrier.
    queued: HashSet<u64, rustc_hash::FxBuildHasher>,
    /// Hashes of every proper ancestor of those devpaths.
    ancestors: HashSet<u64, rustc_hash::FxBuildHasher>,
}

/// A path's hash; a device's key is its devpath's, never 0 (0 means "no
/// key").
fn path_hash(path: &str) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    path.hash(&mut h);
    h.finish()
}

/// The proper ancestors of `devpath` (`/devices/a/b` gives `/devices/a`,
/// then `/devices`).
fn ancestors(devpath: &str) -> impl Iterator<Item = &str> {
    let mut p = devpath;
    std::iter::from_fn(move || {
        let (dir, _) = p.rsplit_once('/')?;
        p = dir;
        (!dir.is_empty()).then_some(dir)
    })
}

impl Router {
    /// How to queue a uevent of `action` about `devpath`.
    pub(crate) fn route(&mut self, action: Action, devpath: &str) -> Route {
        let own = path_hash(devpath);
        let related = self.ancestors.contains(&own) || ancestors(devpath).any(|a| self.queued.contains(&path_hash(a)));
        if action == Action::Move || related || self.queued.len() >= MAX_TRACKED {
            self.barrier_queued();
            return Route::Barrier;
        }
        if self.queued.insert(own) {
            for a in ancestors(devpath) {
                // Inserted with all of its own ancestors before.
                if !self.ancestors.insert(path_hash(a)) {
                    break;
                }
            }
        }
        Route::Key(own.max(1))
    }

    /// A barrier was queued (by `route` or by the reader: a resync, a
    /// settle mark): everything before it is ordered with everything after.
    pub(crate) fn barrier_queued(&mut self) {
        self.queued.clear();
        self.ancestors.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_keeps_its_key_and_unrelated_devices_get_their_own() {
        let mut r = Router::default();
        let a = r.route(Action::Add, "/devices/virtual/net/a");
        assert_eq!(r.route(Action::Change, "/devices/virtual/net/a"), a);
        assert_eq!(r.route(Action::Remove, "/devices/virtual/net/a"), a);
        let b = r.route(Action::Add, "/devices/virtual/net/b");
        assert!(matches!((a, b), (Route::Key(x), Route::Key(y)) if x != y && x != 0 && y != 0));
    }

    #[test]
    fn a_move_is_a_barrier() {
        let mut r = Router::default();
        assert_eq!(r.route(Action::Move, "/devices/virtual/net/b"), Route::Barrier);
    }

    #[test]
    fn parent_and_child_are_ordered_by_a_barrier_either_way() {
        let mut r = Router::default();
        assert!(matches!(r.route(Action::Add, "/devices/pci0/0000:00:01.0"), Route::Key(_)));
        assert_eq!(r.route(Action::Add, "/devices/pci0/0000:00:01.0/net/eth0"), Route::Barrier);
        // The barrier emptied the window: the child alone is keyed again.
        assert!(matches!(r.route(Action::Change, "/devices/pci0/0000:00:01.0/net/eth0"), Route::Key(_)));
        assert_eq!(r.route(Action::Remove, "/devices/pci0/0000:00:01.0"), Route::Barrier);
        // Siblings are not related.
        assert!(matches!(r.route(Action::Add, "/devices/pci0/0000:00:02.0"), Route::Key(_)));
        assert!(matches!(r.route(Action::Add, "/devices/pci0/0000:00:03.0"), Route::Key(_)));
    }

    #[test]
    fn the_window_is_bounded() {
        let mut r = Router::default();
        let mut barriers = 0;
        for i in 0..3 * MAX_TRACKED {
            if r.route(Action::Add, &format!("/devices/virtual/net/d{i}")) == Route::Barrier {
                barriers += 1;
            }
            assert!(r.queued.len() <= MAX_TRACKED);
        }
        assert_eq!(barriers, 2);
    }
}
