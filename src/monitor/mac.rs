//! A net device's MAC address, the one policy of every path (enumeration,
//! libudev path, fast path): libvirt names net devices after it.

use std::fmt::Write;

use super::sys::{HwAddr, IoctlSocket};
use super::table::Table;

/// The MAC address of interface `ifname` (sysfs path `sys_prefix` +
/// `path`, joined only when sysfs is read) into `out`; false when none was
/// found.
///
/// One `SIOCGIFHWADDR` ioctl first (much cheaper than a sysfs path walk,
/// which on kernfs allocates a dentry even for a missing path), then sysfs.
/// udevd broadcasts once an interface is fully registered, so on the udev
/// group "no such interface" means gone (or injected): no sysfs read. A
/// kernel-group add can precede the name being listed while sysfs already
/// has the device: there sysfs is asked.
pub fn lookup(sock: Option<&IoctlSocket>, ifname: &str, sys_prefix: &str, path: &str, kernel_group: bool, out: &mut String) -> bool {
    out.clear();
    match sock.map_or(HwAddr::Unknown, |s| s.hwaddr(ifname)) {
        HwAddr::Ether(m) => {
            for (i, b) in m.iter().enumerate() {
                if i > 0 {
                    out.push(':');
                }
                let _ = write!(out, "{b:02x}");
            }
            true
        }
        HwAddr::NoDevice if !kernel_group => false,
        HwAddr::NoDevice | HwAddr::Unknown => read_sysfs(&[sys_prefix, path].concat(), out),
    }
}

/// The address from sysfs (`<syspath>/address`), with one `read` and no
/// libudev cache; false when it cannot be read (device gone, injected).
pub fn read_sysfs(syspath: &str, out: &mut String) -> bool {
    out.clear();
    let mut p = String::with_capacity(syspath.len() + 8);
    p.push_str(syspath);
    p.push_str("/address");
    match std::fs::read(&p).ok().as_deref().map(std::str::from_utf8) {
        Some(Ok(s)) => {
            out.push_str(s.trim());
            !out.is_empty()
        }
        _ => false,
    }
}

/// The address the table knew for `syspath` (the device is already gone,
/// or injected) into `out`; false when none.
pub fn known(table: &Table, syspath: &str, out: &mut String) -> bool {
    out.clear();
    if let Some(m) = table.get_by_syspath(syspath).and_then(|d| d.property("ADDRESS")) {
        out.push_str(m);
    }
    !out.is_empty()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::FileFailurePersistence;

    use super::read_sysfs;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 200,
            failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
            ..ProptestConfig::default()
        })]

        /// Whatever the `address` attribute holds (not UTF-8, empty, huge,
        /// blanks): its trimmed text when there is one, else false.
        #[test]
        fn sysfs_address_read_takes_any_content(content in prop::collection::vec(any::<u8>(), 0..300), blanks in "[ \n\t]{0,3}") {
            let dir = std::env::temp_dir().join(format!("nde-mac-{}-{:?}", std::process::id(), std::thread::current().id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut bytes = content.clone();
            bytes.extend(blanks.as_bytes());
            std::fs::write(dir.join("address"), &bytes).unwrap();
            let mut out = String::from("stale");
            let found = read_sysfs(dir.to_str().unwrap(), &mut out);
            std::fs::remove_dir_all(&dir).unwrap();
            match std::str::from_utf8(&bytes) {
                Ok(s) if !s.trim().is_empty() => prop_assert!(found && out == s.trim()),
                _ => prop_assert!(!found && out.is_empty()),
            }
        }
    }

    #[test]
    fn sysfs_address_of_a_missing_device_is_false() {
        let mut out = String::from("stale");
        assert!(!read_sysfs("/sys/class/net/nde-no-such-device", &mut out));
        assert!(out.is_empty());
    }
}
