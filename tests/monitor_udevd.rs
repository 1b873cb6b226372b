//! Genuine udev-group events from a real, isolated systemd-udevd (the
//! real-daemon tier of the tests): in a private network + mount namespace with sysfs
//! remounted, `/run/udev` and `/dev` replaced by private tmpfs mounts (the
//! daemon must not touch the machine's devtmpfs), and every rules
//! directory hidden behind an empty one (no rule renames anything). The
//! monitor runs with default flags, so it must pick the udev group itself
//! (because `/run/udev/control` exists). The daemon is stopped at the end
//! (and killed by a guard if the test fails).

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nodedev_events::{Lifecycle, Monitor, MonitorConfig};
use support::*;

struct Udevd(Child);
impl Drop for Udevd {
    fn drop(&mut self) {
        let _ = Command::new("udevadm").args(["control", "--exit"]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SETUP: &str = r#"
set -e
mount -n -t tmpfs tmpfs /run/udev 2>/dev/null || { mkdir -p /run/udev; mount -n -t tmpfs tmpfs /run/udev; }
D=$(mktemp -d)
for f in null zero full random urandom tty; do touch $D/$f; mount -n --bind /dev/$f $D/$f; done
mount -n -t tmpfs tmpfs /dev
for f in null zero full random urandom tty; do touch /dev/$f; mount -n --move $D/$f /dev/$f; done
E=$(mktemp -d)
mount -n --bind $E /usr/lib/udev/rules.d
[ -d /etc/udev/rules.d ] && mount -n --bind $E /etc/udev/rules.d
[ -d /run/udev/rules.d ] && mount -n --bind $E /run/udev/rules.d
true
"#;

#[test]
fn real_udevd_events() {
    if !in_child("real_udevd_events", Iso::NetNsSysfs, &[]) {
        return;
    }
    if !std::path::Path::new("/lib/systemd/systemd-udevd").exists() {
        println!("SKIP real_udevd_events: systemd-udevd is not installed");
        return;
    }
    sh(SETUP);
    let child = Command::new("/lib/systemd/systemd-udevd").spawn().expect("start systemd-udevd");
    let _udevd = Udevd(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new("/run/udev/control").exists() {
        assert!(Instant::now() < deadline, "udevd did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mon = Monitor::new(MonitorConfig { watch_mdevctl: false, name: "nde-udevd".into(), ..Default::default() }).unwrap();
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    rec.clear();
    sh("ip link add u0 type veth peer name u1");
    let u0 = net_name("u0", &mac_of("u0"));
    let u1 = net_name("u1", &mac_of("u1"));
    // udevd needs its time: wait for the events, then settle.
    assert!(rec.wait_for(20, |e| e.iter().filter(|x| x.0 == Lifecycle::Created).count() >= 2), "{:?}", rec.events());
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(rec.has(Lifecycle::Created, &u0) && rec.has(Lifecycle::Created, &u1), "{:?}", rec.events());
    let d = mon.lookup(&u0).unwrap();
    // A property only udevd adds proves these came from the udev group.
    let st = mon.stats();
    println!("udevd: {:?}; u0 properties: {:?}", st, d.properties().collect::<Vec<_>>());
    assert!(d.property("USEC_INITIALIZED").is_some(), "{d:?}");
    assert!(st.fast_path >= 2);
    sh("ip link del u0");
    assert!(rec.wait_for(20, |e| e.iter().filter(|x| x.0 == Lifecycle::Deleted).count() >= 2), "{:?}", rec.events());
    assert!(rec.has(Lifecycle::Deleted, &u0) && rec.has(Lifecycle::Deleted, &u1));
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}
