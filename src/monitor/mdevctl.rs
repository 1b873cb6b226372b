//! mdevctl: the config-directory watch, the `mdevctl list` refresh, its
//! JSON, and the diff into DEFINED / UNDEFINED / UPDATED.
//!
//! - Watch: `mdevctl_watch.rs`.
//! - Refresh: `mdevctl list --defined --dumpjson` then `mdevctl list
//!   --dumpjson`, when `mdevctl` is on `PATH` (else one logged line says
//!   why nothing happens). Both outputs are parsed before the table is
//!   touched: a failing `mdevctl`, a timeout (10 s) or bad JSON is logged
//!   and the table stays as it was.
//! - JSON: a list of `{ "<parent>": [ { "<uuid>": { "mdev_type": ...,
//!   "start": ..., "attrs": [...] } } ] }`.
//! - Records: an mdev mdevctl knows carries `MDEVCTL_PARENT`,
//!   `MDEVCTL_TYPE`, `MDEVCTL_START` and `MDEVCTL_ATTRS` (compact JSON)
//!   properties; defined ones carry the persistent flag. A defined device
//!   that is not active has an empty syspath.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::device::{Device, DeviceFields, FLAG_MDEV_ACTIVE, FLAG_PERSISTENT};
use super::naming::{self, DeviceKind, ROOT_NAME};
use super::sys;
use super::table::{Changes, Lifecycle, Table};

/// One mdev as mdevctl describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdevEntry {
    pub parent: String,
    pub uuid: String,
    pub mdev_type: String,
    pub start: String,
    /// The `attrs` array as compact JSON (`[]` when absent).
    pub attrs: String,
}

impl MdevEntry {
    pub fn name(&self) -> String {
        naming::mdev_name(&self.uuid, &self.parent)
    }
}

/// Parses `mdevctl list --dumpjson` output. Empty output is an empty list.
pub fn parse(json: &str) -> Result<Vec<MdevEntry>, String> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("bad JSON: {e}"))?;
    let top = v.as_array().ok_or("not a JSON list")?;
    let mut out = Vec::new();
    for item in top {
        let obj = item.as_object().ok_or("list item is not an object")?;
        for (parent, devs) in obj {
            let devs = devs.as_array().ok_or_else(|| format!("devices of parent {parent:?} are not a list"))?;
            for d in devs {
                let d = d.as_object().ok_or("device entry is not an object")?;
                for (uuid, cfg) in d {
                    let cfg = cfg.as_object().ok_or_else(|| format!("config of {uuid} is not an object"))?;
                    let s = |k: &str| cfg.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                    let mdev_type = s("mdev_type");
                    if mdev_type.is_empty() {
                        return Err(format!("{uuid}: no mdev_type"));
                    }
                    let attrs = match cfg.get("attrs") {
                        None | Some(serde_json::Value::Null) => "[]".to_owned(),
                        Some(a @ serde_json::Value::Array(_)) => a.to_string(),
                        Some(_) => return Err(format!("{uuid}: attrs is not a list")),
                    };
                    if parent.is_empty() || uuid.is_empty() {
                        return Err("empty parent or uuid".into());
                    }
                    out.push(MdevEntry { parent: parent.clone(), uuid: uuid.clone(), mdev_type, start: s("start"), attrs });
                }
            }
        }
    }
    Ok(out)
}

/// How to run `mdevctl`, taken from the environment once, when the monitor
/// is made: the host may change its environment later (`setenv` is not
/// thread-safe), and the child gets only what is written here.
#[derive(Clone, Debug)]
pub struct Mdevctl {
    /// `mdevctl` found on `PATH`, if any.
    pub bin: Option<PathBuf>,
    /// The child's whole environment: `PATH` as it was, and `LC_ALL=C`.
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

/// The longest a child may live, from spawn to reaping.
pub const RUN_LIMIT: Duration = Duration::from_secs(10);

/// The defined and the active mdevs, in that order.
pub type Listings = (Vec<MdevEntry>, Vec<MdevEntry>);

impl Mdevctl {
    /// Reads `PATH` now and looks `mdevctl` up in it.
    pub fn from_environment() -> Mdevctl {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let mut bin = None;
        for dir in std::env::split_paths(&path) {
            let p = dir.join("mdevctl");
            if sys::is_executable(&p) {
                bin = Some(p);
                break;
            }
        }
        Mdevctl { bin, env: vec![("PATH".into(), path), ("LC_ALL".into(), "C".into())] }
    }

    /// Runs both listings; `Ok(None)` when mdevctl was not on PATH.
    pub fn query(&self, stop: &AtomicBool) -> Result<Option<Listings>, String> {
        let Some(bin) = &self.bin else {
            return Ok(None);
        };
        let defined = parse(&self.run_list(bin, true, stop, RUN_LIMIT)?)?;
        let active = parse(&self.run_list(bin, false, stop, RUN_LIMIT)?)?;
        Ok(Some((defined, active)))
    }

