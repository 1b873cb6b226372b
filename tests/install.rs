//! `make install` / `make uninstall` (mk/install.mk) into temporary
//! prefixes, then C and C++ clients built the way users build them:
//! `pkg-config --cflags --libs nodedev-events` against the installed tree,
//! linked to the installed `.so` and, with `pkg-config --static`, to the
//! installed `.a`. Also builds and runs examples/plugin_host.c (headers
//! only, dlopen of the installed `.so.N`), examples/libvirt_port.c,
//! examples/keyed_driver.c and
//! tools/nodedev-monitor.c against the installed library, and checks the
//! installed nodedev-monitor, its man page and the man3 pages.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use common::{profile_dir, root};

/// The two scenarios share the build directory's soname link: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAJOR: &str = env!("CARGO_PKG_VERSION_MAJOR");

/// A C client using both installed headers: version, the pool, the dlopen
/// table and the libvirt names.
const CLIENT: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nodedev_events.h>
#include <nodedev_events_virt.h>

static int total;
static void add(void *jobdata, void *opaque)
{
    (void)opaque;
    total += *(int *)jobdata;
}

int main(void)
{
    if (strcmp(nde_version(), NDE_VERSION_STRING) != 0) {
        fprintf(stderr, "library %s, header %s\n", nde_version(), NDE_VERSION_STRING);
        return 1;
    }
    const nde_api *api = nde_get_api(NDE_API_VERSION);
    if (!api || api->abi_version != NDE_API_VERSION || api->size < sizeof(nde_api))
        return 2;
    virThreadPool *pool = virThreadPoolNewFull(1, 1, 0, add, "client", NULL, NULL);
    if (!pool)
        return 3;
    static int data[10];
    for (int i = 0; i < 10; i++) {
        data[i] = i + 1;
        if (virThreadPoolSendJob(pool, 0, &data[i]) < 0)
            return 4;
    }
    if (api->pool_wait_idle(pool, -1) != NDE_OK)
        return 5;
    virThreadPoolFree(pool);
    if (total != 55)
        return 6;
    printf("client ok: nodedev-events %s\n", nde_version());
    return 0;
}
"#;

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

