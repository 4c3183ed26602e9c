//! Procedural macros of `llm-optimizer-processor`: the compile-time dataflow DSL.
//!
//! - `#[derive(Event)]` ([`derive_event`]): key and timestamp attributes on an event struct.
//! - `pipeline! { … }` ([`pipeline`]): a windowed aggregation checked while it compiles.
//!
//! Each macro parses into a typed AST that keeps the user's tokens for spans, checks it
//! (every mistake goes into one [`ctxt::Ctxt`], so several are reported at once), and only
//! then generates code, which refers to the runtime through
//! `::llm_optimizer_processor::__private`. Users depend on `llm-optimizer-processor`,
//! which re-exports both macros.

mod ctxt;
mod duration;
mod event;
mod pipeline;
mod similar;

use proc_macro::TokenStream;

/// Implements `Event` for a struct with named fields.
///
/// Field attributes: `#[event(key)]` (one or more: the key is the tuple of these fields in
/// field order), exactly one `#[event(timestamp)]` (`DateTime<Utc>`, `SystemTime`, or an
/// integer with `unit = "s" | "ms" | "us" | "ns"`), optionally one `#[event(value)]` (the
/// default measure of the dynamic builder).
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    event::expand(&input).into()
}

/// Declares a windowed aggregation over an `Event` type, checked at compile time.
///
/// ```text
/// pipeline! {
///     pub pipeline LatencyByModel for FeedbackEvent {
///         watermark: bounded_out_of_orderness(30s),
///         window: tumbling(5m, allowed_lateness = 1m),
///         key_by: (model, region),
///         aggregate {
///             requests: count(),
///             p95_latency: percentile(latency_ms, 95),
///         }
///         late: side_output,
///     }
/// }
/// ```
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    pipeline::expand(input.into()).into()
}
