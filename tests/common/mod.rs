//! Helpers shared by the integration tests that build and run C code.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// target/<profile>: where cargo put the .so and .a this test links against.
pub fn profile_dir() -> PathBuf {
    // Test binaries run from target/<profile>/deps/<name>.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub fn header_path() -> PathBuf {
    root().join("include/nodedev_events.h")
}

/// Names of the functions the header declares, in header order.
pub fn declared_functions(header: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for line in header.lines() {
        let skip = line.starts_with(' ')
            || line.starts_with('#')
            || line.starts_with('*')
            || line.starts_with("/*")
            || line.starts_with("typedef");
        if skip {
            continue;
        }
        let Some(paren) = line.find('(') else { continue };
        let Some(name) = line[..paren].split([' ', '*']).next_back() else { continue };
        if name.starts_with("nde_") && seen.insert(name.to_string()) {
            names.push(name.to_string());
        }
    }
    names
}

/// True when `cmd` can be run.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Builds the `.so` and `.a` for this test's profile with `make lib`
/// (mk/lib.mk: cargo builds only the rlib), once per test binary.
pub fn build_c_libraries() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = profile_dir();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(name) => name.to_string(),
            None => panic!("no profile directory in {}", dir.display()),
        };
        // The cargo running this test builds them (CARGO is set by it).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new("make")
            .arg("-C")
            .arg(root())
            .args(["--no-print-directory", "--quiet", "lib"])
            .arg(format!("CARGO={cargo}"))
            .arg(format!("RELEASE_DIR={}", dir.display()))
            .arg(format!("NDE_CARGO_PROFILE={profile}"))
            .status()
            .expect("make runs");
        assert!(status.success(), "make lib (the C libraries) failed");
    });
}
