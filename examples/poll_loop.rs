//! A monitor driven from a plain `poll(2)` loop, with no callback: the
//! shape of an epoll-driven VMM's main loop. Only the safe API of the
//! crate (the `poll` call itself is libc's).
//!
//!     cargo run --example poll_loop -- [--timeout SECONDS]
//!
//! Prints the devices of the initial inventory, then every change until
//! the timeout (default 10 s; 0: for ever). Plug something in, or as root:
//! `ip link add dummy9 type dummy; ip link del dummy9`.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nodedev_events::{Error, EventSource, Monitor, MonitorConfig, Received};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut timeout = Some(Duration::from_secs(10));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--timeout", Some(secs)) => {
                let secs: u64 = secs.parse()?;
                timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            _ => return Err("usage: poll_loop [--timeout SECONDS]".into()),
        }
    }

    // The kernel's uevents need no udevd; mdevctl is not watched here.
    let monitor = Monitor::new(MonitorConfig {
        source: EventSource::Kernel,
        watch_mdevctl: false,
        ..MonitorConfig::default()
    })?;
    // Subscribed before start: the initial inventory arrives as `Created`.
    let events = monitor.subscribe(None, 4096)?;
    monitor.start()?;

    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let wait_ms = match deadline {
            None => -1,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.as_millis().min(i32::MAX as u128) as i32,
                None => break,
            },
        };
        // Your loop would add its other fds (vCPU, serial, API socket) here.
        let mut fds = [libc::pollfd { fd: events.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::Os(err).into());
        }
        // Never blocks: takes what is queued now.
        for item in events.try_iter() {
            match item {
                Received::Event(device, lifecycle) => {
                    println!("{lifecycle:?} {} ({})", device.name(), device.syspath())
                }
                Received::Lagged(n) => {
                    // Fell behind: resynchronise from the table.
                    println!("lagged: {n} events dropped; {} devices now", monitor.snapshot().len())
                }
                other => println!("{other:?}"),
            }
        }
    }
    monitor.stop(Some(Duration::from_secs(10)))?;
    Ok(())
}
