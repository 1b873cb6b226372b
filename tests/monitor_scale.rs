//! The table at scale, without sysfs: synthetic device records with parent
//! chains (PCI function -> USB device -> USB interface -> net; PCI ->
//! SCSI host -> disk) go through the same code the INIT enumeration uses
//! (`Table::build` -> `make_device` -> naming, parent lookup by syspath)
//! and then through `sync_to` (the resync diff). Prints the time per size
//! (never asserted) and asserts the memory per device (heap bytes in use,
//! from glibc's `mallinfo2`, records and both indexes included).

use std::time::Instant;

use nodedev_events::test_hooks::{Changes, DeviceSpec, Table};
use nodedev_events::Lifecycle;

struct Synthetic {
    paths: Vec<String>,
    names: Vec<String>,
}

/// 5 records per group, nested as udev would report them.
fn synthetic(n: usize) -> Synthetic {
    let mut paths = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut g = 0usize;
    while paths.len() < n {
        let pci = format!("/sys/devices/pci{:04x}:00/{:04x}:{:02x}:{:02x}.{}", g >> 16, g >> 16, (g >> 8) & 0xff, (g >> 3) & 0x1f, g & 7);
        let usb = format!("{pci}/usb{g}");
        let intf = format!("{usb}/{g}-0:1.0");
        let net = format!("{intf}/net/enx{g}");
        let disk = format!("{pci}/host{g}/target{g}:0:0/{g}:0:0:0/block/sd{g}");
        paths.extend([pci, usb, intf, net, disk]);
        names.extend(["PCI", "USB", "INTF", &format!("enx{g}"), &format!("sd{g}")].map(String::from));
        g += 1;
    }
    paths.truncate(n);
    names.truncate(n);
    Synthetic { paths, names }
}

fn specs(s: &Synthetic) -> impl Iterator<Item = DeviceSpec<'_>> + '_ {
    s.paths.iter().zip(&s.names).enumerate().map(|(i, (p, n))| match i % 5 {
        0 => DeviceSpec { syspath: p, subsystem: Some("pci"), driver: Some("xhci_hcd"), props: vec![("PCI_CLASS", "C0330"), ("PCI_ID", "8086:A36D")], ..Default::default() },
        1 => DeviceSpec { syspath: p, subsystem: Some("usb"), devtype: Some("usb_device"), props: vec![("PRODUCT", "bda/8153/3000")], ..Default::default() },
        2 => DeviceSpec { syspath: p, subsystem: Some("usb"), devtype: Some("usb_interface"), props: vec![("INTERFACE", "255/255/0")], ..Default::default() },
        3 => DeviceSpec { syspath: p, subsystem: Some("net"), props: vec![("INTERFACE", n.as_str()), ("IFINDEX", "3")], ..Default::default() },
        _ => DeviceSpec { syspath: p, subsystem: Some("block"), devtype: Some("disk"), devnode: Some("/dev/sdx"), props: vec![("MAJOR", "8"), ("MINOR", "0")], ..Default::default() },
    })
}

fn heap_in_use() -> usize {
    // SAFETY: plain glibc statistics call.
    unsafe { libc::mallinfo2().uordblks }
}

#[test]
fn enumeration_is_linear_and_compact() {
    let mut per = Vec::new();
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let s = synthetic(n);
        let h0 = heap_in_use();
        let t = Instant::now();
        let (fresh, order) = Table::build(specs(&s), n, &|| false);
        let build = t.elapsed();
        // The INIT path: an empty table takes the fresh one whole.
        let mut table = Table::new();
        let mut out = Changes::new();
        table.sync_to(fresh, order, &mut out);
        assert_eq!(out.len(), n);
        assert!(out.iter().all(|(e, _)| *e == Lifecycle::Created));
        drop(out);
        let bytes = heap_in_use().saturating_sub(h0);
        let per_dev = bytes as f64 / n as f64;
        assert_eq!(table.len(), n);
        // Parents were found through the chain.
        let net = table.get_by_syspath(&s.paths[3]).unwrap();
        let intf = table.get_by_syspath(&s.paths[2]).unwrap();
        assert_eq!(net.parent(), intf.name());
        assert_eq!(table.get_by_syspath(&s.paths[0]).unwrap().parent(), "computer");
        assert_eq!(table.get_by_syspath(&s.paths[4]).unwrap().parent(), table.get_by_syspath(&s.paths[0]).unwrap().name());
        println!(
            "FIGURE scale: {n:>9} synthetic devices: build {:>8.1} ms ({:.0} ns/device), {:.0} heap bytes/device (records + indexes)",
            build.as_secs_f64() * 1e3,
            build.as_nanos() as f64 / n as f64,
            per_dev
        );
        assert!(per_dev <= 300.0, "{per_dev} bytes per device");
        per.push((n, build));
        if n == 100_000 {
            // A resync against a changed enumeration emits only the differences.
            let mut s2 = synthetic(n);
            s2.paths.truncate(n - 10); // 10 gone
            s2.names.truncate(n - 10);
            s2.names[3] = "renamed0".into(); // net device 0: INTERFACE changed -> Updated
            let (fresh, order) = Table::build(specs(&s2), n, &|| false);
            let mut out = Changes::new();
            let t = Instant::now();
            table.sync_to(fresh, order, &mut out);
            println!("FIGURE scale: resync diff of 100000 devices: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            let dels = out.iter().filter(|e| e.0 == Lifecycle::Deleted).count();
            let upd = out.iter().filter(|e| e.0 == Lifecycle::Updated).count();
            assert_eq!((dels, upd, out.len()), (10, 1, 11), "{:?}", out.iter().map(|(e, d)| (e, d.name())).collect::<Vec<_>>());
        }
    }
    let r = per[2].1.as_secs_f64() / per[1].1.as_secs_f64();
    println!("FIGURE scale: 100k/10k build time ratio {r:.1} (linear = 10)");
}
