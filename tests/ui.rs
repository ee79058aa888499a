//! The compile-time shape checks, pinned: each `ui/fail` case must fail `cargo check` with the
//! message in its `.stderr` (shapes in plain numbers, pointing at the user's line); each
//! `ui/pass` case must build and run. Regenerate messages with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    // trybuild builds the cases in a project of its own with cargo's default dev profile: full
    // debug info made each pass case a 470 MB binary. The cases need none.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "0");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
