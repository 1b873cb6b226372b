//! Shared helpers for the monitor tests: running a test body in a child
//! process inside fresh namespaces, the udev-group message injector, a
//! fake sysfs, and a recorder of lifecycle events.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nodedev_events::{Device, Lifecycle, Monitor, Registration};

pub const CHILD_ENV: &str = "NDE_MONITOR_TEST_CHILD";

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// How to isolate a child.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Iso {
    /// `unshare -n -m` with sysfs remounted (the namespace's net devices).
    NetNsSysfs,
    /// A plain child process (own environment).
    Plain,
}

/// Runs the test named `name` (this function's caller) again in a child
/// process, isolated as asked, with extra environment. In the child,
/// returns `true` (run the body). In the parent, waits for the child,
/// fails the test if the child failed, and returns `false`. When the
/// isolation is impossible (not root, no `unshare`), prints why and returns
/// `false` (the test is skipped).
pub fn in_child(name: &str, iso: Iso, env: &[(&str, &str)]) -> bool {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        match iso {
            Iso::NetNsSysfs => mount("sysfs", "/sys", "sysfs"),
            Iso::Plain => {}
        }
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if iso == Iso::Plain {
        Command::new(&exe)
    } else {
        if !is_root() {
            println!("SKIP {name}: needs root for network and mount namespaces (CI runs as root)");
            return false;
        }
        if Command::new("unshare").args(["-n", "-m", "true"]).status().map(|s| !s.success()).unwrap_or(true) {
            println!("SKIP {name}: `unshare -n -m` does not work here");
            return false;
        }
        let mut c = Command::new("unshare");
        c.args(["-n", "-m", "--propagation", "private"]).arg(&exe);
        c
    };
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the test child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child for {name} failed: {}", out.status);
    assert!(stdout.contains("1 passed"), "child for {name} did not run the test");
    false
}

fn mount(src: &str, target: &str, fstype: &str) {
    let s = CString::new(src).unwrap();
    let t = CString::new(target).unwrap();
    let f = CString::new(fstype).unwrap();
    // SAFETY: valid strings; MS_* flags plain.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    assert_eq!(rc, 0, "mount {fstype} on {target}: {}", std::io::Error::last_os_error());
}

/// Runs a shell command, panicking on failure.
pub fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "`{cmd}` failed: {st}");
}

// ---------------------------------------------------------------- injector