fn scratch(name: &str) -> PathBuf {
    let d = profile_dir().join("install-test").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `make <target> VARS...` in the repository, with RELEASE_DIR pointing at
/// this test profile's output (which honours CARGO_TARGET_DIR). In the
/// release profile `install` builds the library itself, as a user's `make
/// install` does; in other profiles it installs what this profile built.
fn release_profile() -> bool {
    profile_dir().file_name().map(|n| n == "release").unwrap_or(false)
}

fn make(target: &str, vars: &[(&str, String)]) -> String {
    let mut cmd = Command::new("make");
    cmd.arg("-C").arg(root()).arg("--no-print-directory").arg(target);
    cmd.arg(format!("RELEASE_DIR={}", profile_dir().display()));
    if !release_profile() {
        cmd.arg("NDE_INSTALL_DEPS=");
    }
    cmd.arg("LDCONFIG=true");
    for (k, v) in vars {
        cmd.arg(format!("{k}={v}"));
    }
    run(&mut cmd, &format!("make {target}"))
}

/// Everything `make install` puts under `lib` and `include`.
fn installed_files(libdir: &Path, includedir: &Path) -> Vec<PathBuf> {
    vec![
        libdir.join(format!("libnodedev_events.so.{VERSION}")),
        libdir.join(format!("libnodedev_events.so.{MAJOR}")),
        libdir.join("libnodedev_events.so"),
        libdir.join("libnodedev_events.a"),
        libdir.join("pkgconfig/nodedev-events.pc"),
        includedir.join("nodedev_events.h"),
        includedir.join("nodedev_events_virt.h"),
    ]
}

fn check_installed(libdir: &Path, includedir: &Path) {
    for f in installed_files(libdir, includedir) {
        assert!(f.symlink_metadata().is_ok(), "{} not installed", f.display());
    }
    let real = libdir.join(format!("libnodedev_events.so.{VERSION}"));
    assert!(real.symlink_metadata().unwrap().file_type().is_file());
    let link = |name: &str| std::fs::read_link(libdir.join(name)).unwrap();
    assert_eq!(link(&format!("libnodedev_events.so.{MAJOR}")), PathBuf::from(format!("libnodedev_events.so.{VERSION}")));
    assert_eq!(link("libnodedev_events.so"), PathBuf::from(format!("libnodedev_events.so.{MAJOR}")));
    let dynamic = run(Command::new("readelf").arg("-d").arg(&real), "readelf");
    assert!(
        dynamic.contains(&format!("[libnodedev_events.so.{MAJOR}]")),
        "soname of the installed library:\n{dynamic}"
    );
    // The installed headers are the tree's.
    for h in ["nodedev_events.h", "nodedev_events_virt.h"] {
        assert_eq!(
            std::fs::read(includedir.join(h)).unwrap(),
            std::fs::read(root().join("include").join(h)).unwrap(),
            "{h}"
        );
    }
}

fn check_uninstalled(libdir: &Path, includedir: &Path, bindir: &Path, mandir: &Path) {
    let mut all = installed_files(libdir, includedir);
    all.push(bindir.join("nodedev-monitor"));
    all.push(mandir.join("man1/nodedev-monitor.1"));
    all.push(mandir.join("man3/nde_pool_new_full.3"));
    all.push(mandir.join("man3/nodedev_events.h.3"));
    for f in all {
        assert!(f.symlink_metadata().is_err(), "{} left behind by make uninstall", f.display());
    }
}

/// pkg-config with the installed tree first on its path.
fn pkg_config(pc_dir: &Path, sysroot: Option<&Path>, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("pkg-config");
    cmd.env("PKG_CONFIG_PATH", pc_dir).args(args);
    if let Some(s) = sysroot {
        cmd.env("PKG_CONFIG_SYSROOT_DIR", s);
    }
    run(&mut cmd, &format!("pkg-config {args:?}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Builds and runs the client (C, C++, static) against the installed tree,
/// and, `with_example`, examples/libvirt_port.c (plain and under ASan/UBSan)
/// and examples/keyed_driver.c.
fn build_clients(work: &Path, pc_dir: &Path, sysroot: Option<&Path>, libdir: &Path, with_example: bool) {
    assert_eq!(pkg_config(pc_dir, sysroot, &["--modversion", "nodedev-events"]), vec![VERSION.to_string()]);
    let cflags = pkg_config(pc_dir, sysroot, &["--cflags", "nodedev-events"]);
    let libs = pkg_config(pc_dir, sysroot, &["--libs", "nodedev-events"]);
    let flags = pkg_config(pc_dir, sysroot, &["--cflags", "--libs", "nodedev-events"]);
    assert!(
        flags.iter().any(|f| f.starts_with("-I") && Path::new(&f[2..]).join("nodedev_events_virt.h").exists()),
        "pkg-config --cflags does not point at the installed headers: {flags:?}"
    );
    let ld_path = libdir.display().to_string();

    // C, linked to the installed .so
    let src = work.join("client.c");
    std::fs::write(&src, CLIENT).unwrap();
    let exe = work.join("client");
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(&src)
            .arg("-o")
            .arg(&exe)
            .args(&flags),
        "building the client with pkg-config",
    );
    let ldd = run(Command::new("ldd").arg(&exe).env("LD_LIBRARY_PATH", &ld_path), "ldd client");
    assert!(
        ldd.contains(&format!("libnodedev_events.so.{MAJOR} => {}", libdir.join(format!("libnodedev_events.so.{MAJOR}")).display())),
        "the client does not load the installed library:\n{ldd}"
    );
    let out = run(Command::new(&exe).env("LD_LIBRARY_PATH", &ld_path), "running the client");
    assert!(out.contains(&format!("client ok: nodedev-events {VERSION}")), "{out}");

    // C++, same source: both headers are C++-clean.
    let cxx_src = work.join("client.cpp");
    std::fs::write(&cxx_src, CLIENT).unwrap();
    let cxx_exe = work.join("client-cxx");
    run(
        Command::new("c++")
            .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(&cxx_src)
            .arg("-o")
            .arg(&cxx_exe)
            .args(&cflags)
            .args(&libs),
        "building the C++ client",
    );
    run(Command::new(&cxx_exe).env("LD_LIBRARY_PATH", &ld_path), "running the C++ client");

    // Static: the installed .a plus what `pkg-config --static` lists privately.
    let static_libs: Vec<String> = pkg_config(pc_dir, sysroot, &["--static", "--libs", "nodedev-events"])
        .into_iter()
        .map(|f| if f == "-lnodedev_events" { "-l:libnodedev_events.a".to_string() } else { f })
        .collect();
    let static_exe = work.join("client-static");
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(&src)
            .arg("-o")
            .arg(&static_exe)
            .args(&cflags)
            .args(&static_libs),
        "building the client against the installed .a",
    );
    let ldd = run(Command::new("ldd").arg(&static_exe), "ldd static client");
    assert!(!ldd.contains("libnodedev_events"), "static client links the .so:\n{ldd}");
    run(&mut Command::new(&static_exe), "running the static client");

    // The plugin host example: headers from pkg-config, no link to the
    // library; it dlopen()s the installed .so.N and resolves nde_get_api.
    let host = work.join("plugin-host");
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .arg(root().join("examples/plugin_host.c"))
            .arg("-o")
            .arg(&host)
            .args(&cflags)
            .arg("-ldl"),
        "building examples/plugin_host.c",
    );
    let ldd = run(Command::new("ldd").arg(&host), "ldd plugin-host");
    assert!(!ldd.contains("libnodedev_events"), "plugin-host links the library:\n{ldd}");
    let out = run(
        Command::new(&host).arg(libdir.join(format!("libnodedev_events.so.{MAJOR}"))),
        "running plugin-host",
    );
    assert!(out.contains("plugin-host: ok"), "{out}");

    // The libvirt port example, built like a driver would build it.
    let example = root().join("examples/libvirt_port.c");
    if with_example {
        let exe = work.join("libvirt-port");
        let both = pkg_config(pc_dir, sysroot, &["--cflags", "--libs", "nodedev-events", "libudev"]);
        run(
            Command::new("cc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"])
                .arg(&example)
                .arg("-o")
                .arg(&exe)
                .args(&both)
                .arg("-lpthread"),
            "building examples/libvirt_port.c",
        );
        let out = run(
            Command::new(&exe).arg("--self-test").env("LD_LIBRARY_PATH", &ld_path),
            "libvirt-port --self-test",
        );
        assert!(out.contains("self-test: ok"), "{out}");

        // Again under AddressSanitizer + UBSan: no leak, no error, on every
        // path of the port (udev references, shutdown with a refused submit).
        let asan = work.join("libvirt-port-asan");
        run(
            Command::new("cc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"])
                .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"])
                .arg(&example)
                .arg("-o")
                .arg(&asan)
                .args(&both)
                .arg("-lpthread"),
            "building examples/libvirt_port.c with sanitizers",
        );
        let out = run(
            Command::new(&asan)
                .arg("--self-test")
                .env("LD_LIBRARY_PATH", &ld_path)
                .env("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
                .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"),
            "libvirt-port --self-test under ASan/UBSan",
        );
        assert!(out.contains("self-test: ok"), "{out}");

        // The keyed driver example: events on several workers, checked for
        // per-device order, barriers and one userdata_free per callback.
        let keyed = work.join("keyed-driver");
        run(
            Command::new("cc")
                .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"])
                .arg(root().join("examples/keyed_driver.c"))
                .arg("-o")
                .arg(&keyed)
                .args(&flags),
            "building examples/keyed_driver.c",
        );
        let out = run(
            Command::new(&keyed).args(["--self-test", "3"]).env("LD_LIBRARY_PATH", &ld_path),
            "keyed-driver --self-test 3",
        );
        assert!(out.contains("keyed-driver: ok"), "{out}");
    }
}

