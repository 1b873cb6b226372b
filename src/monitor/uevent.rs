//! (Over 400 lines: 305 lines of parser and batch, then their unit tests.)
//!
//! The uevent datagram parser of the fast path, and the batch that carries
//! parsed uevents from the reader to the events worker.
//!
//! Two wire formats arrive on a `NETLINK_KOBJECT_UEVENT` socket:
//! - udev group (2): a 40-byte libudev header (`"libudev\0"`, magic
//!   `0xfeedcafe` big-endian, header size, properties offset and length in
//!   native order, filter hashes), then `KEY=VALUE\0` pairs;
//! - kernel group (1): `ACTION@DEVPATH\0` then `KEY=VALUE\0` pairs.
//!
//! The sender checks are libudev's: unicast messages are dropped, kernel
//! group messages (either format) must come from the kernel (port id 0),
//! and the sender's credentials must be uid 0. One check is stricter than
//! libudev: a kernel-format message is accepted only from the kernel, also
//! on the udev group (libudev takes it from any root sender there); no
//! message libudev refuses is accepted here (but for typed properties such
//! as `IFINDEX` or `MAJOR`, which libudev parses and this parser never
//! reads). Like libudev: a datagram of
//! 32 to 8192 bytes, properties that are all NUL-ended `KEY=VALUE`
//! entries, a known `ACTION`, a numeric non-zero `SEQNUM`, an absolute
//! `DEVPATH`, a `SUBSYSTEM`. Stricter: the libudev header's properties
//! length must end the datagram, the four fields used here must be UTF-8
//! without a newline. Anything else is rejected with a reason and counted
//! by the caller. Nothing here can panic on any input. Checked by
//! `uevent_proptest.rs` (proptest, against a model of libudev's rules).

use super::table::{is_event_key, DeviceSpec};

/// The actions the monitor handles.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    Change,
    Move,
}

/// Who sent a datagram (from `recvmsg`).
#[derive(Copy, Clone, Debug)]
pub struct Sender {
    /// `nl_groups` of the source address (1 kernel, 2 udev, 0 unicast).
    pub groups: u32,
    /// `nl_pid` of the source address (0 = kernel).
    pub pid: u32,
    /// uid from `SCM_CREDENTIALS` (None: no credentials came with it).
    pub uid: Option<u32>,
}

/// Why a datagram was not turned into an event.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    Unicast,
    NotFromKernel,
    NotRoot,
    /// Length, libudev header or kernel `ACTION@DEVPATH` header.
    BadHeader,
    /// A property entry that is not `KEY=VALUE`, an unknown action, a
    /// `SEQNUM` that is not a number, a newline in a field.
    Malformed,
    /// `ACTION`, `DEVPATH` (absolute), `SUBSYSTEM` or `SEQNUM` missing.
    MissingField,
    NotUtf8,
    /// `bind`, `unbind`, `online`, ...: dropped as libvirt does.
    OtherAction,
    Filtered,
}

/// A parsed datagram, borrowing it.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub action: Action,
    pub devpath: &'a str,
    pub subsystem: &'a str,
    pub devname: Option<&'a str>,
    /// `SEQNUM` (numeric, non-zero).
    pub seqnum: u64,
    /// The `KEY=VALUE\0` block.
    pub props: &'a [u8],
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if be { u32::from_be_bytes(w) } else { u32::from_ne_bytes(w) })
}

/// Iterates `KEY=VALUE` pairs of a NUL-separated block (entries without
/// `=` or not UTF-8 are skipped).
pub fn pairs(block: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    block.split(|&b| b == 0).filter_map(|e| {
        let eq = e.iter().position(|&b| b == b'=')?;
        let k = std::str::from_utf8(&e[..eq]).ok()?;
        let v = std::str::from_utf8(&e[eq + 1..]).ok()?;
        (!k.is_empty()).then_some((k, v))
    })
}

/// libudev reads a datagram into a buffer of this size and refuses a
/// longer one (it arrives truncated); the shortest it takes is 32 bytes.
pub(crate) const MAX_DATAGRAM: usize = 8192;
const MIN_DATAGRAM: usize = 32;