/// MurmurHash2, seed 0 (systemd's `string_hash32`).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = data.len() as u32;
    let mut c = data.chunks_exact(4);
    for w in &mut c {
        let mut k = u32::from_le_bytes(w.try_into().unwrap());
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let r = c.remainder();
    if r.len() >= 3 {
        h ^= (r[2] as u32) << 16;
    }
    if r.len() >= 2 {
        h ^= (r[1] as u32) << 8;
    }
    if !r.is_empty() {
        h ^= r[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Sends libudev-format messages to the udev netlink group (2) of the
/// current network namespace. Needs root (in that namespace).
pub struct Injector {
    fd: OwnedFd,
    seq: u64,
    buf: Vec<u8>,
}

impl Injector {
    pub fn new() -> Injector {
        // SAFETY: plain socket calls.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_KOBJECT_UEVENT);
            assert!(fd >= 0, "netlink socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            let rc = libc::bind(fd.as_raw_fd(), &sa as *const _ as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_nl>() as u32);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let big: libc::c_int = 64 << 20;
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &big as *const _ as *const libc::c_void, 4);
            Injector { fd, seq: 1000, buf: Vec::with_capacity(4096) }
        }
    }

    /// Sends one message with these properties (ACTION, DEVPATH, SUBSYSTEM
    /// must be among them unless testing garbage; SEQNUM and
    /// USEC_INITIALIZED are added).
    pub fn send(&mut self, props: &[(&str, &str)]) {
        self.seq += 1;
        let get = |k: &str| props.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let sub = get("SUBSYSTEM").map(|s| murmur2(s.as_bytes())).unwrap_or(0);
        let devtype = get("DEVTYPE").map(|s| murmur2(s.as_bytes())).unwrap_or(0);
        let mut body = Vec::with_capacity(512);
        for (k, v) in props {
            body.extend_from_slice(k.as_bytes());
            body.push(b'=');
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.extend_from_slice(format!("SEQNUM={}\0USEC_INITIALIZED=1\0", self.seq).as_bytes());
        self.send_raw_body(sub, devtype, &body);
    }

    /// Sends a message whose body is given verbatim (garbage tests).
    pub fn send_raw_body(&mut self, sub_hash: u32, devtype_hash: u32, body: &[u8]) {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"libudev\0");
        b.extend_from_slice(&0xfeedcafe_u32.to_be_bytes());
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&(body.len() as u32).to_ne_bytes());
        b.extend_from_slice(&sub_hash.to_be_bytes());
        b.extend_from_slice(&devtype_hash.to_be_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(body);
        self.send_bytes_to_group();
    }

    /// Sends `bytes` as they are (not even a header).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.send_bytes_to_group();
    }

    fn send_bytes_to_group(&mut self) {
        // SAFETY: plain sendto of our buffer.
        unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = 2;
            loop {
                let rc = libc::sendto(
                    self.fd.as_raw_fd(),
                    self.buf.as_ptr().cast(),
                    self.buf.len(),
                    0,
                    &sa as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as u32,
                );
                if rc >= 0 {
                    return;
                }
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    // No listener at all, or the listener's buffer is full
                    // (the kernel reports that to the sender too): the
                    // message is dropped for that receiver, which is what
                    // overflow tests want.
                    Some(libc::ESRCH) | Some(libc::ENOBUFS) => return,
                    // Garbage the kernel itself refuses (empty, oversized).
                    Some(libc::ENODATA) | Some(libc::EMSGSIZE) | Some(libc::EINVAL) => return,
                    Some(libc::EINTR) => continue,
                    _ => panic!("sendto: {e}"),
                }
            }
        }
    }

    /// A net device add/remove/change/move as udevd would send it (small).
    pub fn net(&mut self, action: &str, ifname: &str, old: Option<&str>) {
        let devpath = format!("/devices/virtual/net/{ifname}");
        let mut p: Vec<(&str, &str)> =
            vec![("ACTION", action), ("DEVPATH", &devpath), ("SUBSYSTEM", "net"), ("INTERFACE", ifname), ("IFINDEX", "7")];
        let oldp;
        if let Some(o) = old {
            oldp = format!("/devices/virtual/net/{o}");
            p.push(("DEVPATH_OLD", &oldp));
        }
        self.send(&p);
    }
}

// ------------------------------------------------------------------ recorder

/// Records lifecycle events (name, event) and lets a test wait for them.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<(Mutex<Vec<Record>>, Condvar)>,
}

/// One recorded event: what happened, to which device (by name), and the
/// device as the callback saw it.
type Record = (Lifecycle, String, Arc<Device>);

impl Recorder {
    /// Records what `mon` reports (for `name`, or every device) for the
    /// monitor's whole life.
    pub fn attach(&self, mon: &Monitor, name: Option<&str>) {
        self.attach_handle(mon, name).forget()
    }

    /// [`Recorder::attach`] until the returned handle is dropped.
    pub fn attach_handle(&self, mon: &Monitor, name: Option<&str>) -> Registration {
        let r = self.clone();
        mon.register(
            name,
            move |d, ev| {
                let (m, c) = &*r.inner;
                m.lock().unwrap().push((ev, d.name().to_owned(), d.clone()));
                c.notify_all();
            })
        .unwrap()
    }

    pub fn events(&self) -> Vec<(Lifecycle, String)> {
        self.inner.0.lock().unwrap().iter().map(|(e, n, _)| (*e, n.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.inner.0.lock().unwrap().clear()
    }

    /// Waits until `pred` holds on the recorded events (at most `secs`);
    /// returns whether it did.
    pub fn wait_for(&self, secs: u64, pred: impl Fn(&[(Lifecycle, String, Arc<Device>)]) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (m, c) = &*self.inner;
        let mut g = m.lock().unwrap();
        loop {
            if pred(&g) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = c.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    pub fn has(&self, ev: Lifecycle, name: &str) -> bool {
        self.inner.0.lock().unwrap().iter().any(|(e, n, _)| *e == ev && n == name)
    }

    pub fn count_by_event(&self) -> HashMap<Lifecycle, usize> {
        let mut m = HashMap::new();
        for (e, _, _) in self.inner.0.lock().unwrap().iter() {
            *m.entry(*e).or_default() += 1;
        }
        m
    }
}

/// Reads a net device's MAC inside the current namespace.
pub fn mac_of(ifname: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).unwrap().trim().to_owned()
}

/// libvirt's name of a net device with this MAC.
pub fn net_name(ifname: &str, mac: &str) -> String {
    nodedev_events::test_hooks::generate_name("net", ifname, Some(mac))
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
