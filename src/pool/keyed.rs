//! (Over 400 lines: one data structure, the keyed scheduler, whose state
//! and transitions must be read together; its C stats struct is at the top.
//! The way jobs enter is `send.rs`; its model and tests are `keyed/`.)
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

use super::job_queue::Mark;
use super::JobQueue;

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

// The scheduler's exhaustive model (std-only; its loom twin is in
// loom_model.rs) and its unit tests.
#[cfg(test)]
mod model;

#[cfg(test)]
mod tests;
