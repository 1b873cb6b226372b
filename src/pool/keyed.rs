//! (Over 400 lines: the scheduler is 510 lines; the rest is its exhaustive
//! model test, kept beside the code it drives.)
//!
//! Keyed jobs and barriers: one at a time per key, parallel across keys.
//!
//! A keyed job waits in its key's line, outside the pool's queue, until the
//! job before it of the same key has finished: then (and only then) it is
//! *ready* and any worker may take it. So a busy key never holds a worker
//! while another key's job waits. Ready jobs, keyed or not, start in the
//! order they were sent: a keyed job remembers how many unkeyed jobs the
//! queue had accepted before it, with a priority or not (as the queue's
//! priority jobs do), and a worker takes it once those have been taken. With one worker every job
//! therefore runs in send order, keyed or not.
//!
//! A barrier splits time: it runs alone, after every job sent before it has
//! finished, and every job sent after it (keyed or not, and later barriers)
//! is held in the barrier's list until it has finished. Held jobs then enter
//! the pool in the order they were sent.
//!
//! All of it lives in the pool's state, under the pool's lock: the worker
//! that finishes a keyed job makes the key's next job ready in the same
//! critical section in which it stops counting as running, so the pool never
//! looks idle while keyed work is left.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use std::sync::atomic::Ordering;

use super::job_queue::Mark;
use super::{JobPool, JobQueue, Packing, Shared, State, WorkerKind};
use crate::sync::model::lock;
use crate::tsan;
use crate::error::Error;

/// Counters of key and barrier contention, safe to read at any time.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct nde_pool_key_stats {
    /// Keyed jobs accepted (also counted in `nde_pool_stats.submitted`).
    pub keyed_submitted: u64,
    /// Barriers accepted (also counted in `nde_pool_stats.submitted`).
    pub barriers_submitted: u64,
    /// Keyed jobs that found an earlier job of their key running or waiting,
    /// and waited for it.
    pub waited_behind_key: u64,
    /// Most jobs of one key seen waiting behind its running job.
    pub key_backlog_high_water: u64,
    /// Jobs (keyed or not) and barriers that were sent while an earlier
    /// barrier had not finished, and waited for it.
    pub held_by_barrier: u64,
    /// Keys with a job running or waiting, now.
    pub active_keys: u64,
    /// Most keys with a job running or waiting at the same time.
    pub active_keys_high_water: u64,
}

/// Key statistics as the Rust API names them.
pub type KeyStats = nde_pool_key_stats;

/// What a worker hands back when the job it took from here has finished.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    Key(u64),
    Barrier,
}

/// A keyed job waiting in its key's line.
struct Waiting<T> {
    /// Order of acceptance among keyed jobs.
    seq: u64,
    /// Unkeyed jobs the queue had accepted before this one, with or
    /// without a priority.
    unkeyed_before: Mark,
    priority: bool,
    job: T,
}

/// One key's jobs: the running one (if any) and those behind it.
struct KeyLine<T> {
    running: bool,
    waiting: VecDeque<Waiting<T>>,
}

/// A job sent while a barrier was pending, in the order sent.
enum Held<T> {
    Unkeyed { priority: u32, job: T },
    Keyed { key: u64, priority: u32, job: T },
    Barrier(T),
}

/// Where the oldest barrier stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Jobs sent before it are still queued or running.
    Waiting,
    /// Everything before it has finished: the next ordinary worker takes it.
    Ready,
    /// On a worker.
    Running,
}

/// The oldest barrier and what was sent after it.
struct Barrier<T> {
    /// None once a worker took it.
    job: Option<T>,
    phase: Phase,
    /// Unkeyed jobs whose lock-free send overlapped the barrier's start
    /// (they arrive through the intake): they run right after it.
    raced: Vec<T>,
    /// Everything sent after the barrier, in order; may contain the next
    /// barrier, which starts its own epoch when released.
    after: VecDeque<Held<T>>,
}

