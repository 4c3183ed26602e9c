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
mod event_decode;
#[cfg(test)]
mod no_panic;
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

#[cfg(test)]
mod expansion_snapshots {
    //! The expanded code of a few declarations, pretty-printed, so that a change to code
    //! generation shows up in review (`cargo insta review`, or `INSTA_UPDATE=always`).

    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        let file: syn::File = syn::parse2(tokens).expect("expansion parses as items");
        prettyplease::unparse(&file)
    }

    #[test]
    fn derive_event() {
        let input: syn::DeriveInput = syn::parse_quote! {
            pub struct FeedbackEvent {
                #[event(key)] pub model: String,
                #[event(key)] pub region: String,
                #[event(timestamp)] pub timestamp: DateTime<Utc>,
                #[event(value)] pub latency_ms: f64,
            }
        };
        // The field-list macro's name ends in a per-derive number: masked for the snapshot.
        let out = pretty(crate::event::expand(&input));
        let marker = "_fields_of_FeedbackEvent_";
        let at = out.find(marker).expect("a field-list macro") + marker.len();
        let masked = out.replace(&out[at..at + 16], "<unique>");
        insta::assert_snapshot!(masked);
    }

    #[test]
    fn tumbling_latency_by_model() {
        // As the derive's `FeedbackEvent!` hands it back (`key_by` asks for the field list).
        let input = quote::quote! {
            @fields [model, region, timestamp, latency_ms = "f64", success]
            /// Latency per model and region, every 5 minutes.
            pub pipeline LatencyByModel for FeedbackEvent {
                watermark: bounded_out_of_orderness(30s),
                window: tumbling(5m, allowed_lateness = 1m),
                key_by: (model, region),
                aggregate {
                    requests: count(),
                    avg_latency: avg(latency_ms),
                    p95_latency: percentile(latency_ms, 95),
                    p99_latency: percentile(latency_ms, 99),
                }
                late: side_output,
            }
        };
        insta::assert_snapshot!(pretty(crate::pipeline::expand(input)));
    }

    #[test]
    fn sliding_with_filter() {
        let input = quote::quote! {
            @fields [model, region, timestamp, latency_ms = "f64", success]
            pipeline Failures for FeedbackEvent {
                watermark: bounded_out_of_orderness(10s, emit_every = 1s),
                window: sliding(10m, 1m),
                key_by: region,
                filter: |e| !e.success,
                aggregate { failures: count(), worst: max(latency_ms) }
                late: drop,
            }
        };
        insta::assert_snapshot!(pretty(crate::pipeline::expand(input)));
    }

    #[test]
    fn conditions_derived_columns_and_an_alert() {
        let input = quote::quote! {
            @fields [model, timestamp, latency_ms = "f64", cost_usd = "f64", output_tokens, success]
            pipeline ModelHealth for FeedbackEvent {
                window: tumbling(1m),
                key_by: model,
                aggregate {
                    requests: count(),
                    failures: count_if(|e| !e.success),
                    cost: sum_if(cost_usd, |e| e.success),
                    tokens: sum(output_tokens) where |e| e.success,
                    p95_ok: percentile(latency_ms, 95) where |e| e.success,
                }
                derive {
                    error_rate: failures as f64 / requests as f64,
                    cost_per_1k: cost / tokens * 1000.0,
                }
                emit_when: p95_ok > 2000.0 || error_rate > 0.05,
            }
        };
        insta::assert_snapshot!(pretty(crate::pipeline::expand(input)));
    }

    #[test]
    fn key_by_asks_the_event_for_its_fields() {
        let input = quote::quote! {
            pipeline Failures for crate::events::Request {
                window: tumbling(1m),
                key_by: region,
                aggregate { failures: count() }
            }
        };
        let out = crate::pipeline::expand(input).to_string();
        assert!(
            out.starts_with("crate :: events :: Request ! { pipeline Failures for"),
            "{out}"
        );
    }

    #[test]
    fn session_default_key() {
        let input = quote::quote! {
            pipeline Sessions for Click {
                window: session(gap = 30m),
                aggregate { clicks: count(), dwell: sum(dwell_ms), sd: stddev_sample(dwell_ms) }
            }
        };
        insta::assert_snapshot!(pretty(crate::pipeline::expand(input)));
    }
}
