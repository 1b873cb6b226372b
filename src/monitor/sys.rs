//! The monitor's system calls, each wrapped once: netlink `recvmsg` with
//! the sender's credentials, eventfd, poll, inotify, the `SIOCGIFHWADDR`
//! ioctl and a few file-descriptor helpers. Every `unsafe` libc call of the
//! monitor outside libudev's own API lives here.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use super::uevent::Sender;

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sets `errno` (libudev reports a receive failure only through it).
pub fn set_errno(v: i32) {
    // SAFETY: the calling thread's errno location.
    unsafe { *libc::__errno_location() = v };
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A non-blocking eventfd: a wake-up any thread can send.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> std::io::Result<EventFd> {
        // SAFETY: plain eventfd creation.
        owned(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) }).map(EventFd)
    }

    /// Wakes whoever polls it.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write from a valid buffer to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: an 8-byte read into a valid buffer from our eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.0)
    }
}

/// A `pollfd` for reading; a negative `fd` is ignored by `poll`.
pub fn readable(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// `poll(2)`: the number of ready descriptors, or `Err(errno)`.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> Result<usize, i32> {
    // SAFETY: a valid slice of pollfds.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// One datagram read from a netlink socket.
pub struct Datagram {
    pub len: usize,
    /// The datagram was larger than the buffer.
    pub truncated: bool,
    /// `nl_groups` and `nl_pid` of the source address.
    pub groups: u32,
    pub pid: u32,
    /// uid from `SCM_CREDENTIALS` (None: no credentials came with it).
    pub uid: Option<u32>,
}

impl Datagram {
    /// Who sent it, as the parser checks it.
    pub fn sender(&self) -> Sender {
        Sender { groups: self.groups, pid: self.pid, uid: self.uid }
    }
}

/// `recvmsg(MSG_DONTWAIT)` on a netlink socket with its source address and
/// credentials; `Err(errno)` on failure (`EAGAIN` when empty).
pub fn recv_netlink(fd: RawFd, buf: &mut [u8]) -> Result<Datagram, i32> {
    recv_netlink_flags(fd, buf, libc::MSG_DONTWAIT)
}

/// As [`recv_netlink`], but the datagram stays queued (`MSG_PEEK`). A
/// pending socket error (`ENOBUFS`) is reported, and cleared, all the same.
pub fn peek_netlink(fd: RawFd, buf: &mut [u8]) -> Result<Datagram, i32> {
    recv_netlink_flags(fd, buf, libc::MSG_DONTWAIT | libc::MSG_PEEK)
}

fn recv_netlink_flags(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> Result<Datagram, i32> {
    // SAFETY: zeroed C structs, filled by recvmsg below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: every pointer in msg is valid for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, flags) };
    if n < 0 {
        return Err(errno());
    }
    let mut uid = None;
    // SAFETY: walking the control messages recvmsg wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_CREDENTIALS {
                let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                uid = Some(cred.uid);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Datagram {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        groups: addr.nl_groups,
        pid: addr.nl_pid,
        uid,
    })
}

/// What `SIOCGIFHWADDR` answered.
#[derive(Debug, PartialEq, Eq)]
pub enum HwAddr {
    /// An Ethernet address.
    Ether([u8; 6]),
    /// No such interface in this network namespace.
    NoDevice,
    /// Not Ethernet, or no answer.
    Unknown,
}

/// A datagram socket for interface ioctls (usable from any thread).
pub struct IoctlSocket(OwnedFd);

impl IoctlSocket {
    pub fn new() -> std::io::Result<IoctlSocket> {
        // SAFETY: plain socket creation.
        owned(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }).map(IoctlSocket)
    }

    /// The hardware address of interface `ifname`.
    pub fn hwaddr(&self, ifname: &str) -> HwAddr {
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
            return HwAddr::Unknown;
        }
        // SAFETY: a zeroed ifreq with a NUL-terminated name, filled by the
        // kernel.
        let (rc, ifr) = unsafe {
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
                *d = s as libc::c_char;
            }
            let rc = libc::ioctl(self.0.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr);
            (rc, ifr)
        };
        if rc < 0 {
            return if errno() == libc::ENODEV { HwAddr::NoDevice } else { HwAddr::Unknown };
        }
        // SAFETY: SIOCGIFHWADDR filled the ifr_hwaddr member.
        let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        if sa.sa_family != libc::ARPHRD_ETHER {
            return HwAddr::Unknown;
        }
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *d = *s as u8;
        }
        HwAddr::Ether(mac)
    }
}

/// An inotify instance (non-blocking).
pub struct Inotify(OwnedFd);

impl Inotify {
    pub fn new() -> std::io::Result<Inotify> {
        // SAFETY: plain inotify creation.
        owned(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) }).map(Inotify)
    }

    /// Watches `dir`; the watch descriptor.
    pub fn add_watch(&self, dir: &Path, mask: u32) -> std::io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.0.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(wd)
        }
    }

    /// Reads pending events into `buf` and calls `f(wd, mask, name)` for
    /// each. Returns whether any was read.
    pub fn read_events(&self, buf: &mut [u8], mut f: impl FnMut(i32, u32, &[u8])) -> bool {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        let n = n as usize;
        let head = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0usize;
        while off + head <= n {
            // SAFETY: the kernel wrote whole events; read unaligned.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let name_end = (off + head + ev.len as usize).min(n);
            let raw = &buf[off + head..name_end];
            f(ev.wd, ev.mask, &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())]);
            off = name_end;
        }
        true
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor the caller owns.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
}

/// Whether `path` is executable by this process.
pub fn is_executable(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { return false };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// One `write(2)` to standard error: no std lock, no thread-locals.
pub fn write_stderr(line: &str) {
    // SAFETY: writing a valid buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}
