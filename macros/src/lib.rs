//! Procedural macros of `llm-optimizer-processor`: the compile-time dataflow DSL
//! (`pipeline!` and `#[derive(Event)]`). Users depend on `llm-optimizer-processor`,
//! which re-exports what is defined here.
