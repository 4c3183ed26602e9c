//! The macros never panic: random token streams and mutations of valid declarations
//! (tokens deleted, duplicated, swapped, replaced, inserted) give an error or an
//! expansion. A panicking macro shows users `proc macro panicked` instead of a message at
//! their mistake.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use proptest::prelude::*;

/// Valid `pipeline!` declarations, also in the form the derive hands back (`@fields`).
const PIPELINES: &[&str] = &[
    r#"pub pipeline LatencyByModel for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s, emit_every = 1s, idle_timeout = 5m),
        window: tumbling(5m, allowed_lateness = 1m),
        key_by: (model, region),
        filter: |e| e.latency_ms > 0.0,
        aggregate {
            requests: count(),
            mean: avg(latency_ms),
            total: sum(cost_usd),
            lo: min(latency_ms),
            hi: max(latency_ms),
            sd: stddev(latency_ms),
            p95: percentile(latency_ms, 95),
            p99: percentile(latency_ms, 99.9),
        }
        late: side_output,
    }"#,
    r#"@fields [model, region, latency_ms = "f64"] pipeline P for Req {
        window: sliding(10m, 1m),
        key_by: model,
        aggregate { n: count(), c: custom::<CustomAccumulator>(VarianceAggregator, latency_ms) }
        trigger: CountTrigger::new(100),
        late: drop,
    }"#,
    r#"pipeline S for Ev { window: session(gap = 30s), aggregate { n: count() } }"#,
    r#"@fields [model, latency_ms = "f64", cost_usd = "f64", success] pipeline H for Ev {
        window: tumbling(1m),
        key_by: model,
        aggregate {
            requests: count(),
            failures: count_if(|e| !e.success),
            cost: sum_if(cost_usd, |e| e.success),
            p95: percentile(latency_ms, 95) where |e| e.success,
        }
        derive { rate: failures as f64 / requests as f64, per: -(cost / 2.0) * 1000.0 }
        emit_when: !is_update && (p95 >= 2000.0 || rate != 0.0),
    }"#,
];

/// Valid `#[derive(Event)]` inputs.
const EVENTS: &[&str] = &[
    r#"struct Req {
        #[event(key)] model: String,
        #[event(key)] region: String,
        #[event(timestamp)] timestamp: DateTime<Utc>,
        #[event(value)] latency_ms: f64,
        #[serde(rename = "c")] cost: Option<f64>,
    }"#,
    r#"pub struct Tick { #[event(timestamp, unit = "ms")] at: i64, v: f64 }"#,
];

/// Tokens (and whole groups) that mutations insert and random streams are made of.
const VOCAB: &[&str] = &[
    "pipeline",
    "pub",
    "for",
    "window",
    "watermark",
    "aggregate",
    "key_by",
    "late",
    "filter",
    "trigger",
    "derive",
    "emit_when",
    "where",
    "count_if",
    "sum_if",
    "is_update",
    "tumbling",
    "sliding",
    "session",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "percentile",
    "custom",
    "latency_ms",
    "model",
    "drop",
    "side_output",
    ":",
    ",",
    "=",
    "|",
    "e",
    "1m",
    "30s",
    "0s",
    "-5m",
    "99",
    "101",
    "1.5",
    "\"x\"",
    "()",
    "{}",
    "[]",
    "(30s)",
    "{ n: count() }",
    "(model, region)",
    "#",
    "@",
    "fields",
    "[model]",
    "struct",
    "#[event(key)]",
    "#[event(timestamp)]",
    "#[event(value)]",
    "#[event(unit = \"s\")]",
    "x: f64,",
    "<T>",
    "enum",
    "Option<f64>",
    "DateTime<Utc>",
    "_",
    "..",
    "::",
    "'a",
    "0",
];

