//! The pool's job queue: strict FIFO, plus a side line of priority jobs.
//!
//! Ordinary workers take jobs in acceptance order whatever their priority
//! (libvirt's rule); priority workers take only priority jobs. Instead of
//! libvirt's linked list with an O(n) rescan for the next priority job, a
//! priority job waits in its own deque and remembers how many ordinary jobs
//! were accepted before it: an ordinary worker takes it once all of those
//! have been taken. Every operation is O(1) and ordinary jobs carry no extra
//! bytes.

use std::collections::VecDeque;

/// FIFO of jobs with O(1) access to the oldest priority job.
#[derive(Debug)]
pub struct JobQueue<T> {
    ordinary: VecDeque<T>,
    /// Priority jobs with the number of ordinary jobs accepted before each.
    priority: VecDeque<(u64, T)>,
    ordinary_pushed: u64,
    ordinary_taken: u64,
    priority_pushed: u64,
    priority_taken: u64,
}

/// How many jobs of each kind the queue had accepted at some moment (a
/// keyed job remembers it at its send, to start only after them).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    ordinary: u64,
    priority: u64,
}

impl<T> Default for JobQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JobQueue<T> {
    pub fn new() -> Self {
        JobQueue {
            ordinary: VecDeque::new(),
            priority: VecDeque::new(),
            ordinary_pushed: 0,
            ordinary_taken: 0,
            priority_pushed: 0,
            priority_taken: 0,
        }
    }

    /// Number of queued jobs.
    pub fn len(&self) -> usize {
        self.ordinary.len() + self.priority.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ordinary.is_empty() && self.priority.is_empty()
    }

    /// The jobs accepted so far, with or without a priority (keyed jobs
    /// order themselves against it).
    pub fn mark(&self) -> Mark {
        Mark { ordinary: self.ordinary_pushed, priority: self.priority_pushed }
    }

    /// True when every job accepted before `mark` has been taken.
    pub fn taken_up_to(&self, mark: Mark) -> bool {
        self.ordinary_taken >= mark.ordinary && self.priority_taken >= mark.priority
    }

    /// Appends a job; `priority != 0` also makes it visible to priority workers.
    pub fn push(&mut self, job: T, priority: u32) {
        if priority == 0 {
            self.ordinary.push_back(job);
            self.ordinary_pushed += 1;
        } else {
            self.priority.push_back((self.ordinary_pushed, job));
            self.priority_pushed += 1;
        }
    }

    /// Counts `n` ordinary jobs that went from the intake straight into a
    /// worker's batch as pushed and taken, so that `return_ordinary_batch`
    /// can give back their unstarted rest.
    pub fn count_taken_from_intake(&mut self, n: usize) {
        self.ordinary_pushed += n as u64;
        self.ordinary_taken += n as u64;
    }

    /// Takes the oldest job of any priority (what an ordinary worker runs).
    pub fn pop_oldest(&mut self) -> Option<T> {
        if let Some(&(ordinary_before, _)) = self.priority.front() {
            if self.ordinary_taken >= ordinary_before {
                return self.pop_priority();
            }
        }
        let job = self.ordinary.pop_front()?;
        self.ordinary_taken += 1;
        Some(job)
    }

    /// Moves up to `max` of the oldest jobs into `batch`, stopping before the
    /// first priority job (which must stay visible to priority workers).
    /// Returns how many were moved.
    pub fn take_ordinary_batch(&mut self, batch: &mut VecDeque<T>, max: usize) -> usize {
        let before_priority = match self.priority.front() {
            Some(&(ordinary_before, _)) => (ordinary_before - self.ordinary_taken) as usize,
            None => self.ordinary.len(),
        };
        let n = before_priority.min(max).min(self.ordinary.len());
        batch.extend(self.ordinary.drain(..n));
        self.ordinary_taken += n as u64;
        n
    }

    /// Puts jobs taken by `take_ordinary_batch` (or counted by
    /// `count_taken_from_intake`) and not started back at the front, in
    /// their order.
    pub fn return_ordinary_batch(&mut self, batch: &mut VecDeque<T>) {
        while let Some(job) = batch.pop_back() {
            self.ordinary.push_front(job);
            self.ordinary_taken -= 1;
        }
    }

    /// Takes the oldest priority job (what a priority worker runs).
    pub fn pop_priority(&mut self) -> Option<T> {
        let (_, job) = self.priority.pop_front()?;
        self.priority_taken += 1;
        Some(job)
    }

    /// Takes back the job just pushed with `priority` (a refused send).
    pub fn take_newest(&mut self, priority: u32) -> Option<T> {
        if priority == 0 {
            let job = self.ordinary.pop_back()?;
            self.ordinary_pushed -= 1;
            Some(job)
        } else {
            let (_, job) = self.priority.pop_back()?;
            self.priority_pushed -= 1;
            Some(job)
        }
    }

    /// Removes every job, oldest first.
    pub fn take_all(&mut self) -> Vec<T> {
        let mut all = Vec::with_capacity(self.len());
        while let Some(job) = self.pop_oldest() {
            all.push(job);
        }
        // Release the memory of a past burst.
        self.ordinary = VecDeque::new();
        self.priority = VecDeque::new();
        all
    }

    /// Gives memory back after a large burst once the queue is empty.
    pub fn shrink_if_empty(&mut self) {
        const KEEP: usize = 4096;
        if self.is_empty() && self.ordinary.capacity() > KEEP {
            self.ordinary = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_ignores_priority_for_ordinary_workers() {
        let mut q = JobQueue::new();
        q.push(1, 0);
        q.push(2, 5);
        q.push(3, 0);
        q.push(4, 1);
        q.push(5, 0);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_oldest()).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn priority_workers_take_only_priority_jobs_and_fifo_stays_intact() {
        let mut q = JobQueue::new();
        for (job, prio) in [(1, 0), (2, 1), (3, 0), (4, 2), (5, 0)] {
            q.push(job, prio);
        }
        assert_eq!(q.pop_priority(), Some(2));
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop_oldest(), Some(1));
        assert_eq!(q.pop_oldest(), Some(3));
        assert_eq!(q.pop_priority(), Some(4));
        assert_eq!(q.pop_priority(), None);
        assert_eq!(q.pop_oldest(), Some(5));
        assert_eq!(q.pop_oldest(), None);
    }

    #[test]
    fn batches_stop_at_priority_jobs_and_return_in_order() {
        let mut q = JobQueue::new();
        for (job, prio) in [(1, 0), (2, 0), (3, 7), (4, 0), (5, 0)] {
            q.push(job, prio);
        }
        let mut batch = VecDeque::new();
        assert_eq!(q.take_ordinary_batch(&mut batch, 10), 2);
        assert_eq!(batch, [1, 2]);
        batch.pop_front();
        q.return_ordinary_batch(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(q.pop_oldest(), Some(2));
        assert_eq!(q.take_ordinary_batch(&mut batch, 10), 0); // 3 is next
        assert_eq!(q.pop_oldest(), Some(3));
        assert_eq!(q.take_ordinary_batch(&mut batch, 1), 1);
        assert_eq!(batch, [4]);
        assert_eq!(q.pop_oldest(), Some(5));
    }

    #[test]
    fn take_all_returns_oldest_first() {
        let mut q = JobQueue::new();
        for i in 0..10u32 {
            q.push(i, i % 3);
        }
        assert_eq!(q.take_all(), (0..10).collect::<Vec<_>>());
        assert_eq!(q.len(), 0);
    }
}
