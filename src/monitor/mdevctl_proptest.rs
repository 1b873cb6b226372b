//! Property tests of the mdevctl JSON parser (`mdevctl.rs`) with
//! `proptest`: any text never panics and yields only complete entries; a
//! document written from entries reads back as those entries; a truncated
//! one is an error; a byte-flipped one is an error or complete entries.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};

use super::*;

/// Entries as mdevctl writes them: one parent per list item, one uuid per
/// device object.
fn entries() -> impl Strategy<Value = Vec<MdevEntry>> {
    let attrs = prop::collection::vec(("[a-z_]{1,8}", ".{0,8}"), 0..3)
        .prop_map(|a| Value::Array(a.into_iter().map(|(k, v)| json!({ k: v })).collect()).to_string());
    let entry = (".{1,16}", "[0-9a-f-]{1,36}", ".{1,16}", prop::sample::select(vec!["", "auto", "manual"]), attrs)
        .prop_map(|(parent, uuid, mdev_type, start, attrs)| MdevEntry { parent, uuid, mdev_type, start: start.to_owned(), attrs });
    prop::collection::vec(entry, 0..6)
}

fn document(v: &[MdevEntry]) -> String {
    let items: Vec<Value> = v
        .iter()
        .map(|e| {
            let mut cfg = Map::new();
            cfg.insert("mdev_type".into(), json!(e.mdev_type));
            if !e.start.is_empty() {
                cfg.insert("start".into(), json!(e.start));
            }
            cfg.insert("attrs".into(), serde_json::from_str(&e.attrs).unwrap());
            json!({ e.parent.clone(): [{ e.uuid.clone(): cfg }] })
        })
        .collect();
    Value::Array(items).to_string()
}

fn complete(v: &[MdevEntry]) -> bool {
    v.iter().all(|e| !e.uuid.is_empty() && !e.parent.is_empty() && !e.mdev_type.is_empty() && e.attrs.starts_with('['))
}

/// `cases` by default (a quarter on a debug build: about a second each in
/// `make check`); `PROPTEST_CASES` asks for a longer hunt.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(if cfg!(debug_assertions) { cases / 4 } else { cases }),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn a_document_reads_back_as_its_entries(v in entries()) {
        prop_assert_eq!(parse(&document(&v)).unwrap(), v);
    }

    #[test]
    fn a_truncated_document_is_an_error(v in entries(), at in any::<prop::sample::Index>()) {
        let doc = document(&v);
        let cut = at.index(doc.len());
        if let Some(prefix) = doc.get(..cut) {
            if let Ok(got) = parse(prefix) {
                prop_assert!(prefix.trim().is_empty() && got.is_empty(), "{prefix:?} read as {got:?}");
            }
        }
    }

    #[test]
    fn a_flipped_document_is_an_error_or_complete_entries(v in entries(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut b = document(&v).into_bytes();
        for (at, x) in flips {
            let i = at.index(b.len());
            b[i] = x;
        }
        if let Ok(got) = parse(&String::from_utf8_lossy(&b)) {
            prop_assert!(complete(&got), "{got:?}");
        }
    }

    #[test]
    fn any_text_is_an_error_or_complete_entries(s in prop_oneof![".{0,200}", "[\\[\\]{}\":, a-z0-9]{0,200}"]) {
        if let Ok(got) = parse(&s) {
            prop_assert!(complete(&got), "{got:?}");
        }
    }
}

#[test]
fn one_entry_and_repeated_lists() {
    let good = r#"[{"0000:00:02.0": [{"4b20d080-1b54-4048-85b3-a6a62d165c01": {"mdev_type": "t", "start": "auto", "attrs": [{"a": "1"}]}}]}]"#;
    assert_eq!(parse(good).unwrap().len(), 1);
    for n in 1..5 {
        let v = parse(&good.repeat(n).replace("][", ",")).unwrap();
        assert!(parse(&format!("[{}]", good.repeat(n))).is_err(), "a list of lists");
        assert_eq!(v.len(), n);
        assert!(complete(&v));
    }
}

#[test]
fn deep_nesting_and_a_huge_document() {
    // Neither blows the stack nor hangs.
    let deep = "[".repeat(100_000);
    assert!(parse(&deep).is_err());
    let many: Vec<String> = (0..20_000).map(|i| format!(r#"{{"u{i}": {{"mdev_type": "t"}}}}"#)).collect();
    let big = format!(r#"[{{"p": [{}]}}]"#, many.join(","));
    assert_eq!(parse(&big).unwrap().len(), 20_000);
}