/// Parses one datagram. `subsystems`: the filter (None = all).
pub fn parse<'a>(buf: &'a [u8], sender: Sender, subsystems: Option<&[String]>) -> Result<Parsed<'a>, Reject> {
    if sender.groups == 0 {
        return Err(Reject::Unicast);
    }
    // libudev: anything on the kernel group must come from the kernel
    // (port id 0), in either format.
    if sender.groups == 1 && sender.pid != 0 {
        return Err(Reject::NotFromKernel);
    }
    if sender.uid != Some(0) {
        return Err(Reject::NotRoot);
    }
    if buf.len() < MIN_DATAGRAM || buf.len() > MAX_DATAGRAM {
        return Err(Reject::BadHeader);
    }
    let props: &[u8] = if buf.len() >= 8 && &buf[..8] == b"libudev\0" {
        if u32_at(buf, 8, true) != Some(0xfeed_cafe) {
            return Err(Reject::BadHeader);
        }
        let hdr = u32_at(buf, 12, false).ok_or(Reject::BadHeader)? as usize;
        let off = u32_at(buf, 16, false).ok_or(Reject::BadHeader)? as usize;
        let len = u32_at(buf, 20, false).ok_or(Reject::BadHeader)? as usize;
        // libudev reads from the offset to the end of the datagram (at
        // least 32 bytes) whatever the length says: both must agree.
        if hdr < 40 || off < 40 || off.checked_add(len) != Some(buf.len()) || len < 32 {
            return Err(Reject::BadHeader);
        }
        &buf[off..]
    } else {
        // Kernel format: only from the kernel itself.
        if sender.groups & 1 == 0 || sender.pid != 0 {
            return Err(Reject::NotFromKernel);
        }
        // `ACTION@/DEVPATH`, then at least one byte of properties.
        let nul = buf.iter().position(|&b| b == 0).ok_or(Reject::BadHeader)?;
        if nul < 4 || nul + 1 >= buf.len() || !buf[..nul].windows(2).any(|w| w == b"@/") {
            return Err(Reject::BadHeader);
        }
        &buf[nul + 1..]
    };
    // libudev refuses the whole message for an entry that is not a
    // NUL-ended `KEY=VALUE`; an empty key is refused here too.
    let entries = props.strip_suffix(&[0]).ok_or(Reject::Malformed)?;
    let (mut action, mut devpath, mut subsystem, mut devname, mut seqnum) = (None, None, None, None, 0u64);
    for e in entries.split(|&b| b == 0) {
        let eq = e.iter().position(|&b| b == b'=').filter(|&eq| eq > 0).ok_or(Reject::Malformed)?;
        let (k, v) = (&e[..eq], &e[eq + 1..]);
        let slot = match k {
            b"ACTION" => &mut action,
            b"DEVPATH" => &mut devpath,
            b"SUBSYSTEM" => &mut subsystem,
            b"DEVNAME" => &mut devname,
            b"SEQNUM" => {
                // libudev refuses a message whose SEQNUM is not a number.
                seqnum = std::str::from_utf8(v).ok().filter(|d| d.bytes().all(|c| c.is_ascii_digit())).and_then(|d| d.parse().ok()).ok_or(Reject::Malformed)?;
                continue;
            }
            _ => continue,
        };
        // libudev versions differ on a newline in a value (later ones cut
        // it there): refused, so that both paths read the same.
        if v.contains(&b'\n') {
            return Err(Reject::Malformed);
        }
        *slot = Some(std::str::from_utf8(v).map_err(|_| Reject::NotUtf8)?);
    }
    let action = match action.ok_or(Reject::MissingField)? {
        "add" => Action::Add,
        "remove" => Action::Remove,
        "change" => Action::Change,
        "move" => Action::Move,
        "bind" | "unbind" | "online" | "offline" => return Err(Reject::OtherAction),
        // libudev refuses an action it does not know.
        _ => return Err(Reject::Malformed),
    };
    let devpath = devpath.ok_or(Reject::MissingField)?;
    let subsystem = subsystem.ok_or(Reject::MissingField)?;
    if !devpath.starts_with('/') || devpath.len() < 2 || subsystem.is_empty() || seqnum == 0 {
        return Err(Reject::MissingField);
    }
    if let Some(f) = subsystems {
        if !f.iter().any(|s| s == subsystem) {
            return Err(Reject::Filtered);
        }
    }
    Ok(Parsed { action, devpath, subsystem, devname, seqnum, props })
}

#[derive(Clone, Copy)]
struct Span(u32, u32);

struct Rec {
    action: Action,
    syspath: Span,
    devnode: Option<Span>,
    mac: Option<Span>,
    props: Span,
}

/// Parsed uevents in one arena: one allocation per batch, not per event.
#[derive(Default)]
pub struct Batch {
    arena: Vec<u8>,
    recs: Vec<Rec>,
}

/// One uevent of a batch.
pub struct Uevent<'a> {
    batch: &'a Batch,
    rec: &'a Rec,
}

