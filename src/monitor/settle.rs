//! How far the monitor's events got: what the reader queued, what the
//! worker finished, the reader's memory bound, and `settle`.
//!
//! - Every queued event adds to `submitted` (a fast-path batch counts each
//!   of its uevents); every finished one (handled, or discarded at stop)
//!   adds to `handled`. `handled` never passes `submitted`.
//! - Bound: past `limits` (events queued and not finished, or their bytes)
//!   the reader stops reading its socket (`may_read`); the kernel's buffer
//!   absorbs what follows, and its overflow is answered by a resync. The
//!   worker wakes the reader once the queue is under three quarters of both.
//! - Settle: the caller asks (`settle_req`), the reader drains the socket
//!   until it is empty and answers with the `submitted` count of that
//!   moment; with one worker the caller then waits until `handled` reaches
//!   it. With several workers events finish out of order (a later device
//!   can finish before an earlier one), so a count that adds up proves
//!   nothing: the reader also queues a [`SettleMark`], an internal barrier,
//!   and the caller waits until the built-in handler ran it (`reached`),
//!   which is after every event queued before it finished.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sync::{lock, wait_until};

/// Waits on `cond` at most until `deadline` and at most one `SLICE` (so
/// conditions nobody signals are seen); [`Error::Timeout`] once passed.
fn wait_slice<'a, T>(cond: &Condvar, g: MutexGuard<'a, T>, deadline: Option<Instant>) -> Result<MutexGuard<'a, T>, Error> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(Error::Timeout);
    }
    let slice = Instant::now() + SLICE;
    Ok(wait_until(cond, g, Some(deadline.map_or(slice, |d| d.min(slice)))).0)
}

/// How much the reader may queue before it stops reading the socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub events: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct SettleState {
    /// Highest settle request the reader answered.
    ack: u64,
    /// `submitted` when it answered.
    target: u64,
    /// Highest settle request whose [`SettleMark`] was handled.
    reached: u64,
}

/// The internal barrier event that answers settle request `.0` with
/// several workers (see the module comment): handled once every event
/// queued before it has finished.
pub struct SettleMark(pub u64);

/// Waits that nothing signals (a user shutting the events object down)
/// are checked this often.
const SLICE: Duration = Duration::from_millis(100);

/// Counts, bound and settle handshake (see the module comment).
pub struct Progress {
    /// Settle waits for a [`SettleMark`] (several workers), not for a count.
    pub by_mark: bool,
    pub submitted: AtomicU64,
    pub handled: AtomicU64,
    limits: QueueLimits,
    queued_bytes: AtomicU64,
    paused: AtomicBool,
    /// Times the reader stopped reading.
    pub pauses: AtomicU64,
    /// The reader is gone (or going): settle cannot be answered.
    pub reader_stopped: AtomicBool,
    settle_req: AtomicU64,
    settle: Mutex<SettleState>,
    settle_cv: Condvar,
    handled_waiters: AtomicUsize,
    handled_mx: Mutex<()>,
    handled_cv: Condvar,
}

impl Progress {
    pub fn new(limits: QueueLimits, by_mark: bool) -> Progress {
        Progress {
            by_mark,
            submitted: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            limits,
            queued_bytes: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            pauses: AtomicU64::new(0),
            reader_stopped: AtomicBool::new(false),
            settle_req: AtomicU64::new(0),
            settle: Mutex::new(SettleState::default()),
            settle_cv: Condvar::new(),
            handled_waiters: AtomicUsize::new(0),
            handled_mx: Mutex::new(()),
            handled_cv: Condvar::new(),
        }
    }

    /// `n` events of `bytes` in all were queued.
    pub fn queued(&self, n: u64, bytes: u64) {
        self.queued_bytes.fetch_add(bytes, Ordering::SeqCst);
        self.submitted.fetch_add(n, Ordering::SeqCst);
    }