#[test]
fn install_into_a_prefix_build_clients_with_pkg_config_and_uninstall() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::build_c_libraries();
    let work = scratch("prefix");
    let prefix = work.join("prefix");
    let vars = [("PREFIX", prefix.display().to_string())];
    make("install", &vars);

    let libdir = prefix.join("lib");
    let includedir = prefix.join("include");
    check_installed(&libdir, &includedir);
    let pc = std::fs::read_to_string(libdir.join("pkgconfig/nodedev-events.pc")).unwrap();
    assert!(pc.contains(&format!("prefix={}\n", prefix.display())), "{pc}");
    assert!(pc.contains("libdir=${prefix}/lib\n"), "{pc}");
    assert!(pc.contains("Requires.private: libudev"), "{pc}");
    assert!(pc.contains(&format!("Version: {VERSION}\n")), "{pc}");

    build_clients(&work, &libdir.join("pkgconfig"), None, &libdir, true);
    check_tool(&work, &libdir.join("pkgconfig"), &libdir);
    if release_profile() {
        // `make install` built the tool and installed it with its man page.
        let bin = prefix.join("bin/nodedev-monitor");
        assert!(bin.exists(), "{} not installed", bin.display());
        assert!(prefix.join("share/man/man1/nodedev-monitor.1").exists(), "man page not installed");
        // And the C API reference (mk/man.mk): `man nde_pool_new_full`.
        let out = run(
            Command::new("man").args(["-w", "nde_pool_new_full"]).env("MANPATH", prefix.join("share/man")),
            "man -w nde_pool_new_full",
        );
        assert_eq!(out.trim(), prefix.join("share/man/man3/nodedev_events.h.3").display().to_string());
        let out = run(Command::new(&bin).arg("--help"), "installed nodedev-monitor --help");
        assert!(out.contains("--subsystem"), "{out}");
    }

    // A second install over the first is fine (links are replaced).
    make("install", &vars);
    check_installed(&libdir, &includedir);

    make("uninstall", &vars);
    check_uninstalled(&libdir, &includedir, &prefix.join("bin"), &prefix.join("share/man"));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn staged_install_with_destdir_and_custom_directories() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    common::build_c_libraries();
    let work = scratch("destdir");
    let stage = work.join("stage");
    let vars = [
        ("DESTDIR", stage.display().to_string()),
        ("PREFIX", "/opt/nde".to_string()),
        ("LIBDIR", "/opt/nde/lib64".to_string()),
        ("INCLUDEDIR", "/opt/nde/include/nde".to_string()),
    ];
    make("install", &vars);
    assert!(!Path::new("/opt/nde/lib64/libnodedev_events.a").exists(), "DESTDIR ignored");

    let libdir = stage.join("opt/nde/lib64");
    let includedir = stage.join("opt/nde/include/nde");
    check_installed(&libdir, &includedir);
    // The .pc describes the final location, not the staging directory.
    let pc = std::fs::read_to_string(libdir.join("pkgconfig/nodedev-events.pc")).unwrap();
    assert!(pc.contains("prefix=/opt/nde\n"), "{pc}");
    assert!(pc.contains("libdir=${prefix}/lib64\n"), "{pc}");
    assert!(pc.contains("includedir=${prefix}/include/nde\n"), "{pc}");
    assert!(!pc.contains(&stage.display().to_string()), "{pc}");

    // Build against the staged tree the way a distribution build does.
    build_clients(&work, &libdir.join("pkgconfig"), Some(&stage), &libdir, false);

    make("uninstall", &vars);
    check_uninstalled(&libdir, &includedir, &stage.join("opt/nde/bin"), &stage.join("opt/nde/share/man"));
    let _ = std::fs::remove_dir_all(&work);
}

