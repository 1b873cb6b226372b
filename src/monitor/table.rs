//! (Over 400 lines: the table, its lifecycle rules and the resync diff are one concept, with their tests.)
//!
//! The node-device table: devices keyed by name, with a syspath index so a
//! parent is found in O(1) per ancestor (walk up the syspath to the nearest
//! known device; none means `computer`). Enumeration is therefore linear in
//! the number of devices (libvirt's is quadratic: its sysfs-path lookup
//! scans the whole list).
//!
//! Every change produces lifecycle events, as libvirt's udev driver does:
//! - add/change of an unknown device: CREATED; of a known one: UPDATED;
//! - remove: DELETED (a device mdevctl still defines stays in the table,
//!   inactive, as in libvirt);
//! - move: DELETED of the old syspath, then CREATED of the new one;
//! - a known syspath whose name changed (e.g. a new MAC address): DELETED
//!   of the old name, CREATED of the new one (libvirt would keep a stale
//!   entry under the old name);
//! - resync after an overflow: only the differences between the table and
//!   a fresh enumeration (records with the same bytes emit nothing).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::device::{Device, DeviceFields, FLAG_MDEV_ACTIVE, FLAG_PERSISTENT};
use super::naming::{self, DeviceKind, ROOT_NAME};

/// What happened to a device: libvirt's node-device lifecycle events, plus
/// `Updated` for libvirt's separate update event. (C: `nde_lifecycle`.)
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lifecycle {
    /// A new device: added, or (for an mdev) started.
    Created,
    /// The device left the table (removed, or renamed: then `Created`
    /// of the new name follows).
    Deleted,
    /// mdevctl now defines (persists) the mediated device.
    Defined,
    /// mdevctl no longer defines the mediated device.
    Undefined,
    /// A known device was added again or changed.
    Updated,
}

/// Events produced by one table operation, in order.
pub type Changes = Vec<(Lifecycle, Arc<Device>)>;

/// A device as a source describes it (a uevent, an enumerated device, a
/// synthetic record): everything borrowed.
#[derive(Clone, Debug, Default)]
pub struct DeviceSpec<'a> {
    pub syspath: &'a str,
    pub subsystem: Option<&'a str>,
    pub devtype: Option<&'a str>,
    pub driver: Option<&'a str>,
    pub devnode: Option<&'a str>,
    /// The net device's `address` (sysfs attribute), for the name suffix.
    pub mac: Option<&'a str>,
    /// Device properties (without ACTION/SEQNUM/DEVPATH/SUBSYSTEM/DEVTYPE/
    /// DRIVER/DEVPATH_OLD, which the record keeps as fields or drops).
    pub props: Vec<(&'a str, &'a str)>,
}

impl<'a> DeviceSpec<'a> {
    pub fn prop(&self, key: &str) -> Option<&'a str> {
        self.props.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// Keys that belong to an event, not to a device: never stored.
pub fn is_event_key(key: &str) -> bool {
    matches!(key, "ACTION" | "SEQNUM" | "DEVPATH" | "DEVPATH_OLD" | "SUBSYSTEM" | "DEVTYPE" | "DRIVER")
}

/// The indexes' hasher: rustc-hash's FxHash, fast on short strings and
/// not DoS-resistant, which is fine: keys are sysfs paths and device names
/// that only root can inject.
type Fx = rustc_hash::FxBuildHasher;

struct ByName(Arc<Device>);
impl Hash for ByName {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.name().hash(h)
    }
}
impl PartialEq for ByName {
    fn eq(&self, o: &Self) -> bool {
        self.0.name() == o.0.name()
    }
}
impl Eq for ByName {}
impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

struct BySyspath(Arc<Device>);
impl Hash for BySyspath {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.syspath().hash(h)
    }
}
impl PartialEq for BySyspath {
    fn eq(&self, o: &Self) -> bool {
        self.0.syspath() == o.0.syspath()
    }
}
impl Eq for BySyspath {}
impl Borrow<str> for BySyspath {
    fn borrow(&self) -> &str {
        self.0.syspath()
    }
}

