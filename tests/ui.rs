//! Compile-time checks of the DSL: `ui-tests/pass` must compile, `ui-tests/fail` must not,
//! each with the error in its `.stderr` snapshot (regenerate with `TRYBUILD=overwrite`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui-tests/pass/*.rs");
    t.compile_fail("ui-tests/fail/*.rs");
}
