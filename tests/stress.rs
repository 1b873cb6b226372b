//! Storms of random operations from several threads against shared pools
//! and events objects, through the Rust API.
//!
//! Every thread draws operations from its own seeded generator: send /
//! submit (often in bursts), stop, drain, wait_idle, set_parameters,
//! register, deregister, schedule, shutdown_prepare, shutdown_wait, getters,
//! and "free" (the object is replaced by a new one; the old one is dropped
//! by whichever thread lets go of it last, sometimes a job or callback of
//! that very object). Jobs and callbacks themselves send, submit, register,
//! deregister, call the joining functions (which must refuse), and panic on
//! purpose.
//!
//! At the end every job, every event's data and every callback's userdata
//! has been released exactly once, every caught panic is accounted for, the
//! stats of every object add up, and no callback ran after `deregister`
//! returned. The storm runs for a bounded number of operations per thread
//! and stops early after a time budget: the budget changes how much work is
//! done, never what is checked.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use nodedev_events::{Priority, EventData, EventType, Events, Registration};
use nodedev_events::Error;
use nodedev_events::{Pool, PoolLimits};

const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 40_000;
const BUDGET: Duration = Duration::from_millis(1200);

/// xorshift64*: small, seedable, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Panics thrown on purpose carry this text; the hook stays quiet for them.
const ON_PURPOSE: &str = "stress: panic on purpose";

fn quiet_intended_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(|s| s.as_str()));
            if msg != Some(ON_PURPOSE) {
                previous(info);
            }
        }));
    });
}

/// Waits, with a generous bound on iterations (not on time), until `done`.
fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2_000_000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    panic!("never happened: {what}");
}

// ---------------------------------------------------------------- pools --

#[derive(Default)]
struct JobLedger {
    created: AtomicUsize,
    released: AtomicUsize,
    ran: AtomicUsize,
}

/// A job that counts its release.
struct Job {
    ledger: Arc<JobLedger>,
    /// 0 plain, 1 panic, 2 send a child, 3 joining calls must refuse,
    /// 4 let go of a strong reference to the own pool (may be the last).
    action: u8,
    generation: u8,
}

impl Job {
    fn new(ledger: &Arc<JobLedger>, action: u8, generation: u8) -> Job {
        ledger.created.fetch_add(1, SeqCst);
        Job { ledger: ledger.clone(), action, generation }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.ledger.released.fetch_add(1, SeqCst);
    }
}

/// Per-pool accounting, reachable from its own jobs.
#[derive(Default)]
struct PoolBook {
    me: OnceLock<Weak<Pool<Job>>>,
    panics_thrown: AtomicUsize,
    refused: AtomicUsize,
    bad_joins: AtomicUsize,
}

struct PoolObj {
    pool: Arc<Pool<Job>>,
    book: Arc<PoolBook>,
}

fn pool_handler(book: Arc<PoolBook>) -> Box<dyn Fn(Job) + Send + Sync> {
    Box::new(move |job: Job| {
        job.ledger.ran.fetch_add(1, SeqCst);
        match job.action {
            1 => {
                book.panics_thrown.fetch_add(1, SeqCst);
                panic!("{}", ON_PURPOSE);
            }
            2 if job.generation < 2 => {
                if let Some(pool) = book.me.get().and_then(Weak::upgrade) {
                    let child = Job::new(&job.ledger, 0, job.generation + 1);
                    if let Err((e, child)) = pool.send(Priority::Normal, child) {
                        assert_eq!(e, Error::Stopped);
                        book.refused.fetch_add(1, SeqCst);
                        drop(child);
                    }
                }
            }
            3 => {
                if let Some(pool) = book.me.get().and_then(Weak::upgrade) {
                    let d = pool.drain();
                    let w = pool.wait_idle(None);
                    if d != Err(Error::WouldDeadlock)
                        || w != Err(Error::WouldDeadlock)
                        || !pool.on_worker()
                    {
                        book.bad_joins.fetch_add(1, SeqCst);
                    }
                    let s = pool.stats();
                    assert!(s.completed + s.discarded <= s.submitted);
                }
            }
            4 => {
                // Dropped at the end of this job: if every other holder let
                // go meanwhile, the pool is released from inside its own job.
                let _strong = book.me.get().and_then(Weak::upgrade);
            }
            _ => {}
        }
    })
}