/// The device table. Not synchronised: the monitor keeps it behind a lock
/// and changes it only on its events worker.
#[derive(Default)]
pub struct Table {
    by_name: HashSet<ByName, Fx>,
    by_syspath: HashSet<BySyspath, Fx>,
}

/// mdevctl properties carried over when udev re-describes an mdev.
pub const MDEV_PROP_PREFIX: &str = "MDEVCTL_";

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn with_capacity(n: usize) -> Table {
        Table {
            by_name: HashSet::with_capacity_and_hasher(n, Fx::default()),
            by_syspath: HashSet::with_capacity_and_hasher(n, Fx::default()),
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Device>> {
        self.by_name.get(name).map(|d| &d.0)
    }

    pub fn get_by_syspath(&self, syspath: &str) -> Option<&Arc<Device>> {
        if syspath.is_empty() {
            return None;
        }
        self.by_syspath.get(syspath).map(|d| &d.0)
    }

    /// Every device (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Device>> + '_ {
        self.by_name.iter().map(|d| &d.0)
    }

    /// Name of the nearest known ancestor of `syspath` (`computer` if none).
    pub fn parent_name(&self, syspath: &str) -> &str {
        let mut p = syspath;
        while let Some((dir, _)) = p.rsplit_once('/') {
            if dir.len() <= "/sys".len() {
                break;
            }
            if let Some(d) = self.by_syspath.get(dir) {
                return d.0.name();
            }
            p = dir;
        }
        ROOT_NAME
    }

    /// Builds the record a spec describes, with its parent found in this
    /// table; `None` when libvirt would discard the device (unknown type,
    /// no subsystem, not under `/sys/`).
    pub fn make_device(&self, spec: &DeviceSpec<'_>) -> Option<Arc<Device>> {
        let subsystem = spec.subsystem?;
        if !spec.syspath.starts_with("/sys/") || subsystem.is_empty() {
            return None;
        }
        let kind = naming::detect_kind(Some(subsystem), spec.devtype, &|k| spec.prop(k).is_some())?;
        let name = naming::device_name(kind, subsystem, spec.syspath, spec.mac, &|k| spec.prop(k).map(str::to_owned));
        let parent = self.parent_name(spec.syspath);
        Some(Device::new(
            &DeviceFields {
                name: &name,
                syspath: spec.syspath,
                subsystem,
                devtype: spec.devtype,
                driver: spec.driver,
                devnode: spec.devnode,
                parent,
                kind,
                flags: 0,
            },
            &spec.props,
        ))
    }

    fn insert_raw(&mut self, d: Arc<Device>) {
        if !d.syspath().is_empty() {
            self.by_syspath.replace(BySyspath(d.clone()));
        }
        self.by_name.replace(ByName(d));
    }

    fn remove_raw(&mut self, d: &Device) {
        self.by_name.remove(d.name());
        if !d.syspath().is_empty() {
            // Only drop the index entry if it points at this name.
            if self.by_syspath.get(d.syspath()).is_some_and(|x| x.0.name() == d.name()) {
                self.by_syspath.remove(d.syspath());
            }
        }
    }

    /// Inserts or replaces `d` (already built), producing the events of an
    /// add/change. `quiet_same`: emit nothing when the content is
    /// unchanged (resync).
    pub fn upsert(&mut self, d: Arc<Device>, quiet_same: bool, out: &mut Changes) {
        // Same syspath known under another name: that name is gone.
        if let Some(old) = self.get_by_syspath(d.syspath()).cloned() {
            if old.name() != d.name() {
                self.remove_device(&old, out);
            }
        }
        match self.get(d.name()).cloned() {
            None => {
                self.insert_raw(d.clone());
                out.push((Lifecycle::Created, d));
            }
            Some(old) => {
                // Keep what mdevctl told us about the device.
                let d = merge_mdevctl(&old, d);
                if quiet_same && old.same_content(&d) {
                    return;
                }
                // Defined in mdevctl but not active until now: CREATED, as
                // libvirt does (`new_device = old sysfs_path == NULL`).
                let was_inactive = old.syspath().is_empty() && old.flags() & FLAG_MDEV_ACTIVE == 0;
                if old.syspath() != d.syspath() {
                    self.remove_raw(&old);
                }
                self.insert_raw(d.clone());
                out.push((if was_inactive { Lifecycle::Created } else { Lifecycle::Updated }, d));
            }
        }
    }

    /// add / change of a device described by `spec`.
    pub fn add_or_change(&mut self, spec: &DeviceSpec<'_>, out: &mut Changes) {
        if let Some(d) = self.make_device(spec) {
            self.upsert(d, false, out);
        }
    }

    /// remove of a device by syspath: DELETED if it was known.
    pub fn remove(&mut self, syspath: &str, out: &mut Changes) {
        if let Some(old) = self.get_by_syspath(syspath).cloned() {
            self.remove_device(&old, out);
        }
    }

    fn remove_device(&mut self, old: &Arc<Device>, out: &mut Changes) {
        self.remove_raw(old);
        if old.is_persistent() {
            // Still defined in mdevctl: stays, inactive (libvirt does so).
            let keep = old.with_changes(Some(""), None, old.flags() & !FLAG_MDEV_ACTIVE, &[]);
            self.insert_raw(keep);
        }
        out.push((Lifecycle::Deleted, old.clone()));
    }

    /// move: DELETED of `old_syspath` (if known), then the add of the new.
    pub fn move_device(&mut self, old_syspath: Option<&str>, spec: &DeviceSpec<'_>, out: &mut Changes) {
        if let Some(o) = old_syspath {
            self.remove(o, out);
        }
        self.add_or_change(spec, out);
    }

    /// Inserts or replaces a record without producing events (mdevctl
    /// refresh and tests).
    pub fn put(&mut self, d: Arc<Device>) {
        if let Some(old) = self.get(d.name()).cloned() {
            self.remove_raw(&old);
        }
        self.insert_raw(d);
    }

    /// Removes a record by name without producing events.
    pub fn take(&mut self, name: &str) -> Option<Arc<Device>> {
        let d = self.get(name).cloned()?;
        self.remove_raw(&d);
        Some(d)
    }

    /// Builds a table from records in enumeration order (parents first is
    /// best; a child before its parent hangs under `computer`, as libvirt).
    /// Returns the table and the kept devices in order. Linear.
    /// `stop` is polled between records; a true return ends early. (For the
    /// scale test: the monitor enumerates through `push_enumerated`.)
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn build<'a, I>(specs: I, capacity: usize, stop: &dyn Fn() -> bool) -> (Table, Vec<Arc<Device>>)
    where
        I: IntoIterator<Item = DeviceSpec<'a>>,
    {
        let mut t = Table::with_capacity(capacity);
        let mut order = Vec::with_capacity(capacity);
        for spec in specs {
            if stop() {
                break;
            }
            t.push_enumerated(&spec, &mut order);
        }
        (t, order)
    }

    /// One step of [`Table::build`]: adds an enumerated device (a later
    /// record for the same syspath or name replaces the earlier one).
    pub fn push_enumerated(&mut self, spec: &DeviceSpec<'_>, order: &mut Vec<Arc<Device>>) {
        if let Some(d) = self.make_device(spec) {
            // Two hash operations in the common case (no duplicate).
            if let Some(ByName(old)) = self.by_name.replace(ByName(d.clone())) {
                if old.syspath() != d.syspath() && self.by_syspath.get(old.syspath()).is_some_and(|x| Arc::ptr_eq(&x.0, &old)) {
                    self.by_syspath.remove(old.syspath());
                }
            }
            if let Some(BySyspath(old)) = self.by_syspath.replace(BySyspath(d.clone())) {
                if old.name() != d.name() && self.by_name.get(old.name()).is_some_and(|x| Arc::ptr_eq(&x.0, &old)) {
                    self.by_name.remove(old.name());
                }
            }
            order.push(d);
        }
    }

    /// Makes the table equal to a fresh enumeration (`fresh` and `order`
    /// from [`Table::build`]), producing only the differences: DELETED for
    /// devices with a syspath that the enumeration no longer has, CREATED
    /// for new ones, UPDATED for changed ones, in enumeration order.
    /// Devices without a syspath (`computer`, mdevs defined but inactive)
    /// are left alone.
    pub fn sync_to(&mut self, fresh: Table, order: Vec<Arc<Device>>, out: &mut Changes) {
        if self.is_empty() {
            *self = fresh;
            out.extend(order.into_iter().map(|d| (Lifecycle::Created, d)));
            return;
        }
        let gone: Vec<Arc<Device>> = self
            .by_syspath
            .iter()
            .filter(|d| fresh.get_by_syspath(d.0.syspath()).is_none_or(|f| f.name() != d.0.name()))
            .map(|d| d.0.clone())
            .collect();
        for d in gone {
            if self.get(d.name()).is_some_and(|x| Arc::ptr_eq(x, &d)) {
                self.remove_device(&d, out);
            }
        }
        for d in order {
            self.upsert(d, true, out);
        }
    }

    /// Ensures the root device exists; CREATED the first time.
    pub fn ensure_root(&mut self, out: &mut Changes) {
        if self.get(ROOT_NAME).is_none() {
            let d = Device::new(
                &DeviceFields {
                    name: ROOT_NAME,
                    syspath: "",
                    subsystem: "",
                    devtype: None,
                    driver: None,
                    devnode: None,
                    parent: "",
                    kind: DeviceKind::System,
                    flags: 0,
                },
                &[],
            );
            self.insert_raw(d.clone());
            out.push((Lifecycle::Created, d));
        }
    }
}

