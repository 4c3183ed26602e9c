//! Compile-time checks of the DSL: `pass/` must compile, `fail/` must not, each with the
//! error in its `.stderr` snapshot (regenerate with `TRYBUILD=overwrite`).
//!
//! They live in this crate, which depends on the runtime without default features, so
//! that trybuild's own build of the runtime skips RocksDB (and Kafka).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
