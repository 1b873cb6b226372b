//! Exhaustive interleaving checks of the two hand-written synchronisation
//! protocols of the concurrency core, std-only (no loom):
//!
//! 1. the pool's lock-free send path against the workers' park/wake logic
//!    and `wait_idle` (src/pool/: `Pool::send` fast path, `worker_loop`,
//!    `Shared::sleep`, `Pool::wait_idle`);
//! 2. `deregister` against `dispatch` in the callback registry
//!    (src/registry.rs: the `running` / `removed` / `waiters` handshake).
//!
//! Each protocol is transcribed by hand into a small state machine whose
//! steps are the code's individual atomic operations and mutex/condvar
//! operations (all the atomics involved are SeqCst, so interleaving
//! semantics is exact for them). A depth-first search visits every
//! reachable state of small scenarios and checks, in every state and at
//! every dead end: no lost wake-up (never all threads blocked while work is
//! left), `wait_idle` never returns before the accepted work is done, no
//! callback runs after its `deregister` returned, userdata released exactly
//! once. Condition variables are modelled without spurious wake-ups, the
//! stronger check (a protocol must not rely on them).
//!
//! What this is not: the model is of the protocol as read from the code,
//! not the compiled code; it says nothing about weaker-than-SeqCst
//! orderings, the intake's block list, stop/drain/free, or timers. Each
//! model is also run with a known-bad variant to show the search finds the
//! bug it is meant to find.

use std::collections::HashSet;
use std::hash::Hash;

/// Explores every state reachable from `init`. `step` lists the successors
/// of a state (empty: a dead end, which `at_end` judges); `invariant` is
/// checked in every state. Returns the number of states visited, or the
/// first violation with the path that led to it.
fn explore<S: Clone + Eq + Hash + std::fmt::Debug>(
    init: S,
    step: impl Fn(&S) -> Vec<(String, S)>,
    invariant: impl Fn(&S) -> Result<(), String>,
    at_end: impl Fn(&S) -> Result<(), String>,
    max_states: usize,
) -> Result<usize, String> {
    let mut seen: HashSet<S> = HashSet::new();
    // Stack of (state, label that led here, depth); the path is rebuilt
    // from a parallel trail for the error message.
    let mut stack: Vec<(S, Vec<String>)> = vec![(init.clone(), Vec::new())];
    seen.insert(init);
    while let Some((s, path)) = stack.pop() {
        if let Err(e) = invariant(&s) {
            return Err(format!("{e}\nafter: {}\nstate: {s:?}", path.join(" -> ")));
        }
        let next = step(&s);
        if next.is_empty() {
            if let Err(e) = at_end(&s) {
                return Err(format!("{e}\nafter: {}\nstate: {s:?}", path.join(" -> ")));
            }
        }
        for (label, n) in next {
            if seen.insert(n.clone()) {
                assert!(seen.len() <= max_states, "state space larger than expected");
                let mut p = path.clone();
                p.push(label);
                stack.push((n, p));
            }
        }
    }
    Ok(seen.len())
}

// ============================================================ pool model ===

