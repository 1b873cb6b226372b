//! (Over 400 lines: one file for every loom model of the pool, so
//! `make check-loom` has one place to look.)
//!
//! The pool's shipped code under loom (`make check-loom`): every
//! interleaving, within a preemption bound, of the intake, the pool's
//! send/park/wake and `wait_idle`, and the keyed scheduler, each with the
//! real types (`src/sync.rs` swaps in loom's primitives under `--cfg loom`).
//!
//! What a job did is written into loom cells with no lock around them, so
//! loom also proves the hand-offs: a read after `wait_idle` that is not
//! ordered after the job's run and its free is reported as a causality
//! violation, as is a consumer reading an intake slot the producer has not
//! published.

use std::sync::Arc;

use loom::cell::UnsafeCell;
use loom::sync::Mutex as LoomMutex;

use super::intake::Intake;
use super::known_bad::{self, Mutations};
use super::{JobPool, PoolLimits};

/// Runs `f` under loom, every interleaving with at most `preemptions`
/// forced switches (the models stay within seconds on 2 cores), and checks
/// that it ran at least `min_runs` of them (a model that shrank to a
/// handful would prove nothing).
fn check(preemptions: usize, min_runs: usize, f: impl Fn() + Sync + Send + 'static) {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{runs} interleavings");
    assert!(runs >= min_runs, "model too small to mean anything: {runs} interleavings");
}

// ---------------------------------------------------------------- intake

/// Takes everything the intake holds now, as the pool's consumer does.
fn take_all<T: Send>(q: &Intake<T>, out: &mut Vec<T>) {
    // SAFETY: the model's main thread is the only consumer.
    unsafe { q.take_into(out, usize::MAX) };
}

/// Takes until `n` values came, as the pool's consumer does while the
/// producers run. (Taking while the producers run, not after joining them,
/// is what makes loom try the consumer's reads before and after each
/// producer step: loom backtracks a read against a later write only when
/// the read comes after a write.)
fn take_until<T: Send>(q: &Intake<T>, n: usize) -> Vec<T> {
    let mut got = Vec::new();
    loop {
        take_all(q, &mut got);
        if got.len() >= n {
            return got;
        }
        loom::thread::yield_now();
    }
}

/// Two producers push two values each (four values: the block of three
/// slots fills and the fourth crosses into the next block, with both
/// producers racing for the last slot and the sentinel) while the consumer
/// takes: nothing lost, nothing taken twice, each producer's order kept.
#[test]
fn loom_model_intake_two_producers_cross_a_block_boundary() {
    check(2, 10_000, || {
        let q = Arc::new(Intake::new());
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let q = q.clone();
                loom::thread::spawn(move || {
                    for i in 0..2 {
                        q.push((p, i)).unwrap();
                    }
                })
            })
            .collect();
        let got = take_until(&q, 4);
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(got.len(), 4, "duplicated: {got:?}");
        for p in 0..2 {
            let mine: Vec<_> = got.iter().filter(|(q, _)| *q == p).map(|&(_, i)| i).collect();
            assert_eq!(mine, [0, 1], "producer {p} out of order: {got:?}");
        }
        assert!(q.is_empty());
    });
}

/// One producer pushes seven values (three blocks: the consumer recycles
/// the first emptied block and the producer may take it back for the third)
/// while the consumer takes in two passes: FIFO, each value once, and a
/// reused block starts empty.
#[test]
fn loom_model_intake_block_reuse() {
    check(2, 10_000, || {
        let q = Arc::new(Intake::new());
        let q2 = q.clone();
        let producer = loom::thread::spawn(move || {
            for i in 0..7 {
                q2.push(i).unwrap();
            }
        });
        let got = take_until(&q, 7);
        producer.join().unwrap();
        assert_eq!(got, (0..7).collect::<Vec<_>>());
        assert!(q.is_empty());
    });
}

