//! Property tests of the uevent parser (`uevent.rs`) with `proptest`:
//! valid, truncated, oversized, byte-flipped and lying-header datagrams,
//! from every kind of sender. Properties:
//! - nothing panics, and what is accepted borrows only the datagram;
//! - a valid message round-trips to the same fields (both formats);
//! - whatever is accepted, libudev accepts too and reads the same fields
//!   (`libudev_reads`, a model of its rules below), so the fast path never
//!   takes a message that the libudev path refuses, nor reads it otherwise;
//! - junk `KEY=VALUE` properties never hide the valid fields.
//!
//! Failures found are kept in `proptest-regressions/monitor/` (committed)
//! and replayed first.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;

/// Datagrams libudev reads into a fixed buffer of this size; a longer one
/// arrives truncated and is refused.
const LIBUDEV_BUFFER: usize = 8192;

/// The fields that decide what the table does with a uevent.
#[derive(Debug, PartialEq, Eq)]
struct Fields<'a> {
    action: &'a [u8],
    devpath: &'a [u8],
    subsystem: &'a [u8],
    devname: Option<&'a [u8]>,
}

/// What libudev (systemd 252's `sd-device` monitor) makes of a datagram:
/// its checks of length, sender and header, then its property parser,
/// which refuses the whole message for an entry that is not NUL-ended
/// `KEY=VALUE`, an unknown `ACTION`, a relative `DEVPATH`, a `SEQNUM` that
/// is not a number, or a missing `ACTION`/`DEVPATH`/`SUBSYSTEM`/`SEQNUM`.
/// Not modelled: the typed keys (`IFINDEX`, `MAJOR`, `DEVMODE`, ...),
/// which the strategies below never generate.
fn libudev_reads(buf: &[u8], s: Sender) -> Option<Fields<'_>> {
    if buf.len() < 32 || buf.len() > LIBUDEV_BUFFER {
        return None;
    }
    // Unicast: only from a trusted sender, which a monitor has none of.
    // Kernel group: only from the kernel. Any group: only from root.
    if s.groups == 0 || (s.groups == 1 && s.pid != 0) || s.uid != Some(0) {
        return None;
    }
    let start = if buf.starts_with(b"libudev\0") {
        let magic = u32::from_be_bytes(buf[8..12].try_into().unwrap());
        let off = u32::from_ne_bytes(buf[16..20].try_into().unwrap()) as usize;
        if magic != 0xfeed_cafe || off + 32 > buf.len() {
            return None;
        }
        off
    } else {
        let nul = buf.iter().position(|&b| b == 0)?;
        if nul + 1 < "a@/d".len() + 1 || nul + 1 >= buf.len() || !buf[..nul].windows(2).any(|w| w == b"@/") {
            return None;
        }
        nul + 1
    };
    let block = &buf[start..];
    let (mut action, mut devpath, mut subsystem, mut devname, mut seqnum) = (None, None, None, None, 0u64);
    let mut i = 0;
    while i < block.len() {
        let end = i + block[i..].iter().position(|&b| b == 0)?;
        let entry = &block[i..end];
        i = end + 1;
        let eq = entry.iter().position(|&b| b == b'=')?;
        let (k, v) = (&entry[..eq], &entry[eq + 1..]);
        match k {
            b"ACTION" => {
                let known: [&[u8]; 8] = [b"add", b"remove", b"change", b"move", b"online", b"offline", b"bind", b"unbind"];
                if !known.contains(&v) {
                    return None;
                }
                action = Some(v);
            }
            b"DEVPATH" => {
                if !v.starts_with(b"/") {
                    return None;
                }
                devpath = Some(v);
            }
            b"SUBSYSTEM" => subsystem = Some(v),
            b"DEVNAME" => devname = Some(v),
            b"SEQNUM" => seqnum = std::str::from_utf8(v).ok()?.parse().ok()?,
            _ => {}
        }
    }
    if seqnum == 0 {
        return None;
    }
    Some(Fields { action: action?, devpath: devpath?, subsystem: subsystem?, devname })
}

fn fields<'a>(p: &Parsed<'a>) -> Fields<'a> {
    let action: &[u8] = match p.action {
        Action::Add => b"add",
        Action::Remove => b"remove",
        Action::Change => b"change",
        Action::Move => b"move",
    };
    Fields { action, devpath: p.devpath.as_bytes(), subsystem: p.subsystem.as_bytes(), devname: p.devname.map(str::as_bytes) }
}