/// The output of a finished command, whatever its status.
fn output(cmd: &mut Command, what: &str) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// tools/nodedev-monitor.c built against the installed tree with
/// pkg-config, then: --help, a bad option, --list (the tree starts at
/// `computer`, `--subsystem net` keeps only net devices), a live event,
/// Ctrl-C, and a timed run under valgrind with no leak.
fn check_tool(work: &Path, pc_dir: &Path, libdir: &Path) {
    use std::io::{BufRead, BufReader};

    let exe = work.join("nodedev-monitor");
    let flags = pkg_config(pc_dir, None, &["--cflags", "--libs", "nodedev-events"]);
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"])
            .arg(root().join("tools/nodedev-monitor.c"))
            .arg("-o")
            .arg(&exe)
            .args(&flags)
            .arg("-lpthread"),
        "building tools/nodedev-monitor.c with pkg-config",
    );
    let ld_path = libdir.display().to_string();
    let tool = || {
        let mut c = Command::new(&exe);
        c.env("LD_LIBRARY_PATH", &ld_path);
        c
    };

    let (code, out) = output(tool().arg("--help"), "nodedev-monitor --help");
    assert_eq!(code, 0, "{out}");
    for opt in ["--timeout", "--list", "--subsystem", "--timestamp", "--kernel", "--udev"] {
        assert!(out.contains(opt), "--help does not mention {opt}:\n{out}");
    }
    let (code, out) = output(tool().arg("--no-such-option"), "nodedev-monitor --no-such-option");
    assert_eq!(code, 2, "{out}");
    let (code, out) = output(tool().args(["--timeout", "soon"]), "nodedev-monitor --timeout soon");
    assert_eq!(code, 2, "{out}");

    // The inventory, as `virsh nodedev-list --tree` prints it.
    let (code, out) = output(tool().args(["--list", "--kernel"]), "nodedev-monitor --list");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("computer"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("  |"), "{out}");
    let net_lo = lines
        .iter()
        .find(|l| l.trim_start_matches([' ', '|']).starts_with("+- net_lo"))
        .map(|l| l.trim_start_matches([' ', '|']).trim_start_matches("+- ").to_string());
    let (code, out) = output(tool().args(["--list", "--subsystem", "net"]), "nodedev-monitor --list --subsystem net");
    assert_eq!(code, 0, "{out}");
    for l in out.lines().filter(|l| l.contains("+- ")) {
        let name = l.split("+- ").nth(1).unwrap();
        assert!(name.starts_with("net_"), "--subsystem net listed {name}:\n{out}");
    }

    // A live event: a "change" uevent written to the loopback device
    // (only where no udevd would act on it, and as root).
    let writable = std::fs::OpenOptions::new().write(true).open("/sys/class/net/lo/uevent").is_ok();
    if let (Some(lo), true, false) = (&net_lo, writable, Path::new("/run/udev/control").exists()) {
        let mut child = tool()
            .args(["--kernel", "--subsystem", "net", "--timestamp", "--timeout", "30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let next = || rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
        // The tree is printed once the listener is in place.
        assert_eq!(next().expect("the tree"), "computer");
        std::fs::write("/sys/class/net/lo/uevent", "change").unwrap();
        let want = format!("event 'update' for node device {lo}");
        let mut seen = Vec::new();
        loop {
            let line = next().unwrap_or_else(|_| panic!("no '{want}' line within 20 s; saw {seen:?}"));
            if line.ends_with(&want) {
                // --timestamp: "YYYY-MM-DD HH:MM:SS.mmm+0000: event ..."
                let stamp = &line[..line.len() - want.len()];
                assert!(stamp.ends_with("+0000: ") && stamp.len() == 30, "timestamp: {line}");
                println!("nodedev-monitor reported: {line}");
                break;
            }
            seen.push(line);
        }
        // Ctrl-C: a clean exit, status 0.
        run(Command::new("kill").args(["-INT", &child.id().to_string()]), "kill -INT");
        let status = child.wait().unwrap();
        assert!(status.success(), "nodedev-monitor after SIGINT: {status}");
        reader.join().unwrap();
    }

    // A timed run under valgrind: everything freed, no error.
    if common::have("valgrind") {
        let (code, out) = output(
            Command::new("valgrind")
                .args(["--quiet", "--error-exitcode=9", "--leak-check=full", "--errors-for-leak-kinds=definite"])
                .arg(&exe)
                .args(["--kernel", "--timeout", "0.5"])
                .env("LD_LIBRARY_PATH", &ld_path),
            "nodedev-monitor under valgrind",
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("computer\n"), "{out}");
    }
}

/// A veth session needs root, `unshare` and `ip`.
fn can_run_veth_session() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    root_user && common::have("unshare") && common::have("ip")
}