/// A close races two pushes: each push either is accepted and then taken,
/// or is refused and handed back; after the first refusal there is no
/// acceptance; values left inside are dropped once with the intake.
#[test]
fn loom_model_intake_close_races_pushes() {
    check(3, 20, || {
        let q = Arc::new(Intake::new());
        let q2 = q.clone();
        let producer = loom::thread::spawn(move || {
            let mut accepted = Vec::new();
            for i in 0..2usize {
                match q2.push(Arc::new(i)) {
                    Ok(()) => accepted.push(i),
                    Err(v) => assert_eq!(*v, i, "a refused push hands back its own value"),
                }
            }
            accepted
        });
        q.close();
        let mut got = Vec::new();
        take_all(&q, &mut got);
        let accepted = producer.join().unwrap();
        take_all(&q, &mut got);
        let got: Vec<usize> = got.iter().map(|v| **v).collect();
        assert_eq!(got, accepted, "taken must be exactly what was accepted");
        assert!(accepted.iter().copied().eq(0..accepted.len()), "accepted after a refusal: {accepted:?}");
        assert!(q.push(Arc::new(9)).is_err(), "closed stays closed");
    });
}

/// The known-bad variant: a slot published with `Relaxed` lets the
/// consumer read it before the producer's write is visible.
#[test]
#[should_panic(expected = "Causality violation")]
fn loom_model_known_bad_relaxed_publish_is_caught() {
    known_bad::set(Mutations { relaxed_publish: true, ..Mutations::default() });
    check(2, 1, || {
        let q = Arc::new(Intake::new());
        let q2 = q.clone();
        let producer = loom::thread::spawn(move || q2.push(1usize).unwrap());
        assert_eq!(take_until(&q, 1), [1]);
        producer.join().unwrap();
    });
}

// ------------------------------------------------------ send/park/wait_idle

/// Per job: how often it ran and how often it was freed, in cells no lock
/// guards (loom checks that reading them after `wait_idle` is ordered after
/// the worker's writes).
struct Marks {
    ran: Vec<UnsafeCell<u32>>,
    freed: Vec<UnsafeCell<u32>>,
}

// SAFETY: each job's cells are written only by the thread running that
// job and read after `wait_idle`; loom checks every access for ordering.
unsafe impl Sync for Marks {}

impl Marks {
    fn new(n: usize) -> Arc<Marks> {
        Arc::new(Marks {
            ran: (0..n).map(|_| UnsafeCell::new(0)).collect(),
            freed: (0..n).map(|_| UnsafeCell::new(0)).collect(),
        })
    }

    fn bump(cell: &UnsafeCell<u32>) {
        // SAFETY: loom checks every access; only the worker running job
        // `id` writes its cells.
        cell.with_mut(|p| unsafe { *p += 1 });
    }

    fn get(cell: &UnsafeCell<u32>) -> u32 {
        // SAFETY: as for `bump`; loom reports an unordered read.
        cell.with(|p| unsafe { *p })
    }

    /// Every job ran once and was freed once.
    fn assert_all_done(&self) {
        for id in 0..self.ran.len() {
            assert_eq!(Self::get(&self.ran[id]), 1, "job {id} ran {} times", Self::get(&self.ran[id]));
            assert_eq!(Self::get(&self.freed[id]), 1, "job {id} freed {} times", Self::get(&self.freed[id]));
        }
    }
}

/// A job whose drop is its free function.
struct Job {
    id: usize,
    marks: Arc<Marks>,
}

impl Drop for Job {
    fn drop(&mut self) {
        Marks::bump(&self.marks.freed[self.id]);
    }
}

fn marking_pool(limits: PoolLimits) -> JobPool<Job> {
    JobPool::with_hooks(limits, "loom", Box::new(|job: Job| Marks::bump(&job.marks.ran[job.id])), Default::default()).unwrap()
}

/// A lone worker (batches straight from the intake) parks while jobs are
/// sent through the lock-free path: no wake-up is lost (loom reports a
/// deadlock if `wait_idle` and the worker both sleep with a job queued),
/// and `wait_idle` returns only after both jobs ran and were freed.
fn lone_worker_send_park_wait_idle() {
    check(2, 1000, || {
        let marks = Marks::new(2);
        let pool = marking_pool(PoolLimits { min_workers: 1, max_workers: 1, prio_workers: 0 });
        for id in 0..2 {
            pool.send(0, Job { id, marks: marks.clone() }).map_err(|(e, _)| e).unwrap();
        }
        pool.wait_idle(None).unwrap();
        marks.assert_all_done();
        drop(pool);
    });
}

