//! The raw path's own parse of each datagram. Before libudev receives the
//! next datagram, the reader peeks at it (`MSG_PEEK`) and parses it with
//! the fast path's parser (`uevent.rs`), so that the built-in handler reads
//! the uevent from that parse instead of from libudev's property list,
//! which libudev builds per device as a list and a hash map (a quarter of
//! a ported libvirt's worker time). libudev still receives the datagram
//! and C handlers still get its device. The parse is used only when it is
//! of the datagram libudev returned: libudev's subsystem filter drops a
//! datagram and returns the next one in the same call, so the peek applies
//! the same filter (a datagram libudev skips is refused here too), and
//! libudev's device must match the parse in `SEQNUM`, `ACTION` and
//! syspath (a forged datagram may repeat another's `SEQNUM`). A datagram
//! libudev refuses otherwise (a typed property such as `IFINDEX=abc`) makes
//! it return no device at all, and the reader peeks afresh.

use std::os::fd::RawFd;

use udev::ffi;

use crate::monitor::sys;
use crate::monitor::udev_parse;
use crate::monitor::uevent::{self, Action, Batch, Uevent};

/// The reader's buffer for peeking (datagrams over 8 KiB are refused by
/// the parser, as by libudev).
pub(super) struct Peeker {
    buf: Vec<u8>,
}

/// A parsed datagram waiting for libudev's device of the same uevent.
pub(super) struct Peeked {
    batch: Batch,
    seqnum: u64,
}

/// The parse a raw event carries beside its `udev_device`.
pub(crate) struct PeekedUevent(Batch);

impl PeekedUevent {
    pub(crate) fn uevent(&self) -> Option<Uevent<'_>> {
        self.0.iter().next()
    }
}

impl Peeker {
    pub(super) fn new() -> Peeker {
        Peeker { buf: vec![0u8; 16 * 1024] }
    }

    /// Peeks at the next datagram of `fd`: its parse, or `None` when the
    /// parser refuses it or it is not of `subsystems` (the monitor's
    /// filter, which libudev applies too; libudev then decides alone);
    /// `Err(errno)` as a receive would fail (`EAGAIN`: empty; `ENOBUFS`:
    /// reported here and no longer to libudev).
    pub(super) fn peek(&mut self, fd: RawFd, subsystems: Option<&[String]>) -> Result<Option<Peeked>, i32> {
        let d = sys::peek_netlink(fd, &mut self.buf)?;
        if d.truncated {
            return Ok(None);
        }
        let Ok(p) = uevent::parse(&self.buf[..d.len], d.sender(), subsystems) else {
            return Ok(None);
        };
        let mut batch = Batch::with_capacity(1);
        batch.push(&p, None);
        Ok(Some(Peeked { batch, seqnum: p.seqnum }))
    }
}

impl Peeked {
    /// The parse, if it is of `dev`'s uevent.
    ///
    /// # Safety
    /// `dev` is a live device used by this thread only.
    pub(super) unsafe fn of(self, dev: *mut ffi::udev_device) -> Option<PeekedUevent> {
        let u = self.batch.iter().next()?;
        let action = match u.action() {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Change => "change",
            Action::Move => "move",
        };
        // SAFETY: the caller's promise.
        let seqnum = unsafe { ffi::udev_device_get_seqnum(dev) };
        // SAFETY: as above; the strings live as long as the device.
        let (dev_action, syspath) = unsafe { (udev_parse::action(dev), udev_parse::cstr(ffi::udev_device_get_syspath(dev))) };
        let same = seqnum == self.seqnum && dev_action == Some(action) && syspath == Some(u.syspath());
        same.then_some(PeekedUevent(self.batch))
    }
}
