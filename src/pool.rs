//! The job pool (layer 1): libvirt's `virThreadPool`, done right.
//!
//! Semantics follow libvirt: `min` workers start at once and more start on
//! demand up to `max`; `prio` extra workers run only priority jobs; ordinary
//! workers take jobs in FIFO order; `stop` refuses new jobs and lets each
//! worker exit after its current job; `drain` stops, joins and discards.
//! Where libvirt leaks, we do not: a job owns its data (`T`), so dropping
//! the job (after it ran, when it is discarded, or when a send is refused)
//! releases the data exactly once.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::intake::Intake;
use crate::job_queue::JobQueue;
use crate::result::{nde_result, Error};
use crate::thread::{self, Thread};

/// Counters of a pool's life, safe to read at any time.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
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
    pub min_workers: usize,
    pub max_workers: usize,
    pub prio_workers: usize,
}

/// What runs each job. It gets the job by value: dropping it frees its data.
pub type Handler<T> = Box<dyn Fn(T) + Send + Sync + 'static>;

thread_local! {
    // The pool whose worker this thread is (0 on every other thread). A
    // const-initialised Cell<usize> registers no TLS destructor.
    static CURRENT_POOL: Cell<usize> = const { Cell::new(0) };
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum WorkerKind {
    Ordinary,
    Priority,
}

struct State<T> {
    queue: JobQueue<T>,
    quit: bool,
    limits: PoolLimits,
    /// Ordinary workers alive (started and not yet exited).
    workers: usize,
    /// Priority workers alive.
    prio_workers: usize,
    /// Ordinary workers not running a job (a worker being started counts).
    free_workers: usize,
    /// Ordinary / priority workers blocked on their condition variable.
    sleeping: usize,
    sleeping_prio: usize,
    /// Jobs taken from the queue whose handler has not finished yet.
    running: usize,
    /// Handles of every thread started and not joined yet.
    threads: Vec<Thread>,
    /// The owner asked for release from inside a job: the last worker to
    /// exit discards the queue and detaches the threads.
    release_when_idle: bool,
    stats: PoolStats,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Ordinary workers wait here for jobs.
    work_ready: Condvar,
    /// Priority workers wait here for priority jobs.
    prio_ready: Condvar,
    /// Signalled when a job finishes or a worker exits (wait_idle, drain).
    progress: Condvar,
    handler: Handler<T>,
    name: String,
    prio_name: String,
    /// Panics caught in handlers (the worker carries on).
    panics: AtomicUsize,
    /// Queue length as last seen under the lock, for spinning workers.
    /// Written by producers, so kept on a cache line of its own.
    queued_hint: CachePadded<AtomicUsize>,
    /// Mirrors `State::quit` for workers running a batch without the lock.
    quit_hint: CachePadded<AtomicBool>,
    /// Jobs in the lone worker's batch not started yet (for the depth getter;
    /// only a lone worker takes batches, so plain stores suffice).
    unstarted_in_batch: CachePadded<AtomicUsize>,
    /// Lock-free front door for sends; drained into `queue` under the lock.
    intake: Intake<T>,
    /// True while sends may use the intake: no priority workers and no
    /// worker left to start (growth needs the lock).
    fast_path: CachePadded<AtomicBool>,
    /// Ordinary workers asleep (mirror of `State::sleeping` for the fast
    /// path's wake-up check).
    sleepers: CachePadded<AtomicUsize>,
    /// A wake-up was sent and the woken worker has not run yet: waking it
    /// again would only cost another system call per send.
    wake_pending: CachePadded<AtomicBool>,
}

/// Keeps a hot atomic away from the fields other threads write.
#[repr(align(64))]
struct CachePadded<T>(T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Hand-off annotations for ThreadSanitizer.
///
/// The library is not instrumented, and its locks are futexes and atomics
/// that TSan cannot see, so a C host built with `-fsanitize=thread` would
/// see every hand-off (data written before a send and read by the job,
/// results written by a job and read after `wait_idle`) as a race. When the
/// host runs under TSan (`__tsan_acquire` / `__tsan_release` resolve in the
/// process), the pool and the callback registry announce their real
/// happens-before edges; otherwise each call is one relaxed load and a
/// branch.
pub(crate) mod tsan {
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Annotate = unsafe extern "C" fn(addr: *mut libc::c_void);

    /// 0: not looked up yet; 1: absent; anything else: the function.
    static ACQUIRE: AtomicUsize = AtomicUsize::new(0);
    static RELEASE: AtomicUsize = AtomicUsize::new(0);

    #[cold]
    fn resolve(slot: &AtomicUsize, name: &std::ffi::CStr) -> usize {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches
        // the process's global scope, where a TSan runtime would be.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) } as usize;
        let v = if f == 0 { 1 } else { f };
        slot.store(v, Ordering::Relaxed);
        v
    }

    #[inline]
    fn call(slot: &AtomicUsize, name: &std::ffi::CStr, addr: *const ()) {
        let mut f = slot.load(Ordering::Relaxed);
        if f == 1 {
            return;
        }
        if f == 0 {
            f = resolve(slot, name);
            if f == 1 {
                return;
            }
        }
        // SAFETY: `f` is the TSan runtime's annotation function, which takes
        // any address and only records a synchronisation event on it.
        unsafe { std::mem::transmute::<usize, Annotate>(f)(addr as *mut libc::c_void) };
    }

    /// What happened before on this thread happens before whatever follows
    /// an `acquire` of `addr` on another thread.
    #[inline]
    pub(crate) fn release(addr: *const ()) {
        call(&RELEASE, c"__tsan_release", addr);
    }

    /// See [`release`].
    #[inline]
    pub(crate) fn acquire(addr: *const ()) {
        call(&ACQUIRE, c"__tsan_acquire", addr);
    }
}

/// Most jobs a worker takes from the queue at once.
const MAX_BATCH: usize = 1024;
/// Intake blocks an idle pool keeps for the next burst (~70 KiB).
const IDLE_SPARE_BLOCKS: usize = 16;
/// How long an idle worker waits for more work before it sleeps.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);

/// A pool of worker threads running jobs of type `T`.
pub struct Pool<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never happens while the lock is held by our code, but if it
    // did, the state is still consistent: never let poison wedge shutdown.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn deadline_after(timeout_ms: i32) -> Option<Instant> {
    (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64))
}

