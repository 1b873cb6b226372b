//! mdevctl support, tested with a STAND-IN: this machine has no mdev
//! hardware (no `mdev_bus`), so a small `mdevctl` shell script, put first
//! on PATH, prints recorded `mdevctl list [--defined] --dumpjson` output
//! from files the test writes; the config directory is a real temporary
//! directory watched with inotify (files and a new subdirectory in it
//! trigger the debounced refresh). Each test runs in a child process so
//! its PATH is its own.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nodedev_events::{EventSource, Lifecycle, Monitor, MonitorConfig};
use support::*;

const UUID1: &str = "4b20d080-1b54-4048-85b3-a6a62d165c01";
const UUID2: &str = "4b20d080-1b54-4048-85b3-a6a62d165c02";

fn name(uuid: &str) -> String {
    nodedev_events::test_hooks::mdev_name(uuid, "0000:00:02.0")
}

fn entry(uuid: &str, start: &str) -> String {
    format!(r#"{{"{uuid}": {{"mdev_type": "i915-GVTg_V5_4", "start": "{start}", "attrs": []}}}}"#)
}

fn json(entries: &[String]) -> String {
    if entries.is_empty() {
        return "[]".into();
    }
    format!(r#"[{{"0000:00:02.0": [{}]}}]"#, entries.join(","))
}

struct StandIn {
    dir: PathBuf,
}

impl StandIn {
    /// A temp dir with bin/mdevctl (the stand-in), defined.json,
    /// active.json, and conf/ (the watched mdevctl_dir).
    fn new(tag: &str) -> StandIn {
        let dir = std::env::temp_dir().join(format!("nde-mdevctl-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        let script = format!(
            "#!/bin/sh\n# stand-in for mdevctl: prints recorded JSON\ncase \"$*\" in\n  *--defined*) f={d}/defined.json ;;\n  *) f={d}/active.json ;;\nesac\n[ -e {d}/fail ] && exit 3\ncat \"$f\"\n",
            d = dir.display()
        );
        let bin = dir.join("bin/mdevctl");
        std::fs::write(&bin, script).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let s = StandIn { dir };
        s.set(&[], &[]);
        s
    }
    fn set(&self, defined: &[String], active: &[String]) {
        std::fs::write(self.dir.join("defined.json.tmp"), json(defined)).unwrap();
        std::fs::rename(self.dir.join("defined.json.tmp"), self.dir.join("defined.json")).unwrap();
        std::fs::write(self.dir.join("active.json.tmp"), json(active)).unwrap();
        std::fs::rename(self.dir.join("active.json.tmp"), self.dir.join("active.json")).unwrap();
    }
    fn set_raw(&self, defined: &str) {
        std::fs::write(self.dir.join("defined.json"), defined).unwrap();
    }
    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until no mdevctl refresh is pending any more: the watch may still
/// deliver events of earlier writes (one write can give several inotify
/// events, debounced into more than one refresh). Bounded by iterations.
fn quiesce(mon: &Monitor) {
    for _ in 0..100 {
        let before = mon.stats().mdevctl_refreshes;
        std::thread::sleep(Duration::from_millis(200)); // > 3 debounce windows
        mon.settle(Some(Duration::from_secs(5))).unwrap();
        if mon.stats().mdevctl_refreshes == before {
            return;
        }
    }
    panic!("mdevctl refreshes never stopped");
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

fn monitor(conf: &Path) -> Monitor {
    Monitor::new(MonitorConfig {
        source: EventSource::Kernel,
        name: "nde-mdev".into(),
        // Only the mdev subsystem: nothing else of this machine is enumerated.
        subsystems: Some(vec!["mdev".into()]),
        mdevctl_dir: conf.to_owned(),
        mdevctl_debounce: Duration::from_millis(50),
        receive_buffer_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn defined_updated_undefined_through_the_watch() {
    let s = StandIn::new("watch");
    if !in_child("defined_updated_undefined_through_the_watch", Iso::Plain, &[("PATH", &path_with(&s.dir.join("bin")))]) {
        return;
    }
    // In the child: the parent's StandIn files are ours too (same dir name
    // would differ by pid), so use the parent's directory from PATH.
    let bin_dir = std::env::var("PATH").unwrap().split(':').next().unwrap().to_owned();
    let s = StandIn { dir: Path::new(&bin_dir).parent().unwrap().to_owned() };
    s.set(&[entry(UUID1, "manual")], &[]);
    let mon = monitor(&s.conf());
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(10))).unwrap();
    // The INIT refresh defined it.
    assert!(rec.has(Lifecycle::Defined, &name(UUID1)), "{:?}", rec.events());
    let d = mon.lookup(&name(UUID1)).unwrap();
    assert!(d.is_persistent());
    assert_eq!(d.syspath(), "");
    assert_eq!(d.property("MDEVCTL_TYPE"), Some("i915-GVTg_V5_4"));
    assert_eq!(d.parent(), "computer", "no such PCI parent on this machine");
    rec.clear();

    // A second device defined and the first changed; a file written in a
    // NEW subdirectory is what tells the monitor (recursive watch).
    s.set(&[entry(UUID1, "auto"), entry(UUID2, "manual")], &[]);
    std::fs::create_dir_all(s.conf().join("0000:00:02.0")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(s.conf().join("0000:00:02.0").join(UUID2), "{}").unwrap();
    assert!(rec.wait_for(10, |e| e.len() >= 2), "{:?}", rec.events());
    assert!(rec.has(Lifecycle::Updated, &name(UUID1)), "{:?}", rec.events());
    assert!(rec.has(Lifecycle::Defined, &name(UUID2)), "{:?}", rec.events());
    assert_eq!(mon.lookup(&name(UUID1)).unwrap().property("MDEVCTL_START"), Some("auto"));
    rec.clear();

    // Now written inside the subdirectory created after start.
    s.set(&[entry(UUID2, "manual")], &[entry(UUID2, "manual")]);
    std::fs::write(s.conf().join("0000:00:02.0").join(UUID2), "{ }").unwrap();
    assert!(rec.wait_for(10, |e| e.iter().any(|x| x.0 == Lifecycle::Undefined)), "{:?}", rec.events());
    assert!(rec.has(Lifecycle::Undefined, &name(UUID1)));
    assert!(mon.lookup(&name(UUID1)).is_none(), "undefined and inactive: gone");
    quiesce(&mon);
    rec.clear();

    // Bad JSON and a failing mdevctl: logged, table unchanged.
    let before = mon.device_count();
    let failures = mon.stats().mdevctl_failures;
    s.set_raw("[{\"0000:00:02.0\": [ {\"broken\": ");
    std::fs::write(s.conf().join("x"), "1").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mon.stats().mdevctl_failures == failures && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mon.stats().mdevctl_failures > failures);
    std::fs::write(s.dir.join("fail"), "").unwrap();
    std::fs::write(s.conf().join("x"), "2").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mon.stats().mdevctl_failures < failures + 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(mon.stats().mdevctl_failures >= failures + 2);
    mon.settle(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(mon.device_count(), before);
    assert!(rec.events().is_empty(), "{:?}", rec.events());
    // Coalescing: a burst of changes gives few refreshes, never two queued.
    std::fs::remove_file(s.dir.join("fail")).unwrap();
    s.set(&[], &[]);
    let r0 = mon.stats().mdevctl_refreshes;
    for i in 0..200 {
        std::fs::write(s.conf().join(format!("f{i}")), "x").unwrap();
    }
    assert!(rec.wait_for(10, |e| e.iter().any(|x| x.0 == Lifecycle::Undefined)), "{:?}", rec.events());
    std::thread::sleep(Duration::from_millis(300));
    let r = mon.stats().mdevctl_refreshes - r0;
    println!("mdevctl: 200 file writes -> {r} refresh(es)");
    assert!(r <= 3, "{r} refreshes");
    mon.stop(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn transient_active_mdev_created_then_deleted() {
    let s = StandIn::new("transient");
    if !in_child("transient_active_mdev_created_then_deleted", Iso::Plain, &[("PATH", &path_with(&s.dir.join("bin")))]) {
        return;
    }
    let bin_dir = std::env::var("PATH").unwrap().split(':').next().unwrap().to_owned();
    let s = StandIn { dir: Path::new(&bin_dir).parent().unwrap().to_owned() };
    s.set(&[], &[entry(UUID1, "manual")]);
    let mon = monitor(&s.conf());
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(10))).unwrap();
    assert!(rec.has(Lifecycle::Created, &name(UUID1)), "{:?}", rec.events());
    s.set(&[], &[]);
    std::fs::write(s.conf().join("y"), "1").unwrap();
    assert!(rec.wait_for(10, |e| e.iter().any(|x| x.0 == Lifecycle::Deleted)), "{:?}", rec.events());
    assert!(mon.lookup(&name(UUID1)).is_none());
    mon.stop(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn missing_mdevctl_dir_and_no_mdevctl() {
    if !in_child("missing_mdevctl_dir_and_no_mdevctl", Iso::Plain, &[("PATH", "/nonexistent")]) {
        return;
    }
    // No mdevctl on PATH and a directory that does not exist: the monitor
    // starts and runs anyway (each is logged once).
    let mon = monitor(Path::new("/nonexistent/mdevctl.d"));
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(mon.stats().mdevctl_refreshes, 0);
    mon.settle(Some(Duration::from_secs(5))).unwrap();
    mon.stop(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn udev_add_of_a_defined_mdev() {
    // The mdev itself is an injected udev-group message (no mdev hardware
    // here); mdevctl is the stand-in. A defined, inactive mdev that udev
    // then reports is CREATED (libvirt's rule) and keeps its mdevctl data;
    // its remove is DELETED but the defined device stays, inactive.
    let s = StandIn::new("udev");
    if !in_child("udev_add_of_a_defined_mdev", Iso::NetNsSysfs, &[("PATH", &path_with(&s.dir.join("bin")))]) {
        return;
    }
    let bin_dir = std::env::var("PATH").unwrap().split(':').next().unwrap().to_owned();
    let s = StandIn { dir: Path::new(&bin_dir).parent().unwrap().to_owned() };
    s.set(&[entry(UUID1, "manual")], &[]);
    let mon = Monitor::new(MonitorConfig {
        source: nodedev_events::EventSource::Udev,
        name: "nde-mdev2".into(),
        subsystems: Some(vec!["mdev".into()]),
        mdevctl_dir: s.conf(),
        mdevctl_debounce: Duration::from_millis(50),
        receive_buffer_bytes: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(10))).unwrap();
    assert!(rec.has(Lifecycle::Defined, &name(UUID1)));
    rec.clear();
    s.set(&[entry(UUID1, "manual")], &[entry(UUID1, "manual")]);
    let devpath = format!("/devices/pci0000:00/0000:00:02.0/{UUID1}");
    let mut inj = Injector::new();
    inj.send(&[("ACTION", "add"), ("DEVPATH", &devpath), ("SUBSYSTEM", "mdev"), ("MDEV_TYPE", "i915-GVTg_V5_4")]);
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(rec.events().first(), Some(&(Lifecycle::Created, name(UUID1))), "{:?}", rec.events());
    let d = mon.lookup(&name(UUID1)).unwrap();
    assert!(d.is_persistent());
    assert_eq!(d.syspath(), format!("/sys{devpath}"));
    assert_eq!(d.property("MDEVCTL_TYPE"), Some("i915-GVTg_V5_4"));
    // The add of an mdev queues one (coalesced) mdevctl refresh, which now
    // sees it active: UPDATED.
    assert!(rec.wait_for(10, |e| e.iter().any(|x| x.0 == Lifecycle::Updated)), "{:?}", rec.events());
    rec.clear();
    s.set(&[entry(UUID1, "manual")], &[]);
    inj.send(&[("ACTION", "remove"), ("DEVPATH", &devpath), ("SUBSYSTEM", "mdev")]);
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(rec.events().first(), Some(&(Lifecycle::Deleted, name(UUID1))), "{:?}", rec.events());
    let d = mon.lookup(&name(UUID1)).unwrap();
    assert!(d.is_persistent(), "still defined");
    assert_eq!(d.syspath(), "");
    mon.stop(Some(Duration::from_secs(5))).unwrap();
}