/// A token stream as a flat list of (text, joined to the next) with groups as their
/// delimiters, so that mutations can cut through groups.
fn flatten(ts: TokenStream, out: &mut Vec<(String, bool)>) {
    for tt in ts {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push((open.into(), false));
                flatten(g.stream(), out);
                out.push((close.into(), false));
            }
            TokenTree::Punct(p) => out.push((p.to_string(), p.spacing() == Spacing::Joint)),
            other => out.push((other.to_string(), false)),
        }
    }
}

fn join(tokens: &[(String, bool)]) -> String {
    let mut s = String::new();
    for (t, joint) in tokens {
        s.push_str(t);
        if !joint {
            s.push(' ');
        }
    }
    s
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, usize),
    Insert(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let any = any::<usize>();
    prop_oneof![
        any.prop_map(Mutation::Delete),
        any.prop_map(Mutation::Duplicate),
        (any, any).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any, any).prop_map(|(a, b)| Mutation::Replace(a, b)),
        (any, any).prop_map(|(a, b)| Mutation::Insert(a, b)),
    ]
}

fn mutate(seed: &str, mutations: &[Mutation]) -> String {
    let mut tokens = Vec::new();
    flatten(seed.parse().expect("seeds lex"), &mut tokens);
    for m in mutations {
        let n = tokens.len().max(1);
        let word = |v: usize| (VOCAB[v % VOCAB.len()].to_string(), false);
        match *m {
            Mutation::Delete(i) if !tokens.is_empty() => {
                tokens.remove(i % n);
            }
            Mutation::Duplicate(i) if !tokens.is_empty() => {
                let t = tokens[i % n].clone();
                tokens.insert(i % n, t);
            }
            Mutation::Swap(i, j) if !tokens.is_empty() => tokens.swap(i % n, j % n),
            Mutation::Replace(i, v) if !tokens.is_empty() => tokens[i % n] = word(v),
            Mutation::Insert(i, v) => tokens.insert(i % (n + 1), word(v)),
            _ => {}
        }
    }
    join(&tokens)
}

/// Runs `pipeline!` on `text` when it lexes (what does not lex never reaches a macro).
fn pipeline(text: &str) {
    if let Ok(ts) = text.parse::<TokenStream>() {
        let _ = crate::pipeline::expand(ts);
    }
}

/// Runs `#[derive(Event)]` on `text` when it is an item a derive can be on.
fn derive(text: &str) {
    if let Ok(input) = syn::parse_str::<syn::DeriveInput>(text) {
        let _ = crate::event::expand(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn pipeline_survives_mutations(seed in 0..PIPELINES.len(), ms in prop::collection::vec(mutation(), 1..4)) {
        pipeline(&mutate(PIPELINES[seed], &ms));
    }

    #[test]
    fn derive_survives_mutations(seed in 0..EVENTS.len(), ms in prop::collection::vec(mutation(), 1..4)) {
        derive(&mutate(EVENTS[seed], &ms));
    }

    #[test]
    fn random_token_streams(words in prop::collection::vec(0..VOCAB.len(), 0..40)) {
        let text: Vec<&str> = words.iter().map(|&w| VOCAB[w]).collect();
        let text = text.join(" ");
        pipeline(&text);
        pipeline(&format!("pipeline P for E {{ {text} }}"));
        derive(&format!("struct E {{ {text} }}"));
    }
}

#[test]
fn the_seeds_expand_without_errors() {
    for seed in PIPELINES {
        let out = crate::pipeline::expand(seed.parse().unwrap()).to_string();
        assert!(!out.contains("compile_error"), "{seed}\n{out}");
    }
    for seed in EVENTS {
        let out = crate::event::expand(&syn::parse_str(seed).unwrap()).to_string();
        assert!(!out.contains("compile_error"), "{seed}\n{out}");
    }
}

#[test]
fn an_empty_aggregate_says_what_to_write() {
    let out = crate::pipeline::expand(
        "pub pipeline P for Ev { watermark: bounded_out_of_orderness(30s), window: tumbling(5m), aggregate { } }"
            .parse()
            .unwrap(),
    )
    .to_string();
    assert!(out.contains("declares no outputs"), "{out}");
}