fn new_pool(kind: u64, serial: usize) -> PoolObj {
    let limits = match kind % 4 {
        0 => PoolLimits { min_workers: 1, max_workers: 1, prio_workers: 0 },
        1 => PoolLimits { min_workers: 0, max_workers: 3, prio_workers: 0 },
        2 => PoolLimits { min_workers: 1, max_workers: 2, prio_workers: 1 },
        _ => PoolLimits { min_workers: 2, max_workers: 2, prio_workers: 0 },
    };
    let book = Arc::new(PoolBook::default());
    let pool = Arc::new(Pool::new(limits, &format!("stress-p{serial}"), pool_handler(book.clone())).unwrap());
    book.me.set(Arc::downgrade(&pool)).ok().unwrap();
    PoolObj { pool, book }
}

#[test]
fn pool_storm_releases_every_job_exactly_once() {
    quiet_intended_panics();
    let ledger = Arc::new(JobLedger::default());
    let serial = AtomicUsize::new(0);
    let slots: Vec<Mutex<Arc<PoolObj>>> = (0..3)
        .map(|k| Mutex::new(Arc::new(new_pool(k, serial.fetch_add(1, SeqCst)))))
        .collect();
    // Replaced objects kept for the final accounting.
    let retired: Mutex<Vec<Arc<PoolObj>>> = Mutex::new(Vec::new());
    let ops_done = AtomicUsize::new(0);
    let start = Instant::now();

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (ledger, slots, retired, serial, ops_done) = (&ledger, &slots, &retired, &serial, &ops_done);
            s.spawn(move || {
                let mut rng = Rng::new(0x5eed_0000 + t as u64);
                for op in 0..OPS_PER_THREAD {
                    if op % 64 == 0 && start.elapsed() > BUDGET {
                        break;
                    }
                    ops_done.fetch_add(1, SeqCst);
                    let slot = &slots[rng.below(slots.len() as u64) as usize];
                    let obj = slot.lock().unwrap().clone();
                    let pool = &obj.pool;
                    // A stopped object is soon replaced, as a host would.
                    let choice = if pool.is_stopped() && rng.chance(16) { 999 } else { rng.below(1000) };
                    match choice {
                        0..=599 => {
                            let burst = if rng.chance(8) { 1 + rng.below(32) } else { 1 };
                            for _ in 0..burst {
                                let action = match rng.below(100) {
                                    0..=1 => 1,
                                    2..=9 => 2,
                                    10..=11 => 3,
                                    12..=14 => 4,
                                    _ => 0,
                                };
                                let prio = if rng.chance(4) { Priority::High } else { Priority::Normal };
                                if let Err((e, job)) = pool.send(prio, Job::new(ledger, action, 0)) {
                                    assert!(
                                        e == Error::Stopped,
                                        "send refused with {e:?}"
                                    );
                                    obj.book.refused.fetch_add(1, SeqCst);
                                    drop(job);
                                }
                            }
                        }
                        600..=699 => {
                            let r = pool.wait_idle(Some(Duration::from_millis(rng.below(3))));
                            assert!(
                                matches!(
                                    r,
                                    Ok(())
                                        | Err(Error::Timeout)
                                        | Err(Error::Stopped)
                                ),
                                "wait_idle gave {r:?}"
                            );
                        }
                        700..=799 => {
                            let st = pool.stats();
                            assert!(st.completed + st.discarded <= st.submitted, "{st:?}");
                            let _ = (pool.queue_depth(), pool.current_workers(), pool.free_workers());
                            let _ = (pool.current_prio_workers(), pool.limits(), pool.caught_panics());
                            assert!(!pool.on_worker());
                        }
                        800..=879 => {
                            // None: keep (libvirt's -1).
                            let keep_or = |n: u64| n.checked_sub(1).map(|n| n as usize);
                            let min = keep_or(rng.below(3));
                            let max = keep_or(rng.below(4));
                            let prio = keep_or(rng.below(3));
                            let r = pool.set_parameters(min, max, prio);
                            assert!(
                                matches!(
                                    r,
                                    Ok(()) | Err(Error::InvalidArgument) | Err(Error::Stopped)
                                ),
                                "set_parameters gave {r:?}"
                            );
                        }
                        880..=939 => {
                            let st = pool.stats();
                            assert!(st.completed + st.discarded <= st.submitted, "{st:?}");
                        }
                        940..=959 => pool.stop(),
                        960..=979 => {
                            let r = if rng.chance(2) { pool.drain() } else { pool.drain_timeout(Some(Duration::from_millis(rng.below(3)))) };
                            assert!(
                                matches!(r, Ok(()) | Err(Error::Timeout)),
                                "drain gave {r:?}"
                            );
                        }
                        _ => {
                            // "free": replace the object; the old one is
                            // released by whoever lets go of it last.
                            let fresh = Arc::new(new_pool(rng.next(), serial.fetch_add(1, SeqCst)));
                            let old = std::mem::replace(&mut *slot.lock().unwrap(), fresh);
                            if rng.chance(2) {
                                retired.lock().unwrap().push(old);
                            }
                        }
                    }
                }
            });
        }
    });

    // Final accounting on the objects still reachable.
    let mut all: Vec<Arc<PoolObj>> = retired.into_inner().unwrap();
    all.extend(slots.into_iter().map(|m| m.into_inner().unwrap()));
    let objects = all.len();
    for obj in &all {
        obj.pool.drain().unwrap();
        let st = obj.pool.stats();
        assert_eq!(st.submitted, st.completed + st.discarded, "{st:?}");
        assert_eq!(st.rejected as usize, obj.book.refused.load(SeqCst), "{st:?}");
        assert_eq!(obj.pool.caught_panics(), obj.book.panics_thrown.load(SeqCst));
        assert_eq!(obj.pool.queue_depth(), 0);
        assert_eq!(obj.book.bad_joins.load(SeqCst), 0);
    }
    drop(all);
    // Pools released from inside their own jobs finish on their last worker.
    eventually("every job released", || ledger.released.load(SeqCst) == ledger.created.load(SeqCst));
    assert_eq!(ledger.released.load(SeqCst), ledger.created.load(SeqCst));
    assert!(ledger.ran.load(SeqCst) <= ledger.created.load(SeqCst));
    println!(
        "pool storm: {} operations, {} jobs, {} ran, {} pools created, {} checked",
        ops_done.load(SeqCst),
        ledger.created.load(SeqCst),
        ledger.ran.load(SeqCst),
        serial.load(SeqCst),
        objects
    );
}