/// A well-formed uevent, before framing.
#[derive(Clone, Debug)]
struct Uevent {
    action: &'static str,
    devpath: String,
    subsystem: String,
    devname: Option<String>,
    seqnum: u64,
    /// Other properties (keys that libudev does not interpret).
    extra: Vec<(String, Vec<u8>)>,
}

impl Uevent {
    fn block(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let mut put = |k: &str, v: &[u8]| {
            b.extend_from_slice(k.as_bytes());
            b.push(b'=');
            b.extend_from_slice(v);
            b.push(0);
        };
        put("ACTION", self.action.as_bytes());
        put("DEVPATH", self.devpath.as_bytes());
        put("SUBSYSTEM", self.subsystem.as_bytes());
        if let Some(d) = &self.devname {
            put("DEVNAME", d.as_bytes());
        }
        for (k, v) in &self.extra {
            put(k, v);
        }
        put("SEQNUM", self.seqnum.to_string().as_bytes());
        b
    }

    /// As udevd sends it (group 2).
    fn udev(&self) -> Vec<u8> {
        udev_datagram(&self.block())
    }

    /// As the kernel sends it (group 1).
    fn kernel(&self) -> Vec<u8> {
        let mut m = format!("{}@{}\0", self.action, self.devpath).into_bytes();
        m.extend(self.block());
        m
    }
}

fn udev_datagram(block: &[u8]) -> Vec<u8> {
    let mut m = b"libudev\0".to_vec();
    m.extend_from_slice(&0xfeed_cafe_u32.to_be_bytes());
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&40u32.to_ne_bytes());
    m.extend_from_slice(&(block.len() as u32).to_ne_bytes());
    m.extend_from_slice(&[0u8; 16]);
    m.extend_from_slice(block);
    m
}

const UDEVD: Sender = Sender { groups: 2, pid: 4242, uid: Some(0) };
const KERNEL: Sender = Sender { groups: 1, pid: 0, uid: Some(0) };

/// A value libudev stores as it is: any bytes but NUL.
fn any_value(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..max)
}

/// Keys that libudev does not interpret (see `libudev_reads`).
fn extra_props(max: usize) -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec(("X_[A-Z0-9_]{0,12}", any_value(40)), 0..max)
}

fn uevent() -> impl Strategy<Value = Uevent> {
    (
        prop::sample::select(vec!["add", "remove", "change", "move"]),
        "(/[a-z0-9:._-]{1,12}){1,5}",
        "[a-z][a-z0-9_-]{0,11}",
        prop::option::of("[a-z0-9/]{1,16}"),
        1u64..,
        extra_props(8),
    )
        .prop_map(|(action, devpath, subsystem, devname, seqnum, extra)| Uevent { action, devpath, subsystem, devname, seqnum, extra })
}

/// Every kind of sender: the two legitimate ones, a process on the kernel
/// group, unicast, not root, no credentials.
fn sender() -> impl Strategy<Value = Sender> {
    prop_oneof![
        Just(UDEVD),
        Just(KERNEL),
        Just(Sender { groups: 1, pid: 4242, uid: Some(0) }),
        Just(Sender { groups: 0, pid: 4242, uid: Some(0) }),
        Just(Sender { uid: Some(1000), ..UDEVD }),
        Just(Sender { uid: None, ..KERNEL }),
        (0u32..4, 0u32..3, prop::option::of(0u32..2)).prop_map(|(groups, pid, uid)| Sender { groups, pid, uid }),
    ]
}

/// A valid uevent in either format.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (uevent(), any::<bool>()).prop_map(|(u, kernel)| if kernel { u.kernel() } else { u.udev() })
}

/// A datagram taken apart: valid ones and their damaged variants.
fn hostile_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // valid
        framed(),
        // truncated anywhere
        (framed(), any::<prop::sample::Index>()).prop_map(|(m, at)| m[..at.index(m.len() + 1)].to_vec()),
        // byte-flipped (1 to 4 bytes)
        (framed(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5)).prop_map(|(mut m, flips)| {
            for (at, v) in flips {
                let i = at.index(m.len());
                m[i] = v;
            }
            m
        }),
        // a lying header field: header size, properties offset or length
        (framed(), 0usize..3, any::<u32>(), 0u32..80).prop_map(|(mut m, field, big, small)| {
            if m.starts_with(b"libudev\0") {
                let v = if big % 2 == 0 { big } else { small };
                m[12 + 4 * field..16 + 4 * field].copy_from_slice(&v.to_ne_bytes());
            }
            m
        }),
        // junk appended (not KEY=VALUE\0 entries, or no final NUL)
        (framed(), any_value(64)).prop_map(|(mut m, junk)| {
            m.extend(junk);
            m
        }),
        // oversized: padded past libudev's buffer
        (uevent(), any::<bool>(), LIBUDEV_BUFFER - 200..LIBUDEV_BUFFER + 200).prop_map(|(mut u, kernel, size)| {
            u.extra.push(("X_PAD".into(), vec![b'p'; size]));
            if kernel {
                u.kernel()
            } else {
                u.udev()
            }
        }),
        // random bytes, with and without the libudev prefix and magic
        (prop::collection::vec(any::<u8>(), 0..600), any::<bool>()).prop_map(|(mut m, prefix)| {
            if prefix && m.len() >= 40 {
                m[..8].copy_from_slice(b"libudev\0");
                m[8..12].copy_from_slice(&0xfeed_cafe_u32.to_be_bytes());
            }
            m
        }),
    ]
}