#[test]
fn loom_model_pool_lone_worker_send_park_wait_idle() {
    lone_worker_send_park_wait_idle();
}

/// The known-bad variant: a worker that parks without its last look at the
/// intake sleeps through a job sent just before it announced itself.
#[test]
#[should_panic(expected = "deadlock")]
fn loom_model_known_bad_sleep_without_recheck_is_caught() {
    known_bad::set(Mutations { sleep_without_recheck: true, ..Mutations::default() });
    lone_worker_send_park_wait_idle();
}

/// Two workers, two senders (one on another thread): each job runs and is
/// freed once, no wake-up is lost, and `wait_idle` after both sends returns
/// only when both are done.
#[test]
fn loom_model_pool_two_workers_two_senders_wait_idle() {
    check(1, 10_000, || {
        let marks = Marks::new(2);
        let pool = Arc::new(marking_pool(PoolLimits { min_workers: 2, max_workers: 2, prio_workers: 0 }));
        let (p2, m2) = (pool.clone(), marks.clone());
        let sender = loom::thread::spawn(move || {
            p2.send(0, Job { id: 1, marks: m2 }).map_err(|(e, _)| e).unwrap();
        });
        pool.send(0, Job { id: 0, marks: marks.clone() }).map_err(|(e, _)| e).unwrap();
        sender.join().unwrap();
        pool.wait_idle(None).unwrap();
        marks.assert_all_done();
        assert_eq!(pool.caught_panics(), 0);
    });
}

/// `stop` races a lone worker's batch and a sender: the worker sees the
/// stop through `quit_hint` between two jobs of its batch and gives the
/// rest back (the path of issue 12 item 2); a send either is accepted, and
/// then runs or is discarded by `drain`, or is refused and handed back.
/// Every job is freed exactly once, ran at most once, and everything is
/// settled when `drain` returns.
#[test]
fn loom_model_pool_stop_races_a_batch_and_a_send() {
    check(2, 10_000, || {
        let marks = Marks::new(3);
        let pool = Arc::new(marking_pool(PoolLimits { min_workers: 1, max_workers: 1, prio_workers: 0 }));
        for id in 0..2 {
            pool.send(0, Job { id, marks: marks.clone() }).map_err(|(e, _)| e).unwrap();
        }
        let (p2, m2) = (pool.clone(), marks.clone());
        let sender = loom::thread::spawn(move || {
            // Refused after the stop: the job comes back and is dropped here.
            drop(p2.send(0, Job { id: 2, marks: m2 }));
        });
        pool.stop();
        sender.join().unwrap();
        pool.drain().unwrap();
        for id in 0..3 {
            assert!(Marks::get(&marks.ran[id]) <= 1, "job {id} ran twice");
            assert_eq!(Marks::get(&marks.freed[id]), 1, "job {id} freed {} times", Marks::get(&marks.freed[id]));
        }
        let stats = pool.stats();
        assert_eq!(stats.submitted, stats.completed + stats.discarded, "{stats:?}");
    });
}

// ------------------------------------------------------------ keyed jobs

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Mark {
    Start(usize),
    End(usize),
    Free(usize),
}

/// A job of the keyed model: logs its start and end (from the handler) and
/// its free (its drop) into one log.
struct Logged {
    id: usize,
    log: Arc<LoomMutex<Vec<Mark>>>,
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(Mark::Free(self.id));
    }
}

fn logging_pool() -> JobPool<Logged> {
    JobPool::with_hooks(
        PoolLimits { min_workers: 2, max_workers: 2, prio_workers: 0 },
        "loom-keyed",
        Box::new(|job: Logged| {
            job.log.lock().unwrap().push(Mark::Start(job.id));
            job.log.lock().unwrap().push(Mark::End(job.id));
        }),
        Default::default(),
    )
    .unwrap()
}