impl Batch {
    pub fn with_capacity(events: usize) -> Batch {
        Batch { arena: Vec::with_capacity(events * 160), recs: Vec::with_capacity(events) }
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The heap memory the batch holds.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.recs.capacity() * std::mem::size_of::<Rec>()
    }

    fn put(&mut self, parts: &[&str]) -> Span {
        let s = self.arena.len() as u32;
        for p in parts {
            self.arena.extend_from_slice(p.as_bytes());
        }
        Span(s, self.arena.len() as u32)
    }

    /// Copies a parsed datagram in; `mac` is the net device's address.
    pub fn push(&mut self, p: &Parsed<'_>, mac: Option<&str>) {
        let syspath = self.put(&["/sys", p.devpath]);
        let devnode = p.devname.filter(|d| !d.is_empty()).map(|d| if d.starts_with('/') { self.put(&[d]) } else { self.put(&["/dev/", d]) });
        let mac = mac.map(|m| self.put(&[m]));
        let s = self.arena.len() as u32;
        self.arena.extend_from_slice(p.props);
        let props = Span(s, self.arena.len() as u32);
        self.recs.push(Rec { action: p.action, syspath, devnode, mac, props });
    }

    pub fn iter(&self) -> impl Iterator<Item = Uevent<'_>> {
        self.recs.iter().map(move |rec| Uevent { batch: self, rec })
    }

    fn bytes(&self, s: Span) -> &[u8] {
        &self.arena[s.0 as usize..s.1 as usize]
    }

    fn str(&self, s: Span) -> &str {
        // Only UTF-8 `&str`s are put in as spans.
        std::str::from_utf8(self.bytes(s)).unwrap_or("")
    }
}

impl<'a> Uevent<'a> {
    pub fn action(&self) -> Action {
        self.rec.action
    }

    pub fn syspath(&self) -> &'a str {
        self.batch.str(self.rec.syspath)
    }

    /// `/sys` + `DEVPATH_OLD`, for a move.
    pub fn old_syspath(&self) -> Option<String> {
        pairs(self.batch.bytes(self.rec.props)).find(|(k, _)| *k == "DEVPATH_OLD").map(|(_, v)| format!("/sys{v}"))
    }

    /// The device as the table wants it.
    pub fn spec(&self) -> DeviceSpec<'a> {
        let b = self.batch;
        let mut spec = DeviceSpec {
            syspath: self.syspath(),
            devnode: self.rec.devnode.map(|s| b.str(s)),
            mac: self.rec.mac.map(|s| b.str(s)),
            props: Vec::with_capacity(12),
            ..Default::default()
        };
        for (k, v) in pairs(b.bytes(self.rec.props)) {
            match k {
                "SUBSYSTEM" => spec.subsystem = Some(v),
                "DEVTYPE" => spec.devtype = Some(v),
                "DRIVER" => spec.driver = Some(v),
                _ if is_event_key(k) => {}
                _ => {
                    if spec.props.len() < 4096 {
                        spec.props.push((k, v))
                    }
                }
            }
        }
        if let Some(m) = spec.mac {
            spec.props.push(("ADDRESS", m));
        }
        spec
    }
}

