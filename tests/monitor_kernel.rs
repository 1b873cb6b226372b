//! Real kernel uevents (kernel netlink group, no udevd), each test in its
//! own network + mount namespace with sysfs remounted, so the devices and
//! their sysfs entries are the namespace's own and nothing outlives it.

mod support;

use std::time::Duration;
use nodedev_events::{EventSource, Lifecycle, Monitor, MonitorConfig};
use support::*;

fn kernel_monitor() -> Monitor {
    Monitor::new(MonitorConfig {
        source: EventSource::Kernel,
        watch_mdevctl: false,
        name: "nde-test".into(),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn veth_add_rename_delete_tap_bridge_and_change() {
    if !in_child("veth_add_rename_delete_tap_bridge_and_change", Iso::NetNsSysfs, &[]) {
        return;
    }
    let mon = kernel_monitor();
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    let lo = net_name("lo", &mac_of("lo"));
    // Initial inventory arrives as CREATED to listeners registered before start.
    assert!(rec.has(Lifecycle::Created, "computer"));
    assert!(rec.has(Lifecycle::Created, &lo), "{:?}", rec.events());
    let lo_dev = mon.lookup(&lo).unwrap();
    assert_eq!(lo_dev.parent(), "computer");
    assert_eq!(lo_dev.subsystem(), "net");
    assert_eq!(mon.lookup_by_syspath("/sys/devices/virtual/net/lo").unwrap().name(), lo);
    rec.clear();

    // veth pair: two CREATED.
    sh("ip link add a0 type veth peer name a1");
    let (a0, a1) = (net_name("a0", &mac_of("a0")), net_name("a1", &mac_of("a1")));
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(rec.has(Lifecycle::Created, &a0) && rec.has(Lifecycle::Created, &a1), "{:?}", rec.events());
    assert_eq!(mon.lookup(&a0).unwrap().property("INTERFACE"), Some("a0"));
    let held = mon.lookup(&a0).unwrap();

    // rename = move: DELETED(old name) then CREATED(new name), in that order.
    rec.clear();
    sh("ip link set a0 name b0");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    let b0 = net_name("b0", &mac_of("b0"));
    let ev = rec.events();
    let del = ev.iter().position(|e| *e == (Lifecycle::Deleted, a0.clone()));
    let cre = ev.iter().position(|e| *e == (Lifecycle::Created, b0.clone()));
    assert!(del.is_some() && cre.is_some() && del < cre, "{ev:?}");
    assert!(mon.lookup(&a0).is_none());
    assert_eq!(held.name(), a0, "a reference outlives the device");

    // change written to uevent: UPDATED, carrying the synthetic arguments.
    rec.clear();
    sh("echo 'change 3d1e5c7a-0000-4000-8000-000000000001 TESTID=7' > /sys/class/net/lo/uevent");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(rec.has(Lifecycle::Updated, &lo), "{:?}", rec.events());
    assert_eq!(mon.lookup(&lo).unwrap().property("SYNTH_ARG_TESTID"), Some("7"));

    // tap and bridge.
    rec.clear();
    sh("ip tuntap add dev t0 mode tap");
    sh("ip link add br0 type bridge");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    let t0 = net_name("t0", &mac_of("t0"));
    let br0 = net_name("br0", &mac_of("br0"));
    assert!(rec.has(Lifecycle::Created, &t0), "{:?}", rec.events());
    assert!(rec.has(Lifecycle::Created, &br0), "{:?}", rec.events());
    assert_eq!(mon.lookup(&br0).unwrap().devtype(), Some("bridge"));

    // delete: DELETED for both ends of the pair, and the tap.
    rec.clear();
    sh("ip link del b0");
    sh("ip tuntap del dev t0 mode tap");
    sh("ip link del br0");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    for n in [&b0, &a1, &t0, &br0] {
        assert!(rec.has(Lifecycle::Deleted, n), "{n}: {:?}", rec.events());
        assert!(mon.lookup(n).is_none());
    }
    // `queues` kobjects and other unknown types never became devices.
    assert!(mon.snapshot().iter().all(|d| d.subsystem() != "queues"));
    mon.stop(Some(Duration::from_secs(10))).unwrap();
    let st = mon.stats();
    assert_eq!(st.submitted, st.handled, "every raw event released: {st:?}");
    assert_eq!(st.overflows, 0);
}

#[test]
fn per_device_listener_and_deregister() {
    if !in_child("per_device_listener_and_deregister", Iso::NetNsSysfs, &[]) {
        return;
    }
    let mon = kernel_monitor();
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    let lo = net_name("lo", &mac_of("lo"));
    let only_lo = Recorder::default();
    let id = only_lo.attach_handle(&mon, Some(&lo));
    let all = Recorder::default();
    all.attach(&mon, None);
    // Registered after INIT: no inventory replay.
    assert_eq!(only_lo.len(), 0);
    sh("ip link add c0 type veth peer name c1");
    sh("echo change > /sys/class/net/lo/uevent");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(only_lo.events(), vec![(Lifecycle::Updated, lo.clone())]);
    assert!(all.len() >= 3);
    id.deregister().unwrap();
    sh("echo change > /sys/class/net/lo/uevent");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(only_lo.len(), 1, "no call after deregister");
    sh("ip link del c0");
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}

/// Removes the loop device even when the test fails half-way.
struct LoopGuard(i32, i32);
impl Drop for LoopGuard {
    fn drop(&mut self) {
        // SAFETY: LOOP_CTL_REMOVE on our loop-control fd.
        unsafe {
            libc::ioctl(self.0, 0x4C81, self.1);
            libc::close(self.0);
        }
    }
}

#[test]
fn loop_device_add_remove() {
    // Block uevents are not tied to a network namespace: the global
    // /dev/loop-control adds a real loop device (an unusual number, always
    // removed again). The namespace keeps sysfs private to the test.
    if !in_child("loop_device_add_remove", Iso::NetNsSysfs, &[]) {
        return;
    }
    let n = 243;
    if std::path::Path::new(&format!("/sys/block/loop{n}")).exists() {
        println!("SKIP loop_device_add_remove: loop{n} exists already");
        return;
    }
    // SAFETY: opening a device node.
    let fd = unsafe { libc::open(c"/dev/loop-control".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        println!("SKIP loop_device_add_remove: no /dev/loop-control");
        return;
    }
    let mon = Monitor::new(MonitorConfig {
        source: EventSource::Kernel,
        watch_mdevctl: false,
        name: "nde-loop".into(),
        subsystems: Some(vec!["block".into()]),
        ..Default::default()
    })
    .unwrap();
    let rec = Recorder::default();
    rec.attach(&mon, Some(&format!("block_loop{n}")));
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    // SAFETY: LOOP_CTL_ADD.
    let rc = unsafe { libc::ioctl(fd, 0x4C80, n) };
    assert!(rc >= 0, "LOOP_CTL_ADD: {}", std::io::Error::last_os_error());
    let guard = LoopGuard(fd, n);
    assert!(rec.wait_for(10, |e| !e.is_empty()), "no event for loop{n}");
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    let d = mon.lookup(&format!("block_loop{n}")).unwrap();
    assert_eq!(d.devtype(), Some("disk"));
    assert_eq!(d.devnode(), Some(format!("/dev/loop{n}").as_str()));
    drop(guard);
    assert!(rec.wait_for(10, |e| e.iter().any(|x| x.0 == Lifecycle::Deleted)), "{:?}", rec.events());
    assert_eq!(rec.events().first().map(|e| e.0), Some(Lifecycle::Created));
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}

#[test]
fn long_enumeration_and_stop_during_it() {
    if !in_child("long_enumeration_and_stop_during_it", Iso::NetNsSysfs, &[]) {
        return;
    }
    // 4000 real net devices in this namespace.
    let mut batch = String::new();
    for i in 0..2000 {
        batch.push_str(&format!("link add v{i} type veth peer name w{i}\n"));
    }
    let mut child = std::process::Command::new("ip").args(["-batch", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // A whole enumeration, timed.
    let mon = kernel_monitor();
    let t = std::time::Instant::now();
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(60))).unwrap();
    let full = t.elapsed();
    let n = mon.device_count();
    assert!(n > 4000, "{n}");
    mon.stop(Some(Duration::from_secs(10))).unwrap();
    println!("FIGURE enumeration: {n} real devices (4000 veth) enumerated in {full:?}");
    // Stop while it runs: it is cut short.
    for delay_ms in [0u64, 5, 20, 50] {
        let mon = kernel_monitor();
        mon.start().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let t = std::time::Instant::now();
        mon.stop(Some(Duration::from_secs(10))).unwrap();
        println!(
            "FIGURE enumeration: stop {delay_ms} ms into it returned after {:?} ({} devices in the table)",
            t.elapsed(),
            mon.device_count()
        );
        assert!(matches!(mon.wait_initialized(Some(Duration::from_millis(0))), Ok(()) | Err(nodedev_events::Error::Stopped)));
        let st = mon.stats();
        assert_eq!(st.submitted, st.handled);
    }
}