/// Checks that jobs `0..n` each started, ended and were freed once, freed
/// after they ended; returns where a mark is in the log.
fn each_ran_and_was_freed_once(log: &[Mark], n: usize) -> impl Fn(Mark) -> usize + '_ {
    let at = move |m: Mark| log.iter().position(|&x| x == m).unwrap_or_else(|| panic!("{m:?} missing: {log:?}"));
    for id in 0..n {
        for m in [Mark::Start(id), Mark::End(id), Mark::Free(id)] {
            assert_eq!(log.iter().filter(|&&x| x == m).count(), 1, "{m:?} not exactly once: {log:?}");
        }
        assert!(at(Mark::End(id)) < at(Mark::Free(id)), "job {id} freed before it ended: {log:?}");
    }
    at
}

/// Two keys and a barrier on two workers: sent in the order
/// k1:0, k2:1, k1:2, barrier 3, k2:4. Checked on every interleaving: jobs
/// of one key never overlap and run in send order; the barrier starts
/// after every earlier job ended and before any later one starts, alone;
/// every job is freed exactly once, after it ended; `wait_idle` returns
/// after all of it.
#[test]
fn loom_model_keyed_two_keys_and_a_barrier_on_two_workers() {
    check(2, 5_000, || {
        let log = Arc::new(LoomMutex::new(Vec::new()));
        let pool = logging_pool();
        let job = |id| Logged { id, log: log.clone() };
        let keys: [Option<u64>; 5] = [Some(1), Some(2), Some(1), None, Some(2)];
        for (id, key) in keys.iter().enumerate() {
            let sent = match key {
                Some(k) => pool.send_keyed(*k, 0, job(id)),
                None => pool.send_barrier(job(id)),
            };
            sent.map_err(|(e, _)| e).unwrap();
        }
        pool.wait_idle(None).unwrap();
        let log = log.lock().unwrap().clone();
        let at = each_ran_and_was_freed_once(&log, 5);
        for (a, b) in [(0, 2), (1, 4)] {
            assert!(at(Mark::End(a)) < at(Mark::Start(b)), "key order broken ({a} then {b}): {log:?}");
        }
        let barrier = 3;
        for before in 0..barrier {
            assert!(at(Mark::End(before)) < at(Mark::Start(barrier)), "barrier began before {before} ended: {log:?}");
        }
        assert!(at(Mark::End(barrier)) < at(Mark::Start(4)), "job 4 started before the barrier ended: {log:?}");
        assert_eq!(pool.caught_panics(), 0);
        drop(pool);
    });
}

/// An unkeyed send on the lock-free path (another thread) races a
/// barrier's start (the pool's `hold_raced` path): whichever way it falls,
/// the unkeyed job never runs beside the barrier, the keyed job sent before
/// the barrier ends before it starts, and everything is freed once.
#[test]
fn loom_model_keyed_lock_free_send_races_a_barrier() {
    check(1, 2_000, || {
        let log = Arc::new(LoomMutex::new(Vec::new()));
        let pool = Arc::new(logging_pool());
        let (p2, l2) = (pool.clone(), log.clone());
        let sender = loom::thread::spawn(move || {
            p2.send(0, Logged { id: 2, log: l2 }).map_err(|(e, _)| e).unwrap();
        });
        pool.send_keyed(1, 0, Logged { id: 0, log: log.clone() }).map_err(|(e, _)| e).unwrap();
        pool.send_barrier(Logged { id: 1, log: log.clone() }).map_err(|(e, _)| e).unwrap();
        sender.join().unwrap();
        pool.wait_idle(None).unwrap();
        let log = log.lock().unwrap().clone();
        let at = each_ran_and_was_freed_once(&log, 3);
        assert!(at(Mark::End(0)) < at(Mark::Start(1)), "barrier began before the keyed job ended: {log:?}");
        let apart = at(Mark::End(2)) < at(Mark::Start(1)) || at(Mark::End(1)) < at(Mark::Start(2));
        assert!(apart, "the unkeyed job ran beside the barrier: {log:?}");
    });
}
