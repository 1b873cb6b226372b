//! (Over 400 lines: 380 lines of intake, then its unit tests.)
//!
//! The pool's lock-free front door: producers append jobs without taking
//! the pool's lock; whoever holds that lock moves them into the queue.
//!
//! It is an unbounded multi-producer, single-consumer list of blocks (the
//! segmented design of crossbeam's list channel, written for this one use):
//! a producer claims a position with one compare-and-swap on the tail index,
//! writes its job into that slot and marks it ready. One position per block
//! is a sentinel while the producer that took the block's last slot links the
//! next block. Bit 0 of the tail index closes the intake: a push either
//! claimed its position before the close (and is taken by drain) or fails.
//! A slot is the job's body plus one ready byte, which also carries the
//! job's tag (`packing.rs`); no allocation per job.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::num::NonZeroU8;
use std::ptr;
use std::sync::atomic::Ordering;

use super::packing::{Packing, Whole};
use crate::sync::model::{lock, yield_now, AtomicPtr, AtomicU8, AtomicUsize, Mutex, UnsafeCell};
use crate::sync::CachePadded;

/// Slots per block (3 under loom, so that a model's few pushes cross a
/// block boundary and reuse a block).
#[cfg(not(loom))]
const BLOCK_CAP: usize = 255;
#[cfg(loom)]
const BLOCK_CAP: usize = 3;
/// Positions per block: the slots plus the sentinel.
const LAP: usize = BLOCK_CAP + 1;
/// Bit 0 of the tail index is the closed mark; positions count from bit 1.
const SHIFT: usize = 1;
const CLOSED: usize = 1;

/// `B` is the body type of the intake's packing.
struct Block<B> {
    next: AtomicPtr<Block<B>>,
    /// 0 while the slot is not written, else the job's tag.
    ready: [AtomicU8; BLOCK_CAP],
    values: [UnsafeCell<MaybeUninit<B>>; BLOCK_CAP],
}

impl<B> Block<B> {
    #[cfg(not(loom))]
    fn alloc() -> *mut Block<B> {
        // All-zero is a valid empty block: null next, no slot ready.
        let b: Box<MaybeUninit<Block<B>>> = Box::new_zeroed();
        // SAFETY: every field is valid when zeroed (see above; the slot
        // cell is a transparent wrapper of std's UnsafeCell).
        Box::into_raw(unsafe { b.assume_init() })
    }

    /// loom's atomics are objects of the model: they must be constructed.
    #[cfg(loom)]
    fn alloc() -> *mut Block<B> {
        Box::into_raw(Box::new(Block {
            next: AtomicPtr::new(ptr::null_mut()),
            ready: std::array::from_fn(|_| AtomicU8::new(0)),
            values: std::array::from_fn(|_| UnsafeCell::new(MaybeUninit::uninit())),
        }))
    }

    /// Waits until the producer that links the next block has done so.
    fn wait_next(&self) -> *mut Block<B> {
        loop {
            let next = self.next.load(Ordering::Acquire);
            if !next.is_null() {
                return next;
            }
            backoff();
        }
    }
}

/// Lets a preempted producer finish the few instructions we wait for.
fn backoff() {
    yield_now();
}

/// Emptied blocks kept for reuse while jobs flow (up to ~17 MiB): during a
/// burst no take frees and pushes reuse drained blocks, so neither glibc's
/// consolidation nor page faults hit the hot path. The consumer trims the
/// list with [`Intake::trim_spare`] when it goes idle.
const MAX_SPARE_BLOCKS: usize = 4096;

/// Unbounded lock-free MPSC intake of jobs of type `T`, stored split by `P`.
pub struct Intake<T, P: Packing<T> = Whole> {
    tail_index: CachePadded<AtomicUsize>,
    tail_block: CachePadded<AtomicPtr<Block<P::Body>>>,
    /// Consumer side: only changed by the one consumer (the pool's lock
    /// holder); atomics so that getters may read it.
    head_index: CachePadded<AtomicUsize>,
    head_block: AtomicPtr<Block<P::Body>>,
    /// Emptied blocks for reuse (taken once per block, not per job).
    spare: Mutex<Vec<SendPtr<Block<P::Body>>>>,
    /// Jobs of type `T` go in and come out.
    jobs: PhantomData<fn(T) -> T>,
}

