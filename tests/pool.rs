//! The Rust core of the pool, tested directly: every job is released
//! exactly once on every path, order holds, panics are contained.

use std::time::Duration;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nodedev_events::Error;
use nodedev_events::{Priority, Pool, PoolLimits};

/// A job that counts how often it is released.
struct Counted {
    seq: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn limits(min: usize, max: usize, prio: usize) -> PoolLimits {
    PoolLimits { min_workers: min, max_workers: max, prio_workers: prio }
}

#[test]
fn one_worker_runs_jobs_in_order_and_releases_each_once() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let pool = Pool::new(limits(1, 1, 0), "order", Box::new(move |j: Counted| s2.lock().unwrap().push(j.seq))).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    for seq in 0..10_000 {
        let priority = if seq % 2 == 1 { Priority::High } else { Priority::Normal };
        assert!(pool.send(priority, Counted { seq, drops: drops.clone() }).is_ok());
    }
    pool.wait_idle(None).unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..10_000).collect::<Vec<_>>());
    assert_eq!(drops.load(Ordering::SeqCst), 10_000);
    assert_eq!(pool.stats().completed, 10_000);
}

#[test]
fn refused_and_discarded_jobs_are_released_once() {
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let g2 = gate.clone();
    let pool = Pool::new(limits(1, 1, 0), "discard", Box::new(move |_j: Counted| drop(g2.lock().unwrap()))).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    for seq in 0..100 {
        assert!(pool.send(Priority::Normal, Counted { seq, drops: drops.clone() }).is_ok());
    }
    pool.stop();
    let (err, job) = pool.send(Priority::Normal, Counted { seq: 999, drops: drops.clone() }).unwrap_err();
    assert_eq!(err, Error::Stopped);
    drop(job);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    drop(held);
    pool.drain().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 101);
    let st = pool.stats();
    assert_eq!(st.completed + st.discarded, 100);
    assert_eq!(st.rejected, 1);
    assert_eq!(pool.queue_depth(), 0);
    drop(pool);
    assert_eq!(drops.load(Ordering::SeqCst), 101);
}

