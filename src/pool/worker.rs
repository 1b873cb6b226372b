//! A pool worker's life: take jobs (a batch when it is the lone worker),
//! run them outside the lock, spin briefly, then park until woken.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::keyed::Finished;
use super::{Packing, Shared, State, WorkerHook};
use crate::error::Error;
use crate::sync::model::{self, fence, keep_spinning, lock, wait, MutexGuard, Thread};
use crate::tsan;

#[cfg(not(loom))]
thread_local! {
    // The pool whose worker this thread is (0 on every other thread). A
    // const-initialised Cell<usize> registers no TLS destructor.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}
// loom's threads share one OS thread: they need loom's thread-locals.
#[cfg(loom)]
loom::thread_local! {
    static CURRENT_POOL: Cell<usize> = Cell::new(0);
}

/// The pool whose worker the calling thread is (0 on other threads).
pub(super) fn current_pool() -> usize {
    CURRENT_POOL.with(|c| c.get())
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum WorkerKind {
    Ordinary,
    Priority,
}

/// The known-bad variant of `sleep` (loom only): park without the last
/// look at the intake, which loses the wake-up of a send that pushed
/// before the sleeper was announced.
fn skip_recheck() -> bool {
    #[cfg(loom)]
    return super::known_bad::get().sleep_without_recheck;
    #[cfg(not(loom))]
    false
}

/// Most jobs a worker takes from the queue at once.
const MAX_BATCH: usize = 1024;
/// Intake blocks an idle pool keeps for the next burst (~70 KiB).
const IDLE_SPARE_BLOCKS: usize = 16;
/// Looks at the hints per check of the clock (one under loom: each look is
/// a step of the model).
const SPIN_CHECKS: usize = if cfg!(loom) { 1 } else { 64 };
/// How long an idle worker waits for more work before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);

impl<T: Send + 'static, P: Packing<T>> Shared<T, P> {
    pub(super) fn start_worker(this: &Arc<Self>, st: &mut State<T>, kind: WorkerKind) -> Result<(), Error> {
        let shared = Arc::clone(this);
        let name = match kind {
            WorkerKind::Ordinary => &this.name,
            WorkerKind::Priority => &this.prio_name,
        };
        let t = model::spawn(name, move || shared.worker_loop(kind))?;
        st.threads.push(t);
        match kind {
            WorkerKind::Ordinary => {
                st.workers += 1;
                st.free_workers += 1;
            }
            WorkerKind::Priority => st.prio_workers += 1,
        }
        this.update_fast_path(st);
        Ok(())
    }

    fn worker_loop(self: Arc<Self>, kind: WorkerKind) {
        CURRENT_POOL.with(|c| c.set(self.id()));
        self.run_hook(&self.hooks.on_start, kind);
        let ordinary = kind == WorkerKind::Ordinary;
        // Jobs taken from the queue under one lock and run without it.
        let mut batch: VecDeque<T> = VecDeque::new();
        // Set when the job taken came from the keyed scheduler.
        let mut finished: Option<Finished> = None;
        let mut spun = false;
        let mut st = lock(&self.state);
        loop {
            if st.quit || self.surplus(&st, kind) {
                break;
            }
            // A lone ordinary worker takes a batch: the order is the same,
            // and the lock is taken once per batch instead of once per job.
            let depth = (st.queue.len() + self.intake.len()) as u64;
            st.stats.queue_high_water = st.stats.queue_high_water.max(depth);
            let lone = st.limits.max_workers == 1 && st.workers == 1 && st.prio_workers == 0;
            if ordinary && lone && st.keyed.is_empty() {
                if st.queue.is_empty() {
                    // SAFETY: we hold the state lock: the only consumer.
                    let n = unsafe { self.intake.take_into(&mut batch, MAX_BATCH) };
                    // Counted, so that a stop mid-batch can give back the rest.
                    st.queue.count_taken_from_intake(n);
                } else {
                    self.absorb_intake(&mut st);
                    st.queue.take_ordinary_batch(&mut batch, MAX_BATCH);
                }
            }
            if batch.is_empty() {
                self.absorb_intake(&mut st);
                let State { keyed, queue, .. } = &mut *st;
                let taken = if ordinary {
                    keyed.take_ordinary(queue)
                } else {
                    keyed.take_priority(queue)
                };
                if let Some((job, from_keyed)) = taken {
                    batch.push_back(job);
                    finished = from_keyed;
                }
            }
            if batch.is_empty() {
                if spun {
                    spun = false;
                    st = self.sleep(st, ordinary);
                } else {
                    // In a burst the next job is usually a moment away:
                    // waiting briefly is far cheaper than sleeping and
                    // being woken by a system call.
                    spun = true;
                    drop(st);
                    // Idle: give back the memory of a past burst.
                    self.intake.trim_spare(IDLE_SPARE_BLOCKS);
                    self.spin_for_work();
                    st = lock(&self.state);
                }
                continue;
            }
            spun = false;
            let more = st.queue.len() + st.keyed.ready();
            self.queued_hint.store(more, Ordering::Relaxed);
            if st.sleeping > 0 && more > 0 && !self.wake_pending.swap(true, Ordering::SeqCst) {
                // More work than this worker takes: pass the wake-up on.
                self.work_ready.notify_one();
            }
            let taken = batch.len();
            if ordinary {
                st.free_workers -= 1;
            }
            st.running += taken;
            drop(st);
            let ran = self.run_batch(&mut batch);
            st = lock(&self.state);
            if !batch.is_empty() {
                // Stopped mid-batch: the rest stays queued, as libvirt's
                // workers leave queued jobs for drain.
                st.queue.return_ordinary_batch(&mut batch);
            }
            if taken > 1 {
                self.unstarted_in_batch.store(0, Ordering::Relaxed);
            }
            let mut released = false;
            if let Some(f) = finished.take() {
                let State { keyed, queue, .. } = &mut *st;
                keyed.finish(f, queue);
                if f == Finished::Barrier {
                    self.update_fast_path(&st);
                    released = true;
                }
            }
            st.running -= taken;
            st.stats.completed += ran as u64;
            self.start_barrier_if_idle(&mut st);
            if ordinary {
                st.free_workers += 1;
            }
            if released {
                Shared::after_barrier(&self, &mut st);
            }
            if st.queue.is_empty() && self.intake.is_empty() && st.keyed.is_empty() {
                st.queue.shrink_if_empty();
                if st.running == 0 {
                    self.progress.notify_all();
                }
            }
        }
        if ordinary {
            st.workers -= 1;
            st.free_workers -= 1;
        } else {
            st.prio_workers -= 1;
        }
        self.update_fast_path(&st);
        if self.hooks.on_stop.is_some() {
            // Counted as alive until its hook returned: drain waits for it.
            st.exiting += 1;
            drop(st);
            self.run_hook(&self.hooks.on_stop, kind);
            st = lock(&self.state);
            st.exiting -= 1;
        }
        let last = st.alive() == 0;
        if last && st.release_when_idle {
            // The owner released the pool from inside a job: nobody is left
            // to join, so finish the release here.
            self.absorb_intake(&mut st);
            let mut jobs = st.queue.take_all();
            jobs.extend(st.keyed.take_all());
            st.stats.discarded += jobs.len() as u64;
            let threads = std::mem::take(&mut st.threads);
            drop(st);
            tsan::acquire(self.sync_addr());
            drop(jobs);
            threads.into_iter().for_each(Thread::detach);
        } else {
            self.progress.notify_all();
        }
        CURRENT_POOL.with(|c| c.set(0));
    }

    /// A barrier finished and released the jobs it held: grow and wake for
    /// them as their sends would have (a held send starts no worker and
    /// wakes none), and wake the priority workers, since some may be
    /// priority jobs.
    fn after_barrier(this: &Arc<Self>, st: &mut State<T>) {
        while !st.quit
            && st.queue.len() + st.keyed.ready() > st.free_workers
            && st.workers < st.limits.max_workers
            && Shared::start_worker(this, st, WorkerKind::Ordinary).is_ok()
        {}
        if st.queue.len() + st.keyed.ready() > 0 {
            this.wake_for_ready(st, false);
        }
        if st.sleeping_prio > 0 {
            this.prio_ready.notify_all();
        }
    }

    /// Runs the jobs of `batch` in order; stops early (leaving the rest in
    /// `batch`) once the pool is stopped. Returns how many ran.
    fn run_batch(&self, batch: &mut VecDeque<T>) -> usize {
        let mut ran = 0;
        let counted = batch.len() > 1;
        // Every job of the batch was sent before it was taken: one acquire
        // covers them all, and one release after the batch comes before
        // `running` drops (what wait_idle and drain look at).
        tsan::acquire(self.sync_addr());
        while let Some(job) = batch.pop_front() {
            if counted {
                self.unstarted_in_batch.store(batch.len(), Ordering::Relaxed);
            }
            let handler = &self.handler;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(job))).is_err() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
            ran += 1;
            if !batch.is_empty() && self.quit_hint.load(Ordering::Acquire) {
                break;
            }
        }
        tsan::release(self.sync_addr());
        ran
    }

    /// Spins a few microseconds waiting for a job (or a stop), then returns.
    fn spin_for_work(&self) {
        let start = Instant::now();
        loop {
            for _ in 0..SPIN_CHECKS {
                if self.queued_hint.load(Ordering::Relaxed) > 0
                    || self.quit_hint.load(Ordering::Relaxed)
                    || !self.intake.is_empty()
                {
                    return;
                }
                std::hint::spin_loop();
            }
            if !keep_spinning(start, SPIN_BEFORE_SLEEP) {
                return;
            }
        }
    }

    /// Runs a worker hook on this worker's thread, outside the lock.
    fn run_hook(&self, hook: &Option<WorkerHook>, kind: WorkerKind) {
        if let Some(hook) = hook {
            let priority = kind == WorkerKind::Priority;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(priority))).is_err() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// True when this worker should exit because the pool shrank.
    fn surplus(&self, st: &State<T>, kind: WorkerKind) -> bool {
        match kind {
            WorkerKind::Ordinary => st.workers > st.limits.max_workers,
            WorkerKind::Priority => st.prio_workers > st.limits.prio_workers,
        }
    }

    fn sleep<'a>(
        &self,
        mut st: MutexGuard<'a, State<T>>,
        ordinary: bool,
    ) -> MutexGuard<'a, State<T>> {
        if ordinary {
            st.sleeping += 1;
            // Paired with the fence in `send`'s fast path: announce the
            // sleep, fence, then look at the intake once more.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // Any wake-up sent before this point was for an earlier sleep.
            self.wake_pending.store(false, Ordering::SeqCst);
            if self.intake.is_empty() || skip_recheck() {
                st = wait(&self.work_ready, st);
                // Awake: the next send or a busy worker may wake another.
                self.wake_pending.store(false, Ordering::SeqCst);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            st.sleeping -= 1;
        } else {
            st.sleeping_prio += 1;
            st = wait(&self.prio_ready, st);
            st.sleeping_prio -= 1;
        }
        st
    }
}
