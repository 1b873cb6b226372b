//! The watch of mdevctl's configuration directory: inotify on it and on
//! every directory below it (new subdirectories are added as they appear);
//! a missing or unreadable directory is logged and not watched. Changes
//! are debounced with the events' own timer (`Watcher::start_debounced`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::log;
use super::sys::{self, EventFd, Inotify};
use crate::events::{nde_event_type, Events};
use crate::error::Error;
use crate::thread::Thread;

/// The inotify watcher thread: it reports every change of the directory
/// tree at once; the caller debounces (the monitor re-arms an
/// `Events::schedule` timer on each report).
pub struct Watcher {
    thread: Option<Thread>,
    stop: Arc<EventFd>,
}

const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MODIFY
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF;

fn add_tree(ino: &Inotify, dir: &Path, wds: &mut HashMap<i32, PathBuf>) {
    match ino.add_watch(dir, MASK | libc::IN_ONLYDIR) {
        Ok(wd) => {
            wds.insert(wd, dir.to_owned());
        }
        Err(e) => {
            log::warn(&format!("mdevctl: cannot watch {}: {e}", dir.display()));
            return;
        }
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            add_tree(ino, &e.path(), wds);
        }
    }
}

impl Watcher {
    /// Watches `dir` recursively; `on_change` runs on the watcher thread
    /// after each batch of changes. A missing directory is logged and gives
    /// [`Error::NotFound`].
    pub fn start(dir: &Path, thread_name: &str, on_change: Box<dyn Fn() + Send>) -> Result<Watcher, Error> {
        if !dir.is_dir() {
            log::info(&format!("mdevctl: {} does not exist: not watched", dir.display()));
            return Err(Error::NotFound);
        }
        let ino = Inotify::new().map_err(Error::Os)?;
        let stop = Arc::new(EventFd::new().map_err(Error::Os)?);
        let mut wds = HashMap::new();
        add_tree(&ino, dir, &mut wds);
        let stop2 = stop.clone();
        let thread = crate::thread::spawn(thread_name, move || watch_loop(ino, &stop2, wds, on_change))?;
        Ok(Watcher { thread: Some(thread), stop })
    }

    /// Watches `dir` and debounces its changes with the events' own timer:
    /// every change re-arms `schedule(MDEVCTL_CONFIG_CHANGED, debounce_ms)`,
    /// so the refresh is queued once the directory was quiet that long.
    pub fn start_debounced(dir: &Path, thread_name: &str, events: &Arc<Events>, debounce_ms: u32) -> Result<Watcher, Error> {
        let ev = Arc::downgrade(events);
        let on_change = Box::new(move || {
            if let Some(ev) = ev.upgrade() {
                let _ = ev.schedule(nde_event_type::NDE_EVENT_MDEVCTL_CONFIG_CHANGED, std::time::Duration::from_millis(debounce_ms.into()));
            }
        });
        Watcher::start(dir, thread_name, on_change)
    }

    pub fn stop(&mut self) {
        self.stop.signal();
        if let Some(t) = self.thread.take() {
            t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch_loop(ino: Inotify, stop: &EventFd, mut wds: HashMap<i32, PathBuf>, on_change: Box<dyn Fn() + Send>) {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut fds = [sys::readable(ino.fd()), sys::readable(stop.fd())];
        let _ = sys::poll(&mut fds, -1);
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        let mut new_dirs = Vec::new();
        let changed = ino.read_events(&mut buf, |wd, mask, name| {
            if mask & libc::IN_ISDIR != 0 && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
                if let Some(parent) = wds.get(&wd) {
                    new_dirs.push(parent.join(std::ffi::OsStr::from_bytes(name)));
                }
            }
            if mask & libc::IN_IGNORED != 0 {
                wds.remove(&wd);
            }
        });
        for d in new_dirs {
            add_tree(&ino, &d, &mut wds);
        }
        if changed {
            on_change();
        }
    }
}
