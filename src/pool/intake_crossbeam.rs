//! The pool's intake built on `crossbeam_queue::SegQueue`, behind the same
//! interface as `intake.rs`: compiled only with the benchmark feature
//! `crossbeam-intake`, so that `make bench` can measure the two side by
//! side (docs/benchmarks.md, "The intake: ours or crossbeam's").
//!
//! SegQueue has no close: a push announces itself in `state` (two per push
//! in flight, bit 0 the closed mark) and fails if the intake is closed;
//! `close` sets the mark and waits for the pushes in flight, so every push
//! either is refused or is in the queue when `close` returns.

use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::SegQueue;

use std::num::NonZeroU8;

use super::packing::{Packing, Whole};

use crate::sync::model::yield_now;
use crate::sync::CachePadded;

const CLOSED: usize = 1;
const IN_FLIGHT: usize = 2;

/// Unbounded lock-free MPSC intake of jobs (SegQueue-based). It stores
/// jobs whole, whatever the packing `P` (`packing.rs`).
pub struct Intake<T, P = Whole> {
    queue: SegQueue<T>,
    packing: std::marker::PhantomData<fn() -> P>,
    state: CachePadded<AtomicUsize>,
    /// Jobs taken so far (only the consumer writes it).
    taken: AtomicUsize,
}

impl<T, P> Default for Intake<T, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, P: Packing<T>> Intake<T, P> {
    /// `intake.rs`'s `push_packed`: joins the halves and stores the job whole.
    ///
    /// # Safety
    /// `tag` and `body` are the two halves of one `P::pack` result.
    pub unsafe fn push_packed(&self, tag: NonZeroU8, body: P::Body) -> Result<(), (NonZeroU8, P::Body)> {
        // SAFETY: the caller's promise.
        self.push(unsafe { P::unpack(tag, body) }).map_err(P::pack)
    }
}

impl<T, P> Intake<T, P> {
    pub fn new() -> Self {
        Intake { queue: SegQueue::new(), packing: std::marker::PhantomData, state: CachePadded(AtomicUsize::new(0)), taken: AtomicUsize::new(0) }
    }

    /// SegQueue frees its blocks as it empties them: nothing to trim.
    pub fn trim_spare(&self, _keep: usize) {}

    /// Appends `value`; gives it back when the intake is closed.
    pub fn push(&self, value: T) -> Result<(), T> {
        if self.state.fetch_add(IN_FLIGHT, Ordering::SeqCst) & CLOSED != 0 {
            self.state.fetch_sub(IN_FLIGHT, Ordering::Release);
            return Err(value);
        }
        self.queue.push(value);
        self.state.fetch_sub(IN_FLIGHT, Ordering::Release);
        Ok(())
    }

    /// Closes the intake: every later push fails; returns once the pushes
    /// in flight are in the queue. Idempotent.
    pub fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::SeqCst);
        while self.state.load(Ordering::Acquire) & !CLOSED != 0 {
            yield_now();
        }
    }

    /// Jobs pushed so far (accepted ones only).
    pub fn pushed(&self) -> usize {
        self.taken.load(Ordering::Acquire) + self.queue.len()
    }

    /// Jobs pushed and not yet taken.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the oldest job.
    ///
    /// # Safety
    /// Only one thread at a time may take (as for `intake.rs`; SegQueue
    /// itself would allow more).
    pub unsafe fn pop(&self) -> Option<T> {
        let job = self.queue.pop()?;
        self.taken.fetch_add(1, Ordering::Release);
        Some(job)
    }

    /// Moves up to `max` of the oldest jobs into `out`; returns how many.
    ///
    /// # Safety
    /// As for [`Intake::pop`].
    pub unsafe fn take_into<E: Extend<T>>(&self, out: &mut E, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(job) = self.queue.pop() else { break };
            out.extend(Some(job));
            n += 1;
        }
        self.taken.fetch_add(n, Ordering::Release);
        n
    }
}