/// Which deliberate bug to put into the pool model (to check the checker).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum PoolBug {
    None,
    /// The sleeper does not look at the intake again after announcing
    /// itself in `sleepers` (the Dekker pair of `send`/`sleep` broken).
    NoRecheck,
    /// The sender looks for sleepers before pushing its job (the other
    /// half of the Dekker pair broken).
    CheckBeforePush,
    /// `wait_idle` ignores jobs that are running.
    IdleIgnoresRunning,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum W {
    Lock,
    Top,
    Run,
    Lock2,
    After,
    Announce,
    ClearPending,
    Recheck,
    Waiting,
    Reacquire,
    ClearAfterWake,
    Leave,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum P {
    Push,
    PushLate,
    CheckSleepers,
    Swap,
    Lock,
    Done,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum I {
    NotYet,
    Lock,
    Check,
    Waiting,
    Reacquire,
    Returned,
}

#[derive(Clone, PartialEq, Eq, Debug, Hash)]
struct PoolState {
    // shared, lock-protected
    lock: Option<u8>, // holder: 0.. workers, 10.. producers, 20 wait_idle
    queue: u8,
    running: u8,
    sleeping: u8,
    // shared atomics
    intake: u8,
    sleepers: u8,
    wake_pending: bool,
    // condition variables: who waits
    work_waiters: Vec<bool>,
    progress_waiter: bool,
    // threads
    w: Vec<(W, u8 /* batch */, bool /* spun */)>,
    p: Vec<(P, u8 /* jobs left */, bool /* saw sleepers (bug variant) */)>,
    idle: I,
    done: u8,
}

struct PoolModel {
    workers: usize,
    producers: usize,
    jobs_each: u8,
    bug: PoolBug,
}

impl PoolModel {
    fn total(&self) -> u8 {
        self.producers as u8 * self.jobs_each
    }

    fn init(&self) -> PoolState {
        PoolState {
            lock: None,
            queue: 0,
            running: 0,
            sleeping: 0,
            intake: 0,
            sleepers: 0,
            wake_pending: false,
            work_waiters: vec![false; self.workers],
            progress_waiter: false,
            w: vec![(W::Lock, 0, false); self.workers],
            p: vec![(P::Push, self.jobs_each, false); self.producers],
            idle: I::NotYet,
            done: 0,
        }
    }

    /// notify_one on work_ready: every choice of waiter is a successor.
    fn notify_one(s: &PoolState) -> Vec<PoolState> {
        let waiting: Vec<usize> = (0..s.w.len()).filter(|&i| s.work_waiters[i]).collect();
        if waiting.is_empty() {
            return vec![s.clone()]; // nobody waits: the notification is lost
        }
        waiting
            .into_iter()
            .map(|i| {
                let mut n = s.clone();
                n.work_waiters[i] = false;
                n.w[i].0 = W::Reacquire;
                n
            })
            .collect()
    }

    fn notify_progress(s: &mut PoolState) {
        if s.progress_waiter {
            s.progress_waiter = false;
            s.idle = I::Reacquire;
        }
    }

    fn step(&self, s: &PoolState) -> Vec<(String, PoolState)> {
        let mut out = Vec::new();
        let lone = self.workers == 1;
        for i in 0..self.workers {
            let me = i as u8;
            let (pc, batch, spun) = s.w[i];
            let mut n = s.clone();
            let label = format!("w{i}:{pc:?}");
            match pc {
                W::Lock | W::Lock2 | W::Reacquire => {
                    if s.lock.is_some() {
                        continue;
                    }
                    n.lock = Some(me);
                    n.w[i].0 = match pc {
                        W::Lock => W::Top,
                        W::Lock2 => W::After,
                        _ => W::ClearAfterWake,
                    };
                }
                W::Top => {
                    // Take work: a lone worker takes a batch of everything,
                    // others absorb the intake and pop one job.
                    let taken = if lone {
                        let t = n.queue + n.intake;
                        n.queue = 0;
                        n.intake = 0;
                        t
                    } else {
                        n.queue += n.intake;
                        n.intake = 0;
                        if n.queue > 0 {
                            n.queue -= 1;
                            1
                        } else {
                            0
                        }
                    };
                    if taken == 0 {
                        if spun {
                            n.w[i] = (W::Announce, 0, false);
                        } else {
                            // spin_for_work: unlock, look briefly, relock.
                            n.lock = None;
                            n.w[i] = (W::Lock, 0, true);
                        }
                    } else {
                        let mut succ = vec![n.clone()];
                        // Pass the wake-up on when more work is queued.
                        if n.sleeping > 0 && n.queue > 0 && !n.wake_pending {
                            let mut m = n.clone();
                            m.wake_pending = true;
                            succ = Self::notify_one(&m);
                        }
                        for mut m in succ {
                            m.running += taken;
                            m.lock = None;
                            m.w[i] = (W::Run, taken, false);
                            out.push((label.clone(), m));
                        }
                        continue;
                    }
                }
                W::Run => {
                    n.done += batch;
                    n.w[i].0 = W::Lock2;
                }
                W::After => {
                    n.running -= batch;
                    n.w[i].1 = 0;
                    if n.queue == 0 && n.intake == 0 && n.running == 0 {
                        Self::notify_progress(&mut n);
                    }
                    n.w[i].0 = W::Top;
                }
                W::Announce => {
                    n.sleeping += 1;
                    n.sleepers += 1;
                    n.w[i].0 = W::ClearPending;
                }
                W::ClearPending => {
                    n.wake_pending = false;
                    n.w[i].0 = W::Recheck;
                }
                W::Recheck => {
                    let empty = n.intake == 0 || self.bug == PoolBug::NoRecheck;
                    if empty {
                        // wait(): releases the lock and blocks, atomically.
                        n.lock = None;
                        n.work_waiters[i] = true;
                        n.w[i].0 = W::Waiting;
                    } else {
                        n.w[i].0 = W::Leave;
                    }
                }
                W::Waiting => continue, // only a notification moves it
                W::ClearAfterWake => {
                    n.wake_pending = false;
                    n.w[i].0 = W::Leave;
                }
                W::Leave => {
                    n.sleepers -= 1;
                    n.sleeping -= 1;
                    n.w[i].0 = W::Top;
                }
            }
            out.push((label, n));
        }
        for j in 0..self.producers {
            let (pc, left, saw) = s.p[j];
            let label = format!("p{j}:{pc:?}");
            let next_job = |n: &mut PoolState| {
                n.p[j] = if left > 1 { (P::Push, left - 1, false) } else { (P::Done, 0, false) };
            };
            let mut n = s.clone();
            match pc {
                P::Push if self.bug == PoolBug::CheckBeforePush => {
                    n.p[j] = (P::PushLate, left, n.sleepers > 0);
                }
                P::PushLate => {
                    n.intake += 1;
                    if saw {
                        n.p[j].0 = P::Swap;
                    } else {
                        next_job(&mut n);
                    }
                }
                P::Push => {
                    n.intake += 1;
                    n.p[j].0 = P::CheckSleepers;
                }
                P::CheckSleepers => {
                    if n.sleepers > 0 {
                        n.p[j].0 = P::Swap;
                    } else {
                        next_job(&mut n);
                    }
                }
                P::Swap => {
                    let was = n.wake_pending;
                    n.wake_pending = true;
                    if was {
                        next_job(&mut n);
                    } else {
                        n.p[j].0 = P::Lock;
                    }
                }
                P::Lock => {
                    if s.lock.is_some() {
                        continue;
                    }
                    // lock, notify_one, unlock: nothing else can run in between
                    // that matters (the lock is held throughout).
                    for mut m in Self::notify_one(&n) {
                        next_job(&mut m);
                        out.push((label.clone(), m));
                    }
                    continue;
                }
                P::Done => continue,
            }
            out.push((label, n));
        }
        // wait_idle, called once every producer has returned.
        let producers_done = s.p.iter().all(|p| p.0 == P::Done);
        let mut n = s.clone();
        let label = format!("idle:{:?}", s.idle);
        match s.idle {
            I::NotYet if producers_done => {
                n.idle = I::Lock;
                out.push((label, n));
            }
            I::Lock | I::Reacquire if s.lock.is_none() => {
                n.lock = Some(20);
                n.idle = I::Check;
                out.push((label, n));
            }
            I::Check => {
                let queued = n.queue > 0 || n.intake > 0;
                if !queued && (n.running == 0 || self.bug == PoolBug::IdleIgnoresRunning) {
                    n.idle = I::Returned;
                    n.lock = None;
                } else {
                    n.progress_waiter = true;
                    n.idle = I::Waiting;
                    n.lock = None;
                }
                out.push((label, n));
            }
            _ => {}
        }
        out
    }

    fn check(&self) -> Result<usize, String> {
        let total = self.total();
        explore(
            self.init(),
            |s| self.step(s),
            |s| {
                if s.idle == I::Returned && s.done != total {
                    return Err(format!("wait_idle returned with {} of {} jobs done", s.done, total));
                }
                Ok(())
            },
            |s| {
                if s.done != total {
                    return Err(format!("lost wake-up: every thread blocked with {} of {} jobs done", s.done, total));
                }
                if s.idle != I::Returned {
                    return Err("lost wake-up: wait_idle blocked for ever with the pool idle".into());
                }
                Ok(())
            },
            5_000_000,
        )
    }
}

#[test]
fn pool_send_and_park_never_lose_a_wake_up() {
    let mut figures = Vec::new();
    for (workers, producers, jobs_each) in [(1, 1, 3), (1, 2, 2), (1, 3, 1), (2, 1, 2), (2, 2, 2), (2, 3, 1), (3, 2, 1)] {
        let m = PoolModel { workers, producers, jobs_each, bug: PoolBug::None };
        match m.check() {
            Ok(states) => figures.push(format!("{workers}w/{producers}p x{jobs_each}: {states} states")),
            Err(e) => panic!("{workers} workers, {producers} producers x {jobs_each}: {e}"),
        }
    }
    println!("pool model: {}", figures.join(", "));
}

#[test]
fn the_pool_model_finds_the_bugs_it_is_meant_to_find() {
    for (bug, workers, producers) in [
        (PoolBug::NoRecheck, 1, 1),
        (PoolBug::CheckBeforePush, 1, 1),
        (PoolBug::IdleIgnoresRunning, 1, 1),
    ] {
        let m = PoolModel { workers, producers, jobs_each: 2, bug };
        let r = m.check();
        assert!(r.is_err(), "{bug:?} was not found");
        println!("{bug:?}: {}", r.unwrap_err().lines().next().unwrap());
    }
}

// ======================================================= registry model ===

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum RegBug {
    None,
    /// deregister reads `running` before publishing `removed`.
    ReadRunningFirst,
    /// dispatch reads `waiters` before clearing `running`.
    ReadWaitersFirst,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum D {
    Snapshot,
    SetRunning,
    ReadRemoved,
    Call,
    ClearRunning,
    ReadWaiters,
    LockNotify,
    Next,
    Done,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug, Hash)]
enum R {
    Remove,
    SetRemoved,
    ReadRunning,
    Lock,
    AddWaiter,
    Check,
    Waiting,
    Reacquire,
    Release,
    Returned,
}

#[derive(Clone, PartialEq, Eq, Debug, Hash)]
struct RegState {
    in_list: bool,
    removed: bool,
    running: bool, // `running == id`
    waiters: u8,
    wait_lock: Option<u8>,
    cond_waiting: bool,
    // dispatch thread: which event, its snapshot holds the entry?
    d: D,
    event: u8,
    snapshot_has: bool,
    // deregistering thread
    r: R,
    saw_running: bool,
    calls_after_return: u8,
    released: u8,
}

struct RegModel {
    events: u8,
    bug: RegBug,
}

impl RegModel {
    fn step(&self, s: &RegState) -> Vec<(String, RegState)> {
        let mut out = Vec::new();
        // dispatch thread
        {
            let mut n = s.clone();
            let label = format!("d{}:{:?}", s.event, s.d);
            let mut push = true;
            match s.d {
                D::Snapshot => {
                    n.snapshot_has = s.in_list;
                    n.d = if n.snapshot_has { D::SetRunning } else { D::Next };
                }
                D::SetRunning => {
                    n.running = true;
                    n.d = D::ReadRemoved;
                }
                D::ReadRemoved => n.d = if s.removed { D::ClearRunning } else { D::Call },
                D::Call => {
                    if s.r == R::Returned {
                        n.calls_after_return += 1;
                    }
                    n.d = if self.bug == RegBug::ReadWaitersFirst { D::ReadWaiters } else { D::ClearRunning };
                }
                D::ClearRunning => {
                    n.running = false;
                    n.d = if self.bug == RegBug::ReadWaitersFirst { D::Next } else { D::ReadWaiters };
                }
                D::ReadWaiters => {
                    let next = if self.bug == RegBug::ReadWaitersFirst { D::ClearRunning } else { D::Next };
                    n.d = if s.waiters > 0 { D::LockNotify } else { next };
                }
                D::LockNotify => {
                    if s.wait_lock.is_some() {
                        push = false;
                    } else {
                        // lock, notify_all, unlock
                        if s.cond_waiting {
                            n.cond_waiting = false;
                            n.r = R::Reacquire;
                        }
                        n.d = if self.bug == RegBug::ReadWaitersFirst { D::ClearRunning } else { D::Next };
                    }
                }
                D::Next => {
                    if s.event + 1 < self.events {
                        n.event += 1;
                        n.d = D::Snapshot;
                    } else {
                        n.d = D::Done;
                    }
                }
                D::Done => push = false,
            }
            if push {
                out.push((label, n));
            }
        }
        // deregistering thread (not the dispatch thread)
        {
            let mut n = s.clone();
            let label = format!("r:{:?}", s.r);
            let mut push = true;
            match s.r {
                R::Remove => {
                    n.in_list = false;
                    n.r = if self.bug == RegBug::ReadRunningFirst { R::ReadRunning } else { R::SetRemoved };
                }
                R::SetRemoved => {
                    n.removed = true;
                    n.r = if self.bug == RegBug::ReadRunningFirst {
                        if s.saw_running { R::Lock } else { R::Release }
                    } else {
                        R::ReadRunning
                    };
                }
                R::ReadRunning => {
                    n.saw_running = s.running;
                    n.r = if self.bug == RegBug::ReadRunningFirst {
                        R::SetRemoved
                    } else if s.running {
                        R::Lock
                    } else {
                        R::Release
                    };
                }
                R::Lock | R::Reacquire => {
                    if s.wait_lock.is_some() {
                        push = false;
                    } else {
                        n.wait_lock = Some(1);
                        n.r = if s.r == R::Lock { R::AddWaiter } else { R::Check };
                    }
                }
                R::AddWaiter => {
                    n.waiters += 1;
                    n.r = R::Check;
                }
                R::Check => {
                    if s.running {
                        n.wait_lock = None;
                        n.cond_waiting = true;
                        n.r = R::Waiting;
                    } else {
                        n.waiters -= 1;
                        n.wait_lock = None;
                        n.r = R::Release;
                    }
                }
                R::Waiting => push = false,
                R::Release => {
                    n.released += 1;
                    n.r = R::Returned;
                }
                R::Returned => push = false,
            }
            if push {
                out.push((label, n));
            }
        }
        out
    }

    fn check(&self) -> Result<usize, String> {
        let init = RegState {
            in_list: true,
            removed: false,
            running: false,
            waiters: 0,
            wait_lock: None,
            cond_waiting: false,
            d: D::Snapshot,
            event: 0,
            snapshot_has: false,
            r: R::Remove,
            saw_running: false,
            calls_after_return: 0,
            released: 0,
        };
        explore(
            init,
            |s| self.step(s),
            |s| {
                if s.calls_after_return > 0 {
                    return Err("the callback ran after deregister returned".into());
                }
                if s.released > 1 {
                    return Err("userdata released twice".into());
                }
                Ok(())
            },
            |s| {
                if s.r != R::Returned {
                    return Err(format!("deregister blocked for ever ({:?})", s.r));
                }
                if s.released != 1 {
                    return Err("userdata not released".into());
                }
                if s.d != D::Done {
                    return Err(format!("dispatch blocked for ever ({:?})", s.d));
                }
                Ok(())
            },
            1_000_000,
        )
    }
}

#[test]
fn deregister_against_dispatch_never_runs_a_removed_callback_or_hangs() {
    let mut figures = Vec::new();
    for events in 1..=4 {
        let states = RegModel { events, bug: RegBug::None }.check().unwrap_or_else(|e| panic!("{events} events: {e}"));
        figures.push(format!("{events} events: {states} states"));
    }
    println!("registry model: {}", figures.join(", "));
}

#[test]
fn the_registry_model_finds_the_bugs_it_is_meant_to_find() {
    for bug in [RegBug::ReadRunningFirst, RegBug::ReadWaitersFirst] {
        let r = RegModel { events: 2, bug }.check();
        assert!(r.is_err(), "{bug:?} was not found");
        println!("{bug:?}: {}", r.unwrap_err().lines().next().unwrap());
    }
}