    /// `n` events of `bytes` in all are finished. True when the paused
    /// reader must be woken.
    #[must_use]
    pub fn finished(&self, n: u64, bytes: u64) -> bool {
        self.queued_bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.handled.fetch_add(n, Ordering::SeqCst);
        if self.handled_waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.handled_mx);
            self.handled_cv.notify_all();
        }
        self.paused.load(Ordering::SeqCst) && self.below_resume() && self.paused.swap(false, Ordering::SeqCst)
    }

    fn queued_events(&self) -> u64 {
        // `handled` first: it never passes `submitted`.
        let h = self.handled.load(Ordering::SeqCst);
        self.submitted.load(Ordering::SeqCst).saturating_sub(h)
    }

    /// The reader must stop reading.
    pub fn over_limit(&self) -> bool {
        self.queued_events() >= self.limits.events || self.queued_bytes.load(Ordering::SeqCst) >= self.limits.bytes
    }

    fn below_resume(&self) -> bool {
        self.queued_events() <= self.limits.events / 4 * 3 && self.queued_bytes.load(Ordering::SeqCst) <= self.limits.bytes / 4 * 3
    }

    /// Whether the reader may read now (it pauses over a limit). Pausing
    /// is announced before the last check, so a worker that catches up
    /// meanwhile is either seen here or sees the flag and wakes the reader.
    pub fn may_read(&self) -> bool {
        if !self.paused.load(Ordering::SeqCst) {
            if !self.over_limit() {
                return true;
            }
            self.pauses.fetch_add(1, Ordering::Relaxed);
            self.paused.store(true, Ordering::SeqCst);
        }
        if self.below_resume() {
            self.paused.store(false, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The newest settle request (the reader reads it before a drain).
    pub fn settle_requested(&self) -> u64 {
        self.settle_req.load(Ordering::SeqCst)
    }

    /// The reader emptied the socket after request `req` was made. True
    /// when `req` is new (then, with `by_mark`, the reader queues its
    /// [`SettleMark`]).
    pub fn answer(&self, req: u64) -> bool {
        let mut g = lock(&self.settle);
        if req > g.ack {
            g.ack = req;
            g.target = self.submitted.load(Ordering::SeqCst);
            self.settle_cv.notify_all();
            return true;
        }
        false
    }

    /// The built-in handler ran the [`SettleMark`] of request `req`.
    pub fn mark_reached(&self, req: u64) {
        let mut g = lock(&self.settle);
        if req > g.reached {
            g.reached = req;
            self.settle_cv.notify_all();
        }
    }

    /// The reader stops: pending and later settle requests fail.
    pub fn reader_stopping(&self) {
        self.reader_stopped.store(true, Ordering::SeqCst);
        let _g = lock(&self.settle);
        self.settle_cv.notify_all();
    }

    /// Asks the reader (through `wake_reader`) to drain and answer, then
    /// waits until every event submitted by then has finished.
    /// [`Error::Stopped`] as soon as `events_gone()` (the events object was
    /// shut down: what it still holds waits for the monitor's stop).
    pub fn settle(&self, deadline: Option<Instant>, wake_reader: &dyn Fn(), events_gone: &dyn Fn() -> bool) -> Result<(), Error> {
        // Checked first: once the user shut the events object down, what the
        // socket held may have been discarded already, so a count that adds
        // up would still not mean the events were handled.
        if events_gone() {
            return Err(Error::Stopped);
        }
        let req = self.settle_req.fetch_add(1, Ordering::SeqCst) + 1;
        wake_reader();
        let target = {
            let mut g = lock(&self.settle);
            while g.ack < req {
                if self.reader_stopped.load(Ordering::SeqCst) || events_gone() {
                    return Err(Error::Stopped);
                }
                g = wait_slice(&self.settle_cv, g, deadline)?;
            }
            if self.by_mark {
                while g.reached < req {
                    if events_gone() {
                        return Err(Error::Stopped);
                    }
                    g = wait_slice(&self.settle_cv, g, deadline)?;
                }
                return Ok(());
            }
            g.target
        };
        self.handled_waiters.fetch_add(1, Ordering::SeqCst);
        let r = (|| {
            let mut g = lock(&self.handled_mx);
            while self.handled.load(Ordering::SeqCst) < target {
                if events_gone() {
                    return Err(Error::Stopped);
                }
                g = wait_slice(&self.handled_cv, g, deadline)?;
            }
            Ok(())
        })();
        self.handled_waiters.fetch_sub(1, Ordering::SeqCst);
        r
    }
}
