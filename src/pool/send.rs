//! Every way a job enters the pool: [`JobPool::send`] (the lock-free
//! intake when it may, else under the lock), [`JobPool::send_keyed`] and
//! [`JobPool::send_barrier`], and what they share: refusing after stop,
//! growing the pool, waking a worker. The scheduler that decides when a
//! keyed job or a barrier may start is `keyed.rs`.

use std::num::NonZeroU8;
use std::sync::atomic::Ordering;

use super::worker::WorkerKind;
use super::{JobPool, KeyStats, Packing, Shared, State};
use crate::error::Error;
use crate::sync::model::{fence, lock};
use crate::tsan;

impl<T: Send + 'static, P: Packing<T>> JobPool<T, P> {
    /// Queues `job`. On failure the job is handed back so the caller decides
    /// (the C layer drops it, which frees its data before returning).
    // Inlined, and the job split by `P` first: the halves travel in
    // registers to the intake slot (see `Intake::push_packed`).
    #[inline(always)]
    pub fn send(&self, priority: u32, job: T) -> Result<(), (Error, T)> {
        let (tag, body) = P::pack(job);
        // SAFETY: the halves of this `pack`.
        unsafe { self.send_packed(priority, tag, body) }
    }

    /// [`Pool::send`] of a job the caller split with `P` (the events layer
    /// splits at its entry, so no enum is built in memory on the way).
    ///
    /// # Safety
    /// `tag` and `body` are the two halves of one `P::pack` result.
    #[inline(always)]
    pub(crate) unsafe fn send_packed(&self, priority: u32, tag: NonZeroU8, body: P::Body) -> Result<(), (Error, T)> {
        let shared = &self.shared;
        // Everything the sender did happens before the job runs.
        tsan::release(shared.sync_addr());
        if !shared.fast_path.load(Ordering::Acquire) {
            // SAFETY: the caller's promise.
            return self.send_locked(priority, unsafe { P::unpack(tag, body) });
        }
        // SAFETY: the caller's promise.
        match unsafe { shared.intake.push_packed(tag, body) } {
            Ok(()) => {
                // Paired with the fence in `sleep` (store-buffering:
                // push, fence, look for sleepers / announce, fence, look
                // at the intake): either the worker sees the job or we
                // see the worker. A fence, not SeqCst accesses alone,
                // because loom models fences exactly.
                fence(Ordering::SeqCst);
                if shared.sleepers.load(Ordering::SeqCst) > 0 && !shared.wake_pending.swap(true, Ordering::SeqCst) {
                    shared.wake_one();
                }
                Ok(())
            }
            // Closed by stop: the locked path reports it.
            // SAFETY: the caller's promise; given back as they were.
            Err((tag, body)) => self.send_locked(priority, unsafe { P::unpack(tag, body) }),
        }
    }

    /// `send` under the pool's lock: when the intake is closed or not in
    /// use (priority workers, growth, keyed jobs, barriers).
    #[inline(never)]
    fn send_locked(&self, priority: u32, job: T) -> Result<(), (Error, T)> {
        let shared = &self.shared;
        let mut st = lock(&shared.state);
        if st.quit {
            st.stats.rejected += 1;
            return Err((Error::Stopped, job));
        }
        // Jobs that came through the intake were accepted earlier.
        shared.absorb_intake(&mut st);
        if st.keyed.holds_new_jobs() {
            // Sent after a pending barrier: held until it has run.
            st.keyed.hold_unkeyed(priority, job);
            st.stats.submitted += 1;
            return Ok(());
        }
        st.queue.push(job, priority);
        let depth = st.queue.len();
        // Grow while queued jobs outnumber idle workers.
        if depth > st.free_workers && st.workers < st.limits.max_workers {
            if let Err(e) = Shared::start_worker(shared, &mut st, WorkerKind::Ordinary) {
                if st.workers == 0 {
                    // Nobody would ever run it: refuse it. It is the newest,
                    // so taking it back from the tail is exact.
                    let job = st.queue.take_newest(priority).expect("job just pushed");
                    st.stats.rejected += 1;
                    return Err((e, job));
                }
            }
        }
        st.stats.submitted += 1;
        let depth = st.queue.len();
        st.stats.queue_high_water = st.stats.queue_high_water.max(depth as u64);
        if depth == 1 {
            // Only the empty -> non-empty change matters to a spinning
            // worker; writing on every send would bounce the cache line.
            shared.queued_hint.store(1, Ordering::Relaxed);
        }
        if st.sleeping > 0 && !shared.wake_pending.swap(true, Ordering::SeqCst) {
            shared.work_ready.notify_one();
        }
        if priority != 0 && st.sleeping_prio > 0 {
            shared.prio_ready.notify_one();
        }
        Ok(())
    }

    /// Queues `job` under `key`. Jobs with the same non-zero key run one at
    /// a time in the order sent; jobs of different keys may run at the same
    /// time; a job whose key is busy waits outside the queue, holding no
    /// worker. Ready jobs, keyed or not, start in the order sent. Key 0 is
    /// [`Pool::send`]. On failure the job is handed back, as with `send`.
    pub fn send_keyed(&self, key: u64, priority: u32, job: T) -> Result<(), (Error, T)> {
        if key == 0 {
            return self.send(priority, job);
        }
        let shared = &self.shared;
        tsan::release(shared.sync_addr());
        let mut st = lock(&shared.state);
        let ready = st.keyed.ready() + 1;
        if let Err(e) = shared.admit(&mut st, ready) {
            return Err((e, job));
        }
        shared.absorb_intake(&mut st);
        let ready_before = st.keyed.ready();
        let unkeyed_before = st.queue.mark();
        st.keyed.push_keyed(key, priority, job, unkeyed_before);
        st.stats.submitted += 1;
        shared.depth_seen(&mut st);
        if st.keyed.ready() > ready_before {
            shared.wake_for_ready(&mut st, priority != 0);
        }
        Ok(())
    }

    /// Queues a barrier: `job` runs alone, after every job sent before it
    /// has finished and before any job sent after it starts (keyed or not,
    /// later barriers included). It runs on an ordinary worker. On failure
    /// the job is handed back, as with `send`.
    pub fn send_barrier(&self, job: T) -> Result<(), (Error, T)> {
        let shared = &self.shared;
        tsan::release(shared.sync_addr());
        let mut st = lock(&shared.state);
        if let Err(e) = shared.admit(&mut st, 1) {
            return Err((e, job));
        }
        shared.absorb_intake(&mut st);
        st.keyed.push_barrier(job);
        st.stats.submitted += 1;
        // Later sends must see the barrier: no lock-free path while it waits.
        shared.update_fast_path(&st);
        shared.depth_seen(&mut st);
        shared.start_barrier_if_idle(&mut st);
        Ok(())
    }

    /// Counters of key and barrier contention.
    pub fn key_stats(&self) -> KeyStats {
        lock(&self.shared.state).keyed.stats()
    }
}