/// The keyed jobs and barriers of one pool.
pub(crate) struct Keyed<T> {
    /// FxHash: keys come from the caller (trusted, often small integers or
    /// hashes already); SipHash was 6 % of a keyed burst's CPU.
    lines: HashMap<u64, KeyLine<T>, rustc_hash::FxBuildHasher>,
    /// Ready keys by the seq of their first waiting job (entries whose key
    /// was taken meanwhile are skipped when met).
    ready: BinaryHeap<Reverse<(u64, u64)>>,
    /// Ready keys whose first job has a priority (priority workers), by seq.
    ready_priority: BTreeMap<u64, u64>,
    /// Keys whose first waiting job may start now.
    ready_count: usize,
    /// Keyed jobs accepted and not started (ready or behind their key).
    waiting: usize,
    next_seq: u64,
    /// The oldest barrier (None: no barrier pending).
    barrier: Option<Barrier<T>>,
    /// Jobs and barriers in `barrier`'s lists.
    held: usize,
    stats: KeyStats,
}

impl<T> Default for Keyed<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Keyed<T> {
    pub fn new() -> Self {
        Keyed {
            lines: HashMap::default(),
            ready: BinaryHeap::new(),
            ready_priority: BTreeMap::new(),
            ready_count: 0,
            waiting: 0,
            next_seq: 0,
            barrier: None,
            held: 0,
            stats: KeyStats::default(),
        }
    }

    /// True when nothing is queued here (jobs running on a key do not count).
    pub fn is_empty(&self) -> bool {
        self.waiting == 0 && self.barrier.is_none()
    }

    /// Jobs and barriers accepted here and not started.
    pub fn queued(&self) -> usize {
        let barrier = self.barrier.as_ref().map_or(0, |b| b.job.is_some() as usize);
        self.waiting + self.held + barrier
    }

    /// Jobs a worker could take now.
    pub fn ready(&self) -> usize {
        let barrier = self.barrier.as_ref().is_some_and(|b| b.phase == Phase::Ready);
        self.ready_count + barrier as usize
    }

    /// True while a barrier is pending: every new job must be held
    /// (`hold_unkeyed`), so the pool's lock-free send path must be off.
    pub fn holds_new_jobs(&self) -> bool {
        self.barrier.is_some()
    }

    /// True once the oldest barrier may start or has started: an unkeyed job
    /// found in the intake now was sent after it (`hold_raced`).
    pub fn barrier_started(&self) -> bool {
        self.barrier.as_ref().is_some_and(|b| b.phase != Phase::Waiting)
    }

    pub fn stats(&self) -> KeyStats {
        KeyStats { active_keys: self.lines.len() as u64, ..self.stats }
    }

    /// Accepts a keyed job; `unkeyed_before` is the queue's `mark()` (the
    /// intake absorbed first).
    pub fn push_keyed(&mut self, key: u64, priority: u32, job: T, unkeyed_before: Mark) {
        self.stats.keyed_submitted += 1;
        if self.barrier.is_some() {
            self.hold(Held::Keyed { key, priority, job });
        } else {
            self.place(key, priority, job, unkeyed_before);
        }
    }

    /// Holds an unkeyed job sent while a barrier is pending.
    pub fn hold_unkeyed(&mut self, priority: u32, job: T) {
        self.hold(Held::Unkeyed { priority, job });
    }

    /// Holds unkeyed jobs found in the intake after the oldest barrier
    /// started: they run right after it, before what was sent after it.
    pub fn hold_raced(&mut self, job: T) {
        let b = self.barrier.as_mut().expect("hold_raced without a started barrier");
        b.raced.push(job);
        self.held += 1;
        self.stats.held_by_barrier += 1;
    }

    /// Accepts a barrier. It may start at once: call `barrier_may_start`.
    pub fn push_barrier(&mut self, job: T) {
        self.stats.barriers_submitted += 1;
        if self.barrier.is_some() {
            self.hold(Held::Barrier(job));
        } else {
            self.barrier = Some(Barrier { job: Some(job), phase: Phase::Waiting, raced: Vec::new(), after: VecDeque::new() });
        }
    }