#[test]
fn a_panicking_job_is_counted_released_and_the_worker_carries_on() {
    let pool = Pool::new(
        limits(1, 1, 0),
        "panics",
        Box::new(|j: Counted| {
            if j.seq.is_multiple_of(2) {
                panic!("job {} fails on purpose", j.seq);
            }
        }),
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    for seq in 0..10 {
        assert!(pool.send(Priority::Normal, Counted { seq, drops: drops.clone() }).is_ok());
    }
    pool.wait_idle(None).unwrap();
    assert_eq!(pool.caught_panics(), 5);
    assert_eq!(drops.load(Ordering::SeqCst), 10);
    assert_eq!(pool.current_workers(), 1);
}

#[test]
fn joining_calls_from_a_worker_report_deadlock_and_drop_is_deferred() {
    type Slot = Arc<Mutex<Option<Pool<Counted>>>>;
    let slot: Slot = Arc::new(Mutex::new(None));
    let results = Arc::new(Mutex::new(Vec::new()));
    let (s2, r2) = (slot.clone(), results.clone());
    let pool = Pool::new(
        limits(1, 1, 0),
        "self",
        Box::new(move |j: Counted| {
            if j.seq == 0 {
                let guard = s2.lock().unwrap();
                let p = guard.as_ref().unwrap();
                r2.lock().unwrap().push(p.drain().unwrap_err());
                r2.lock().unwrap().push(p.wait_idle(None).unwrap_err());
                assert!(p.on_worker());
            } else if j.seq == 1 {
                // Release the pool from inside its own job.
                let p = s2.lock().unwrap().take();
                drop(p);
            }
        }),
    )
    .unwrap();
    assert!(!pool.on_worker());
    let drops = Arc::new(AtomicUsize::new(0));
    *slot.lock().unwrap() = Some(pool);
    {
        let guard = slot.lock().unwrap();
        let p = guard.as_ref().unwrap();
        for seq in 0..5 {
            assert!(p.send(Priority::Normal, Counted { seq, drops: drops.clone() }).is_ok());
        }
    }
    // Jobs 2..4 are discarded by the deferred release, 0 and 1 ran.
    let mut spins = 0;
    while drops.load(Ordering::SeqCst) < 5 {
        spins += 1;
        assert!(spins < 600_000, "deferred release never happened");
        std::thread::yield_now();
    }
    assert_eq!(
        *results.lock().unwrap(),
        vec![Error::WouldDeadlock, Error::WouldDeadlock]
    );
}

#[test]
fn thread_creation_failure_is_reported_and_nothing_leaks() {
    nodedev_events::test_hooks::fail_next_spawns("fails-to-start", 1);
    let r = Pool::new(limits(2, 2, 0), "fails-to-start", Box::new(|_j: Counted| {}));
    assert!(matches!(r.err(), Some(Error::Thread(_))));

    // A pool with no worker yet refuses a job it cannot start a worker for.
    let pool = Pool::new(limits(0, 1, 0), "lazy-fails", Box::new(|_j: Counted| {})).unwrap();
    nodedev_events::test_hooks::fail_next_spawns("lazy-fails", 1);
    let drops = Arc::new(AtomicUsize::new(0));
    let (err, job) = pool.send(Priority::Normal, Counted { seq: 0, drops: drops.clone() }).unwrap_err();
    assert!(matches!(err, Error::Thread(_)));
    drop(job);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(pool.send(Priority::Normal, Counted { seq: 1, drops: drops.clone() }).is_ok());
    pool.wait_idle(None).unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn max_zero_is_invalid() {
    let r = Pool::new(limits(0, 0, 0), "zero", Box::new(|_j: Counted| {}));
    assert_eq!(r.err(), Some(Error::InvalidArgument));
}

/// Issue 12 item 2: a lone worker takes jobs 1..10 from the intake as one
/// batch; job 1 stops the pool; the unstarted rest goes back to the queue.
/// On a debug build (overflow checks on) the queue's counter underflowed
/// there, the worker died outside its panic guard and drain hung: the
/// drain below is bounded so that the failure is a failed test, not a hang.
#[test]
fn stop_inside_a_lone_workers_batch_leaves_the_rest_queued() {
    use std::sync::{OnceLock, Weak};
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let me: Arc<OnceLock<Weak<Pool<Counted>>>> = Arc::new(OnceLock::new());
    let (g2, me2, ran2) = (gate.clone(), me.clone(), ran.clone());
    let handler = Box::new(move |j: Counted| {
        if j.seq == 0 {
            drop(g2.lock().unwrap());
        }
        if j.seq == 1 {
            me2.get().and_then(Weak::upgrade).expect("pool alive").stop();
        }
        ran2.fetch_add(1, Ordering::SeqCst);
    });
    let pool = Arc::new(Pool::new(limits(1, 1, 0), "batchstop", handler).unwrap());
    me.set(Arc::downgrade(&pool)).ok().unwrap();
    pool.send(Priority::Normal, Counted { seq: 0, drops: drops.clone() }).ok().unwrap();
    while pool.queue_depth() != 0 {
        std::thread::yield_now();
    }
    for seq in 1..=10 {
        pool.send(Priority::Normal, Counted { seq, drops: drops.clone() }).ok().unwrap();
    }
    drop(held);
    // Job 1 stops the pool; then drain discards jobs 2..10.
    while !pool.is_stopped() {
        std::thread::yield_now();
    }
    if let Err(e) = pool.drain_timeout(Some(Duration::from_secs(10))) {
        // The worker died: dropping the pool would wait for it for ever.
        std::mem::forget(pool);
        panic!("drain did not complete: {e:?}");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert_eq!(drops.load(Ordering::SeqCst), 11);
    let st = pool.stats();
    assert_eq!((st.submitted, st.completed, st.discarded), (11, 2, 9));
}
