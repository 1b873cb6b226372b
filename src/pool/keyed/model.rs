//! An exhaustive check of the scheduler's protocol: every interleaving of
//! producers' sends and two workers' takes and finishes, each a critical
//! section under the pool's lock as in the pool, for small scenarios. It
//! drives the real `Keyed` and `JobQueue` (std-only, in the style of
//! tests/model.rs). The same protocol under loom, with real threads and the
//! intake's lock-free path racing a barrier's start, is
//! `loom_model_keyed_*` in `loom_model.rs`. Not modelled here: priority
//! workers, stop/drain.

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
