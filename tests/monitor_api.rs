//! The monitor's API promises: start/stop states, wait_initialized never
//! hanging, settle, listeners (deregister from inside, panics), lookups
//! outliving the monitor, and the raw-handler path (a C-style handler on
//! the monitor's events receives the `struct udev_device *`).

mod support;

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodedev_events::EventType;
use nodedev_events::{EventSource, Lifecycle, Monitor, MonitorConfig, Registration, NDE_MONITOR_MAX_WORKERS};
use nodedev_events::Error::*;
use support::*;

fn cfg(source: EventSource) -> MonitorConfig {
    MonitorConfig { source, watch_mdevctl: false, name: "nde-api".into(), receive_buffer_bytes: 1 << 20, ..Default::default() }
}

#[test]
fn states_and_waits_never_hang() {
    // (Both groups or unknown flags cannot be written in Rust; the C layer
    // refuses them: ctests.)
    let too_many = MonitorConfig { workers: NDE_MONITOR_MAX_WORKERS + 1, ..cfg(EventSource::Kernel) };
    assert_eq!(Monitor::new(too_many).err(), Some(InvalidArgument));
    let mon = Monitor::new(cfg(EventSource::Kernel)).unwrap();
    // Not started: a timeout, never a hang; settle has nothing to wait for.
    assert_eq!(mon.wait_initialized(Some(Duration::from_millis(0))), Err(Timeout));
    assert_eq!(mon.wait_initialized(Some(Duration::from_millis(20))), Err(Timeout));
    assert_eq!(mon.settle(Some(Duration::from_millis(0))), Ok(()));
    assert_eq!(mon.device_count(), 0);
    mon.start().unwrap();
    assert_eq!(mon.start(), Err(InvalidArgument));
    mon.wait_initialized(None).unwrap();
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    assert!(mon.device_count() >= 1);
    assert!(mon.lookup("computer").is_some());
    let held = mon.snapshot();
    let mut seen = 0;
    assert_eq!(
        mon.snapshot()
            .iter()
            .map(|_d| {
                seen += 1;
                if seen == 1 {
                    7
                } else {
                    0
                }
            })
            .find(|&r| r != 0)
            .unwrap_or(0),
        7
    );
    assert_eq!(seen, 1, "a non-zero return stops foreach");
    mon.stop(Some(Duration::from_secs(10))).unwrap();
    mon.stop(Some(Duration::from_secs(10))).unwrap(); // idempotent
    assert_eq!(mon.start(), Err(Stopped));
    assert_eq!(mon.settle(Some(Duration::from_millis(0))), Err(Stopped));
    assert_eq!(mon.wait_initialized(Some(Duration::from_millis(0))), Ok(()));
    drop(mon);
    // References outlive the monitor.
    assert!(held.iter().any(|d| d.name() == "computer"));

    // Stopped before INIT ran: wait_initialized says STOPPED at once.
    let mon = Monitor::new(cfg(EventSource::Kernel)).unwrap();
    mon.stop(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(mon.wait_initialized(None), Err(Stopped));
}

#[test]
fn stop_right_after_start() {
    // The enumeration is cut short by stop (checked between devices).
    for _ in 0..5 {
        let mon = Monitor::new(cfg(EventSource::Kernel)).unwrap();
        let rec = Recorder::default();
        rec.attach(&mon, None);
        mon.start().unwrap();
        let t = Instant::now();
        mon.stop(Some(Duration::from_secs(10))).unwrap();
        println!("FIGURE stop right after start: {:?} ({} devices announced)", t.elapsed(), rec.len());
        let st = mon.stats();
        assert_eq!(st.submitted, st.handled);
    }
}

#[test]
fn listeners_deregister_inside_and_panics() {
    let mon = Arc::new(Monitor::new(cfg(EventSource::Kernel)).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let removed = Arc::new(AtomicUsize::new(0));
    let my_id: Arc<Mutex<Option<Registration>>> = Arc::new(Mutex::new(None));
    {
        let (c, id) = (calls.clone(), my_id.clone());
        let r = removed.clone();
        let released = OnDrop(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let id_v = mon
            .register(None, move |_d, _e| {
                let _released_with_the_closure = &released;
                c.fetch_add(1, Ordering::SeqCst);
                if let Some(me) = id.lock().unwrap().take() {
                    // Deregister itself from inside its own call.
                    me.deregister().unwrap();
                }
            })
            .unwrap();
        *my_id.lock().unwrap() = Some(id_v);
    }
    mon.register(Some("computer"), |_d, _e| panic!("listener bug (deliberate)")).unwrap().forget();
    let after = Recorder::default();
    after.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not called again after deregistering itself");
    assert_eq!(removed.load(Ordering::SeqCst), 1);
    assert!(mon.stats().listener_panics >= 1);
    assert!(after.len() >= 1, "later listeners still run after a panic");
    // Deregister from outside: the closure is dropped before it returns.
    let r2 = Arc::new(AtomicUsize::new(0));
    let r2c = r2.clone();
    let released = OnDrop(move || {
        r2c.fetch_add(1, Ordering::SeqCst);
    });
    let id = mon
        .register(Some("computer"), move |_d, _e| {
            let _released_with_the_closure = &released;
        })
        .unwrap();
    id.deregister().unwrap();
    assert_eq!(r2.load(Ordering::SeqCst), 1);
    // (A second deregister of the same listener cannot be written with a
    // handle; ctests/monitor_test.c checks NOT_FOUND for unknown C ids.)
    mon.stop(Some(Duration::from_secs(10))).unwrap();
}

#[test]
fn raw_udev_handler_gets_udev_device() {
    if !in_child("raw_udev_handler_gets_udev_device", Iso::NetNsSysfs, &[]) {
        return;
    }
    let mon = Arc::new(Monitor::new(cfg(EventSource::Udev)).unwrap());
    let seen = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    {
        // What a C driver does with nde_monitor_get_events + nde_events_register.
        let s = seen.clone();
        let m = Arc::downgrade(&mon);
        mon.events()
            .register(
                Some(EventType::NDE_EVENT_UDEV_ADD),
                move |_t, data: *mut c_void| {
                    assert!(!data.is_null());
                    // SAFETY: UDEV_* events carry a live struct udev_device *.
                    let sp = unsafe { CStr::from_ptr(udev::ffi::udev_device_get_syspath(data.cast())) };
                    let sp = sp.to_string_lossy().into_owned();
                    // The built-in handler ran first: the table knows it.
                    let known = m.upgrade().map(|m| m.lookup_by_syspath(&sp).is_some()).unwrap_or(false);
                    s.lock().unwrap().push((sp, known));
                })
            .unwrap()
            .forget();
    }
    let rec = Recorder::default();
    rec.attach(&mon, None);
    mon.start().unwrap();
    mon.wait_initialized(Some(Duration::from_secs(30))).unwrap();
    rec.clear();
    let mut inj = Injector::new();
    for i in 0..100 {
        inj.net("add", &format!("r{i}"), None);
    }
    inj.net("remove", "r0", None);
    mon.settle(Some(Duration::from_secs(10))).unwrap();
    let v = seen.lock().unwrap().clone();
    assert_eq!(v.len(), 100);
    assert!(v.iter().all(|(_, known)| *known));
    assert_eq!(v[5].0, "/sys/devices/virtual/net/r5");
    assert_eq!(rec.count_by_event().get(&Lifecycle::Created), Some(&100));
    assert!(rec.has(Lifecycle::Deleted, "net_r0"));
    let st = mon.stats();
    assert_eq!(st.fast_path, 0, "a raw handler forces the libudev path: {st:?}");
    mon.stop(Some(Duration::from_secs(10))).unwrap();
    let st = mon.stats();
    assert_eq!(st.submitted, st.handled, "{st:?}");
}

#[test]
fn monitor_dropped_from_its_own_callback() {
    // What nde_monitor_free from inside a lifecycle callback does: the
    // listener's on_remove still runs exactly once, nothing hangs.
    let slot: Arc<Mutex<Option<Monitor>>> = Arc::new(Mutex::new(None));
    let removed = Arc::new(AtomicUsize::new(0));
    let mon = Monitor::new(cfg(EventSource::Kernel)).unwrap();
    {
        let (s, r) = (slot.clone(), removed.clone());
        let released = OnDrop(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        mon.register(Some("computer"), move |_d, _e| {
            let _released_with_the_closure = &released;
            let m = s.lock().unwrap().take();
            drop(m); // the monitor goes away on its own worker
        })
        .unwrap()
        .forget();
    }
    {
        let mut g = slot.lock().unwrap();
        *g = Some(mon);
        g.as_ref().unwrap().start().unwrap();
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while removed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(removed.load(Ordering::SeqCst), 1);
}