// --------------------------------------------------------------- events --

#[derive(Default)]
struct EvLedger {
    data_created: AtomicUsize,
    data_freed: AtomicUsize,
    registered: AtomicUsize,
    removed: AtomicUsize,
    calls: AtomicUsize,
    /// Calls of a callback after its deregister returned.
    late_calls: AtomicUsize,
}

/// The data of one event: counts its release, and says it was released.
struct Datum {
    ledger: Arc<EvLedger>,
    freed: Arc<AtomicBool>,
    generation: u8,
}

unsafe extern "C" fn free_datum(p: *mut c_void) {
    // SAFETY: p is a Box<Datum> leaked by `datum`, freed once by contract.
    let d = unsafe { Box::from_raw(p as *mut Datum) };
    assert!(!d.freed.swap(true, SeqCst), "data freed twice");
    d.ledger.data_freed.fetch_add(1, SeqCst);
}

fn datum(ledger: &Arc<EvLedger>, generation: u8) -> (EventData, Arc<AtomicBool>) {
    ledger.data_created.fetch_add(1, SeqCst);
    let freed = Arc::new(AtomicBool::new(false));
    let d = Box::new(Datum { ledger: ledger.clone(), freed: freed.clone(), generation });
    // SAFETY: free_datum releases the Box made here, once.
    (unsafe { EventData::new(Box::into_raw(d) as *mut c_void, Some(free_datum)) }, freed)
}

/// One registration, as its callback and the storm see it.
struct Reg {
    handle: Mutex<Option<Registration>>,
    deregistered: AtomicBool,
}

struct EvObj {
    ev: Events,
    ledger: Arc<EvLedger>,
    me: OnceLock<Weak<EvObj>>,
    regs: Mutex<Vec<Arc<Reg>>>,
    registered: AtomicUsize,
    removed: Arc<AtomicUsize>,
    panics_thrown: AtomicUsize,
}

const TYPES: [EventType; 6] = [
    EventType::NDE_EVENT_INIT,
    EventType::NDE_EVENT_UDEV_ADD,
    EventType::NDE_EVENT_UDEV_REMOVE,
    EventType::NDE_EVENT_UDEV_CHANGE,
    EventType::NDE_EVENT_UDEV_MOVE,
    EventType::NDE_EVENT_MDEVCTL_CONFIG_CHANGED,
];

impl EvObj {
    fn new(ledger: &Arc<EvLedger>, serial: usize) -> Arc<EvObj> {
        let obj = Arc::new(EvObj {
            ev: Events::new(&format!("stress-e{serial}")).unwrap(),
            ledger: ledger.clone(),
            me: OnceLock::new(),
            regs: Mutex::new(Vec::new()),
            registered: AtomicUsize::new(0),
            removed: Arc::new(AtomicUsize::new(0)),
            panics_thrown: AtomicUsize::new(0),
        });
        obj.me.set(Arc::downgrade(&obj)).ok().unwrap();
        obj
    }

