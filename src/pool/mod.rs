//! (Over 400 lines: the pool type, its shared state, stop/drain/wait and
//! the parameters; every way a job enters is `send.rs`, the worker loop
//! `worker.rs`, the intake, the FIFO, the keyed scheduler and the public
//! `Pool` (`public.rs`) are in their own files.)
//!
//! The job pool (layer 1): libvirt's `virThreadPool`, done right.
//!
//! Semantics follow libvirt: `min` workers start at once and more start on
//! demand up to `max`; `prio` extra workers run only priority jobs; ordinary
//! workers take jobs in FIFO order; `stop` refuses new jobs and lets each
//! worker exit after its current job; `drain` stops, joins and discards.
//! Where libvirt leaks, we do not: a job owns its data (`T`), so dropping
//! the job (after it ran, when it is discarded, or when a send is refused)
//! releases the data exactly once.

#[cfg(not(feature = "crossbeam-intake"))]
mod intake;
// Benchmark only: the same interface on crossbeam's SegQueue.
#[cfg(feature = "crossbeam-intake")]
#[path = "intake_crossbeam.rs"]
mod intake;
mod job_queue;
mod keyed;
mod packing;
mod public;
mod send;
#[cfg(all(test, loom))]
mod loom_model;
mod worker;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::Error;
use crate::sync::model::{lock, wait_until, AtomicBool, AtomicUsize, Condvar, Mutex, Thread};
use crate::sync::CachePadded;
use crate::tsan;
use intake::Intake;
use job_queue::JobQueue;
use worker::WorkerKind;

pub use keyed::{nde_pool_key_stats, KeyStats};
use keyed::Keyed;
pub(crate) use packing::{Packing, Whole};
pub use public::{Pool, Priority};

/// Deliberate mistakes a loom model switches on to show that the model
/// catches them (`make check-loom`). loom runs a model's threads one at a
/// time on the test's own OS thread, so a thread-local set by the test is
/// seen by every thread of that model and by no other test.
#[cfg(loom)]
pub(crate) mod known_bad {
    use std::cell::Cell;

    #[derive(Copy, Clone, Default)]
    pub(crate) struct Mutations {
        /// The intake publishes a written slot with `Relaxed`.
        pub(crate) relaxed_publish: bool,
        /// A parking worker skips its last look at the intake.
        pub(crate) sleep_without_recheck: bool,
    }

    thread_local! {
        static ON: Cell<Mutations> = Cell::new(Mutations::default());
    }

    pub(crate) fn get() -> Mutations {
        ON.with(|m| m.get())
    }

    #[cfg(test)]
    pub(crate) fn set(m: Mutations) {
        ON.with(|c| c.set(m));
    }
}

/// Counters of a pool's life, safe to read at any time.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct nde_pool_stats {
    /// Jobs accepted.
    pub submitted: u64,
    /// Jobs whose function returned (their free function has run too).
    pub completed: u64,
    /// Accepted jobs dropped, unrun, by drain or free (their free function ran).
    pub discarded: u64,
    /// Sends refused (the job's free function ran before the call returned).
    pub rejected: u64,
    /// Deepest queue seen.
    pub queue_high_water: u64,
}

/// Stats as the Rust API names them.
pub type PoolStats = nde_pool_stats;

/// Sizes of a pool, libvirt's three parameters.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Ordinary workers started at once and kept while idle.
    pub min_workers: usize,
    /// Most ordinary workers (grown on demand).
    pub max_workers: usize,
    /// Workers that run only priority jobs.
    pub prio_workers: usize,
}

/// What runs each job. It gets the job by value: dropping it frees its data.
pub type Handler<T> = Box<dyn Fn(T) + Send + Sync + 'static>;

/// Runs on a worker's own thread; the argument is true on a priority worker.
pub type WorkerHook = Box<dyn Fn(bool) + Send + Sync + 'static>;

/// Per-worker hooks: `on_start` runs on each new worker thread (at creation,
/// by growth or by `set_parameters`) before its first job, `on_stop` on it
/// after its last job, right before it exits, both outside the pool's lock.
/// Whatever the hooks own is dropped when the pool is released, after the
/// last `on_stop` returned. A panic in a hook is caught and counted in
/// `caught_panics`.
#[derive(Default)]
pub struct WorkerHooks {
    /// Runs on each new worker before its first job.
    pub on_start: Option<WorkerHook>,
    /// Runs on each worker right before it exits.
    pub on_stop: Option<WorkerHook>,
}

