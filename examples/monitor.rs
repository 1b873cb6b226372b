//! monitor: the Rust twin of tools/nodedev-monitor.c. It prints the node
//! devices as a tree (like `virsh nodedev-list --tree`), then one line per
//! lifecycle event (like `virsh nodedev-event --loop`), using only the
//! crate's public Rust API. A Rust VMM that wants device hotplug starts here.
//!
//!   cargo run --release --example monitor -- [--list] [--timeout SECONDS]
//!       [--subsystem NAME]... [--timestamp] [--kernel | --udev]
//!
//! Ctrl-C, SIGTERM, SIGHUP and the timeout end it cleanly (exit status 0).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nodedev_events::{Device, Error, EventSource, Lifecycle, Monitor, MonitorConfig};

const USAGE: &str = "usage: monitor [--list] [--timeout SECONDS] [--subsystem NAME]... [--timestamp] [--kernel | --udev]";

struct Options {
    list_only: bool,
    timeout: Option<Duration>,
    subsystems: Vec<String>,
    timestamps: bool,
    source: EventSource,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options { list_only: false, timeout: None, subsystems: Vec::new(), timestamps: false, source: EventSource::Auto };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-l" | "--list" => o.list_only = true,
            "-t" | "--timeout" => {
                let v = args.next().ok_or("--timeout needs SECONDS")?;
                let secs: f64 = v.parse().ok().filter(|s: &f64| *s >= 0.0 && s.is_finite()).ok_or(format!("bad --timeout '{v}'"))?;
                o.timeout = Some(Duration::from_secs_f64(secs));
            }
            "-s" | "--subsystem" => o.subsystems.push(args.next().ok_or("--subsystem needs NAME")?),
            "-T" | "--timestamp" => o.timestamps = true,
            "-k" | "--kernel" => o.source = EventSource::Kernel,
            "-u" | "--udev" => o.source = EventSource::Udev,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    Ok(o)
}

/// virsh's layout: "+- " before each child, "|" below a node that has more
/// siblings to come, a "  |" line before the first child, and an empty line
/// after the last leaf of a list.
fn print_tree(devices: &[Arc<Device>]) {
    let names: BTreeMap<&str, &Device> = devices.iter().map(|d| (d.name(), &**d)).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (&name, dev) in &names {
        let parent = dev.parent();
        if parent.is_empty() || parent == name {
            roots.push(name);
        } else {
            // A parent that is not listed hangs under the root.
            match (names.contains_key(parent), names.contains_key("computer") && name != "computer") {
                (true, _) => children.entry(parent).or_default().push(name),
                (false, true) => children.entry("computer").or_default().push(name),
                (false, false) => roots.push(name),
            }
        }
    }
    fn walk(name: &str, last: bool, root: bool, indent: &mut String, children: &BTreeMap<&str, Vec<&str>>) {
        println!("{indent}{}{name}", if root { "" } else { "+- " });
        let len = indent.len();
        if !root {
            indent.push_str(if last { "  " } else { "| " });
        }
        let kids = children.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if !kids.is_empty() {
            println!("{indent}  |");
        }
        indent.push_str("  ");
        for (i, kid) in kids.iter().enumerate() {
            walk(kid, i + 1 == kids.len(), false, indent, children);
        }
        indent.truncate(indent.len() - 2);
        if kids.is_empty() && last {
            println!("{indent}");
        }
        indent.truncate(len);
    }
    for (i, root) in roots.iter().enumerate() {
        walk(root, i + 1 == roots.len(), true, &mut String::new(), &children);
    }
}

/// virsh's --timestamp: "YYYY-MM-DD HH:MM:SS.mmm+0000: ".
fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}+0000: ",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    )
}

fn event_line(name: &str, event: Lifecycle) -> String {
    match event {
        Lifecycle::Created => format!("event 'lifecycle' for node device {name}: Created"),
        Lifecycle::Deleted => format!("event 'lifecycle' for node device {name}: Deleted"),
        Lifecycle::Defined => format!("event 'lifecycle' for node device {name}: Defined"),
        Lifecycle::Undefined => format!("event 'lifecycle' for node device {name}: Undefined"),
        Lifecycle::Updated => format!("event 'update' for node device {name}"),
        other => format!("event 'lifecycle' for node device {name}: {other:?}"),
    }
}

/// Blocks the stop signals in this thread and every thread started later
/// (the monitor's threads included), so that only `wait_for_signal` takes
/// them.
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is a valid argument to sigemptyset, which
    // initializes it; the calls only touch this local set and this thread's
    // mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) {
    let mut sig = 0;
    // SAFETY: `set` is an initialized signal set and `sig` a valid out pointer.
    while unsafe { libc::sigwait(set, &mut sig) } != 0 {}
}

fn run(o: Options) -> Result<(), Error> {
    let signals = block_stop_signals();
    let monitor = Arc::new(Monitor::new(MonitorConfig {
        source: o.source,
        name: "nodedev-mon".into(),
        subsystems: (!o.subsystems.is_empty()).then_some(o.subsystems),
        ..MonitorConfig::default()
    })?);
    monitor.start()?;

    // Ctrl-C stops the monitor, which ends `wait_initialized` at once even
    // in the middle of the enumeration. The main thread ends the wait for a
    // signal itself (with a signal to this process) on --list or the timeout.
    let stopped = Arc::new(AtomicBool::new(false));
    let stopper = {
        let (monitor, stopped) = (Arc::clone(&monitor), Arc::clone(&stopped));
        let main_thread = std::thread::current();
        std::thread::spawn(move || {
            wait_for_signal(&signals);
            stopped.store(true, Ordering::SeqCst);
            let _ = monitor.stop(Some(Duration::from_secs(5)));
            main_thread.unpark();
        })
    };
    let end_stopper = || {
        // SAFETY: sends SIGHUP to this process; it is blocked in every
        // thread, so only the stop thread's sigwait takes it.
        unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    };

    let result = (|| {
        match monitor.wait_initialized(None) {
            Err(Error::Stopped) if stopped.load(Ordering::SeqCst) => return Ok(()),
            other => other?,
        }
        // Live events from here on; the tree is a snapshot taken after the
        // listener is in place, so no device falls between the two. The
        // print lock keeps events from interleaving with the tree.
        let print_lock = Arc::new(Mutex::new(()));
        let guard = print_lock.lock().unwrap();
        if !o.list_only {
            let lock = Arc::clone(&print_lock);
            let timestamps = o.timestamps;
            monitor.register(
                None,
                move |dev, event| {
                    let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let stamp = if timestamps { timestamp() } else { String::new() };
                    println!("{stamp}{}", event_line(dev.name(), event));
                })?
            .forget(); // printing until the monitor stops
        }
        print_tree(&monitor.snapshot());
        drop(guard);
        if o.list_only {
            return Ok(());
        }
        // Until the stop thread unparks us, or the timeout.
        let deadline = o.timeout.map(|t| std::time::Instant::now() + t);
        while !stopped.load(Ordering::SeqCst) {
            match deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())) {
                None => std::thread::park(),
                Some(left) if left.is_zero() => break,
                Some(left) => std::thread::park_timeout(left),
            }
        }
        Ok(())
    })();
    if !stopped.load(Ordering::SeqCst) {
        end_stopper();
    }
    let _ = stopper.join();
    monitor.stop(Some(Duration::from_secs(5)))?;
    result
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("monitor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monitor: {e}");
            ExitCode::FAILURE
        }
    }
}