/// When udev re-describes a device that mdevctl defines, keep the
/// persistent flag and the `MDEVCTL_*` properties.
fn merge_mdevctl(old: &Device, new: Arc<Device>) -> Arc<Device> {
    let keep_flags = old.flags() & (FLAG_PERSISTENT | FLAG_MDEV_ACTIVE);
    if keep_flags == 0 {
        return new;
    }
    let extra: Vec<(&str, &str)> = old.properties().filter(|(k, _)| k.starts_with(MDEV_PROP_PREFIX)).collect();
    new.with_changes(None, None, new.flags() | keep_flags, &extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(syspath: &str) -> DeviceSpec<'_> {
        DeviceSpec {
            syspath,
            subsystem: Some("net"),
            props: vec![("INTERFACE", naming::sysname(syspath))],
            ..Default::default()
        }
    }

    fn pci(syspath: &str) -> DeviceSpec<'_> {
        DeviceSpec { syspath, subsystem: Some("pci"), props: vec![("PCI_CLASS", "20000")], ..Default::default() }
    }

    #[test]
    fn lifecycle_and_parents() {
        let mut t = Table::new();
        let mut out = Changes::new();
        t.ensure_root(&mut out);
        t.add_or_change(&pci("/sys/devices/pci0000:00/0000:00:03.0"), &mut out);
        t.add_or_change(&net("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0"), &mut out);
        let ev: Vec<_> = out.drain(..).map(|(e, d)| (e, d.name().to_owned())).collect();
        assert_eq!(
            ev,
            vec![(Lifecycle::Created, "computer".into()), (Lifecycle::Created, "pci_0000_00_03_0".into()), (Lifecycle::Created, "net_eth0".into())]
        );
        assert_eq!(t.get("net_eth0").unwrap().parent(), "pci_0000_00_03_0");
        assert_eq!(t.get("pci_0000_00_03_0").unwrap().parent(), "computer");
        // change of a known device: UPDATED
        t.add_or_change(&net("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0"), &mut out);
        assert_eq!(out.drain(..).map(|x| x.0).collect::<Vec<_>>(), vec![Lifecycle::Updated]);
        // unknown type: ignored
        t.add_or_change(&DeviceSpec { syspath: "/sys/devices/platform/x", subsystem: Some("platform"), ..Default::default() }, &mut out);
        assert!(out.is_empty());
        // move
        t.move_device(
            Some("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth0"),
            &net("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth1"),
            &mut out,
        );
        let ev: Vec<_> = out.drain(..).map(|(e, d)| (e, d.name().to_owned())).collect();
        assert_eq!(ev, vec![(Lifecycle::Deleted, "net_eth0".into()), (Lifecycle::Created, "net_eth1".into())]);
        // remove of an unknown syspath: nothing
        t.remove("/sys/devices/none", &mut out);
        assert!(out.is_empty());
        let held = t.get("net_eth1").unwrap().clone();
        t.remove("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth1", &mut out);
        assert_eq!(out.drain(..).map(|x| x.0).collect::<Vec<_>>(), vec![Lifecycle::Deleted]);
        assert_eq!(held.name(), "net_eth1"); // references outlive removal
        assert_eq!(t.len(), 2);
        assert!(t.get_by_syspath("/sys/devices/pci0000:00/0000:00:03.0/virtio0/net/eth1").is_none());
    }

    #[test]
    fn name_change_on_same_syspath() {
        let mut t = Table::new();
        let mut out = Changes::new();
        let mut s = net("/sys/devices/virtual/net/a0");
        s.mac = Some("02:00:00:00:00:01");
        t.add_or_change(&s, &mut out);
        s.mac = Some("02:00:00:00:00:02");
        t.add_or_change(&s, &mut out);
        let ev: Vec<_> = out.drain(..).map(|(e, d)| (e, d.name().to_owned())).collect();
        assert_eq!(
            ev,
            vec![
                (Lifecycle::Created, "net_a0_02_00_00_00_00_01".into()),
                (Lifecycle::Deleted, "net_a0_02_00_00_00_00_01".into()),
                (Lifecycle::Created, "net_a0_02_00_00_00_00_02".into())
            ]
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn resync_emits_only_differences() {
        let paths: Vec<String> = (0..10).map(|i| format!("/sys/devices/virtual/net/v{i}")).collect();
        let mut t = Table::new();
        let mut out = Changes::new();
        let (f, o) = Table::build(paths.iter().map(|p| net(p)), 10, &|| false);
        t.sync_to(f, o, &mut out);
        assert_eq!(out.len(), 10);
        out.clear();
        // v0 gone, v10 new, v1 changed
        let mut specs: Vec<DeviceSpec> = paths[1..].iter().map(|p| net(p)).collect();
        specs[0].props.push(("X", "1"));
        let p10 = "/sys/devices/virtual/net/v10".to_owned();
        specs.push(net(&p10));
        let (f, o) = Table::build(specs, 10, &|| false);
        t.sync_to(f, o, &mut out);
        let mut ev: Vec<_> = out.drain(..).map(|(e, d)| (e, d.name().to_owned())).collect();
        ev.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(ev, vec![(Lifecycle::Deleted, "net_v0".into()), (Lifecycle::Updated, "net_v1".into()), (Lifecycle::Created, "net_v10".into())]);
        assert_eq!(t.len(), 10);
    }

    #[test]
    fn persistent_mdev_survives_remove() {
        let mut t = Table::new();
        let mut out = Changes::new();
        let d = Device::new(
            &DeviceFields {
                name: "mdev_u_0000_00_02_0",
                syspath: "",
                subsystem: "mdev",
                devtype: None,
                driver: None,
                devnode: None,
                parent: "computer",
                kind: DeviceKind::Mdev,
                flags: FLAG_PERSISTENT,
            },
            &[("MDEVCTL_TYPE", "i915-GVTg_V5_4")],
        );
        t.put(d);
        let spec = DeviceSpec {
            syspath: "/sys/devices/pci0000:00/0000:00:02.0/u",
            subsystem: Some("mdev"),
            ..Default::default()
        };
        t.add_or_change(&spec, &mut out);
        assert_eq!(out[0].0, Lifecycle::Created);
        assert!(out[0].1.is_persistent());
        assert_eq!(out[0].1.property("MDEVCTL_TYPE"), Some("i915-GVTg_V5_4"));
        out.clear();
        t.remove("/sys/devices/pci0000:00/0000:00:02.0/u", &mut out);
        assert_eq!(out[0].0, Lifecycle::Deleted);
        let kept = t.get("mdev_u_0000_00_02_0").unwrap();
        assert_eq!(kept.syspath(), "");
        assert!(kept.is_persistent());
    }
}