impl std::fmt::Debug for WorkerHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHooks").field("on_start", &self.on_start.is_some()).field("on_stop", &self.on_stop.is_some()).finish()
    }
}

struct State<T> {
    queue: JobQueue<T>,
    /// Keyed jobs and barriers (keyed.rs).
    keyed: Keyed<T>,
    /// Set once by `stop_locked`, never cleared; mirrored by
    /// `Shared::quit_hint`.
    quit: bool,
    limits: PoolLimits,
    /// Ordinary workers alive (started and not yet exited).
    workers: usize,
    /// Priority workers alive.
    prio_workers: usize,
    /// Ordinary workers not running a job (a worker being started counts).
    free_workers: usize,
    /// Ordinary / priority workers blocked on their condition variable
    /// (`sleeping` is mirrored by `Shared::sleepers`).
    sleeping: usize,
    sleeping_prio: usize,
    /// Jobs taken from the queue whose handler has not finished yet.
    running: usize,
    /// Workers that left their loop and run their stop hook (still alive
    /// for drain).
    exiting: usize,
    /// Handles of every thread started and not joined yet.
    threads: Vec<Thread>,
    /// The owner asked for release from inside a job: the last worker to
    /// exit discards the queue and detaches the threads.
    release_when_idle: bool,
    stats: PoolStats,
}

struct Shared<T, P: Packing<T>> {
    state: Mutex<State<T>>,
    /// Ordinary workers wait here for jobs.
    work_ready: Condvar,
    /// Priority workers wait here for priority jobs.
    prio_ready: Condvar,
    /// Signalled when a job finishes or a worker exits (wait_idle, drain).
    progress: Condvar,
    handler: Handler<T>,
    hooks: WorkerHooks,
    name: String,
    prio_name: String,
    /// Panics caught in handlers (the worker carries on).
    panics: AtomicUsize,
    /// Queue length as last seen under the lock, for spinning workers
    /// (written by producers, so on a cache line of its own). Invariant:
    /// only a hint that ends a spin early, so a stale value costs a spin and
    /// never a job, because the worker looks at the queue and the intake
    /// again under the lock before it sleeps; checked by the loom models
    /// `pool::loom_model::loom_model_pool_two_workers_two_senders_wait_idle`
    /// and `..._lone_worker_send_park_wait_idle` (under loom a spin makes a
    /// single pass, so every stale hint leads to the sleep path).
    queued_hint: CachePadded<AtomicUsize>,
    /// Invariant: `quit_hint == State::quit` whenever the lock is free
    /// (both are set together under the lock in `stop_locked`, never
    /// cleared), so a worker running a batch without the lock sees a stop
    /// at most one job late and gives the rest back; checked by the loom
    /// model `pool::loom_model::loom_model_pool_stop_races_a_batch_and_a_send`
    /// and by tests/pool.rs
    /// `stop_inside_a_lone_workers_batch_leaves_the_rest_queued`.
    quit_hint: CachePadded<AtomicBool>,
    /// Jobs in the lone worker's batch not started yet (for the depth getter;
    /// only a lone worker takes batches, so plain stores suffice).
    unstarted_in_batch: CachePadded<AtomicUsize>,
    /// Lock-free front door for sends; drained into `queue` under the lock.
    intake: Intake<T, P>,
    /// True while sends may use the intake: no priority workers and no
    /// worker left to start (growth needs the lock).
    fast_path: CachePadded<AtomicBool>,
    /// Ordinary workers asleep, for the fast path's wake-up check.
    /// Invariant: `sleepers == State::sleeping` whenever the lock is free,
    /// and inside `sleep` it is raised (then a SeqCst fence) before the
    /// sleeper's last look at the intake, the pair of `send`'s push, fence,
    /// load, so a send either is seen or sees the sleeper; checked by the
    /// loom model `pool::loom_model::loom_model_pool_lone_worker_send_park_wait_idle`,
    /// whose known-bad twin (`..._known_bad_sleep_without_recheck_is_caught`)
    /// loom reports as a deadlock.
    sleepers: CachePadded<AtomicUsize>,
    /// A wake-up was sent and the woken worker has not run yet: waking it
    /// again would only cost another system call per send.
    wake_pending: CachePadded<AtomicBool>,
}

