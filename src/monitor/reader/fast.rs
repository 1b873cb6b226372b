//! The reader's fast path: `recvmsg` on the monitor's socket, the
//! datagram parser of `uevent.rs`, the uevents of one wake-up copied into
//! one arena and queued as one internal event.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{on_receive_error, AfterError, QueuedBatch, ReaderShared};
use crate::events::{nde_event_type, Events};
use crate::monitor::uevent::{self, Batch, Reject, Sender};
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

    fn flush(batch: &mut Batch, sh: &Arc<ReaderShared>, events: &Events) {
        if batch.is_empty() {
            return;
        }
        let b = std::mem::replace(batch, Batch::with_capacity(FAST_BATCH));
        sh.fast.fetch_add(b.len() as u64, Ordering::Relaxed);
        // Refused (the events object was shut down): the batch drops here,
        // counted as finished.
        let _ = events.submit_internal(BATCH_EVENT_TYPE, QueuedBatch::new(b, sh));
    }

    /// Reads until the socket is empty (true) or a limit is reached (false).
    pub(super) fn drain(&mut self, fd: RawFd, sh: &Arc<ReaderShared>, events: &Events, subs: Option<&[String]>) -> bool {
        let mut batch = Batch::with_capacity(FAST_BATCH);
        let mut errors = 0u32;
        let emptied = loop {
            let d = match sys::recv_netlink(fd, &mut self.buf) {
                Ok(d) => d,
                Err(e) => match on_receive_error(e, &mut errors, sh, || Self::flush(&mut batch, sh, events)) {
                    AfterError::Continue => continue,
                    AfterError::Done => break true,
                },
            };
            sh.received.fetch_add(1, Ordering::Relaxed);
            if d.truncated {
                sh.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let sender = Sender { groups: d.groups, pid: d.pid, uid: d.uid };
            match uevent::parse(&self.buf[..d.len], sender, subs) {
                Ok(p) => {
                    let mac = (p.subsystem == "net" && p.action != uevent::Action::Remove && {
                        let ifname = p.devpath.rsplit('/').next().unwrap_or("");
                        mac::lookup(sh.ioctl.as_ref(), ifname, "/sys", p.devpath, sender.groups & 1 != 0, &mut self.mac)
                    })
                    .then_some(self.mac.as_str());
                    batch.push(&p, mac);
                    if batch.len() >= FAST_BATCH {
                        Self::flush(&mut batch, sh, events);
                        if sh.progress.over_limit() {
                            break false;
                        }
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
        Self::flush(&mut batch, sh, events);
        emptied
    }
}
