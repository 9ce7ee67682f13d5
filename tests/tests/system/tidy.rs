//! The tidy test: [`ztos_tests::tidy::check`] over this repository (the house rules no
//! compiler enforces: module docs, no unwrap outside tests, rtnetlink only where
//! ARCHITECTURE.md allows, no tokio in the codec and the model, every file in the code map).
//! Needs no root. The checker's own tests plant each violation in a temporary tree.

use std::path::Path;

#[test]
fn the_repository_is_tidy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ztos-tests sits in the repository root");
    let violations = ztos_tests::tidy::check(root).expect("the tidy check reads the repository");
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "{} tidy violation(s):\n{}",
        report.len(),
        report.join("\n")
    );
}
