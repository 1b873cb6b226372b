//! A small logging facility: an optional process-wide sink set by the
//! host (`set_sink`), else standard error only when `NDE_DEBUG` is set.
//! Never called from per-event hot paths except for errors.

use std::sync::{Arc, OnceLock, RwLock};

/// Severity of a log line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

/// A log sink.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static DEBUG_ENV: OnceLock<bool> = OnceLock::new();

/// Installs (or with `None` removes) the process-wide log sink.
pub fn set_sink(sink: Option<Sink>) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
}

fn debug_env() -> bool {
    *DEBUG_ENV.get_or_init(|| std::env::var_os("NDE_DEBUG").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// Logs one line.
pub fn log(level: Level, msg: &str) {
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(s) = sink {
        s(level, msg);
        return;
    }
    if debug_env() {
        // Plain write(2): no std stderr lock, no thread-locals.
        let line = format!("nodedev-events[{level:?}]: {msg}\n");
        // SAFETY: writing a valid buffer to fd 2.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
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
