//! The pool as Rust users see it: [`Pool`] over the crate's `JobPool`, with
//! the intake's packing (an internal detail) out of its type and typed
//! parameters instead of libvirt's integers.

use std::fmt;
use std::time::Duration;

use super::{Handler, JobPool, KeyStats, PoolLimits, PoolStats, WorkerHooks};
use crate::error::Error;

/// Which workers may run a job (libvirt's `priority` flag).
///
/// ```
/// use nodedev_events::Priority;
/// assert_eq!(Priority::default(), Priority::Normal);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// Ordinary workers run it, in the order sent.
    #[default]
    Normal,
    /// Priority workers may run it too (ordinary workers still can).
    High,
}

impl Priority {
    /// libvirt's value: 0 for `Normal`, 1 for `High`.
    pub(crate) fn as_u32(self) -> u32 {
        match self {
            Priority::Normal => 0,
            Priority::High => 1,
        }
    }
}

/// A pool of worker threads running jobs of type `T`, with libvirt's
/// `virThreadPool` semantics: `min_workers` start at once, more on demand
/// up to `max_workers`, `prio_workers` run only [`Priority::High`] jobs;
/// ordinary workers take jobs in the order sent. Each job is handed over by
/// value and dropped exactly once: after it ran, when a send is refused
/// (handed back) or when it is discarded.
///
/// Dropping the pool stops it, joins every worker and drops queued jobs
/// (from inside a job the release waits until that job returns).
///
/// ```
/// use std::sync::mpsc;
/// use nodedev_events::{Pool, PoolLimits, Priority};
///
/// let (done, rx) = mpsc::channel();
/// let limits = PoolLimits { min_workers: 1, max_workers: 1, prio_workers: 0 };
/// let pool = Pool::new(limits, "doc-pool", move |n: u32| done.send(n * 2).unwrap())?;
/// pool.send(Priority::Normal, 21).map_err(|(err, _job)| err)?;
/// assert_eq!(rx.recv().unwrap(), 42);
/// # Ok::<(), nodedev_events::Error>(())
/// ```
pub struct Pool<T: Send + 'static> {
    inner: JobPool<T>,
}