    /// Makes the oldest barrier ready when everything before it is done:
    /// `rest_idle` says the pool's queue and intake are empty and no job is
    /// running. Returns true when it became ready (wake a worker).
    pub fn barrier_may_start(&mut self, rest_idle: bool) -> bool {
        match &mut self.barrier {
            Some(b) if b.phase == Phase::Waiting && rest_idle && self.waiting == 0 => {
                debug_assert!(self.lines.is_empty(), "a key is running while the pool is idle");
                b.phase = Phase::Ready;
                true
            }
            _ => false,
        }
    }

    fn hold(&mut self, held: Held<T>) {
        let b = self.barrier.as_mut().expect("hold without a pending barrier");
        b.after.push_back(held);
        self.held += 1;
        self.stats.held_by_barrier += 1;
    }

    /// Puts a keyed job in its key's line; ready at once when the key is idle.
    fn place(&mut self, key: u64, priority: u32, job: T, unkeyed_before: Mark) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let line = self.lines.entry(key).or_insert_with(|| KeyLine { running: false, waiting: VecDeque::new() });
        let idle = !line.running && line.waiting.is_empty();
        line.waiting.push_back(Waiting { seq, unkeyed_before, priority: priority != 0, job });
        self.waiting += 1;
        if idle {
            self.mark_ready(key, seq, priority != 0);
        } else {
            self.stats.waited_behind_key += 1;
            let depth = line.waiting.len() as u64 - (!line.running) as u64;
            self.stats.key_backlog_high_water = self.stats.key_backlog_high_water.max(depth);
        }
        let active = self.lines.len() as u64;
        self.stats.active_keys_high_water = self.stats.active_keys_high_water.max(active);
    }

    fn mark_ready(&mut self, key: u64, seq: u64, priority: bool) {
        self.ready.push(Reverse((seq, key)));
        if priority {
            self.ready_priority.insert(seq, key);
        }
        self.ready_count += 1;
    }

    /// The oldest ready key as (seq, unkeyed_before, key), dropping entries
    /// of keys taken by a priority worker meanwhile.
    fn oldest_ready(&mut self) -> Option<(u64, Mark, u64)> {
        while let Some(&Reverse((seq, key))) = self.ready.peek() {
            match self.lines.get(&key) {
                Some(line) if !line.running && line.waiting.front().map(|w| w.seq) == Some(seq) => {
                    return Some((seq, line.waiting[0].unkeyed_before, key));
                }
                _ => {
                    self.ready.pop();
                }
            }
        }
        None
    }

    /// Starts the first waiting job of the ready `key`.
    fn start(&mut self, key: u64) -> T {
        let line = self.lines.get_mut(&key).expect("ready key has a line");
        let w = line.waiting.pop_front().expect("ready key has a job");
        line.running = true;
        if w.priority {
            self.ready_priority.remove(&w.seq);
        }
        self.ready_count -= 1;
        self.waiting -= 1;
        w.job
    }

    /// What an ordinary worker runs next: a ready barrier alone, else the
    /// older of the queue's next job and the oldest ready keyed job.
    pub fn take_ordinary(&mut self, queue: &mut JobQueue<T>) -> Option<(T, Option<Finished>)> {
        if let Some(b) = &mut self.barrier {
            if b.phase == Phase::Ready {
                b.phase = Phase::Running;
                let job = b.job.take().expect("a ready barrier has its job");
                return Some((job, Some(Finished::Barrier)));
            }
        }
        if let Some((_, unkeyed_before, key)) = self.oldest_ready() {
            if queue.taken_up_to(unkeyed_before) || queue.is_empty() {
                self.ready.pop();
                return Some((self.start(key), Some(Finished::Key(key))));
            }
        }
        queue.pop_oldest().map(|job| (job, None))
    }

    /// What a priority worker runs next: the queue's oldest priority job,
    /// else the oldest ready keyed job sent with a priority.
    pub fn take_priority(&mut self, queue: &mut JobQueue<T>) -> Option<(T, Option<Finished>)> {
        if let Some(job) = queue.pop_priority() {
            return Some((job, None));
        }
        let (&seq, &key) = self.ready_priority.iter().next()?;
        self.ready_priority.remove(&seq);
        Some((self.start(key), Some(Finished::Key(key))))
    }

    /// Called when a job taken from here has returned (and its data was
    /// freed): makes the key's next job ready, or releases what a barrier
    /// held into `queue` and the key lines, in the order it was sent.
    pub fn finish(&mut self, finished: Finished, queue: &mut JobQueue<T>) {
        match finished {
            Finished::Key(key) => {
                let line = self.lines.get_mut(&key).expect("finished key has a line");
                line.running = false;
                match line.waiting.front() {
                    Some(w) => {
                        let (seq, priority) = (w.seq, w.priority);
                        self.mark_ready(key, seq, priority);
                    }
                    None => {
                        self.lines.remove(&key);
                    }
                }
            }
            Finished::Barrier => {
                let b = self.barrier.take().expect("finished barrier is pending");
                debug_assert_eq!(b.phase, Phase::Running);
                self.held -= b.raced.len() + b.after.len();
                for job in b.raced {
                    queue.push(job, 0);
                }
                let mut after = b.after.into_iter();
                for held in after.by_ref() {
                    match held {
                        Held::Unkeyed { priority, job } => queue.push(job, priority),
                        Held::Keyed { key, priority, job } => {
                            let before = queue.mark();
                            self.place(key, priority, job, before);
                        }
                        Held::Barrier(job) => {
                            // The next epoch: it holds whatever follows it.
                            self.barrier = Some(Barrier {
                                job: Some(job),
                                phase: Phase::Waiting,
                                raced: Vec::new(),
                                after: VecDeque::new(),
                            });
                            break;
                        }
                    }
                }
                if let Some(next) = &mut self.barrier {
                    // What follows the next barrier stays held behind it.
                    next.after.extend(after);
                    self.held += next.after.len();
                }
            }
        }
    }

    /// Removes every job and barrier not started, oldest first (drain/free:
    /// dropping them frees their data). Lines of running keys stay.
    pub fn take_all(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.queued());
        let mut waiting: Vec<Waiting<T>> = Vec::with_capacity(self.waiting);
        for line in self.lines.values_mut() {
            waiting.extend(line.waiting.drain(..));
        }
        waiting.sort_by_key(|w| w.seq);
        all.extend(waiting.into_iter().map(|w| w.job));
        if let Some(b) = self.barrier.take() {
            all.extend(b.job);
            all.extend(b.raced);
            all.extend(b.after.into_iter().map(|h| match h {
                Held::Unkeyed { job, .. } | Held::Keyed { job, .. } | Held::Barrier(job) => job,
            }));
        }
        self.lines.retain(|_, line| line.running);
        self.ready.clear();
        self.ready_priority.clear();
        self.ready_count = 0;
        self.waiting = 0;
        self.held = 0;
        all
    }
}

