//! The poll-loop source (`Monitor::subscribe`): its fd wakes a plain
//! `poll(2)` loop for real injected udev messages (a private network
//! namespace, as tests/monitor_inject.rs), it is readable exactly while
//! something is queued, and an overflow is reported in place as
//! `Received::Lagged` with the exact count. Skips when not root.

mod support;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nodedev_events::{EventSource, Monitor, MonitorConfig, Received, Subscription};
use support::*;

fn udev_monitor() -> Monitor {
    let cfg = MonitorConfig {
        source: EventSource::Udev,
        watch_mdevctl: false,
        name: "nde-poll".into(),
        receive_buffer_bytes: 1 << 20,
        ..Default::default()
    };
    let mon = Monitor::new(cfg).unwrap();
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    mon
}

/// poll(2) on the subscription's fd: true when readable within `ms`.
fn readable(sub: &Subscription, ms: i32) -> bool {
    let mut fds = [libc::pollfd { fd: sub.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && fds[0].revents & libc::POLLIN != 0
}

fn name_of(item: &Received) -> String {
    match item {
        Received::Event(device, event) => format!("{event:?} {}", device.name()),
        Received::Lagged(n) => format!("Lagged {n}"),
        other => format!("{other:?}"),
    }
}

#[test]
fn a_poll_loop_wakes_for_injected_events_in_order() {
    if !in_child("a_poll_loop_wakes_for_injected_events_in_order", Iso::NetNsSysfs, &[]) {
        return;
    }
    let mon = udev_monitor();
    let sub = mon.subscribe(None, 64).unwrap();
    assert!(!readable(&sub, 0), "nothing queued yet");
    let mut inj = Injector::new();
    inj.net("add", "p0", None);
    inj.net("add", "p1", None);
    inj.net("remove", "p0", None);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 3 && Instant::now() < deadline {
        if readable(&sub, 1000) {
            got.extend(sub.try_iter().map(|item| name_of(&item)));
        }
    }
    assert_eq!(got, ["Created net_p0", "Created net_p1", "Deleted net_p0"]);
    assert!(!readable(&sub, 0), "drained: the fd is quiet again");
    assert!(sub.try_recv().is_none());
    drop(sub); // removes its listener
    inj.net("add", "p2", None);
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(mon.lookup("net_p2").is_some());
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}

#[test]
fn an_overflow_is_reported_in_place_with_its_exact_count() {
    if !in_child("an_overflow_is_reported_in_place_with_its_exact_count", Iso::NetNsSysfs, &[]) {
        return;
    }
    let mon = udev_monitor();
    let sub = mon.subscribe(None, 4).unwrap();
    assert_eq!(sub.capacity(), 4);
    let mut inj = Injector::new();
    for i in 0..10 {
        inj.net("add", &format!("q{i}"), None);
    }
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(readable(&sub, 0));
    // The reader read nothing: 4 events kept, 6 dropped and counted.
    let first: Vec<String> = sub.try_iter().map(|item| name_of(&item)).collect();
    assert_eq!(first, ["Created net_q0", "Created net_q1", "Created net_q2", "Created net_q3", "Lagged 6"]);
    assert!(!readable(&sub, 0));
    // The table has all ten: the loss is the subscriber's only.
    assert!((0..10).all(|i| mon.lookup(&format!("net_q{i}")).is_some()));
    // Overflow again, then more after the reader caught up: the marker sits
    // where the loss happened, before the next kept event.
    for i in 10..16 {
        inj.net("add", &format!("q{i}"), None);
    }
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(name_of(&sub.try_recv().unwrap()), "Created net_q10");
    inj.net("remove", "q0", None);
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    let rest: Vec<String> = sub.try_iter().map(|item| name_of(&item)).collect();
    assert_eq!(rest, ["Created net_q11", "Created net_q12", "Created net_q13", "Lagged 2", "Deleted net_q0"]);
    assert!(matches!(mon.subscribe(None, 0), Err(nodedev_events::Error::InvalidArgument)));
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}