impl<T: Send + 'static> Pool<T> {
    /// Creates a pool whose workers run `handler` for each job;
    /// `min_workers > max_workers` is clamped to `max_workers` as libvirt
    /// does. [`Error::InvalidArgument`] when `max_workers` is 0,
    /// [`Error::Thread`] when a thread cannot start (nothing is left running).
    pub fn new(limits: PoolLimits, name: &str, handler: impl Fn(T) + Send + Sync + 'static) -> Result<Pool<T>, Error> {
        Self::with_hooks(limits, name, handler, WorkerHooks::default())
    }

    /// [`Pool::new`] with per-worker hooks (see [`WorkerHooks`]). On error
    /// every worker that started has run both hooks and exited, and the
    /// hooks are dropped, before this returns.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use nodedev_events::{Pool, PoolLimits, WorkerHooks};
    ///
    /// let started = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&started);
    /// let hooks = WorkerHooks { on_start: Some(Box::new(move |_prio| { count.fetch_add(1, Ordering::SeqCst); })), on_stop: None };
    /// let limits = PoolLimits { min_workers: 2, max_workers: 2, prio_workers: 0 };
    /// let pool = Pool::with_hooks(limits, "doc-hooks", |_: ()| {}, hooks)?;
    /// drop(pool); // joins both workers
    /// assert_eq!(started.load(Ordering::SeqCst), 2);
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn with_hooks(
        limits: PoolLimits,
        name: &str,
        handler: impl Fn(T) + Send + Sync + 'static,
        hooks: WorkerHooks,
    ) -> Result<Pool<T>, Error> {
        let handler: Handler<T> = Box::new(handler);
        Ok(Pool { inner: JobPool::with_hooks(limits, name, handler, hooks)? })
    }

    /// Queues `job`. On failure ([`Error::Stopped`], [`Error::Thread`]
    /// when no worker could start) the job is handed back.
    #[inline]
    pub fn send(&self, priority: Priority, job: T) -> Result<(), (Error, T)> {
        self.inner.send(priority.as_u32(), job)
    }

    /// Queues `job` under `key`: jobs with the same non-zero key run one at
    /// a time in the order sent, different keys may run at the same time; a
    /// job whose key is busy waits outside the queue, holding no worker.
    /// Key 0 is [`Pool::send`]. On failure the job is handed back.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use nodedev_events::{Pool, PoolLimits, Priority};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let limits = PoolLimits { min_workers: 4, max_workers: 4, prio_workers: 0 };
    /// let pool = Pool::new(limits, "doc-keyed", move |n: u32| log.lock().unwrap().push(n))?;
    /// for n in 0..10 {
    ///     pool.send_keyed(7, Priority::Normal, n).map_err(|(err, _)| err)?;
    /// }
    /// pool.wait_idle(None)?;
    /// assert_eq!(*seen.lock().unwrap(), (0..10).collect::<Vec<_>>()); // one key: in order
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn send_keyed(&self, key: u64, priority: Priority, job: T) -> Result<(), (Error, T)> {
        self.inner.send_keyed(key, priority.as_u32(), job)
    }

    /// Queues a barrier: `job` runs alone, after every job sent before it
    /// finished and before any job sent after it starts. On failure the job
    /// is handed back.
    pub fn send_barrier(&self, job: T) -> Result<(), (Error, T)> {
        self.inner.send_barrier(job)
    }

    /// Refuses new jobs and lets each worker exit after its current job.
    /// Never blocks; idempotent.
    pub fn stop(&self) {
        self.inner.stop()
    }

    /// Stops, joins every worker and drops the queued jobs.
    /// [`Error::WouldDeadlock`] from inside a job.
    pub fn drain(&self) -> Result<(), Error> {
        self.inner.drain()
    }

    /// [`Pool::drain`] that gives up with [`Error::Timeout`] when a job is
    /// still running after `timeout` (`None`: for ever); safe to call again.
    pub fn drain_timeout(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner.drain_timeout(timeout)
    }

    /// Blocks until no job is queued or running (`timeout` `None`: for
    /// ever). [`Error::Timeout`]; [`Error::WouldDeadlock`] from a job.
    pub fn wait_idle(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner.wait_idle(timeout)
    }

    /// Changes the limits; `None` keeps a value. Workers start at once for
    /// a raised minimum or priority count; surplus workers exit when idle.
    ///
    /// ```
    /// use nodedev_events::{Pool, PoolLimits};
    ///
    /// let pool = Pool::new(PoolLimits { min_workers: 0, max_workers: 1, prio_workers: 0 }, "doc-params", |_: ()| {})?;
    /// pool.set_parameters(None, Some(4), None)?;
    /// assert_eq!(pool.limits().max_workers, 4);
    /// # Ok::<(), nodedev_events::Error>(())
    /// ```
    pub fn set_parameters(&self, min_workers: Option<usize>, max_workers: Option<usize>, prio_workers: Option<usize>) -> Result<(), Error> {
        let keep = |v: Option<usize>| v.map_or(Ok(-1), |n| i64::try_from(n).map_err(|_| Error::InvalidArgument));
        self.inner.set_parameters(keep(min_workers)?, keep(max_workers)?, keep(prio_workers)?)
    }

    /// The limits in force.
    pub fn limits(&self) -> PoolLimits {
        self.inner.limits()
    }

    /// Ordinary workers now.
    pub fn current_workers(&self) -> usize {
        self.inner.current_workers()
    }

    /// Priority workers now.
    pub fn current_prio_workers(&self) -> usize {
        self.inner.current_prio_workers()
    }

    /// Ordinary workers waiting for a job.
    pub fn free_workers(&self) -> usize {
        self.inner.free_workers()
    }

    /// Jobs queued and not started.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue_depth()
    }

    /// Counters of the pool's life.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// Counters of key and barrier contention.
    pub fn key_stats(&self) -> KeyStats {
        self.inner.key_stats()
    }

    /// Panics caught inside jobs and hooks.
    pub fn caught_panics(&self) -> usize {
        self.inner.caught_panics()
    }

    /// True once [`Pool::stop`] (or a drain) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }

    /// True when called from one of this pool's workers.
    pub fn on_worker(&self) -> bool {
        self.inner.on_worker()
    }
}

impl<T: Send + 'static> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("limits", &self.limits())
            .field("current_workers", &self.current_workers())
            .field("queue_depth", &self.queue_depth())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}
