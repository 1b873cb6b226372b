//! The shared library's ABI as the package tools see it (docs/abi.md):
//! every function the header declares is exported, bound to the version
//! node libnodedev_events.map gives it, and listed with that version in
//! debian/libnodedev-events0.symbols (what dpkg-gensymbols compares each
//! package build against); nothing else is exported.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{header_path, profile_dir, root};

/// name -> version node, for every `global:` name of the version script.
fn version_script() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("libnodedev_events.map")).unwrap();
    // Drop the /* comments */ first.
    let mut code = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment in the version script");
        rest = &rest[start + end + 2..];
    }
    code.push_str(rest);

    let mut names = BTreeMap::new();
    let mut node: Option<String> = None;
    let mut global = false;
    for token in code.split(';').flat_map(|stmt| stmt.split_whitespace()) {
        match token {
            "{" => {}
            "global:" => global = true,
            "local:" => global = false,
            t if t.starts_with('}') => node = None,
            t if node.is_none() => {
                node = Some(t.to_string());
                global = false;
            }
            name if global => {
                let node = node.clone().unwrap();
                assert!(names.insert(name.to_string(), node).is_none(), "{name} is listed twice");
            }
            _ => {}
        }
    }
    names
}

/// name -> version node, for every symbol of debian/libnodedev-events0.symbols.
fn debian_symbols() -> BTreeMap<String, String> {
    let path = root().join("debian/libnodedev-events0.symbols");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("libnodedev_events.so.0 libnodedev-events0 #MINVER#"),
        "{}: the soname and the package",
        path.display()
    );
    lines
        .filter_map(|l| l.strip_prefix(' '))
        .map(|l| {
            let symbol = l.split_whitespace().next().unwrap();
            let (name, node) = symbol.split_once('@').expect("every symbol has its version");
            (name.to_string(), node.to_string())
        })
        .filter(|(name, node)| name != node) // the node's own symbol
        .collect()
}

/// name -> version node, for every symbol the library defines in its
/// dynamic symbol table ("" when it has no version).
fn exported() -> BTreeMap<String, String> {
    common::build_c_libraries();
    let lib = profile_dir().join("libnodedev_events.so");
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&lib).output().expect("nm runs");
    assert!(out.status.success(), "nm -D {}", lib.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            // A version node defines an absolute symbol of its own name.
            [_, "A", _] => None,
            [_, _, symbol] => Some(symbol),
            _ => None,
        })
        .map(|s| match s.split_once("@@") {
            Some((name, node)) => (name.to_string(), node.to_string()),
            None => (s.to_string(), String::new()),
        })
        .collect()
}

fn declared() -> BTreeSet<String> {
    let header = std::fs::read_to_string(header_path()).unwrap();
    common::declared_functions(&header).into_iter().collect()
}

fn names(map: &BTreeMap<String, String>) -> BTreeSet<String> {
    map.keys().cloned().collect()
}

#[test]
fn the_version_script_lists_every_declared_function() {
    let script = names(&version_script());
    let declared = declared();
    let missing: Vec<_> = declared.difference(&script).collect();
    let extra: Vec<_> = script.difference(&declared).collect();
    assert!(missing.is_empty(), "declared in the header, missing from libnodedev_events.map: {missing:?}");
    assert!(extra.is_empty(), "in libnodedev_events.map, not declared in the header: {extra:?}");
}

#[test]
fn the_library_exports_exactly_the_versioned_functions() {
    let script = version_script();
    let exported = exported();
    let unlisted: Vec<_> = exported.keys().filter(|n| !script.contains_key(*n)).collect();
    assert!(unlisted.is_empty(), "exported but not in the version script: {unlisted:?}");
    for (name, node) in &script {
        match exported.get(name) {
            None => panic!("{name} is in the version script but not exported"),
            Some(got) => assert_eq!(got, node, "{name} is exported with version '{got}', the script says {node}"),
        }
    }
}

#[test]
fn the_debian_symbols_file_lists_every_exported_function() {
    let symbols = debian_symbols();
    let exported = exported();
    let missing: Vec<_> = names(&exported).difference(&names(&symbols)).cloned().collect();
    let extra: Vec<_> = names(&symbols).difference(&names(&exported)).cloned().collect();
    assert!(missing.is_empty(), "exported, missing from debian/libnodedev-events0.symbols: {missing:?}");
    assert!(extra.is_empty(), "in debian/libnodedev-events0.symbols, not exported: {extra:?}");
    for (name, node) in &symbols {
        assert_eq!(&exported[name], node, "{name}: version in the symbols file");
    }
}