/// A pool of worker threads running jobs of type `T`, split for the
/// intake by `P` (the crate's own type; Rust users see [`Pool`]).
pub(crate) struct JobPool<T: Send + 'static, P: Packing<T> = Whole> {
    shared: Arc<Shared<T, P>>,
}

impl<T> State<T> {
    /// Workers whose thread has not finished its work yet.
    fn alive(&self) -> usize {
        self.workers + self.prio_workers + self.exiting
    }
}

impl<T: Send + 'static> JobPool<T> {
    /// [`Pool::new`] with per-worker hooks (see [`WorkerHooks`]). On error
    /// every worker that started has run both hooks and exited, and the
    /// hooks are dropped, before this returns.
    pub fn with_hooks(limits: PoolLimits, name: &str, handler: Handler<T>, hooks: WorkerHooks) -> Result<JobPool<T>, Error> {
        Self::with_packing(limits, name, handler, hooks)
    }
}

impl<T: Send + 'static, P: Packing<T>> JobPool<T, P> {
    /// [`Pool::with_hooks`] for a pool whose intake stores each job split
    /// by `P` (see [`Packing`]).
    pub(crate) fn with_packing(limits: PoolLimits, name: &str, handler: Handler<T>, hooks: WorkerHooks) -> Result<JobPool<T, P>, Error> {
        if limits.max_workers == 0 {
            return Err(Error::InvalidArgument);
        }
        let limits = PoolLimits {
            min_workers: limits.min_workers.min(limits.max_workers),
            ..limits
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: JobQueue::new(),
                keyed: Keyed::new(),
                quit: false,
                limits,
                workers: 0,
                prio_workers: 0,
                free_workers: 0,
                sleeping: 0,
                sleeping_prio: 0,
                running: 0,
                exiting: 0,
                threads: Vec::new(),
                release_when_idle: false,
                stats: PoolStats::default(),
            }),
            work_ready: Condvar::new(),
            prio_ready: Condvar::new(),
            progress: Condvar::new(),
            handler,
            hooks,
            name: name.to_owned(),
            prio_name: format!("prio-{name}"),
            panics: AtomicUsize::new(0),
            queued_hint: CachePadded(AtomicUsize::new(0)),
            quit_hint: CachePadded(AtomicBool::new(false)),
            unstarted_in_batch: CachePadded(AtomicUsize::new(0)),
            intake: Intake::new(),
            fast_path: CachePadded(AtomicBool::new(false)),
            sleepers: CachePadded(AtomicUsize::new(0)),
            wake_pending: CachePadded(AtomicBool::new(false)),
        });
        let pool = JobPool { shared };
        {
            let mut st = lock(&pool.shared.state);
            for _ in 0..limits.min_workers {
                Shared::start_worker(&pool.shared, &mut st, WorkerKind::Ordinary)?;
            }
            for _ in 0..limits.prio_workers {
                Shared::start_worker(&pool.shared, &mut st, WorkerKind::Priority)?;
            }
            pool.shared.update_fast_path(&st);
        }
        // On error above, dropping `pool` drains and joins what started.
        Ok(pool)
    }

    /// Refuses new jobs; each worker exits after its current job. Queued jobs
    /// stay queued until `drain` or drop. Never blocks.
    pub fn stop(&self) {
        let mut st = lock(&self.shared.state);
        self.shared.stop_locked(&mut st);
    }

    /// Stops, joins every worker and discards the queued jobs (dropping them
    /// frees their data). [`Error::WouldDeadlock`] from one of its workers.
    pub fn drain(&self) -> Result<(), Error> {
        self.drain_timeout(None)
    }

    /// `drain`, waiting at most `timeout` (`None`: for ever) for the running
    /// jobs to return. On [`Error::Timeout`] the pool is stopped, nothing was
    /// discarded, and the call can be made again.
    pub fn drain_timeout(&self, timeout: Option<std::time::Duration>) -> Result<(), Error> {
        if self.on_worker() {
            return Err(Error::WouldDeadlock);
        }
        let deadline = crate::timeout::deadline(timeout);
        let shared = &self.shared;
        let (threads, jobs) = {
            let mut st = lock(&shared.state);
            shared.stop_locked(&mut st);
            while st.alive() > 0 {
                let (g, timed_out) = wait_until(&shared.progress, st, deadline);
                st = g;
                if timed_out && st.alive() > 0 {
                    tsan::acquire(shared.sync_addr());
                    return Err(Error::Timeout);
                }
            }
            shared.absorb_intake(&mut st);
            let mut jobs = st.queue.take_all();
            jobs.extend(st.keyed.take_all());
            st.stats.discarded += jobs.len() as u64;
            (std::mem::take(&mut st.threads), jobs)
        };
        for t in threads {
            t.join();
        }
        // The jobs that ran, and the senders of the discarded ones, happen
        // before their release here and before drain returns.
        tsan::acquire(shared.sync_addr());
        drop(jobs);
        Ok(())
    }

    /// Waits until the queue is empty and every accepted job (and its free
    /// function) has finished. `timeout` `None` waits for ever.
    pub fn wait_idle(&self, timeout: Option<std::time::Duration>) -> Result<(), Error> {
        if self.on_worker() {
            return Err(Error::WouldDeadlock);
        }
        let deadline = crate::timeout::deadline(timeout);
        let intake = &self.shared.intake;
        let mut st = lock(&self.shared.state);
        let result = loop {
            let queued = !st.queue.is_empty() || !intake.is_empty() || !st.keyed.is_empty();
            if !queued && st.running == 0 {
                break Ok(());
            }
            if st.quit && queued && st.running == 0 {
                break Err(Error::Stopped);
            }
            let (g, timed_out) = wait_until(&self.shared.progress, st, deadline);
            st = g;
            if timed_out {
                break Err(Error::Timeout);
            }
        };
        // Every job that finished happens before wait_idle returns.
        tsan::acquire(self.shared.sync_addr());
        result
    }

    /// libvirt's `virThreadPoolSetParameters`: a negative value keeps the
    /// current one.
    pub fn set_parameters(&self, min: i64, max: i64, prio: i64) -> Result<(), Error> {
        let shared = &self.shared;
        let mut st = lock(&shared.state);
        if st.quit {
            return Err(Error::Stopped);
        }
        let pick = |v: i64, cur: usize| if v < 0 { cur } else { v as usize };
        let new = PoolLimits {
            min_workers: pick(min, st.limits.min_workers),
            max_workers: pick(max, st.limits.max_workers),
            prio_workers: pick(prio, st.limits.prio_workers),
        };
        if new.max_workers == 0 || new.min_workers > new.max_workers {
            return Err(Error::InvalidArgument);
        }
        st.limits = new;
        shared.update_fast_path(&st);
        // Surplus workers notice the new limits when they next look for work.
        shared.work_ready.notify_all();
        shared.prio_ready.notify_all();
        while st.workers < new.min_workers {
            Shared::start_worker(shared, &mut st, WorkerKind::Ordinary)?;
        }
        while st.prio_workers < new.prio_workers {
            Shared::start_worker(shared, &mut st, WorkerKind::Priority)?;
        }
        shared.update_fast_path(&st);
        Ok(())
    }

    /// The configured limits.
    pub fn limits(&self) -> PoolLimits {
        lock(&self.shared.state).limits
    }

    /// Ordinary workers alive now.
    pub fn current_workers(&self) -> usize {
        lock(&self.shared.state).workers
    }

    /// Priority workers alive now (libvirt's meaning of the getter).
    pub fn current_prio_workers(&self) -> usize {
        lock(&self.shared.state).prio_workers
    }

    /// Ordinary workers not running a job.
    pub fn free_workers(&self) -> usize {
        lock(&self.shared.state).free_workers
    }

    /// Jobs queued and not yet started.
    pub fn queue_depth(&self) -> usize {
        let mut st = lock(&self.shared.state);
        self.shared.depth_seen(&mut st)
    }

    /// The pool's counters; `queue_high_water` is never below a depth that
    /// `queue_depth` (or this call) has seen.
    pub fn stats(&self) -> PoolStats {
        let mut st = lock(&self.shared.state);
        self.shared.depth_seen(&mut st);
        let mut stats = st.stats;
        stats.submitted += self.shared.intake.pushed() as u64;
        stats
    }

    /// Panics caught inside job handlers and worker hooks.
    pub fn caught_panics(&self) -> usize {
        self.shared.panics.load(Ordering::Relaxed)
    }

    /// True when `stop` (or drain) has been called.
    pub fn is_stopped(&self) -> bool {
        lock(&self.shared.state).quit
    }

    /// Tells ThreadSanitizer (when the host runs under it) that what this
    /// thread did so far happens before the jobs that run from now on: for
    /// work that reaches the pool through another thread (a timer).
    pub fn announce_handoff(&self) {
        tsan::release(self.shared.sync_addr());
    }

    /// True when called from one of this pool's workers.
    pub fn on_worker(&self) -> bool {
        worker::current_pool() == self.shared.id()
    }
}

