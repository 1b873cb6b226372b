//! Hostile input for the monitor's two parsers, without a kernel: the
//! uevent datagram parser of the fast path and the mdevctl JSON parser.
//! Random, truncated, oversized and non-UTF-8 input, deterministic seeds;
//! the only promise is "an error or a sane value, never a panic", and that
//! a valid message survives any junk appended to its property block.

use nodedev_events::test_hooks::mdevctl;
use nodedev_events::test_hooks::uevent::{self, Batch, Sender};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const UDEV: Sender = Sender { groups: 2, pid: 77, uid: Some(0) };
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
fn uevent_parser_survives_anything() {
    let mut r = Rng(0x1234_5678_9abc_def1);
    let mut accepted = 0usize;
    let valid = b"ACTION=add\0DEVPATH=/devices/virtual/net/v\0SUBSYSTEM=net\0INTERFACE=v\0".to_vec();
    for i in 0..200_000usize {
        let msg = match i % 6 {
            0 => {
                let n = (r.next() % 512) as usize;
                r.bytes(n)
            }
            1 => {
                let n = (r.next() % 300) as usize;
                udev_msg(&r.bytes(n))
            }
            2 => {
                // valid, then junk (non-UTF-8, no '=', huge keys) appended
                let mut p = valid.clone();
                let n = (r.next() % 2000) as usize;
                p.extend(r.bytes(n));
                udev_msg(&p)
            }
            3 => {
                // truncated anywhere
                let m = udev_msg(&valid);
                let cut = (r.next() as usize) % (m.len() + 1);
                m[..cut].to_vec()
            }
            4 => {
                // kernel format with random tail
                let mut m = b"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0SUBSYSTEM=".to_vec();
                let n = (r.next() % 64) as usize;
                m.extend(r.bytes(n));
                m
            }
            _ => {
                // lying header offsets/lengths
                let mut m = udev_msg(&valid);
                let at = 12 + 4 * (r.next() % 3) as usize;
                let v = r.next() as u32;
                m[at..at + 4].copy_from_slice(&v.to_ne_bytes());
                m
            }
        };
        for s in [UDEV, KERNEL] {
            if let Ok(p) = uevent::parse(&msg, s, None) {
                accepted += 1;
                let mut b = Batch::default();
                b.push(&p, Some("02:00:00:00:00:01"));
                let u = b.iter().next().unwrap();
                let spec = u.spec();
                assert!(spec.syspath.starts_with("/sys/"));
                assert!(spec.subsystem.is_some());
                let _ = u.old_syspath();
            }
        }
        if i % 6 == 2 {
            // junk after a valid block never hides the valid fields
            assert!(uevent::parse(&msg, UDEV, None).is_ok());
        }
    }
    println!("uevent parser: 400000 parses of hostile input, {accepted} accepted");
}

#[test]
fn mdevctl_parser_survives_anything() {
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let good = r#"[{"0000:00:02.0": [{"4b20d080-1b54-4048-85b3-a6a62d165c01": {"mdev_type": "t", "start": "auto", "attrs": [{"a": "1"}]}}]}]"#;
    assert_eq!(mdevctl::parse(good).unwrap().len(), 1);
    for i in 0..50_000usize {
        let s = match i % 4 {
            0 => {
                let n = (r.next() % 200) as usize;
                String::from_utf8_lossy(&r.bytes(n)).into_owned()
            }
            1 => good[..(r.next() as usize) % good.len()].to_owned(),
            2 => {
                let mut b = good.as_bytes().to_vec();
                let at = (r.next() as usize) % b.len();
                b[at] = r.next() as u8;
                String::from_utf8_lossy(&b).into_owned()
            }
            _ => format!("[{}]", good.repeat(1 + (r.next() % 4) as usize).replace("][", ",")),
        };
        if let Ok(v) = mdevctl::parse(&s) {
            for e in v {
                assert!(!e.uuid.is_empty() && !e.parent.is_empty() && !e.mdev_type.is_empty());
            }
        }
    }
    // Deep nesting and a huge document do not blow the stack or hang.
    let deep = "[".repeat(100_000);
    assert!(mdevctl::parse(&deep).is_err());
    let many: Vec<String> = (0..20_000).map(|i| format!(r#"{{"u{i}": {{"mdev_type": "t"}}}}"#)).collect();
    let big = format!(r#"[{{"p": [{}]}}]"#, many.join(","));
    assert_eq!(mdevctl::parse(&big).unwrap().len(), 20_000);
}
