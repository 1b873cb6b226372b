//! libvirt's node-device names and device-type detection.
//!
//! Names follow `nodeDeviceGenerateName`: `<subsystem>_<sysname>[_<suffix>]`
//! with every byte that is not ASCII alphanumeric turned into `_`
//! (`0000:00:1f.2` in `pci` -> `pci_0000_00_1f_2`). The suffix is the MAC
//! address for net devices, `ID_SERIAL` for disks and the parent's address
//! for mediated devices; the root device is `computer` and the AP matrix is
//! `ap_matrix`, as in libvirt.
//!
//! Type detection mirrors libvirt's `udevGetDeviceType`: the `DEVTYPE`
//! table first, then `PCI_CLASS` (PCI), `INTERFACE` (net), then a few
//! subsystems that set no `DEVTYPE`. **Devices of an unknown type are not
//! kept in the table** (libvirt discards them too: `queues`, `platform`,
//! `cpu`, `partition`...); they still take part in nothing, and a kept
//! device below them hangs under its nearest kept ancestor.
//!
//! Two deliberate differences from libvirt 9/10, both keeping *more*:
//! - a `net` device with an `INTERFACE` property is a net device whatever
//!   its `DEVTYPE` (`bridge`, `vlan`, `bond`, `wireguard`, ...); libvirt's
//!   table only knows `wlan`, so its bridges vanish.
//! - every `disk` is kept; libvirt additionally drops disks whose drive
//!   type it cannot guess from sysfs (`udevKludgeStorageType`), e.g. loop
//!   devices. We do not read sysfs for that.

/// The kinds of device libvirt keeps (its `virNodeDevCapType`s that udev
/// can produce).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceKind {
    /// The root device, `computer`.
    System,
    /// A PCI function.
    PciDev,
    /// A USB device.
    UsbDev,
    /// A USB interface.
    UsbInterface,
    /// A network interface.
    Net,
    /// A SCSI host adapter.
    ScsiHost,
    /// A SCSI target.
    ScsiTarget,
    /// A SCSI device (LUN).
    Scsi,
    /// A disk or other block storage device.
    Storage,
    /// A SCSI generic (`sg`) device.
    ScsiGeneric,
    /// A DRM (graphics) device.
    Drm,
    /// A mediated device (vfio-mdev).
    Mdev,
    /// An s390 CCW device.
    CcwDev,
    /// An s390 channel subsystem device.
    CssDev,
    /// A vDPA device.
    Vdpa,
    /// An s390 AP card.
    ApCard,
    /// An s390 AP queue.
    ApQueue,
    /// The s390 AP matrix (`ap_matrix`).
    ApMatrix,
    /// An mtty sample mediated-device parent.
    Mtty,
    /// An s390 qeth network device.
    Qeth,
}

/// Name of the root device.
pub const ROOT_NAME: &str = "computer";

/// Detects the libvirt device type of a device from its udev fields;
/// `None` means libvirt would discard it (see the module doc).
/// `has_prop` answers whether a property is present.
pub fn detect_kind(
    subsystem: Option<&str>,
    devtype: Option<&str>,
    has_prop: &dyn Fn(&str) -> bool,
) -> Option<DeviceKind> {
    use DeviceKind::*;
    if let Some(dt) = devtype {
        let k = match dt {
            "usb_device" => Some(UsbDev),
            "usb_interface" => Some(UsbInterface),
            "scsi_host" => Some(ScsiHost),
            "scsi_target" => Some(ScsiTarget),
            "scsi_device" => Some(Scsi),
            "disk" => Some(Storage),
            "wlan" => Some(Net),
            "drm_minor" => Some(Drm),
            "ap_card" => Some(ApCard),
            "ap_queue" => Some(ApQueue),
            _ if dt.starts_with("qeth") => Some(Qeth),
            _ => None,
        };
        if k.is_some() {
            return k;
        }
        // Our extension: any net device with an interface name.
        if subsystem == Some("net") && has_prop("INTERFACE") {
            return Some(Net);
        }
        return None;
    }
    let mut kind = None;
    if has_prop("PCI_CLASS") {
        kind = Some(PciDev);
    }
    if has_prop("INTERFACE") {
        kind = Some(Net);
    }
    match subsystem {
        Some("scsi_generic") => kind = Some(ScsiGeneric),
        Some("mdev") => kind = Some(Mdev),
        Some("ccw") => kind = Some(CcwDev),
        Some("css") => kind = Some(CssDev),
        Some("vdpa") => kind = Some(Vdpa),
        Some("matrix") => kind = Some(ApMatrix),
        Some("mtty") => kind = Some(Mtty),
        _ => {}
    }
    kind
}

/// Appends `s` to `out` with every byte that is not ASCII alphanumeric
/// replaced by `_` (multi-byte characters give one `_` per byte, as
/// libvirt's byte-wise `g_ascii_isalnum` loop does).
pub fn push_sanitized(out: &mut String, s: &str) {
    out.reserve(s.len());
    for b in s.bytes() {
        out.push(if b.is_ascii_alphanumeric() { b as char } else { '_' });
    }
}

/// `<subsystem>_<sysname>[_<suffix>]`, sanitized as a whole.
pub fn generate_name(subsystem: &str, sysname: &str, suffix: Option<&str>) -> String {
    let mut out = String::with_capacity(subsystem.len() + sysname.len() + 2 + suffix.map_or(0, str::len));
    push_sanitized(&mut out, subsystem);
    out.push('_');
    push_sanitized(&mut out, sysname);
    if let Some(s) = suffix {
        out.push('_');
        push_sanitized(&mut out, s);
    }
    out
}