struct SendPtr<B>(*mut B);
// SAFETY: a spare block is owned by the list, handed to one thread at a time.
unsafe impl<B> Send for SendPtr<B> {}

// SAFETY: values move between threads through the slots (T: Send); the
// protocol above gives each slot one writer and one reader.
unsafe impl<T: Send, P: Packing<T>> Send for Intake<T, P> {}
// SAFETY: as for Send: shared use is pushes (one claimed slot each) and
// takes, which the `unsafe` take functions confine to one thread at a time.
unsafe impl<T: Send, P: Packing<T>> Sync for Intake<T, P> {}

/// The ordering that publishes a written slot to the consumer. Under loom
/// a test may weaken it to `Relaxed`, the known-bad variant the model must
/// catch (the consumer would read the slot before the write is visible).
fn publish_order() -> Ordering {
    #[cfg(loom)]
    if super::known_bad::get().relaxed_publish {
        return Ordering::Relaxed;
    }
    Ordering::Release
}

/// Number of jobs stored before position `pos`.
fn items_before(pos: usize) -> usize {
    (pos / LAP) * BLOCK_CAP + (pos % LAP).min(BLOCK_CAP)
}

impl<T, P: Packing<T>> Default for Intake<T, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, P: Packing<T>> Intake<T, P> {
    pub fn new() -> Self {
        let first = Block::alloc();
        Intake {
            tail_index: CachePadded(AtomicUsize::new(0)),
            tail_block: CachePadded(AtomicPtr::new(first)),
            head_index: CachePadded(AtomicUsize::new(0)),
            head_block: AtomicPtr::new(first),
            spare: Mutex::new(Vec::new()),
            jobs: PhantomData,
        }
    }

    /// An empty block: a spare one or a new one.
    fn new_block(&self) -> *mut Block<P::Body> {
        let spare = lock(&self.spare).pop();
        spare.map_or_else(Block::alloc, |b| b.0)
    }

    /// Keeps an emptied block for reuse, or frees it.
    ///
    /// # Safety
    /// Every slot of `block` was taken and no producer refers to it any more.
    unsafe fn recycle(&self, block: *mut Block<P::Body>) {
        // SAFETY: the caller hands the block over: nobody else uses it.
        let b = unsafe { &*block };
        b.next.store(ptr::null_mut(), Ordering::Relaxed);
        for r in b.ready.iter() {
            r.store(0, Ordering::Relaxed);
        }
        let mut spare = lock(&self.spare);
        if spare.len() < MAX_SPARE_BLOCKS {
            spare.push(SendPtr(block));
            return;
        }
        drop(spare);
        // SAFETY: as above; it came from Box::into_raw (Block::alloc).
        drop(unsafe { Box::from_raw(block) });
    }

    /// Frees spare blocks beyond `keep` (called when the consumer is idle,
    /// so a burst's memory is given back off the hot path).
    pub fn trim_spare(&self, keep: usize) {
        let extra: Vec<SendPtr<Block<P::Body>>> = {
            let mut spare = lock(&self.spare);
            if spare.len() <= keep {
                return;
            }
            spare.split_off(keep)
        };
        for b in extra {
            // SAFETY: spare blocks are owned by the list, which let go of them.
            drop(unsafe { Box::from_raw(b.0) });
        }
    }

    /// Appends `value`; gives it back when the intake is closed. (The pool
    /// splits its jobs itself and calls `push_packed`.)
    #[cfg(test)]
    pub fn push(&self, value: T) -> Result<(), T> {
        let (tag, body) = P::pack(value);
        // SAFETY: the halves of this `pack` (and given back as they were).
        unsafe { self.push_packed(tag, body) }.map_err(|(tag, body)| unsafe { P::unpack(tag, body) })
    }

