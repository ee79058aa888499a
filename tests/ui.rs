//! The compile-time shape checks, pinned: each `ui/fail` case must fail `cargo check` with the
//! message in its `.stderr` (shapes in plain numbers, pointing at the user's line); each
//! `ui/pass` case must build and run. Regenerate messages with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