    /// Registers a callback that counts, checks it is not called after its
    /// deregistration, and now and then acts from inside.
    fn register(&self, filter: Option<EventType>, seed: u64) -> Result<(), Error> {
        let reg = Arc::new(Reg { handle: Mutex::new(None), deregistered: AtomicBool::new(false) });
        let (r2, me, ledger) = (reg.clone(), self.me.get().unwrap().clone(), self.ledger.clone());
        let mut rng = Rng::new(seed);
        let mut cb = move |_t: EventType, data: *mut c_void| {
            ledger.calls.fetch_add(1, SeqCst);
            if r2.deregistered.load(SeqCst) {
                ledger.late_calls.fetch_add(1, SeqCst);
            }
            let generation = if data.is_null() {
                0
            } else {
                // SAFETY: the event's Datum, alive until every callback returned.
                unsafe { (*(data as *const Datum)).generation }
            };
            let Some(obj) = me.upgrade() else { return };
            match rng.below(200) {
                0 => {
                    obj.panics_thrown.fetch_add(1, SeqCst);
                    drop(obj);
                    panic!("{}", ON_PURPOSE);
                }
                1..=3 => {
                    // Deregister itself: returns at once, released after return.
                    let handle = r2.handle.lock().unwrap().take();
                    if handle.is_some_and(|h| h.deregister().is_ok()) {
                        r2.deregistered.store(true, SeqCst);
                    }
                }
                4..=6 => {
                    let _ = obj.register(None, rng.next());
                }
                7..=16 if generation < 2 => {
                    let (d, freed) = datum(&obj.ledger, generation + 1);
                    if obj.ev.submit(EventType::NDE_EVENT_UDEV_CHANGE, d).is_err() {
                        assert!(freed.load(SeqCst), "refused data not freed before return");
                    }
                }
                17 => {
                    let w = obj.ev.wait_idle(None);
                    let s = obj.ev.shutdown_wait(None);
                    assert_eq!(w, Err(Error::WouldDeadlock));
                    assert_eq!(s, Err(Error::WouldDeadlock));
                }
                18 => obj.ev.shutdown_prepare(),
                _ => {}
            }
            // `obj` may be the last strong reference: then the events object
            // is released from inside its own callback.
        };
        let removed = self.removed.clone();
        let global = self.ledger.clone();
        // The closure's release (the C API's userdata_free) is its drop.
        let released = OnDrop(move || {
            removed.fetch_add(1, SeqCst);
            global.removed.fetch_add(1, SeqCst);
        });
        self.ledger.registered.fetch_add(1, SeqCst);
        self.registered.fetch_add(1, SeqCst);
        let handle = self.ev.register(filter, move |t, data| {
            let _released_with_the_closure = &released;
            cb(t, data)
        })?;
        *reg.handle.lock().unwrap() = Some(handle);
        self.regs.lock().unwrap().push(reg);
        Ok(())
    }
}

