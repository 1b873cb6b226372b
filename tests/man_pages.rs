//! The C API reference in man3 (`make man3`, mk/man.mk, doxygen with
//! man/Doxyfile): every function the header declares has a page of its
//! own name, and that page (or the header's page it links to with `.so`)
//! documents the function: its declaration and the text of its comment.
//! Needs doxygen (scripts/install-deps.sh installs it).

mod common;

use std::path::Path;
use std::process::Command;

use common::{header_path, root};

/// The page for `name` as man(1) reads it: the file, or the page its
/// `.so man3/<page>.3` line names.
fn resolve(dir: &Path, name: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.3"))).ok()?;
    match text.trim().strip_prefix(".so ") {
        Some(target) => {
            let file = Path::new(target).file_name()?.to_str()?.to_string();
            let linked = std::fs::read_to_string(dir.join(&file)).ok()?;
            Some((file, linked))
        }
        None => Some((format!("{name}.3"), text)),
    }
}

/// The text under the `.SS` heading that declares `name` (up to the next
/// heading), without roff requests.
fn documentation(page: &str, name: &str) -> Option<String> {
    let mut lines = page.lines().skip_while(|l| !(l.starts_with(".SS ") && l.contains(&format!(" {name} ("))));
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|l| !l.starts_with(".SS ") && !l.starts_with(".SH "))
        .filter(|l| !l.starts_with('.') && !l.trim().is_empty())
        .collect();
    Some(body.join(" "))
}

#[test]
fn every_declared_function_has_a_documented_man3_page() {
    let out = Command::new("make")
        .arg("-C")
        .arg(root())
        .args(["--no-print-directory", "--quiet", "man3"])
        .output()
        .expect("make runs");
    assert!(out.status.success(), "make man3 failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let dir = root().join("target/man/man3");
    let header = std::fs::read_to_string(header_path()).unwrap();
    let functions = common::declared_functions(&header);
    assert!(functions.len() > 50, "the header declares {} functions", functions.len());
    let mut missing = Vec::new();
    let mut undocumented = Vec::new();
    for name in &functions {
        match resolve(&dir, name) {
            None => missing.push(name.clone()),
            Some((file, page)) => match documentation(&page, name) {
                Some(text) if text.len() > 10 => {}
                _ => undocumented.push(format!("{name} (in {file})")),
            },
        }
    }
    assert!(missing.is_empty(), "no man3 page for: {missing:?}");
    assert!(undocumented.is_empty(), "man3 page without the function's documentation: {undocumented:?}");
}