/// Builds tools/nodedev-monitor.c at `exe`, linked to the build tree's
/// library.
fn build_nodedev_monitor(exe: &Path) {
    let dir = profile_dir();
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g"])
            .arg(format!("-I{}", root().join("include").display()))
            .arg(root().join("tools/nodedev-monitor.c"))
            .arg("-o")
            .arg(exe)
            .arg(format!("-L{}", dir.display()))
            .arg(format!("-Wl,-rpath,{}", dir.display()))
            .args(["-lnodedev_events", "-lpthread"]),
        "building tools/nodedev-monitor.c",
    );
}

/// What `make run` is for: nodedev-monitor (built from the tree) shows the
/// inventory and then a line for each hot-plugged device. A veth pair is
/// created, renamed and deleted in a private network + mount namespace
/// (with its own sysfs view), so the machine's devices are not touched.
/// Needs root, `unshare` and `ip`; skipped otherwise.
#[test]
fn nodedev_monitor_reports_a_veth_pair_in_a_private_namespace() {
    if !can_run_veth_session() {
        eprintln!("skipped: needs root, unshare and ip");
        return;
    }
    common::build_c_libraries();
    let work = scratch("veth");
    let exe = work.join("nodedev-monitor");
    build_nodedev_monitor(&exe);
    let printed = veth_session(&exe, &work);
    let position = |pattern: &str| {
        printed
            .lines()
            .position(|l| {
                let (prefix, suffix) = pattern.split_once('*').unwrap();
                l.starts_with(prefix) && l.ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no line like '{pattern}' in:\n{printed}"))
    };
    let lifecycle = "event 'lifecycle' for node device ";
    let a0_created = position(&format!("{lifecycle}net_a0_*: Created"));
    let a0_deleted = position(&format!("{lifecycle}net_a0_*: Deleted"));
    let b0_created = position(&format!("{lifecycle}net_b0_*: Created"));
    let b0_deleted = position(&format!("{lifecycle}net_b0_*: Deleted"));
    position(&format!("{lifecycle}net_a1_*: Created"));
    position(&format!("{lifecycle}net_a1_*: Deleted"));
    // the rename is libvirt's DELETED(old name) then CREATED(new name)
    assert!(a0_created < a0_deleted && a0_deleted < b0_created && b0_created < b0_deleted, "{printed}");
    assert!(printed.starts_with("computer\n  |\n  +- net_lo_"), "{printed}");
    let _ = std::fs::remove_dir_all(&work);
}

/// examples/monitor.rs, the Rust twin of nodedev-monitor, prints what the
/// C tool prints: the same session (tree, then a veth pair plugged,
/// renamed and unplugged in a private namespace) gives the same lines, once
/// the veths' random MAC addresses are masked. Needs root, `unshare` and
/// `ip`; skipped otherwise.
#[test]
fn the_rust_example_prints_what_nodedev_monitor_prints() {
    if !can_run_veth_session() {
        eprintln!("skipped: needs root, unshare and ip");
        return;
    }
    common::build_c_libraries();
    let work = scratch("twin");
    let c_tool = work.join("nodedev-monitor");
    build_nodedev_monitor(&c_tool);
    let dir = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(root()).args(["build", "--quiet", "--example", "monitor"]);
    if release_profile() {
        build.arg("--release");
    }
    run(&mut build, "building examples/monitor.rs");
    let rust_twin = dir.join("examples/monitor");
    // A MAC address at the end of a name (`_xx_xx_xx_xx_xx_xx`).
    let mask = |text: &str| {
        text.lines()
            .map(|line| {
                let mut out = String::new();
                let mut rest = line;
                while let Some(at) = rest.find(|c: char| c.is_ascii_hexdigit()) {
                    let candidate = &rest[at..];
                    let is_mac = candidate.len() >= 17
                        && candidate.as_bytes()[..17].iter().enumerate().all(|(i, b)| {
                            if i % 3 == 2 { *b == b'_' || *b == b':' } else { b.is_ascii_hexdigit() }
                        })
                        && (at == 0 || rest.as_bytes()[at - 1] == b'_')
                        && candidate[17..].chars().next().is_none_or(|c| c != '_' && !c.is_ascii_hexdigit());
                    out.push_str(&rest[..at]);
                    if is_mac {
                        out.push_str("MAC");
                        rest = &candidate[17..];
                    } else {
                        out.push_str(&candidate[..1]);
                        rest = &candidate[1..];
                    }
                }
                out.push_str(rest);
                out
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let from_c = mask(&veth_session(&c_tool, &work));
    let from_rust = mask(&veth_session(&rust_twin, &work));
    assert!(from_c.contains("net_a0_MAC: Created"), "{from_c}");
    assert_eq!(from_rust, from_c);
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs `exe --kernel --subsystem net` in a private network and mount
/// namespace (with its own sysfs view) while a veth pair is plugged,
/// renamed and unplugged; returns what it printed.
fn veth_session(exe: &Path, work: &Path) -> String {
    let out = work.join("out.txt");
    let _ = std::fs::remove_file(&out);
    // Inside the namespace: start the monitor, wait for its tree (the
    // listener is in place by then), plug, rename (once a0 was reported:
    // a rename racing the MAC lookup gives a name without the MAC, as in
    // libvirt, which made the printed names depend on the load), unplug
    // (once b0 was reported, for the same reason: b0 deleted before its
    // MAC was read printed `net_b0`),
    // wait for the last line, then Ctrl-C it and pass its exit status on.
    let script = format!(
        r#"set -e
mount -n -t sysfs sysfs /sys
"{exe}" --kernel --subsystem net > "{out}" 2>&1 &
pid=$!
n=0; until grep -q '^computer$' "{out}"; do n=$((n+1)); [ $n -lt 400 ] || exit 90; sleep 0.05; done
ip link add a0 type veth peer name a1
n=0; until grep -q 'node device net_a0_.*: Created' "{out}"; do n=$((n+1)); [ $n -lt 400 ] || {{ kill -INT $pid; exit 92; }}; sleep 0.05; done
ip link set a0 name b0
n=0; until grep -q 'node device net_b0.*: Created' "{out}"; do n=$((n+1)); [ $n -lt 400 ] || {{ kill -INT $pid; exit 93; }}; sleep 0.05; done
ip link del b0
n=0; until grep -q 'node device net_a1_.*: Deleted' "{out}"; do n=$((n+1)); [ $n -lt 400 ] || {{ kill -INT $pid; exit 91; }}; sleep 0.05; done
kill -INT $pid
wait $pid
"#,
        exe = exe.display(),
        out = out.display()
    );
    let (code, text) = output(
        Command::new("unshare").args(["-n", "-m", "--propagation", "private", "sh", "-c", &script]),
        "nodedev-monitor in a private namespace",
    );
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(code, 0, "{}: exit {code}: {text}\nmonitor output:\n{printed}", exe.display());
    printed
}

/// Preloaded under nodedev-monitor: an enumeration that never finishes.
/// `nde_monitor_wait_initialized` reports each call on stderr and waits for
/// `nde_monitor_stop` (the library's own, called through) or its timeout,
/// then answers as the library does for an enumeration cut short by a stop
/// (`NDE_ERR_STOPPED`) or still running (`NDE_ERR_TIMEOUT`).
const STALL_ENUMERATION: &str = r#"
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include "nodedev_events.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stopped_cond = PTHREAD_COND_INITIALIZER;
static int stopped;

int nde_monitor_stop(nde_monitor *mon, int timeout_ms)
{
    int (*real)(nde_monitor *, int);
    *(void **)&real = dlsym(RTLD_NEXT, "nde_monitor_stop");
    int rc = real(mon, timeout_ms);
    pthread_mutex_lock(&lock);
    stopped = 1;
    pthread_cond_broadcast(&stopped_cond);
    pthread_mutex_unlock(&lock);
    return rc;
}

int nde_monitor_wait_initialized(nde_monitor *mon, int timeout_ms)
{
    (void)mon;
    fprintf(stderr, "stall: wait_initialized(%d)\n", timeout_ms);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms >= 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&lock);
    int timed_out = 0;
    while (!stopped && !timed_out) {
        if (timeout_ms < 0)
            pthread_cond_wait(&stopped_cond, &lock);
        else
            timed_out = pthread_cond_timedwait(&stopped_cond, &lock, &deadline) != 0;
    }
    int was_stopped = stopped;
    pthread_mutex_unlock(&lock);
    int rc = was_stopped ? NDE_ERR_STOPPED : NDE_ERR_TIMEOUT;
    fprintf(stderr, "stall: wait_initialized -> %s\n", nde_result_str(rc));
    return rc;
}
"#;

/// Ctrl-C during the enumeration ends nodedev-monitor's wait for it through
/// the stop, not at the next poll: the tool waits once, with no timeout,
/// and that wait returns "stopped" because of the signal; no tree is
/// printed and the exit is clean. (Before, the tool polled in 100 ms
/// slices: its first wait had a timeout of 100 and returned "timed out".)
/// The enumeration is held open by STALL_ENUMERATION, preloaded.
#[test]
fn nodedev_monitor_ctrl_c_ends_the_enumeration_wait() {
    use std::io::{BufRead, BufReader};

    common::build_c_libraries();
    let work = scratch("stall");
    let exe = work.join("nodedev-monitor");
    build_nodedev_monitor(&exe);
    let dir = profile_dir();
    let include = format!("-I{}", root().join("include").display());
    let stall_src = work.join("stall.c");
    let stall = work.join("stall.so");
    std::fs::write(&stall_src, STALL_ENUMERATION).unwrap();
    run(
        Command::new("cc")
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-O1", "-g", &include])
            .arg(&stall_src)
            .arg("-o")
            .arg(&stall)
            .arg(format!("-L{}", dir.display()))
            .args(["-lnodedev_events", "-ldl", "-lpthread"]),
        "building the preloaded stall",
    );

    let mut child = Command::new(&exe)
        .arg("--kernel")
        .env("LD_PRELOAD", &stall)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = stderr.next().and_then(Result::ok);
    if first.as_deref() == Some("stall: wait_initialized(-1)") {
        // The tool is waiting (its signals are blocked by now): Ctrl-C.
        // SAFETY: kill has no memory preconditions.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    } else {
        let _ = child.kill();
    }
    // A hang guard only: the exit is expected at once.
    let mut waited = 0;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if waited == 600 {
            let _ = child.kill();
            panic!("nodedev-monitor did not exit within a minute of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        waited += 1;
    };
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(
        first.as_deref(),
        Some("stall: wait_initialized(-1)"),
        "the tool must wait for the enumeration once, without a timeout; stderr: {rest:?}"
    );
    assert_eq!(
        rest,
        ["stall: wait_initialized -> object is stopped or shutting down; nothing was queued"],
        "the wait ends because the signal stopped the monitor"
    );
    assert!(status.success(), "nodedev-monitor after SIGINT: {status}");
    assert_eq!(stdout, "", "no tree: the enumeration never finished");
    let _ = std::fs::remove_dir_all(&work);
}