impl<T: Send + 'static, P: Packing<T>> Shared<T, P> {
    /// Refuses a send after stop; otherwise starts a worker when `ready`
    /// more jobs outnumber the idle ones, as `send` does. Fails only when no
    /// worker exists and none could start (nobody would run the job).
    fn admit(self: &std::sync::Arc<Self>, st: &mut State<T>, ready: usize) -> Result<(), Error> {
        if st.quit {
            st.stats.rejected += 1;
            return Err(Error::Stopped);
        }
        if st.queue.len() + ready > st.free_workers && st.workers < st.limits.max_workers {
            if let Err(e) = Shared::start_worker(self, st, WorkerKind::Ordinary) {
                if st.workers == 0 {
                    st.stats.rejected += 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// A keyed job or a barrier became ready: wake a worker for it.
    pub(super) fn wake_for_ready(&self, st: &mut State<T>, priority: bool) {
        self.queued_hint.store(1, Ordering::Relaxed);
        if st.sleeping > 0 && !self.wake_pending.swap(true, Ordering::SeqCst) {
            self.work_ready.notify_one();
        }
        if priority && st.sleeping_prio > 0 {
            self.prio_ready.notify_one();
        }
    }

    /// Lets the oldest barrier start once nothing sent before it is queued
    /// or running.
    pub(super) fn start_barrier_if_idle(&self, st: &mut State<T>) {
        let idle = st.running == 0 && st.queue.is_empty() && self.intake.is_empty();
        if st.keyed.barrier_may_start(idle) {
            self.wake_for_ready(st, false);
        }
    }
}