impl<T: Send + 'static, P: Packing<T>> Drop for JobPool<T, P> {
    /// Drains and releases. From inside one of its own jobs it cannot join
    /// itself: the last worker to exit finishes the release instead.
    fn drop(&mut self) {
        // A loom model that failed (a deadlock) unwinds through here with
        // no thread left to run: leave the pool, so the report is not lost
        // in an abort.
        #[cfg(loom)]
        if std::thread::panicking() {
            return;
        }
        if self.on_worker() {
            let mut st = lock(&self.shared.state);
            self.shared.stop_locked(&mut st);
            st.release_when_idle = true;
            return;
        }
        let _ = self.drain();
    }
}

impl<T: Send + 'static, P: Packing<T>> Shared<T, P> {
    /// Wakes a sleeping ordinary worker (the fast path's rare case).
    #[cold]
    #[inline(never)]
    fn wake_one(&self) {
        let _st = lock(&self.state);
        self.work_ready.notify_one();
    }

    fn id(&self) -> usize {
        self as *const Self as usize
    }

    /// The address the pool's ThreadSanitizer annotations synchronise on.
    fn sync_addr(&self) -> *const () {
        self as *const Self as *const ()
    }

    fn stop_locked(&self, st: &mut State<T>) {
        if !st.quit {
            st.quit = true;
            self.quit_hint.store(true, Ordering::Release);
            self.intake.close();
            self.fast_path.store(false, Ordering::Release);
            self.work_ready.notify_all();
            self.prio_ready.notify_all();
            self.progress.notify_all();
        }
    }

    /// Sends may skip the lock only when nothing but queueing is needed: no
    /// priority workers to consider and no worker left to start.
    fn update_fast_path(&self, st: &State<T>) {
        let fast = !st.quit
            && !st.keyed.holds_new_jobs()
            && st.limits.prio_workers == 0
            && st.prio_workers == 0
            && st.workers >= st.limits.max_workers;
        self.fast_path.store(fast, Ordering::Release);
    }

    /// The current depth (queue, intake, the lone worker's unstarted batch),
    /// recorded in the high-water mark so that the mark is never below a
    /// depth a getter reported.
    fn depth_seen(&self, st: &mut State<T>) -> usize {
        let depth = st.queue.len()
            + st.keyed.queued()
            + self.intake.len()
            + self.unstarted_in_batch.load(Ordering::Relaxed);
        st.stats.queue_high_water = st.stats.queue_high_water.max(depth as u64);
        depth
    }

    /// Moves every job of the intake into the queue, in order.
    fn absorb_intake(&self, st: &mut State<T>) {
        // SAFETY: we hold the state lock, so we are the only consumer.
        while let Some(job) = unsafe { self.intake.pop() } {
            if st.keyed.barrier_started() {
                // Pushed after the barrier's start found the intake empty.
                st.keyed.hold_raced(job);
            } else {
                st.queue.push(job, 0);
            }
        }
        let depth = st.queue.len() as u64;
        st.stats.queue_high_water = st.stats.queue_high_water.max(depth);
    }
}
