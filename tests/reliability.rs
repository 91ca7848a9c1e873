//! RELIABILITY.md names a test for every fault it promises something about: each must exist,
//! so a row cannot outlive its proof (a renamed or deleted test fails here).

use std::path::Path;

#[test]
fn every_test_named_in_reliability_md_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("RELIABILITY.md")).expect("RELIABILITY.md at the root");
    let mut named = 0;
    for reference in doc.split('`').skip(1).step_by(2) {
        let Some((file, test)) = reference.split_once("::") else { continue };
        if !(file.starts_with("tests/") || file.starts_with("src/")) {
            continue;
        }
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|_| panic!("RELIABILITY.md names {file}, which is not there"));
        assert!(
            text.contains(&format!("fn {test}(")),
            "RELIABILITY.md names {reference}, which {file} does not define"
        );
        named += 1;
    }
    assert!(named >= 50, "only {named} tests named");
}