/// The last component of a sysfs path (`udev_device_get_sysname`, without
/// libudev's `!` -> `/` translation, which we then sanitize to `_` anyway).
pub fn sysname(syspath: &str) -> &str {
    syspath.rsplit('/').next().unwrap_or(syspath)
}

/// The parent directory's last component (the address of an mdev's parent).
pub fn parent_sysname(syspath: &str) -> Option<&str> {
    let (dir, _) = syspath.rsplit_once('/')?;
    let p = sysname(dir);
    (!p.is_empty() && p != "devices").then_some(p)
}

/// The libvirt name of a device of `kind`.
/// `mac` is the net device's `address`; `prop` looks a property up.
pub fn device_name(
    kind: DeviceKind,
    subsystem: &str,
    syspath: &str,
    mac: Option<&str>,
    prop: &dyn Fn(&str) -> Option<String>,
) -> String {
    let sys = sysname(syspath);
    match kind {
        DeviceKind::System => ROOT_NAME.to_owned(),
        DeviceKind::ApMatrix => "ap_matrix".to_owned(),
        DeviceKind::Net => generate_name(subsystem, sys, mac.filter(|m| !m.is_empty())),
        DeviceKind::Storage => {
            let serial = prop("ID_SERIAL").filter(|s| !s.is_empty());
            generate_name(subsystem, sys, serial.as_deref())
        }
        DeviceKind::Mdev => generate_name(subsystem, sys, parent_sysname(syspath)),
        _ => generate_name(subsystem, sys, None),
    }
}

/// The name of a mediated device defined through mdevctl (same scheme as
/// an active mdev seen by udev: `mdev_<uuid>_<parent address>`).
pub fn mdev_name(uuid: &str, parent: &str) -> String {
    generate_name("mdev", uuid, Some(parent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_prop(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn libvirt_examples() {
        assert_eq!(generate_name("pci", "0000:00:1f.2", None), "pci_0000_00_1f_2");
        assert_eq!(
            device_name(DeviceKind::Net, "net", "/sys/devices/virtual/net/eth0", Some("52:54:00:ab:cd:ef"), &no_prop),
            "net_eth0_52_54_00_ab_cd_ef"
        );
        assert_eq!(
            device_name(DeviceKind::Net, "net", "/sys/devices/virtual/net/lo", Some(""), &no_prop),
            "net_lo"
        );
        let serial = |k: &str| (k == "ID_SERIAL").then(|| "QEMU_HARDDISK_QM00001".to_owned());
        assert_eq!(
            device_name(DeviceKind::Storage, "block", "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", None, &serial),
            "block_sda_QEMU_HARDDISK_QM00001"
        );
        assert_eq!(
            device_name(DeviceKind::Mdev, "mdev", "/sys/devices/pci0000:00/0000:00:02.0/4b20d080-1b54-4048-85b3-a6a62d165c01", None, &no_prop),
            "mdev_4b20d080_1b54_4048_85b3_a6a62d165c01_0000_00_02_0"
        );
        assert_eq!(mdev_name("4b20d080-1b54-4048-85b3-a6a62d165c01", "0000:00:02.0"), "mdev_4b20d080_1b54_4048_85b3_a6a62d165c01_0000_00_02_0");
        assert_eq!(device_name(DeviceKind::UsbDev, "usb", "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1", None, &no_prop), "usb_1_1");
        assert_eq!(device_name(DeviceKind::ApMatrix, "matrix", "/sys/devices/vfio_ap/matrix", None, &no_prop), "ap_matrix");
        // Non-ASCII: one '_' per byte.
        assert_eq!(generate_name("net", "é", None), "net___");
    }

    #[test]
    fn kinds() {
        let none = |_: &str| false;
        let iface = |k: &str| k == "INTERFACE";
        let pci = |k: &str| k == "PCI_CLASS";
        assert_eq!(detect_kind(Some("net"), None, &iface), Some(DeviceKind::Net));
        assert_eq!(detect_kind(Some("net"), Some("bridge"), &iface), Some(DeviceKind::Net));
        assert_eq!(detect_kind(Some("net"), Some("wlan"), &none), Some(DeviceKind::Net));
        assert_eq!(detect_kind(Some("pci"), None, &pci), Some(DeviceKind::PciDev));
        assert_eq!(detect_kind(Some("block"), Some("disk"), &none), Some(DeviceKind::Storage));
        assert_eq!(detect_kind(Some("block"), Some("partition"), &none), None);
        assert_eq!(detect_kind(Some("queues"), None, &none), None);
        assert_eq!(detect_kind(Some("platform"), None, &none), None);
        assert_eq!(detect_kind(Some("mdev"), None, &none), Some(DeviceKind::Mdev));
        assert_eq!(detect_kind(Some("scsi_generic"), None, &none), Some(DeviceKind::ScsiGeneric));
        assert_eq!(detect_kind(Some("usb"), Some("usb_interface"), &iface), Some(DeviceKind::UsbInterface));
        assert_eq!(detect_kind(None, None, &none), None);
    }

    #[test]
    fn sysnames() {
        assert_eq!(sysname("/sys/devices/virtual/net/lo"), "lo");
        assert_eq!(parent_sysname("/sys/devices/pci0000:00/0000:00:02.0/uuid"), Some("0000:00:02.0"));
        assert_eq!(parent_sysname("/sys/devices/x"), None);
        assert_eq!(parent_sysname("x"), None);
    }
}
