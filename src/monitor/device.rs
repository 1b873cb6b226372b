//! The immutable, reference-counted device record.
//!
//! One record is one `Arc<Device>` holding a single byte arena: a small
//! header of offsets, then every string NUL-terminated (name, syspath,
//! subsystem, devtype, driver, devnode, parent name, then the properties as
//! `KEY\0VALUE\0` pairs). Two allocations per device, no per-string
//! overhead, and every accessor can hand C a `const char *` that stays
//! valid as long as the reference lives.
//!
//! Properties that describe one *event* rather than the device (`ACTION`,
//! `SEQNUM`, `DEVPATH_OLD`) are not stored; `SUBSYSTEM`, `DEVTYPE`,
//! `DRIVER` and `DEVPATH` are stored once as fields and answered by
//! [`Device::property`] from there.

use std::ffi::CStr;
use std::fmt;
use std::sync::Arc;

use super::naming::DeviceKind;

const N_OFF: usize = 7;
const O_SYSPATH: usize = 0;
const O_SUBSYSTEM: usize = 1;
const O_DEVTYPE: usize = 2;
const O_DRIVER: usize = 3;
const O_DEVNODE: usize = 4;
const O_PARENT: usize = 5;
const O_PROPS: usize = 6;
const FLAGS_AT: usize = N_OFF * 4;
const KIND_AT: usize = FLAGS_AT + 1;
const HDR: usize = KIND_AT + 1;
const ABSENT: u32 = u32::MAX;

/// The device is defined (persistent) in mdevctl.
pub const FLAG_PERSISTENT: u8 = 1;
/// mdevctl reports the device active (it may have no udev syspath yet).
pub const FLAG_MDEV_ACTIVE: u8 = 2;

const KINDS: [DeviceKind; 20] = [
    DeviceKind::System,
    DeviceKind::PciDev,
    DeviceKind::UsbDev,
    DeviceKind::UsbInterface,
    DeviceKind::Net,
    DeviceKind::ScsiHost,
    DeviceKind::ScsiTarget,
    DeviceKind::Scsi,
    DeviceKind::Storage,
    DeviceKind::ScsiGeneric,
    DeviceKind::Drm,
    DeviceKind::Mdev,
    DeviceKind::CcwDev,
    DeviceKind::CssDev,
    DeviceKind::Vdpa,
    DeviceKind::ApCard,
    DeviceKind::ApQueue,
    DeviceKind::ApMatrix,
    DeviceKind::Mtty,
    DeviceKind::Qeth,
];

/// The fields a record is built from (all borrowed; copied once into the
/// arena).
#[derive(Clone, Debug)]
pub struct DeviceFields<'a> {
    pub name: &'a str,
    /// `/sys/...`; empty for a device mdevctl defines but that is not
    /// active.
    pub syspath: &'a str,
    pub subsystem: &'a str,
    pub devtype: Option<&'a str>,
    pub driver: Option<&'a str>,
    pub devnode: Option<&'a str>,
    /// Name of the parent device (`computer` when none is known).
    pub parent: &'a str,
    pub kind: DeviceKind,
    pub flags: u8,
}

/// An immutable device record. Shared as `Arc<Device>`: references handed
/// out by lookups and callbacks stay valid after the device left the
/// table. `Send + Sync`; no method blocks.
pub struct Device {
    buf: Box<[u8]>,
}

