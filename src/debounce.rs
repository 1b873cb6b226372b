//! Debounce timers: one thread for all the pending deadlines of an events
//! object, started on first use, sleeping until the next deadline (no
//! polling). Re-arming a deadline pushes it back, so a burst of requests
//! within the delay fires once, after the last one.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sync::{lock, wait};
use crate::thread::{self, Thread};

/// What a timer does when it fires: submits an event of the given type.
pub type Fire = Box<dyn Fn(usize) + Send + Sync>;

struct State {
    /// One optional deadline per slot (event type).
    deadlines: Vec<Option<Instant>>,
    cancelled: bool,
    thread: Option<Thread>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    fire: Fire,
    name: String,
}

/// A set of one-shot timers, one per slot.
pub struct Debouncer {
    shared: Arc<Shared>,
}

impl Debouncer {
    /// `slots` timers; `fire(slot)` runs on the timer thread (named `name`).
    pub fn new(slots: usize, name: &str, fire: Fire) -> Self {
        Debouncer {
            shared: Arc::new(Shared {
                state: Mutex::new(State { deadlines: vec![None; slots], cancelled: false, thread: None }),
                changed: Condvar::new(),
                fire,
                name: name.to_owned(),
            }),
        }
    }

    /// (Re)arms timer `slot` to fire `delay` from now.
    pub fn arm(&self, slot: usize, delay: Duration) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if st.cancelled {
            return Err(Error::Stopped);
        }
        if slot >= st.deadlines.len() {
            return Err(Error::InvalidArgument);
        }
        if st.thread.is_none() {
            let shared = Arc::clone(&self.shared);
            st.thread = Some(thread::spawn(&self.shared.name, move || shared.run())?);
        }
        st.deadlines[slot] = Some(Instant::now() + delay);
        self.shared.changed.notify_one();
        Ok(())
    }

    /// Disarms timer `slot` (no-op when not armed).
    pub fn disarm(&self, slot: usize) {
        let mut st = lock(&self.shared.state);
        if let Some(d) = st.deadlines.get_mut(slot) {
            *d = None;
        }
    }

    /// Cancels every timer for good; never blocks.
    pub fn cancel(&self) {
        let mut st = lock(&self.shared.state);
        st.cancelled = true;
        st.deadlines.iter_mut().for_each(|d| *d = None);
        self.shared.changed.notify_all();
    }

    /// Cancels and joins the timer thread. Must not be called from `fire`.
    pub fn cancel_and_join(&self) {
        self.cancel();
        let t = lock(&self.shared.state).thread.take();
        if let Some(t) = t {
            t.join();
        }
    }
}

impl Drop for Debouncer {
    fn drop(&mut self) {
        let t = {
            self.cancel();
            lock(&self.shared.state).thread.take()
        };
        if let Some(t) = t {
            if t.is_current() {
                t.detach();
            } else {
                t.join();
            }
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut st = lock(&self.state);
        while !st.cancelled {
            let now = Instant::now();
            let due: Vec<usize> = (0..st.deadlines.len())
                .filter(|&i| st.deadlines[i].is_some_and(|d| d <= now))
                .collect();
            if !due.is_empty() {
                for &i in &due {
                    st.deadlines[i] = None;
                }
                drop(st);
                for i in due {
                    (self.fire)(i);
                }
                st = lock(&self.state);
                continue;
            }
            let next = st.deadlines.iter().flatten().min().copied();
            st = match next {
                None => wait(&self.changed, st),
                Some(d) => {
                    self.changed
                        .wait_timeout(st, d.saturating_duration_since(now))
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}