    /// [`Intake::push`] of a job split by `P::pack`; gives the halves back
    /// when the intake is closed.
    // Inlined, with the claim out of line, so that a job split at the
    // caller's entry goes from registers into its slot: an enum built in
    // memory and copied with wider loads than the stores that wrote it
    // stalled the producer on store forwarding (perf, issue 14).
    ///
    /// # Safety
    /// `tag` and `body` are the two halves of one `P::pack` result (the
    /// consumer joins them with `P::unpack`).
    #[inline(always)]
    pub unsafe fn push_packed(&self, tag: NonZeroU8, body: P::Body) -> Result<(), (NonZeroU8, P::Body)> {
        let Some((block, offset)) = self.claim() else {
            return Err((tag, body));
        };
        // SAFETY: `claim` gave us slot `offset` of `block`, which lives
        // until the consumer has read that slot, which needs our ready mark
        // first.
        let b = unsafe { &*block };
        // SAFETY: the slot is ours alone until marked ready.
        b.values[offset].with_mut(|slot| unsafe { (*slot).write(body) });
        b.ready[offset].store(tag.get(), publish_order());
        Ok(())
    }

    /// Claims the next slot: its block and offset; `None` when closed.
    #[inline(never)]
    fn claim(&self) -> Option<(*const Block<P::Body>, usize)> {
        let mut next_block: *mut Block<P::Body> = ptr::null_mut();
        let mut tail = self.tail_index.0.load(Ordering::Acquire);
        let mut block = self.tail_block.0.load(Ordering::Acquire);
        let claimed = loop {
            if tail & CLOSED != 0 {
                break None;
            }
            let offset = (tail >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another producer is linking the next block.
                backoff();
                tail = self.tail_index.0.load(Ordering::Acquire);
                block = self.tail_block.0.load(Ordering::Acquire);
                continue;
            }
            if offset + 1 == BLOCK_CAP && next_block.is_null() {
                next_block = self.new_block();
            }
            let new_tail = tail + (1 << SHIFT);
            match self.tail_index.0.compare_exchange_weak(tail, new_tail, Ordering::SeqCst, Ordering::Acquire) {
                Ok(_) => {
                    if offset + 1 == BLOCK_CAP {
                        // Took the last slot: link the next block, then move
                        // the tail past the sentinel (fetch_add keeps a
                        // concurrent close mark).
                        let nb = std::mem::replace(&mut next_block, ptr::null_mut());
                        self.tail_block.0.store(nb, Ordering::Release);
                        self.tail_index.0.fetch_add(1 << SHIFT, Ordering::Release);
                        // SAFETY: the CAS gave us a slot of `block` (the tail
                        // block of the index we swapped): it lives until
                        // that slot is read, after our ready mark.
                        unsafe { &*block }.next.store(nb, Ordering::Release);
                    }
                    break Some((block as *const Block<P::Body>, offset));
                }
                Err(t) => {
                    tail = t;
                    block = self.tail_block.0.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
            }
        };
        if !next_block.is_null() {
            // SAFETY: taken above and never published.
            unsafe { self.recycle(next_block) };
        }
        claimed
    }

    /// Closes the intake: every later push fails. Idempotent.
    pub fn close(&self) {
        self.tail_index.0.fetch_or(CLOSED, Ordering::SeqCst);
    }

    /// Jobs pushed so far (accepted ones only).
    pub fn pushed(&self) -> usize {
        items_before(self.tail_index.0.load(Ordering::Acquire) >> SHIFT)
    }

    /// Jobs pushed and not yet taken (some may still be being written).
    pub fn len(&self) -> usize {
        let tail = self.tail_index.0.load(Ordering::SeqCst) >> SHIFT;
        let head = self.head_index.0.load(Ordering::Acquire) >> SHIFT;
        items_before(tail).saturating_sub(items_before(head))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the oldest job, waiting for its producer to finish writing it.
    ///
    /// # Safety
    /// Only one thread at a time may take (the pool calls this under its
    /// lock).
    pub unsafe fn pop(&self) -> Option<T> {
        let mut out = Vec::with_capacity(1);
        // SAFETY: our caller is the one consumer.
        unsafe { self.take_into(&mut out, 1) };
        out.pop()
    }

    /// Moves up to `max` of the oldest jobs into `out`; returns how many.
    /// The tail is read once: producers write it on every push, so reading
    /// it per job would cost a cache miss per job.
    ///
    /// # Safety
    /// As for [`Intake::pop`].
    pub unsafe fn take_into<E: Extend<T>>(&self, out: &mut E, max: usize) -> usize {
        let tail = self.tail_index.0.load(Ordering::Acquire) >> SHIFT;
        let mut head = self.head_index.0.load(Ordering::Relaxed) >> SHIFT;
        let mut block = self.head_block.load(Ordering::Relaxed);
        let mut n = 0;
        while head != tail && n < max {
            // SAFETY: `block` is the head block, which only the consumer
            // (us, by the caller's promise) recycles, below, once past it.
            let b = unsafe { &*block };
            let offset = head % LAP;
            if offset == BLOCK_CAP {
                // The tail moved past the sentinel: the next block exists.
                let next = b.wait_next();
                // SAFETY: every slot of `block` was taken (the head passed
                // them, each seen ready), and the producer of its last slot
                // linked `next` before marking that slot ready: no producer
                // touches it any more.
                unsafe { self.recycle(block) };
                block = next;
                head += 1;
                continue;
            }
            let tag = loop {
                match NonZeroU8::new(b.ready[offset].load(Ordering::Acquire)) {
                    Some(tag) => break tag,
                    None => backoff(),
                }
            };
            // SAFETY: the slot is ready (its write happens before: Release /
            // Acquire on `ready`) and read once, by the one consumer.
            let body = b.values[offset].with_mut(|slot| unsafe { (*slot).assume_init_read() });
            // SAFETY: the tag and the body of one `pack`, from one slot.
            out.extend(Some(unsafe { P::unpack(tag, body) }));
            head += 1;
            n += 1;
        }
        self.head_block.store(block, Ordering::Relaxed);
        self.head_index.0.store(head << SHIFT, Ordering::Release);
        n
    }
}

impl<T, P: Packing<T>> Drop for Intake<T, P> {
    fn drop(&mut self) {
        // A loom model that failed unwinds through here with the slot state
        // it reported: leave it, so the report is not lost in an abort.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        // SAFETY: &mut self: no producer or other consumer is left.
        unsafe {
            while self.pop().is_some() {}
            let block = self.head_block.load(Ordering::Relaxed);
            drop(Box::from_raw(block));
            for b in lock(&self.spare).drain(..) {
                drop(Box::from_raw(b.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Takes one job; each test's thread is the intake's only consumer.
    fn take<T: Send>(q: &Intake<T>) -> Option<T> {
        // SAFETY: one consumer (the test's own thread).
        unsafe { q.pop() }
    }

    #[test]
    fn fifo_across_blocks_and_len() {
        let q = Intake::<_>::new();
        for i in 0..1000 {
            q.push(i).unwrap();
        }
        assert_eq!(q.len(), 1000);
        assert_eq!(q.pushed(), 1000);
        for i in 0..1000 {
            assert_eq!(take(&q), Some(i));
        }
        assert_eq!(take(&q), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn close_rejects_later_pushes_and_keeps_earlier_ones() {
        let q = Intake::<_>::new();
        q.push(1).unwrap();
        q.close();
        assert_eq!(q.push(2), Err(2));
        assert_eq!(take(&q), Some(1));
        assert_eq!(take(&q), None);
        assert_eq!(q.pushed(), 1);
    }

    #[test]
    fn concurrent_producers_keep_per_producer_order_and_lose_nothing() {
        let q = Arc::new(Intake::<_>::new());
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000usize {
                        q.push((p, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0usize; 4];
        let mut got = 0;
        while got < 200_000 {
            if let Some((p, i)) = take(&q) {
                assert_eq!(i, next[p]);
                next[p] += 1;
                got += 1;
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(take(&q), None);
    }

    #[test]
    fn values_left_inside_are_dropped_once() {
        let counter = Arc::new(());
        {
            let q = Intake::<_>::new();
            for _ in 0..600 {
                q.push(counter.clone()).unwrap();
            }
            take(&q);
        }
        assert_eq!(Arc::strong_count(&counter), 1);
    }
}
