//! The reader's fast path: `recvmsg` on the monitor's socket, the
//! datagram parser of `uevent.rs`, the uevents of one wake-up copied into
//! one arena and queued as one internal event (several workers: one per
//! device key, see [`Outgoing`]).

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::route::{Route, Router};
use super::{on_receive_error, AfterError, QueuedBatch, ReaderShared};
use crate::events::{nde_event_type, Events};
use crate::monitor::uevent::{self, Batch, Reject};
use crate::monitor::{log, mac, sys};

/// The fast path: `recvmsg` on the monitor's socket, our own parser
/// (uevent.rs), the fields copied into one arena per batch, no libudev
/// object at all. The socket filter libudev installed still applies (udev
/// group); the subsystem filter is applied again here (the kernel group
/// has none).
pub(super) struct FastReader {
    buf: Vec<u8>,
    mac: String,
}

const FAST_BATCH: usize = 512;

/// The type a batch is queued with (it mixes actions; the built-in handler
/// knows a batch by its payload, not by its type).
const BATCH_EVENT_TYPE: nde_event_type = nde_event_type::NDE_EVENT_UDEV_CHANGE;

impl FastReader {
    pub(super) fn new() -> FastReader {
        FastReader { buf: vec![0u8; 16 * 1024], mac: String::new() }
    }

    /// Reads until the socket is empty (true) or a limit is reached (false).
    /// `router`: several workers (see `route.rs`).
    pub(super) fn drain(
        &mut self,
        fd: RawFd,
        sh: &Arc<ReaderShared>,
        events: &Events,
        subs: Option<&[String]>,
        router: Option<&mut Router>,
    ) -> bool {
        let mut out = Outgoing::new(router);
        let mut errors = 0u32;
        let emptied = loop {
            let d = match sys::recv_netlink(fd, &mut self.buf) {
                Ok(d) => d,
                Err(e) => match on_receive_error(e, &mut errors, sh, || out.flush(sh, events)) {
                    AfterError::Continue => continue,
                    AfterError::Done => break true,
                },
            };
            sh.received.fetch_add(1, Ordering::Relaxed);
            if d.truncated {
                sh.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let sender = d.sender();
            match uevent::parse(&self.buf[..d.len], sender, subs) {
                Ok(p) => {
                    let mac = (p.subsystem == "net" && p.action != uevent::Action::Remove && {
                        let ifname = p.devpath.rsplit('/').next().unwrap_or("");
                        mac::lookup(sh.ioctl.as_ref(), ifname, "/sys", p.devpath, sender.groups & 1 != 0, &mut self.mac)
                    })
                    .then_some(self.mac.as_str());
                    if out.push(&p, mac, sh, events) && sh.progress.over_limit() {
                        break false;
                    }
                }
                Err(Reject::OtherAction) => {
                    sh.ignored.fetch_add(1, Ordering::Relaxed);
                }
                Err(Reject::Filtered) => {}
                Err(r) => {
                    sh.rejected.fetch_add(1, Ordering::Relaxed);
                    log::debug(&format!("uevent refused: {r:?}"));
                }
            }
        };
        out.flush(sh, events);
        emptied
    }
}

/// The uevents read and not queued yet. One worker: one batch. Several:
/// one batch per device key (in order within it), until a barrier uevent
/// ends the segment: the segment is queued, then the barrier alone.
struct Outgoing<'r> {
    router: Option<&'r mut Router>,
    /// One worker: the whole batch (queued as a barrier, i.e. in order).
    batch: Batch,
    /// Several workers: the segment's batches, by key.
    keyed: Vec<(u64, Batch)>,
    index: rustc_hash::FxHashMap<u64, usize>,
    /// uevents held.
    len: usize,
}

impl<'r> Outgoing<'r> {
    fn new(router: Option<&'r mut Router>) -> Outgoing<'r> {
        let batch = if router.is_some() { Batch::default() } else { Batch::with_capacity(FAST_BATCH) };
        Outgoing { router, batch, keyed: Vec::new(), index: Default::default(), len: 0 }
    }

    /// Adds a uevent; true when something was queued.
    fn push(&mut self, p: &uevent::Parsed<'_>, mac: Option<&str>, sh: &Arc<ReaderShared>, events: &Events) -> bool {
        match self.router.as_deref_mut().map(|r| r.route(p.action, p.devpath)) {
            None => self.batch.push(p, mac),
            Some(Route::Key(key)) => {
                let i = *self.index.entry(key).or_insert(self.keyed.len());
                if i == self.keyed.len() {
                    // Sized for one uevent: most devices have one per wake-up.
                    self.keyed.push((key, Batch::with_capacity(1)));
                }
                self.keyed[i].1.push(p, mac);
            }
            Some(Route::Barrier) => {
                self.flush(sh, events);
                let mut alone = Batch::with_capacity(1);
                alone.push(p, mac);
                submit(alone, 0, sh, events);
                return true;
            }
        }
        self.len += 1;
        if self.len >= FAST_BATCH {
            self.flush(sh, events);
            return true;
        }
        false
    }

    /// Queues what is held: the single batch, or each key's batch.
    fn flush(&mut self, sh: &Arc<ReaderShared>, events: &Events) {
        if !self.batch.is_empty() {
            let next = if self.router.is_some() { Batch::default() } else { Batch::with_capacity(FAST_BATCH) };
            submit(std::mem::replace(&mut self.batch, next), 0, sh, events);
        }
        for (key, b) in self.keyed.drain(..) {
            submit(b, key, sh, events);
        }
        self.index.clear();
        self.len = 0;
    }
}

/// Queues one batch under `key` (0: a barrier with several workers).
fn submit(b: Batch, key: u64, sh: &Arc<ReaderShared>, events: &Events) {
    sh.fast.fetch_add(b.len() as u64, Ordering::Relaxed);
    // Refused (the events object was shut down): the batch drops here,
    // counted as finished.
    let _ = events.submit_internal_keyed(BATCH_EVENT_TYPE, key, QueuedBatch::new(b, sh));
}