#[cfg(test)]
#[path = "uevent_proptest.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_UDEV: Sender = Sender { groups: 2, pid: 1234, uid: Some(0) };
    const KERNEL: Sender = Sender { groups: 1, pid: 0, uid: Some(0) };

    fn udev_msg(props: &[u8]) -> Vec<u8> {
        let mut b = b"libudev\0".to_vec();
        b.extend_from_slice(&0xfeedcafe_u32.to_be_bytes());
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&(props.len() as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        b.extend_from_slice(props);
        b
    }

    #[test]
    fn udev_and_kernel_formats() {
        let m = udev_msg(b"ACTION=add\0DEVPATH=/devices/virtual/net/a0\0SUBSYSTEM=net\0INTERFACE=a0\0SEQNUM=5\0");
        let p = parse(&m, ROOT_UDEV, None).unwrap();
        assert_eq!((p.action, p.devpath, p.subsystem), (Action::Add, "/devices/virtual/net/a0", "net"));
        let mut b = Batch::default();
        b.push(&p, Some("02:00:00:00:00:01"));
        let k = b"add@/devices/virtual/block/loop9\0ACTION=add\0DEVPATH=/devices/virtual/block/loop9\0SUBSYSTEM=block\0DEVNAME=loop9\0DEVTYPE=disk\0SEQNUM=7\0";
        let p = parse(k, KERNEL, None).unwrap();
        b.push(&p, None);
        let v: Vec<_> = b.iter().collect();
        assert_eq!(v[0].syspath(), "/sys/devices/virtual/net/a0");
        let s = v[0].spec();
        assert_eq!(s.subsystem, Some("net"));
        assert_eq!(s.mac, Some("02:00:00:00:00:01"));
        assert_eq!(s.props, vec![("INTERFACE", "a0"), ("ADDRESS", "02:00:00:00:00:01")]);
        let s = v[1].spec();
        assert_eq!((s.devnode, s.devtype), (Some("/dev/loop9"), Some("disk")));
        assert_eq!(s.props, vec![("DEVNAME", "loop9")]);
        // Kernel format from a non-kernel sender, or via udev group: refused.
        assert_eq!(parse(k, ROOT_UDEV, None).err(), Some(Reject::NotFromKernel));
        assert_eq!(parse(k, Sender { pid: 5, ..KERNEL }, None).err(), Some(Reject::NotFromKernel));
        assert_eq!(parse(&m, Sender { uid: Some(1000), ..ROOT_UDEV }, None).err(), Some(Reject::NotRoot));
        assert_eq!(parse(&m, Sender { groups: 0, ..ROOT_UDEV }, None).err(), Some(Reject::Unicast));
        // A libudev-format message on the kernel group from a process: refused
        // (libudev refuses it too); from the kernel's port id it would pass.
        assert_eq!(parse(&m, Sender { pid: 4321, ..KERNEL }, None).err(), Some(Reject::NotFromKernel));
        assert!(parse(&m, KERNEL, None).is_ok());
        assert_eq!(parse(&m, ROOT_UDEV, Some(&["block".to_string()])).err(), Some(Reject::Filtered));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"libudev\0".to_vec(),
            udev_msg(b"DEVPATH=/x\0SUBSYSTEM=net\0"),
            udev_msg(b"ACTION=bind\0DEVPATH=/x\0SUBSYSTEM=net\0"),
            udev_msg(b"ACTION=add\0DEVPATH=x\0SUBSYSTEM=net\0"),
            udev_msg(b"ACTION=add\0DEVPATH=/x\0"),
            udev_msg(b"ACTION=add\0DEVPATH=/\xff\0SUBSYSTEM=net\0"),
            {
                let mut m = udev_msg(b"ACTION=add\0DEVPATH=/x\0SUBSYSTEM=net\0");
                m[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
                m
            },
            {
                let mut m = udev_msg(b"ACTION=add\0DEVPATH=/x\0SUBSYSTEM=net\0");
                m[16..20].copy_from_slice(&u32::MAX.to_ne_bytes());
                m
            },
            b"noatsign\0ACTION=add\0".to_vec(),
            b"add@/x".to_vec(),
        ];
        for c in &cases {
            assert!(parse(c, ROOT_UDEV, None).is_err());
            assert!(parse(c, KERNEL, None).is_err() || c.starts_with(b"add@"));
        }
        // What libudev refuses (all but the unknown action were accepted here
        // before uevent_proptest.rs compared the parser with libudev's rules).
        let ok = b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1\0";
        assert!(parse(&udev_msg(ok), ROOT_UDEV, None).is_ok());
        let refused: Vec<(Vec<u8>, Sender)> = vec![
            (udev_msg(b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0"), ROOT_UDEV), // no SEQNUM
            (udev_msg(b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1x\0"), ROOT_UDEV),
            (udev_msg(b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1\0junk\0"), ROOT_UDEV), // entry without '='
            (udev_msg(b"ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1\0K=v"), ROOT_UDEV), // last entry not NUL-ended
            (udev_msg(b"ACTION=frob\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1\0"), ROOT_UDEV),
            (udev_msg(b"ACTION=add\0DEVPATH=/devices/x\nz\0SUBSYSTEM=net\0SEQNUM=1\0"), ROOT_UDEV),
            ({
                let mut m = udev_msg(ok);
                m.extend_from_slice(b"ACTION=remove\0"); // past properties_len: libudev reads it
                m
            }, ROOT_UDEV),
            ({
                let mut big = ok.to_vec();
                big.extend(b"K=".iter().chain([b'v'; MAX_DATAGRAM].iter()).chain(b"\0"));
                udev_msg(&big)
            }, ROOT_UDEV),
            (b"add@devices/x\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=net\0SEQNUM=1\0".to_vec(), KERNEL), // no "@/"
            (b"add@/devices/x\0".to_vec(), KERNEL),
        ];
        for (m, s) in &refused {
            assert!(parse(m, *s, None).is_err(), "{:?}", String::from_utf8_lossy(m));
        }
        // Random bytes, truncation and flips: uevent_proptest.rs.
    }
}
