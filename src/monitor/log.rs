//! The library's log: one process-wide callback set by the host
//! ([`set_logger`], `nde_set_log_callback` in C), else standard error only
//! when `NDE_DEBUG` is set. Never called from per-event hot paths except
//! for errors and warnings (overflow, failed mdevctl refresh).
//!
//! Replacing the logger waits until no call into the previous one is in
//! flight, then drops it (a C logger's `userdata_free` runs then), so the
//! host may free what the old callback used as soon as the setter returns.
//! Replaced from inside a log call, the previous logger is dropped when the
//! last call into it returns instead (waiting would wait for itself).

use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Severity of a log line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

/// A host's logger; called on the library's threads (reader, worker,
/// mdevctl watcher) and on the threads that call into the library.
pub type Logger = Box<dyn Fn(Level, &str) + Send + Sync>;

struct State {
    current: Option<Arc<Logger>>,
}

static STATE: Mutex<State> = Mutex::new(State { current: None });
/// Signalled when a log call into a replaced logger returns.
static CALL_DONE: Condvar = Condvar::new();
static DEBUG_ENV: OnceLock<bool> = OnceLock::new();

thread_local! {
    /// Depth of log calls on this thread (a logger that logs or replaces
    /// the logger from inside a call).
    static IN_CALL: Cell<u32> = const { Cell::new(0) };
}

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs `logger` (None: the default) and returns once the previous one
/// is no longer running and has been dropped (see the module comment for
/// the call from inside a log call).
pub fn set_logger(logger: Option<Logger>) {
    let old = std::mem::replace(&mut state().current, logger.map(Arc::new));
    let Some(old) = old else { return };
    if IN_CALL.with(Cell::get) > 0 {
        // This thread is inside a log call (maybe into `old`): the last
        // clone to go drops it.
        return;
    }
    let mut g = state();
    // `old` left `current`, so its count only falls from here on.
    while Arc::strong_count(&old) > 1 {
        g = CALL_DONE.wait(g).unwrap_or_else(|p| p.into_inner());
    }
    drop(g);
    drop(old);
}

fn debug_env() -> bool {
    *DEBUG_ENV.get_or_init(|| std::env::var_os("NDE_DEBUG").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// The `log` crate's target of every record the library emits.
pub const LOG_TARGET: &str = "nodedev_events";

/// Hands the line to the `log` crate, for Rust programs (a no-op costing
/// one atomic load when no `log` logger is installed or the level is off).
fn to_log_crate(level: Level, msg: &str) {
    let level = match level {
        Level::Debug => ::log::Level::Debug,
        Level::Info => ::log::Level::Info,
        Level::Warn => ::log::Level::Warn,
        Level::Error => ::log::Level::Error,
    };
    ::log::log!(target: LOG_TARGET, level, "{msg}");
}

/// Logs one line: to the `log` crate, and to the host's callback (or
/// standard error under `NDE_DEBUG`).
pub fn log(level: Level, msg: &str) {
    to_log_crate(level, msg);
    let logger = state().current.clone();
    let Some(l) = logger else {
        if debug_env() {
            // Plain write(2): no std stderr lock, no thread-locals.
            super::sys::write_stderr(&format!("nodedev-events[{level:?}]: {msg}\n"));
        }
        return;
    };
    IN_CALL.with(|c| c.set(c.get() + 1));
    l(level, msg);
    IN_CALL.with(|c| c.set(c.get() - 1));
    let replaced = !state().current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &l));
    drop(l);
    if replaced {
        // A setter may be waiting for this call to end.
        let _g = state();
        CALL_DONE.notify_all();
    }
}

pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
pub fn error(msg: &str) {
    log(Level::Error, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The previous logger is dropped once, after a call into it that was
    /// in flight when it was replaced has returned.
    #[test]
    fn replacing_waits_for_calls_in_flight_and_drops_once() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        {
            let guard = CountDrop(dropped.clone());
            let lines = lines.clone();
            let release = release.clone();
            let entered_tx = Mutex::new(entered_tx);
            set_logger(Some(Box::new(move |lvl, m| {
                let _ = &guard;
                lines.lock().unwrap().push((lvl, m.to_owned()));
                if m == "block" {
                    entered_tx.lock().unwrap().send(()).unwrap();
                    let (mx, cv) = &*release;
                    let mut g = mx.lock().unwrap();
                    while !*g {
                        g = cv.wait(g).unwrap();
                    }
                }
            })));
        }
        warn("first");
        let t = std::thread::spawn(|| log(Level::Error, "block"));
        entered_rx.recv().unwrap();
        let setter = std::thread::spawn(|| set_logger(None));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "dropped while a call was in flight");
        {
            let (mx, cv) = &*release;
            *mx.lock().unwrap() = true;
            cv.notify_all();
        }
        setter.join().unwrap();
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        t.join().unwrap();
        warn("after");
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        // (Other tests of this process may log meanwhile: look at ours.)
        let ours: Vec<_> =
            lines.lock().unwrap().iter().filter(|(_, m)| ["first", "block", "after"].contains(&m.as_str())).cloned().collect();
        assert_eq!(ours, vec![(Level::Warn, "first".to_owned()), (Level::Error, "block".to_owned())]);
    }
}

#[cfg(test)]
mod log_crate_tests {
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(::log::Level, String, String)>> = Mutex::new(Vec::new());

    struct Capture;

    impl ::log::Log for Capture {
        fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &::log::Record<'_>) {
            let line = (record.level(), record.target().to_owned(), record.args().to_string());
            SEEN.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }

    #[test]
    fn lines_reach_the_log_crate_with_their_level_and_target() {
        // The only `log` logger of this test binary.
        ::log::set_logger(&Capture).unwrap();
        ::log::set_max_level(::log::LevelFilter::Trace);
        super::log(super::Level::Warn, "log-crate test: a warning");
        super::log(super::Level::Debug, "log-crate test: a detail");
        let seen = SEEN.lock().unwrap();
        let mine: Vec<_> = seen.iter().filter(|(_, _, m)| m.starts_with("log-crate test")).collect();
        assert_eq!(mine.len(), 2, "{seen:?}");
        assert_eq!((mine[0].0, mine[0].1.as_str(), mine[0].2.as_str()), (::log::Level::Warn, "nodedev_events", "log-crate test: a warning"));
        assert_eq!(mine[1].0, ::log::Level::Debug);
    }
}