    /// Runs `mdevctl list [--defined] --dumpjson`. The child lives at most
    /// `limit`, output read and exit reaped; `stop` ends it early. Past
    /// either, it is killed and reaped: never waited for unbounded.
    pub fn run_list(&self, bin: &Path, defined: bool, stop: &AtomicBool, limit: Duration) -> Result<String, String> {
        let mut cmd = std::process::Command::new(bin);
        cmd.arg("list");
        if defined {
            cmd.arg("--defined");
        }
        cmd.arg("--dumpjson");
        cmd.env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let r = read_and_reap(&mut child, stop, Instant::now() + limit);
        if r.is_err() {
            let _ = child.kill();
            // After SIGKILL the exit is prompt; reap it so no zombie stays.
            let _ = child.wait();
        }
        let (out, status) = r?;
        if let Some(st) = status.filter(|s| !s.success()) {
            return Err(format!("mdevctl list{} failed: {st}", if defined { " --defined" } else { "" }));
        }
        String::from_utf8(out).map_err(|_| "mdevctl output is not UTF-8".into())
    }
}

/// Reads the child's whole output, then waits for its exit, both before
/// `deadline` and unless `stop` is set. The status is None when the host
/// ignores SIGCHLD (the kernel reaped the child: `ECHILD`), which after a
/// complete read counts as success. On error the caller kills and reaps.
fn read_and_reap(
    child: &mut std::process::Child,
    stop: &AtomicBool,
    deadline: Instant,
) -> Result<(Vec<u8>, Option<std::process::ExitStatus>), String> {
    let expired = || -> Result<(), String> {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("mdevctl did not finish within {} s", RUN_LIMIT.as_secs()));
        }
        Ok(())
    };
    let mut out = child.stdout.take().ok_or("no stdout pipe")?;
    // Read on this thread, with a non-blocking pipe polled in slices (so
    // stop and the deadline are seen; no helper thread).
    let fd = out.as_raw_fd();
    sys::set_nonblocking(fd);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        expired()?;
        match out.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 64 << 20 {
                    return Err("mdevctl output larger than 64 MiB".into());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let _ = sys::poll(&mut [sys::readable(fd)], 50);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading mdevctl output: {e}")),
        }
    }
    // EOF: the child may still linger (stdout closed early); its exit is
    // awaited with the same deadline and stop.
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Ok((buf, Some(st))),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok((buf, None)),
            Err(e) => return Err(format!("waiting for mdevctl: {e}")),
        }
        expired()?;
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mdev_props(e: &MdevEntry) -> [(&str, &str); 4] {
    [
        ("MDEVCTL_PARENT", e.parent.as_str()),
        ("MDEVCTL_TYPE", e.mdev_type.as_str()),
        ("MDEVCTL_START", e.start.as_str()),
        ("MDEVCTL_ATTRS", e.attrs.as_str()),
    ]
}