#[test]
fn events_storm_releases_every_datum_and_userdata_exactly_once() {
    quiet_intended_panics();
    let ledger = Arc::new(EvLedger::default());
    let serial = AtomicUsize::new(0);
    let slots: Vec<Mutex<Arc<EvObj>>> =
        (0..2).map(|_| Mutex::new(EvObj::new(&ledger, serial.fetch_add(1, SeqCst)))).collect();
    let retired: Mutex<Vec<Arc<EvObj>>> = Mutex::new(Vec::new());
    let ops_done = AtomicUsize::new(0);
    let start = Instant::now();

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (ledger, slots, retired, serial, ops_done) = (&ledger, &slots, &retired, &serial, &ops_done);
            s.spawn(move || {
                let mut rng = Rng::new(0xe7e7_0000 + t as u64);
                for op in 0..OPS_PER_THREAD {
                    if op % 64 == 0 && start.elapsed() > BUDGET {
                        break;
                    }
                    ops_done.fetch_add(1, SeqCst);
                    let slot = &slots[rng.below(slots.len() as u64) as usize];
                    let obj = slot.lock().unwrap().clone();
                    let ev = &obj.ev;
                    let choice = if ev.is_stopping() && rng.chance(16) { 999 } else { rng.below(1000) };
                    match choice {
                        0..=549 => {
                            let burst = if rng.chance(8) { 1 + rng.below(32) } else { 1 };
                            for _ in 0..burst {
                                let t = TYPES[rng.below(6) as usize];
                                let (d, freed) = datum(ledger, 0);
                                match ev.submit(t, d) {
                                    Ok(()) => {}
                                    Err(e) => {
                                        assert_eq!(e, Error::Stopped);
                                        assert!(freed.load(SeqCst), "refused data not freed before return");
                                    }
                                }
                            }
                        }
                        550..=619 => {
                            let filter = if rng.chance(3) { None } else { Some(TYPES[rng.below(6) as usize]) };
                            obj.register(filter, rng.next()).unwrap();
                        }
                        620..=689 => {
                            let reg = {
                                let mut regs = obj.regs.lock().unwrap();
                                if regs.is_empty() {
                                    None
                                } else {
                                    let i = rng.below(regs.len() as u64) as usize;
                                    Some(regs.swap_remove(i))
                                }
                            };
                            if let Some(reg) = reg {
                                let handle = reg.handle.lock().unwrap().take();
                                if let Some(handle) = handle {
                                    match handle.deregister() {
                                        // Not running now, never again.
                                        Ok(()) => reg.deregistered.store(true, SeqCst),
                                        Err(e) => assert_eq!(e, Error::NotFound),
                                    }
                                }
                            }
                        }
                        690..=779 => {
                            let t = TYPES[rng.below(6) as usize];
                            let r = ev.schedule(t, Duration::from_millis(rng.below(3)));
                            assert!(
                                matches!(r, Ok(()) | Err(Error::Stopped)),
                                "schedule gave {r:?}"
                            );
                        }
                        780..=859 => {
                            let r = ev.wait_idle(Some(Duration::from_millis(rng.below(3))));
                            assert!(
                                matches!(
                                    r,
                                    Ok(()) | Err(Error::Timeout) | Err(Error::Stopped)
                                ),
                                "wait_idle gave {r:?}"
                            );
                        }
                        860..=919 => {
                            let st = ev.stats();
                            assert!(st.completed + st.discarded <= st.submitted, "{st:?}");
                            let _ = (ev.queue_depth(), ev.is_stopping(), ev.caught_panics());
                            let _ = ev.has_callback_for(TYPES[rng.below(6) as usize]);
                            assert!(!ev.on_worker());
                        }
                        920..=959 => {
                            let _ = (ev.queue_depth(), ev.stats());
                        }
                        960..=974 => ev.shutdown_prepare(),
                        975..=989 => {
                            let r = ev.shutdown_wait(rng.below(3).checked_sub(1).map(Duration::from_millis));
                            assert!(matches!(r, Ok(()) | Err(Error::Timeout)), "shutdown_wait gave {r:?}");
                        }
                        _ => {
                            let fresh = EvObj::new(ledger, serial.fetch_add(1, SeqCst));
                            let old = std::mem::replace(&mut *slot.lock().unwrap(), fresh);
                            if rng.chance(2) {
                                retired.lock().unwrap().push(old);
                            }
                        }
                    }
                }
            });
        }
    });

    let mut all: Vec<Arc<EvObj>> = retired.into_inner().unwrap();
    all.extend(slots.into_iter().map(|m| m.into_inner().unwrap()));
    let objects = all.len();
    for obj in all {
        obj.ev.shutdown_wait(None).unwrap();
        let st = obj.ev.stats();
        assert_eq!(st.submitted, st.completed + st.discarded, "{st:?}");
        assert_eq!(obj.ev.caught_panics(), obj.panics_thrown.load(SeqCst));
        assert_eq!(obj.ev.queue_depth(), 0);
        let (registered, removed) = (obj.registered.load(SeqCst), obj.removed.clone());
        // The last strong reference: dropping it releases every userdata
        // before the drop returns.
        match Arc::try_unwrap(obj) {
            Ok(obj) => {
                drop(obj);
                assert_eq!(removed.load(SeqCst), registered, "userdata not all released by drop");
            }
            Err(_) => unreachable!("every callback has returned after shutdown_wait"),
        }
    }
    eventually("every datum released", || {
        ledger.data_freed.load(SeqCst) == ledger.data_created.load(SeqCst)
    });
    eventually("every userdata released", || ledger.removed.load(SeqCst) == ledger.registered.load(SeqCst));
    assert_eq!(ledger.late_calls.load(SeqCst), 0, "a callback ran after deregister returned");
    println!(
        "events storm: {} operations, {} events with data, {} callback calls, {} registrations, {} objects created, {} checked",
        ops_done.load(SeqCst),
        ledger.data_created.load(SeqCst),
        ledger.calls.load(SeqCst),
        ledger.registered.load(SeqCst),
        serial.load(SeqCst),
        objects
    );
}

/// Runs its function when dropped: a registered closure that holds one is
/// released exactly when the library drops the closure (what a C
/// `userdata_free` is).
pub struct OnDrop<F: FnMut()>(pub F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}