impl<T: Send + 'static, P: Packing<T>> JobPool<T, P> {
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

/// An exhaustive check of the scheduler's protocol: every interleaving of
/// producers' sends and two workers' takes and finishes, each a critical
/// section under the pool's lock as in the pool, for small scenarios. It
/// drives the real `Keyed` and `JobQueue` (std-only, in the style of
/// tests/model.rs). The same protocol under loom, with real threads and the
/// intake's lock-free path racing a barrier's start, is
/// `loom_model_keyed_*` in `loom_model.rs`. Not modelled here: priority
/// workers, stop/drain.
#[cfg(test)]
mod model {
    use super::*;
    use std::collections::HashSet;

    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    enum Op {
        Keyed(u64),
        Unkeyed,
        Barrier,
    }

    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
    enum Step {
        Send(usize),
        Take(usize),
        Finish(usize),
    }

    const WORKERS: usize = 2;

    /// The pool's side of it: the queue, `running`, two workers.
    struct World<'a> {
        script: &'a [Vec<Op>],
        keyed: Keyed<usize>,
        queue: JobQueue<usize>,
        next_op: Vec<usize>,
        /// Job ids in acceptance order, with their op.
        sent: Vec<(usize, Op)>,
        started: Vec<usize>,
        finished: HashSet<usize>,
        /// Per worker: the job it runs and what to hand back.
        workers: [Option<(usize, Option<Finished>)>; WORKERS],
    }

    impl<'a> World<'a> {
        fn new(script: &'a [Vec<Op>]) -> Self {
            World {
                script,
                keyed: Keyed::new(),
                queue: JobQueue::new(),
                next_op: vec![0; script.len()],
                sent: Vec::new(),
                started: Vec::new(),
                finished: HashSet::new(),
                workers: [None; WORKERS],
            }
        }

        fn running(&self) -> usize {
            self.workers.iter().flatten().count()
        }

        fn start_barrier_if_idle(&mut self) {
            let idle = self.running() == 0 && self.queue.is_empty();
            self.keyed.barrier_may_start(idle);
        }

        fn op_of(&self, id: usize) -> Op {
            self.sent.iter().find(|(j, _)| *j == id).unwrap().1
        }

        /// A job that the API allows to start now (the oracle).
        fn eligible(&self) -> Option<usize> {
            let running: Vec<usize> = self.workers.iter().flatten().map(|(j, _)| *j).collect();
            let started: HashSet<usize> = self.started.iter().copied().collect();
            for (i, &(id, op)) in self.sent.iter().enumerate() {
                if started.contains(&id) {
                    continue;
                }
                let before = &self.sent[..i];
                let barrier_pending =
                    before.iter().any(|(j, o)| *o == Op::Barrier && !self.finished.contains(j));
                let ok = match op {
                    Op::Barrier => before.iter().all(|(j, _)| self.finished.contains(j)) && running.is_empty(),
                    Op::Unkeyed => !barrier_pending,
                    Op::Keyed(k) => {
                        !barrier_pending
                            && before.iter().all(|(j, o)| *o != Op::Keyed(k) || self.finished.contains(j))
                    }
                };
                if ok {
                    return Some(id);
                }
            }
            None
        }

        fn steps(&self) -> Vec<Step> {
            let mut v = Vec::new();
            for (p, ops) in self.script.iter().enumerate() {
                if self.next_op[p] < ops.len() {
                    v.push(Step::Send(p));
                }
            }
            for w in 0..WORKERS {
                v.push(if self.workers[w].is_some() { Step::Finish(w) } else { Step::Take(w) });
            }
            v
        }

        /// Applies `step`; Err describes a broken promise. Ok(false): the
        /// step changes nothing (an idle worker finding no work).
        fn apply(&mut self, step: Step) -> Result<bool, String> {
            match step {
                Step::Send(p) => {
                    let op = self.script[p][self.next_op[p]];
                    self.next_op[p] += 1;
                    let id = p * 100 + self.next_op[p];
                    self.sent.push((id, op));
                    match op {
                        Op::Keyed(k) => {
                            let before = self.queue.mark();
                            self.keyed.push_keyed(k, 0, id, before);
                        }
                        Op::Unkeyed if self.keyed.holds_new_jobs() => self.keyed.hold_unkeyed(0, id),
                        Op::Unkeyed => self.queue.push(id, 0),
                        Op::Barrier => {
                            self.keyed.push_barrier(id);
                            self.start_barrier_if_idle();
                        }
                    }
                    Ok(true)
                }
                Step::Take(w) => {
                    let oracle = self.eligible();
                    let Some((id, fin)) = self.keyed.take_ordinary(&mut self.queue) else {
                        if let Some(j) = oracle {
                            return Err(format!("worker {w} idle while job {j} may start"));
                        }
                        return Ok(false);
                    };
                    // What the scheduler started must be allowed now.
                    let op = self.op_of(id);
                    let i = self.sent.iter().position(|(j, _)| *j == id).unwrap();
                    for (j, o) in &self.sent[..i] {
                        let done = self.finished.contains(j);
                        if *o == Op::Barrier && !done {
                            return Err(format!("job {id} started before barrier {j} (sent earlier) finished"));
                        }
                        if let (Op::Keyed(a), Op::Keyed(b)) = (op, *o) {
                            if a == b && !done {
                                return Err(format!("job {id} of key {a} started before {j} finished"));
                            }
                        }
                        if op == Op::Barrier && !done {
                            return Err(format!("barrier {id} started before {j} (sent earlier) finished"));
                        }
                    }
                    if op == Op::Barrier && self.running() > 0 {
                        return Err(format!("barrier {id} started beside a running job"));
                    }
                    if self.workers.iter().flatten().any(|(j, _)| self.op_of(*j) == Op::Barrier) {
                        return Err(format!("job {id} started beside a running barrier"));
                    }
                    self.started.push(id);
                    self.workers[w] = Some((id, fin));
                    Ok(true)
                }
                Step::Finish(w) => {
                    let (id, fin) = self.workers[w].take().unwrap();
                    if let Some(f) = fin {
                        self.keyed.finish(f, &mut self.queue);
                    }
                    self.finished.insert(id);
                    self.start_barrier_if_idle();
                    Ok(true)
                }
            }
        }

        /// What determines the future: sends in order, starts, finishes and
        /// who runs what.
        fn fingerprint(&self) -> String {
            let mut started = self.started.clone();
            started.sort();
            let mut finished: Vec<_> = self.finished.iter().collect();
            finished.sort();
            let workers: Vec<_> = self.workers.iter().map(|w| w.map(|(j, _)| j)).collect();
            format!("{:?}|{started:?}|{finished:?}|{workers:?}", self.sent)
        }
    }

    /// Depth-first over every interleaving (states merged by fingerprint,
    /// each rebuilt by replaying its path). Returns the states seen.
    fn explore(script: &[Vec<Op>]) -> usize {
        let total: usize = script.iter().map(Vec::len).sum();
        let mut seen = HashSet::new();
        let mut stack: Vec<Vec<Step>> = vec![Vec::new()];
        while let Some(path) = stack.pop() {
            let mut w = World::new(script);
            for s in &path {
                w.apply(*s).unwrap();
            }
            let mut moved = false;
            for step in w.steps() {
                let mut next = World::new(script);
                for s in &path {
                    next.apply(*s).unwrap();
                }
                match next.apply(step) {
                    Err(e) => panic!("{e}\nscript: {script:?}\npath: {path:?} then {step:?}"),
                    Ok(false) => continue,
                    Ok(true) => {}
                }
                moved = true;
                if seen.insert(next.fingerprint()) {
                    let mut p = path.clone();
                    p.push(step);
                    stack.push(p);
                }
            }
            if !moved {
                // A dead end: every job sent, started and finished.
                assert_eq!(w.finished.len(), total, "stuck with work left: {path:?}\n{}", w.fingerprint());
                assert!(w.keyed.is_empty() && w.queue.is_empty());
                assert!(w.keyed.lines.is_empty(), "an idle key kept its line");
            }
        }
        seen.len()
    }

    #[test]
    fn every_interleaving_keeps_key_order_barriers_and_no_head_of_line_blocking() {
        use Op::*;
        let scripts: Vec<Vec<Vec<Op>>> = vec![
            vec![vec![Keyed(1), Keyed(1), Keyed(2)], vec![Keyed(2), Keyed(1)]],
            vec![vec![Keyed(1), Barrier, Keyed(1)], vec![Unkeyed, Keyed(2), Unkeyed]],
            vec![vec![Barrier, Keyed(1), Barrier], vec![Keyed(1), Unkeyed, Barrier]],
            vec![vec![Keyed(1), Unkeyed, Keyed(1), Keyed(3)], vec![Barrier, Keyed(3)]],
        ];
        for script in &scripts {
            let states = explore(script);
            assert!(states > 50, "scenario too small to mean anything: {states} states");
        }
    }

    /// The search finds what it is meant to find: a scheduler that lets a
    /// busy key's next job start (as if `start` forgot the key is running)
    /// is caught.
    #[test]
    #[should_panic(expected = "started before")]
    fn a_scheduler_that_runs_one_key_twice_is_caught() {
        use Op::*;
        let script = vec![vec![Keyed(1), Keyed(1)], vec![Keyed(2)]];
        let mut w = World::new(&script);
        w.apply(Step::Send(0)).unwrap();
        w.apply(Step::Send(0)).unwrap();
        w.apply(Step::Take(0)).unwrap();
        // The bug: the line forgets its running job and offers the next.
        w.keyed.lines.get_mut(&1).unwrap().running = false;
        let seq = w.keyed.lines[&1].waiting[0].seq;
        w.keyed.mark_ready(1, seq, false);
        w.apply(Step::Take(1)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the scheduler by hand: `take` what an ordinary worker would.
    fn take(k: &mut Keyed<u32>, q: &mut JobQueue<u32>) -> Option<(u32, Option<Finished>)> {
        k.take_ordinary(q)
    }

    #[test]
    fn same_key_waits_other_keys_do_not() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        k.push_keyed(7, 0, 1, q.mark());
        k.push_keyed(7, 0, 2, q.mark());
        k.push_keyed(8, 0, 3, q.mark());
        assert_eq!(k.ready(), 2);
        let (a, fa) = take(&mut k, &mut q).unwrap();
        assert_eq!(a, 1);
        // Key 7 is busy: its second job is not offered, key 8's is.
        let (b, fb) = take(&mut k, &mut q).unwrap();
        assert_eq!(b, 3);
        assert!(take(&mut k, &mut q).is_none());
        k.finish(fb.unwrap(), &mut q);
        assert!(take(&mut k, &mut q).is_none());
        k.finish(fa.unwrap(), &mut q);
        let (c, fc) = take(&mut k, &mut q).unwrap();
        assert_eq!(c, 2);
        k.finish(fc.unwrap(), &mut q);
        assert!(k.is_empty());
        assert!(k.lines.is_empty(), "idle keys keep no memory");
        let s = k.stats();
        assert_eq!((s.keyed_submitted, s.waited_behind_key, s.key_backlog_high_water), (3, 1, 1));
        assert_eq!((s.active_keys, s.active_keys_high_water), (0, 2));
    }

    #[test]
    fn one_worker_runs_everything_in_send_order() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        // 1(k5) 2(unkeyed) 3(k5) 4(unkeyed) 5(k6)
        k.push_keyed(5, 0, 1, q.mark());
        q.push(2, 0);
        k.push_keyed(5, 0, 3, q.mark());
        q.push(4, 0);
        k.push_keyed(6, 0, 5, q.mark());
        let mut order = Vec::new();
        while let Some((job, f)) = take(&mut k, &mut q) {
            order.push(job);
            if let Some(f) = f {
                k.finish(f, &mut q);
            }
        }
        assert_eq!(order, [1, 2, 3, 4, 5]);
    }

    /// Issue 22 item 2: an unkeyed job sent with a priority before a keyed
    /// one is taken first, by an ordinary worker or by a priority worker.
    #[test]
    fn keyed_jobs_wait_for_earlier_priority_jobs() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        q.push(1, 1);
        k.push_keyed(7, 0, 2, q.mark());
        q.push(3, 0);
        let mut order = Vec::new();
        while let Some((job, f)) = take(&mut k, &mut q) {
            order.push(job);
            if let Some(f) = f {
                k.finish(f, &mut q);
            }
        }
        assert_eq!(order, [1, 2, 3]);
        q.push(4, 1);
        k.push_keyed(7, 0, 5, q.mark());
        assert_eq!(k.take_priority(&mut q).map(|(j, _)| j), Some(4));
        assert_eq!(take(&mut k, &mut q).map(|(j, _)| j), Some(5));
    }

    #[test]
    fn barrier_waits_for_the_past_and_holds_the_future() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        k.push_keyed(1, 0, 10, q.mark());
        q.push(11, 0);
        k.push_barrier(99);
        assert!(k.holds_new_jobs());
        k.push_keyed(2, 0, 20, q.mark());
        k.hold_unkeyed(0, 21);
        // Not idle: the barrier must wait.
        assert!(!k.barrier_may_start(false));
        let (a, fa) = take(&mut k, &mut q).unwrap();
        let (b, fb) = take(&mut k, &mut q).unwrap();
        assert_eq!((a, b), (10, 11));
        assert!(take(&mut k, &mut q).is_none(), "the held jobs wait");
        k.finish(fa.unwrap(), &mut q);
        assert_eq!(fb, None);
        assert!(k.barrier_may_start(q.is_empty()));
        assert!(k.barrier_started());
        let (c, fc) = take(&mut k, &mut q).unwrap();
        assert_eq!(c, 99);
        assert!(take(&mut k, &mut q).is_none(), "nothing runs beside a barrier");
        k.hold_raced(12);
        k.finish(fc.unwrap(), &mut q);
        assert!(!k.holds_new_jobs());
        let mut rest = Vec::new();
        while let Some((job, f)) = take(&mut k, &mut q) {
            rest.push(job);
            if let Some(f) = f {
                k.finish(f, &mut q);
            }
        }
        assert_eq!(rest, [12, 20, 21]);
        assert_eq!(k.stats().held_by_barrier, 3);
    }

    #[test]
    fn consecutive_barriers_keep_their_epochs() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        k.push_barrier(1);
        k.push_keyed(3, 0, 2, Mark::default());
        k.push_barrier(3);
        k.hold_unkeyed(0, 4);
        assert_eq!(k.queued(), 4);
        let mut order = Vec::new();
        loop {
            k.barrier_may_start(q.is_empty());
            let Some((job, f)) = take(&mut k, &mut q) else { break };
            order.push(job);
            // Nothing else may be offered while a barrier runs.
            if f == Some(Finished::Barrier) {
                assert!(take(&mut k, &mut q).is_none());
            }
            if let Some(f) = f {
                k.finish(f, &mut q);
            }
        }
        assert_eq!(order, [1, 2, 3, 4]);
        assert!(k.is_empty());
        assert_eq!(k.queued(), 0);
        assert_eq!(k.stats().barriers_submitted, 2);
    }

    #[test]
    fn priority_workers_take_priority_keyed_jobs_once() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        k.push_keyed(1, 0, 10, Mark::default());
        k.push_keyed(2, 3, 20, Mark::default());
        let (job, f) = k.take_priority(&mut q).unwrap();
        assert_eq!(job, 20);
        assert!(k.take_priority(&mut q).is_none());
        // The ordinary worker skips key 2's stale entry.
        let (job2, f2) = take(&mut k, &mut q).unwrap();
        assert_eq!(job2, 10);
        assert!(take(&mut k, &mut q).is_none());
        k.finish(f.unwrap(), &mut q);
        k.finish(f2.unwrap(), &mut q);
        assert!(k.is_empty());
    }

    #[test]
    fn take_all_returns_every_unstarted_job_once() {
        let mut k = Keyed::new();
        let mut q = JobQueue::new();
        k.push_keyed(1, 0, 1, Mark::default());
        k.push_keyed(1, 0, 2, Mark::default());
        k.push_keyed(2, 0, 3, Mark::default());
        let (_, f) = take(&mut k, &mut q).unwrap();
        k.push_barrier(4);
        k.push_keyed(1, 0, 5, Mark::default());
        k.hold_unkeyed(0, 6);
        k.push_barrier(7);
        assert_eq!(k.queued(), 6);
        let mut all = k.take_all();
        all.sort();
        assert_eq!(all, [2, 3, 4, 5, 6, 7]);
        assert!(k.is_empty());
        assert_eq!(k.queued(), 0);
        // The running job of key 1 finishes after the drain: no panic, and
        // nothing new becomes ready.
        k.finish(f.unwrap(), &mut q);
        assert!(take(&mut k, &mut q).is_none());
    }
}