/// Applies mdevctl's view to the table, libvirt's way
/// (`nodeDeviceUpdateMediatedDevices`): DEFINED for a newly defined
/// device, UNDEFINED for one no longer defined (removed when not active),
/// CREATED for an active device not known yet, UPDATED when the config of
/// a known one changed, DELETED for a transient one mdevctl no longer
/// lists and udev does not know.
pub fn apply(table: &mut Table, defined: &[MdevEntry], active: &[MdevEntry], out: &mut Changes) {
    // Parent names: the device whose sysname is the parent address.
    let mut parents: HashMap<String, String> = HashMap::new();
    if !defined.is_empty() || !active.is_empty() {
        let want: HashSet<&str> = defined.iter().chain(active).map(|e| e.parent.as_str()).collect();
        for d in table.iter() {
            let s = naming::sysname(d.syspath());
            if want.contains(s) {
                parents.insert(s.to_owned(), d.name().to_owned());
            }
        }
    }
    let parent_of = |e: &MdevEntry| parents.get(&e.parent).cloned().unwrap_or_else(|| ROOT_NAME.to_owned());
    let defined_names: HashSet<String> = defined.iter().map(MdevEntry::name).collect();
    let active_names: HashSet<String> = active.iter().map(MdevEntry::name).collect();

    // No longer defined.
    let undefined: Vec<Arc<Device>> =
        table.iter().filter(|d| d.is_persistent() && !defined_names.contains(d.name())).cloned().collect();
    for d in undefined {
        let still_active = !d.syspath().is_empty() || (d.flags() & FLAG_MDEV_ACTIVE != 0 && active_names.contains(d.name()));
        if still_active {
            let n = d.with_changes(None, None, d.flags() & !FLAG_PERSISTENT, &[]);
            table.put(n.clone());
            out.push((Lifecycle::Undefined, n));
        } else {
            table.take(d.name());
            out.push((Lifecycle::Undefined, d));
        }
    }
    let mut upsert = |e: &MdevEntry, flag: u8, new_ev, out: &mut Changes| {
        let name = e.name();
        let props = mdev_props(e);
        match table.get(&name).cloned() {
            None => {
                let parent = parent_of(e);
                let d = Device::new(
                    &DeviceFields {
                        name: &name,
                        syspath: "",
                        subsystem: "mdev",
                        devtype: None,
                        driver: None,
                        devnode: None,
                        parent: &parent,
                        kind: DeviceKind::Mdev,
                        flags: flag,
                    },
                    &props,
                );
                table.put(d.clone());
                out.push((new_ev, d));
            }
            Some(old) => {
                let n = old.with_changes(None, None, old.flags() | flag, &props);
                if old.same_content(&n) {
                    return;
                }
                table.put(n.clone());
                let ev = if flag == FLAG_PERSISTENT && !old.is_persistent() { Lifecycle::Defined } else { Lifecycle::Updated };
                out.push((ev, n));
            }
        }
    };
    for e in defined {
        upsert(e, FLAG_PERSISTENT, Lifecycle::Defined, out);
    }
    for e in active {
        upsert(e, FLAG_MDEV_ACTIVE, Lifecycle::Created, out);
    }
    // Transient devices mdevctl reported active before and no longer does.
    let gone: Vec<Arc<Device>> = table
        .iter()
        .filter(|d| d.flags() & FLAG_MDEV_ACTIVE != 0 && !active_names.contains(d.name()))
        .cloned()
        .collect();
    for d in gone {
        if d.syspath().is_empty() && !d.is_persistent() {
            table.take(d.name());
            out.push((Lifecycle::Deleted, d));
        } else {
            table.put(d.with_changes(None, None, d.flags() & !FLAG_MDEV_ACTIVE, &[]));
        }
    }
}

#[cfg(test)]
#[path = "mdevctl_proptest.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    const DEFINED_JSON: &str = r#"[
      {"0000:00:02.0": [
        {"4b20d080-1b54-4048-85b3-a6a62d165c01": {"mdev_type": "i915-GVTg_V5_4", "start": "manual", "attrs": []}},
        {"4b20d080-1b54-4048-85b3-a6a62d165c02": {"mdev_type": "i915-GVTg_V5_8", "start": "auto", "attrs": [{"foo": "1"}]}}
      ]}
    ]"#;

    #[test]
    fn parses_mdevctl_json() {
        let v = parse(DEFINED_JSON).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].parent, "0000:00:02.0");
        assert_eq!(v[1].attrs, r#"[{"foo":"1"}]"#);
        assert_eq!(v[0].name(), "mdev_4b20d080_1b54_4048_85b3_a6a62d165c01_0000_00_02_0");
        assert!(parse("").unwrap().is_empty());
        assert!(parse("[]").unwrap().is_empty());
        for bad in ["{", "{}", "[1]", r#"[{"p": 3}]"#, r#"[{"p": [{"u": {"start": "auto"}}]}]"#, r#"[{"p": [{"u": {"mdev_type": "t", "attrs": 7}}]}]"#, "\u{0}\u{1}", "[{\"p\": [{\"u\": {\"mdev_type\": \"t\"}}]}]x"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn diff_defined_undefined_updated() {
        let mut t = Table::new();
        let mut out = Changes::new();
        let d = parse(DEFINED_JSON).unwrap();
        apply(&mut t, &d, &[], &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![Lifecycle::Defined, Lifecycle::Defined]);
        out.clear();
        apply(&mut t, &d, &[], &mut out);
        assert!(out.is_empty(), "unchanged: no events");
        let mut d2 = d.clone();
        d2[1].start = "manual".into();
        apply(&mut t, &d2[1..], &[], &mut out);
        let ev: Vec<_> = out.iter().map(|x| (x.0, x.1.name().to_owned())).collect();
        assert_eq!(ev, vec![(Lifecycle::Undefined, d[0].name()), (Lifecycle::Updated, d[1].name())]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(&d[1].name()).unwrap().property("MDEVCTL_START"), Some("manual"));
        out.clear();
        // active transient device appears then goes
        apply(&mut t, &d2[1..], &d[..1], &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![Lifecycle::Created]);
        out.clear();
        apply(&mut t, &d2[1..], &[], &mut out);
        assert_eq!(out.iter().map(|x| x.0).collect::<Vec<_>>(), vec![Lifecycle::Deleted]);
    }
}