/// Batching and reading back an accepted uevent (what the handler does).
fn batch_reads_back(p: &Parsed<'_>) {
    let mut b = Batch::default();
    b.push(p, Some("02:00:00:00:00:01"));
    let u = b.iter().next().unwrap();
    let spec = u.spec();
    assert_eq!(spec.syspath, format!("/sys{}", p.devpath));
    assert!(spec.syspath.starts_with("/sys/"));
    assert_eq!(spec.subsystem, Some(p.subsystem));
    let _ = u.old_syspath();
}

/// `cases` by default (a quarter on a debug build: about a second each in
/// `make check`); `PROPTEST_CASES` asks for a longer hunt.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(if cfg!(debug_assertions) { cases / 4 } else { cases }),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn hostile_datagrams_are_refused_or_read_as_libudev_reads_them(m in hostile_datagram(), s in sender()) {
        if let Ok(p) = parse(&m, s, None) {
            // Borrowed from the datagram, never past it.
            let range = m.as_ptr_range();
            prop_assert!(range.contains(&p.props.as_ptr()) || p.props.is_empty());
            prop_assert!(p.props.as_ptr_range().end <= range.end);
            prop_assert_eq!(Some(fields(&p)), libudev_reads(&m, s), "accepted what libudev refuses or reads otherwise");
            batch_reads_back(&p);
        }
    }

    #[test]
    fn a_valid_message_round_trips(u in uevent()) {
        for (m, s) in [(u.udev(), UDEVD), (u.kernel(), KERNEL), (u.udev(), KERNEL)] {
            let p = parse(&m, s, None).unwrap();
            prop_assert_eq!(p.devpath, u.devpath.as_str());
            prop_assert_eq!(p.subsystem, u.subsystem.as_str());
            prop_assert_eq!(p.devname, u.devname.as_deref());
            prop_assert_eq!(fields(&p).action, u.action.as_bytes());
            prop_assert_eq!(p.props, &u.block()[..]);
            prop_assert!(libudev_reads(&m, s).is_some());
            batch_reads_back(&p);
            // The subsystem filter takes it or not, nothing else.
            let only = [u.subsystem.clone()];
            prop_assert!(parse(&m, s, Some(&only)).is_ok());
            prop_assert_eq!(parse(&m, s, Some(&["zz-none".to_string()])).err(), Some(Reject::Filtered));
        }
        // From a sender libudev does not trust: refused.
        prop_assert_eq!(parse(&u.udev(), Sender { pid: 1, ..KERNEL }, None).err(), Some(Reject::NotFromKernel));
        prop_assert_eq!(parse(&u.kernel(), UDEVD, None).err(), Some(Reject::NotFromKernel));
        prop_assert_eq!(parse(&u.udev(), Sender { uid: None, ..UDEVD }, None).err(), Some(Reject::NotRoot));
        prop_assert_eq!(parse(&u.udev(), Sender { groups: 0, ..UDEVD }, None).err(), Some(Reject::Unicast));
    }

    #[test]
    fn junk_properties_never_hide_the_valid_fields(u in uevent(), junk in prop::collection::vec(("[^\0=]{1,30}", any_value(300)), 0..12)) {
        // Any key libudev stores without interpreting it, any value bytes
        // (not UTF-8, huge): the message stays what it was.
        let mut with_junk = u.clone();
        with_junk.extra.extend(junk.into_iter().map(|(k, v)| (format!("X_{k}"), v)));
        let m = with_junk.udev();
        let p = parse(&m, UDEVD, None).unwrap();
        prop_assert_eq!((p.devpath, p.subsystem, p.devname), (u.devpath.as_str(), u.subsystem.as_str(), u.devname.as_deref()));
        batch_reads_back(&p);
    }
}