/// Waits on `cond` until `deadline` (None = for ever). Returns the guard and
/// whether the deadline passed.
fn wait_until<'a, S>(
    cond: &Condvar,
    guard: MutexGuard<'a, S>,
    deadline: Option<Instant>,
) -> (MutexGuard<'a, S>, bool) {
    match deadline {
        None => (cond.wait(guard).unwrap_or_else(|p| p.into_inner()), false),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return (guard, true);
            }
            let (g, _) = cond
                .wait_timeout(guard, d - now)
                .unwrap_or_else(|p| p.into_inner());
            (g, false)
        }
    }
}

impl<T: Send + 'static> Pool<T> {
    /// Creates a pool; `min_workers > max_workers` is clamped to
    /// `max_workers` as libvirt does. Fails with `NDE_ERR_INVALID` when
    /// `max_workers` is 0 and `NDE_ERR_THREAD` when a thread cannot start.
    pub fn new(limits: PoolLimits, name: &str, handler: Handler<T>) -> Result<Pool<T>, Error> {
        if limits.max_workers == 0 {
            return Err(nde_result::NDE_ERR_INVALID);
        }
        let limits = PoolLimits {
            min_workers: limits.min_workers.min(limits.max_workers),
            ..limits
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: JobQueue::new(),
                quit: false,
                limits,
                workers: 0,
                prio_workers: 0,
                free_workers: 0,
                sleeping: 0,
                sleeping_prio: 0,
                running: 0,
                threads: Vec::new(),
                release_when_idle: false,
                stats: PoolStats::default(),
            }),
            work_ready: Condvar::new(),
            prio_ready: Condvar::new(),
            progress: Condvar::new(),
            handler,
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
        let pool = Pool { shared };
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

    /// Queues `job`. On failure the job is handed back so the caller decides
    /// (the C layer drops it, which frees its data before returning).
    pub fn send(&self, priority: u32, mut job: T) -> Result<(), (Error, T)> {
        let shared = &self.shared;
        // Everything the sender did happens before the job runs.
        tsan::release(shared.sync_addr());
        if shared.fast_path.load(Ordering::Acquire) {
            match shared.intake.push(job) {
                Ok(()) => {
                    // Paired with `sleep`: the push is visible before we look
                    // for sleepers, so either the worker sees the job or we
                    // see the worker.
                    if shared.sleepers.load(Ordering::SeqCst) > 0
                        && !shared.wake_pending.swap(true, Ordering::SeqCst)
                    {
                        let _st = lock(&shared.state);
                        shared.work_ready.notify_one();
                    }
                    return Ok(());
                }
                // Closed by stop: the locked path below reports it.
                Err(j) => job = j,
            }
        }
        let mut st = lock(&shared.state);
        if st.quit {
            st.stats.rejected += 1;
            return Err((nde_result::NDE_ERR_STOPPED, job));
        }
        // Jobs that came through the intake were accepted earlier.
        shared.absorb_intake(&mut st);
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

    /// Refuses new jobs; each worker exits after its current job. Queued jobs
    /// stay queued until `drain` or drop. Never blocks.
    pub fn stop(&self) {
        let mut st = lock(&self.shared.state);
        self.shared.stop_locked(&mut st);
    }

    /// Stops, joins every worker and discards the queued jobs (dropping them
    /// frees their data). `NDE_ERR_WOULD_DEADLOCK` from one of its workers.
    pub fn drain(&self) -> Result<(), Error> {
        self.drain_timeout(-1)
    }

    /// `drain`, waiting at most `timeout_ms` (< 0: for ever) for the running
    /// jobs to return. On `NDE_ERR_TIMEOUT` the pool is stopped, nothing was
    /// discarded, and the call can be made again.
    pub fn drain_timeout(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.on_worker() {
            return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
        }
        let deadline = deadline_after(timeout_ms);
        let shared = &self.shared;
        let (threads, jobs) = {
            let mut st = lock(&shared.state);
            shared.stop_locked(&mut st);
            while st.workers + st.prio_workers > 0 {
                let (g, timed_out) = wait_until(&shared.progress, st, deadline);
                st = g;
                if timed_out && st.workers + st.prio_workers > 0 {
                    tsan::acquire(shared.sync_addr());
                    return Err(nde_result::NDE_ERR_TIMEOUT);
                }
            }
            shared.absorb_intake(&mut st);
            let jobs = st.queue.take_all();
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
    /// function) has finished. `timeout_ms < 0` waits for ever.
    pub fn wait_idle(&self, timeout_ms: i32) -> Result<(), Error> {
        if self.on_worker() {
            return Err(nde_result::NDE_ERR_WOULD_DEADLOCK);
        }
        let deadline = deadline_after(timeout_ms);
        let intake = &self.shared.intake;
        let mut st = lock(&self.shared.state);
        let result = loop {
            let queued = !st.queue.is_empty() || !intake.is_empty();
            if !queued && st.running == 0 {
                break Ok(());
            }
            if st.quit && queued && st.running == 0 {
                break Err(nde_result::NDE_ERR_STOPPED);
            }
            let (g, timed_out) = wait_until(&self.shared.progress, st, deadline);
            st = g;
            if timed_out {
                break Err(nde_result::NDE_ERR_TIMEOUT);
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
            return Err(nde_result::NDE_ERR_STOPPED);
        }
        let pick = |v: i64, cur: usize| if v < 0 { cur } else { v as usize };
        let new = PoolLimits {
            min_workers: pick(min, st.limits.min_workers),
            max_workers: pick(max, st.limits.max_workers),
            prio_workers: pick(prio, st.limits.prio_workers),
        };
        if new.max_workers == 0 || new.min_workers > new.max_workers {
            return Err(nde_result::NDE_ERR_INVALID);
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
        let st = lock(&self.shared.state);
        st.queue.len() + self.shared.intake.len() + self.shared.unstarted_in_batch.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> PoolStats {
        let mut stats = lock(&self.shared.state).stats;
        stats.submitted += self.shared.intake.pushed() as u64;
        stats
    }

    /// Panics caught inside job handlers.
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
        CURRENT_POOL.with(|c| c.get()) == self.shared.id()
    }
}

impl<T: Send + 'static> Drop for Pool<T> {
    /// Drains and releases. From inside one of its own jobs it cannot join
    /// itself: the last worker to exit finishes the release instead.
    fn drop(&mut self) {
        if self.on_worker() {
            let mut st = lock(&self.shared.state);
            self.shared.stop_locked(&mut st);
            st.release_when_idle = true;
            return;
        }
        let _ = self.drain();
    }
}

impl<T: Send + 'static> Shared<T> {
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

    fn start_worker(this: &Arc<Self>, st: &mut State<T>, kind: WorkerKind) -> Result<(), Error> {
        let shared = Arc::clone(this);
        let name = match kind {
            WorkerKind::Ordinary => &this.name,
            WorkerKind::Priority => &this.prio_name,
        };
        let t = thread::spawn(name, move || shared.worker_loop(kind))?;
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

    /// Sends may skip the lock only when nothing but queueing is needed: no
    /// priority workers to consider and no worker left to start.
    fn update_fast_path(&self, st: &State<T>) {
        let fast = !st.quit
            && st.limits.prio_workers == 0
            && st.prio_workers == 0
            && st.workers >= st.limits.max_workers;
        self.fast_path.store(fast, Ordering::Release);
    }

    /// Moves every job of the intake into the queue, in order.
    fn absorb_intake(&self, st: &mut State<T>) {
        // SAFETY: we hold the state lock, so we are the only consumer.
        while let Some(job) = unsafe { self.intake.pop() } {
            st.queue.push(job, 0);
        }
        let depth = st.queue.len() as u64;
        st.stats.queue_high_water = st.stats.queue_high_water.max(depth);
    }

    fn worker_loop(self: Arc<Self>, kind: WorkerKind) {
        CURRENT_POOL.with(|c| c.set(self.id()));
        let ordinary = kind == WorkerKind::Ordinary;
        // Jobs taken from the queue under one lock and run without it.
        let mut batch: VecDeque<T> = VecDeque::new();
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
            if ordinary && st.limits.max_workers == 1 && st.workers == 1 && st.prio_workers == 0 {
                if st.queue.is_empty() {
                    // SAFETY: we hold the state lock: the only consumer.
                    unsafe { self.intake.take_into(&mut batch, MAX_BATCH) };
                } else {
                    self.absorb_intake(&mut st);
                    st.queue.take_ordinary_batch(&mut batch, MAX_BATCH);
                }
            }
            if batch.is_empty() {
                self.absorb_intake(&mut st);
                let job = if ordinary {
                    st.queue.pop_oldest()
                } else {
                    st.queue.pop_priority()
                };
                batch.extend(job);
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
            self.queued_hint.store(st.queue.len(), Ordering::Relaxed);
            if st.sleeping > 0 && !st.queue.is_empty() && !self.wake_pending.swap(true, Ordering::SeqCst) {
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
            st.running -= taken;
            st.stats.completed += ran as u64;
            if ordinary {
                st.free_workers += 1;
            }
            if st.queue.is_empty() && self.intake.is_empty() {
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
        let last = st.workers + st.prio_workers == 0;
        if last && st.release_when_idle {
            // The owner released the pool from inside a job: nobody is left
            // to join, so finish the release here.
            self.absorb_intake(&mut st);
            let jobs = st.queue.take_all();
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
            for _ in 0..64 {
                if self.queued_hint.load(Ordering::Relaxed) > 0
                    || self.quit_hint.load(Ordering::Relaxed)
                    || !self.intake.is_empty()
                {
                    return;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= SPIN_BEFORE_SLEEP {
                return;
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
            // Paired with the fast path of `send`: announce the sleep, then
            // look at the intake once more.
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Any wake-up sent before this point was for an earlier sleep.
            self.wake_pending.store(false, Ordering::SeqCst);
            if self.intake.is_empty() {
                st = self.work_ready.wait(st).unwrap_or_else(|p| p.into_inner());
                // Awake: the next send or a busy worker may wake another.
                self.wake_pending.store(false, Ordering::SeqCst);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            st.sleeping -= 1;
        } else {
            st.sleeping_prio += 1;
            st = self.prio_ready.wait(st).unwrap_or_else(|p| p.into_inner());
            st.sleeping_prio -= 1;
        }
        st
    }
}
