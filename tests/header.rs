//! The committed C header is exactly what cbindgen makes from the sources,
//! its version macros match Cargo.toml, and it declares exactly the `nde_`
//! symbols the shared library exports.
//!
//! `NDE_UPDATE_HEADER=1 cargo test --test header` rewrites the header.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{header_path, root};

fn generate() -> String {
    let mut config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    config.after_includes = Some(format!(
        "\n/* The version of this header; nde_version() gives the library's. */\n\
         #define NDE_VERSION_MAJOR {}\n#define NDE_VERSION_MINOR {}\n#define NDE_VERSION_PATCH {}\n\
         #define NDE_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_crate(root())
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).unwrap()
}


#[test]
fn committed_header_matches_a_fresh_generation() {
    let fresh = generate();
    if std::env::var_os("NDE_UPDATE_HEADER").is_some() {
        std::fs::write(header_path(), &fresh).unwrap();
    }
    let committed =
        std::fs::read_to_string(header_path()).expect("include/nodedev_events.h exists");
    assert!(
        committed == fresh,
        "include/nodedev_events.h is stale: run `make header` and commit it"
    );
}

fn macro_value(header: &str, name: &str) -> String {
    header
        .lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("{name} missing from the header"))
        .trim()
        .to_string()
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let version = toml
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("package version in Cargo.toml");
    let parts: Vec<&str> = version.split('.').collect();
    assert_eq!(macro_value(&header, "NDE_VERSION_MAJOR"), parts[0]);
    assert_eq!(macro_value(&header, "NDE_VERSION_MINOR"), parts[1]);
    assert_eq!(macro_value(&header, "NDE_VERSION_PATCH"), parts[2]);
    assert_eq!(
        macro_value(&header, "NDE_VERSION_STRING"),
        format!("\"{version}\"")
    );
}

fn exported_symbols(lib: &Path) -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("nm runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        // "nde_x@@NODEDEV_EVENTS_0.1": the name without its version node
        // (libnodedev_events.map binds every name to one).
        .map(|s| s.split('@').next().unwrap_or(s))
        .filter(|s| s.starts_with("nde_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn exported_symbols_and_header_declarations_agree() {
    let lib = support_lib();
    let header = std::fs::read_to_string(header_path()).unwrap();
    let declared: BTreeSet<String> = common::declared_functions(&header).into_iter().collect();
    let exported = exported_symbols(&lib);
    assert!(
        !exported.is_empty(),
        "no nde_ symbols exported by {}",
        lib.display()
    );
    let missing_in_header: Vec<_> = exported.difference(&declared).collect();
    let missing_in_lib: Vec<_> = declared.difference(&exported).collect();
    assert!(
        missing_in_header.is_empty(),
        "exported but not declared: {missing_in_header:?}"
    );
    assert!(
        missing_in_lib.is_empty(),
        "declared but not exported: {missing_in_lib:?}"
    );
}

/// The shared library built for this test profile.
fn support_lib() -> PathBuf {
    common::build_c_libraries();
    let lib = common::profile_dir().join("libnodedev_events.so");
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}

#[test]
fn every_name_in_the_header_has_the_library_prefix() {
    let header = std::fs::read_to_string(header_path()).unwrap();
    let mut bad = Vec::new();
    for line in header.lines() {
        let name = if let Some(rest) = line.strip_prefix("#define ") {
            rest.split_whitespace().next()
        } else if let Some(rest) = line.strip_prefix("typedef ") {
            match rest.split_once("(*") {
                // typedef void (*name)(args);
                Some((_, after)) => after.split(')').next(),
                None => rest.trim_end_matches(';').split([' ', '*']).rev().find(|w| !w.is_empty()),
            }
        } else {
            None
        };
        if let Some(name) = name {
            let ok = name.starts_with("nde_") || name.starts_with("NDE_") || name == "NODEDEV_EVENTS_H";
            if !ok && !name.starts_with('{') {
                bad.push(name.to_string());
            }
        }
    }
    assert!(bad.is_empty(), "names without the nde_/NDE_ prefix in the header: {bad:?}");
}