fn clean(s: &str) -> &[u8] {
    // A NUL inside would cut the C string short: keep what precedes it.
    let b = s.as_bytes();
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

impl Device {
    /// Builds a record; `props` are stored in the given order.
    pub(crate) fn new(f: &DeviceFields<'_>, props: &[(&str, &str)]) -> Arc<Device> {
        let mut len = HDR + f.name.len() + 1 + f.syspath.len() + 1 + f.subsystem.len() + 1 + f.parent.len() + 1;
        for o in [f.devtype, f.driver, f.devnode].into_iter().flatten() {
            len += o.len() + 1;
        }
        for (k, v) in props {
            len += k.len() + v.len() + 2;
        }
        let mut buf = Vec::with_capacity(len);
        buf.resize(HDR, 0);
        let mut offs = [ABSENT; N_OFF];
        let push = |buf: &mut Vec<u8>, s: &str| -> u32 {
            let at = buf.len() as u32;
            buf.extend_from_slice(clean(s));
            buf.push(0);
            at
        };
        push(&mut buf, f.name);
        offs[O_SYSPATH] = push(&mut buf, f.syspath);
        offs[O_SUBSYSTEM] = push(&mut buf, f.subsystem);
        if let Some(s) = f.devtype {
            offs[O_DEVTYPE] = push(&mut buf, s);
        }
        if let Some(s) = f.driver {
            offs[O_DRIVER] = push(&mut buf, s);
        }
        if let Some(s) = f.devnode {
            offs[O_DEVNODE] = push(&mut buf, s);
        }
        offs[O_PARENT] = push(&mut buf, f.parent);
        offs[O_PROPS] = buf.len() as u32;
        for (k, v) in props {
            push(&mut buf, k);
            push(&mut buf, v);
        }
        for (i, o) in offs.iter().enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&o.to_le_bytes());
        }
        buf[FLAGS_AT] = f.flags;
        buf[KIND_AT] = KINDS.iter().position(|&k| k == f.kind).unwrap_or(0) as u8;
        Arc::new(Device { buf: buf.into_boxed_slice() })
    }

    /// A copy with other flags, syspath or parent, same everything else.
    pub(crate) fn with_changes(&self, syspath: Option<&str>, parent: Option<&str>, flags: u8, extra_props: &[(&str, &str)]) -> Arc<Device> {
        let mut props: Vec<(&str, &str)> = self.properties().filter(|(k, _)| !extra_props.iter().any(|(ek, _)| ek == k)).collect();
        props.extend_from_slice(extra_props);
        Device::new(
            &DeviceFields {
                name: self.name(),
                syspath: syspath.unwrap_or(self.syspath()),
                subsystem: self.subsystem(),
                devtype: self.devtype(),
                driver: self.driver(),
                devnode: self.devnode(),
                parent: parent.unwrap_or(self.parent()),
                kind: self.kind(),
                flags,
            },
            &props,
        )
    }

    fn off(&self, i: usize) -> u32 {
        u32::from_le_bytes(self.buf[i * 4..i * 4 + 4].try_into().unwrap())
    }

    fn cstr_at(&self, at: usize) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf[at..]).expect("arena strings are NUL-terminated")
    }

    fn str_at(&self, at: usize) -> &str {
        let b = self.cstr_at(at).to_bytes();
        // SAFETY: the arena is built only from `&str` values, each cut at
        // its first NUL (a one-byte character), so every string in it is
        // valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(b) }
    }

    fn opt(&self, i: usize) -> Option<&CStr> {
        match self.off(i) {
            ABSENT => None,
            at => Some(self.cstr_at(at as usize)),
        }
    }

    fn opt_str(&self, i: usize) -> Option<&str> {
        match self.off(i) {
            ABSENT => None,
            at => Some(self.str_at(at as usize)),
        }
    }

    /// libvirt's name of the device (e.g. `pci_0000_00_1f_2`).
    pub fn name(&self) -> &str {
        self.str_at(HDR)
    }
    pub(crate) fn name_c(&self) -> &CStr {
        self.cstr_at(HDR)
    }
    /// `/sys/...`, or empty for a defined but inactive mdev.
    pub fn syspath(&self) -> &str {
        self.str_at(self.off(O_SYSPATH) as usize)
    }
    pub(crate) fn syspath_c(&self) -> &CStr {
        self.cstr_at(self.off(O_SYSPATH) as usize)
    }
    /// The udev subsystem (`net`, `block`, `pci`, ...).
    pub fn subsystem(&self) -> &str {
        self.str_at(self.off(O_SUBSYSTEM) as usize)
    }
    pub(crate) fn subsystem_c(&self) -> &CStr {
        self.cstr_at(self.off(O_SUBSYSTEM) as usize)
    }
    /// The udev device type (`disk`, `usb_device`, ...), if any.
    pub fn devtype(&self) -> Option<&str> {
        self.opt_str(O_DEVTYPE)
    }
    pub(crate) fn devtype_c(&self) -> Option<&CStr> {
        self.opt(O_DEVTYPE)
    }
    /// The bound driver, if any.
    pub fn driver(&self) -> Option<&str> {
        self.opt_str(O_DRIVER)
    }
    pub(crate) fn driver_c(&self) -> Option<&CStr> {
        self.opt(O_DRIVER)
    }
    /// The device node (`/dev/sda`), if any.
    pub fn devnode(&self) -> Option<&str> {
        self.opt_str(O_DEVNODE)
    }
    pub(crate) fn devnode_c(&self) -> Option<&CStr> {
        self.opt(O_DEVNODE)
    }
    /// Name of the parent device (`computer` at the top).
    pub fn parent(&self) -> &str {
        self.str_at(self.off(O_PARENT) as usize)
    }
    pub(crate) fn parent_c(&self) -> &CStr {
        self.cstr_at(self.off(O_PARENT) as usize)
    }
    /// What libvirt takes the device for.
    pub fn kind(&self) -> DeviceKind {
        KINDS[self.buf[KIND_AT] as usize]
    }
    pub(crate) fn flags(&self) -> u8 {
        self.buf[FLAGS_AT]
    }
    /// True when mdevctl defines (persists) the device.
    pub fn is_persistent(&self) -> bool {
        self.flags() & FLAG_PERSISTENT != 0
    }

    /// The stored properties, in order.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.prop_pairs().map(|(k, v)| {
            (std::str::from_utf8(k.to_bytes()).unwrap_or(""), std::str::from_utf8(v.to_bytes()).unwrap_or(""))
        })
    }

    fn prop_pairs(&self) -> impl Iterator<Item = (&CStr, &CStr)> + '_ {
        let mut at = self.off(O_PROPS) as usize;
        std::iter::from_fn(move || {
            if at >= self.buf.len() {
                return None;
            }
            let k = self.cstr_at(at);
            at += k.to_bytes().len() + 1;
            let v = self.cstr_at(at);
            at += v.to_bytes().len() + 1;
            Some((k, v))
        })
    }

    /// A property's value as a C string (also `SUBSYSTEM`, `DEVTYPE`,
    /// `DRIVER`, `DEVPATH`, answered from the fields).
    pub(crate) fn property_c(&self, key: &[u8]) -> Option<&CStr> {
        match key {
            b"SUBSYSTEM" => return Some(self.subsystem_c()),
            b"DEVTYPE" => return self.devtype_c(),
            b"DRIVER" => return self.driver_c(),
            b"DEVPATH" => {
                let at = self.off(O_SYSPATH) as usize;
                let sp = self.cstr_at(at);
                return sp.to_bytes().starts_with(b"/sys/").then(|| self.cstr_at(at + 4));
            }
            _ => {}
        }
        self.prop_pairs().find(|(k, _)| k.to_bytes() == key).map(|(_, v)| v)
    }

    /// A udev property's value (also `SUBSYSTEM`, `DEVTYPE`, `DRIVER`,
    /// `DEVPATH`, answered from the fields).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.property_c(key.as_bytes()).map(|v| std::str::from_utf8(v.to_bytes()).unwrap_or(""))
    }

    /// Bytes owned by this record (arena + the record itself), without the
    /// allocator's own overhead. (Its test bounds a record's size.)
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.len() + std::mem::size_of::<Device>() + 2 * std::mem::size_of::<usize>()
    }

    /// True when both records carry the same content.
    pub(crate) fn same_content(&self, other: &Device) -> bool {
        self.buf == other.buf
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name())
            .field("syspath", &self.syspath())
            .field("subsystem", &self.subsystem())
            .field("devtype", &self.devtype())
            .field("driver", &self.driver())
            .field("devnode", &self.devnode())
            .field("parent", &self.parent())
            .field("flags", &self.flags())
            .field("props", &self.properties().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let d = Device::new(
            &DeviceFields {
                name: "net_a0_02_00_00_00_00_01",
                syspath: "/sys/devices/virtual/net/a0",
                subsystem: "net",
                devtype: None,
                driver: Some("veth"),
                devnode: None,
                parent: "computer",
                kind: DeviceKind::Net,
                flags: 0,
            },
            &[("INTERFACE", "a0"), ("IFINDEX", "7"), ("BAD", "x\0y")],
        );
        assert_eq!(d.name(), "net_a0_02_00_00_00_00_01");
        assert_eq!(d.syspath(), "/sys/devices/virtual/net/a0");
        assert_eq!(d.subsystem(), "net");
        assert_eq!(d.devtype(), None);
        assert_eq!(d.driver(), Some("veth"));
        assert_eq!(d.devnode(), None);
        assert_eq!(d.parent(), "computer");
        assert_eq!(d.kind(), DeviceKind::Net);
        assert_eq!(d.property("INTERFACE"), Some("a0"));
        assert_eq!(d.property("IFINDEX"), Some("7"));
        assert_eq!(d.property("BAD"), Some("x"));
        assert_eq!(d.property("SUBSYSTEM"), Some("net"));
        assert_eq!(d.property("DEVPATH"), Some("/devices/virtual/net/a0"));
        assert_eq!(d.property("DRIVER"), Some("veth"));
        assert_eq!(d.property("NOPE"), None);
        assert_eq!(d.name_c().to_bytes(), d.name().as_bytes());
        let e = d.with_changes(None, Some("pci_x"), FLAG_PERSISTENT, &[("IFINDEX", "8")]);
        assert_eq!(e.parent(), "pci_x");
        assert!(e.is_persistent());
        assert_eq!(e.property("IFINDEX"), Some("8"));
        assert_eq!(e.property("INTERFACE"), Some("a0"));
        assert!(!e.same_content(&d));
        assert!(d.heap_bytes() < 200, "{}", d.heap_bytes());
    }
}
