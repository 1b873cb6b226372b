//! Unit tests of the keyed scheduler, driven by hand (no threads).

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
