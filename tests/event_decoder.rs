//! The decoder `#[derive(Event)]` generates, against serde_json's `Deserialize` on random
//! JSON objects (fields present, missing, null, of the wrong type, repeated, unknown):
//! reading every field it gives exactly what serde gives (the same event, or an error
//! where serde errs); reading a subset, the fields read equal serde's and the others keep
//! their defaults.

use llm_optimizer_processor::prelude::*;
use proptest::prelude::*;
use serde_json::{json, Value};

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v)
    }
    /// Seconds in the JSON, milliseconds in the event.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(i64::deserialize(d)? * 1000)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
struct Call {
    #[event(key)]
    model: String,
    #[serde(rename = "zone")]
    #[event(key)]
    region: String,
    #[serde(with = "millis")]
    #[event(timestamp, unit = "ms")]
    at: i64,
    #[event(value)]
    latency: f64,
    #[serde(default)]
    tokens: u32,
    rating: Option<f64>,
    #[serde(skip)]
    scratch: String,
    tags: Vec<String>,
}

const NAMES: [&str; 7] = ["model", "zone", "at", "latency", "tokens", "rating", "tags"];

fn value(name: &str) -> BoxedStrategy<Value> {
    let good: BoxedStrategy<Value> = match name {
        "model" | "zone" => "[a-z]{0,4}".prop_map(Value::from).boxed(),
        "at" => (0i64..4_000_000_000).prop_map(Value::from).boxed(),
        "latency" | "rating" => (-1e6f64..1e6).prop_map(Value::from).boxed(),
        "tokens" => (0u32..100_000).prop_map(Value::from).boxed(),
        _ => prop::collection::vec("[a-z]{0,3}", 0..3)
            .prop_map(|v| json!(v))
            .boxed(),
    };
    prop_oneof![
        8 => good,
        1 => Just(Value::Null),
        1 => Just(json!("wrong")),
        1 => Just(json!(1.5)),
    ]
    .boxed()
}

/// A JSON object: each field present (maybe repeated, maybe odd) or missing, plus unknown ones.
fn object() -> impl Strategy<Value = String> {
    let fields: Vec<_> = NAMES
        .iter()
        .map(|n| prop::option::weighted(0.85, (value(n), prop::bool::weighted(0.03))))
        .collect();
    (fields, prop::option::of(value("tags"))).prop_map(|(fields, extra)| {
        let mut parts = Vec::new();
        for (name, f) in NAMES.iter().zip(fields) {
            if let Some((v, twice)) = f {
                parts.push(format!("{}:{}", json!(name), v));
                if twice {
                    parts.push(format!("{}:{}", json!(name), v));
                }
            }
        }
        if let Some(v) = extra {
            parts.push(format!("\"unknown\":{v}"));
        }
        format!("{{{}}}", parts.join(","))
    })
}

fn derived(json: &str, read: u64) -> serde_json::Result<Call> {
    let mut de = serde_json::Deserializer::from_str(json);
    let c = <Call as Event>::deserialize_fields(&mut de, read)?;
    de.end()?;
    Ok(c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn reading_every_field_is_serde(json in object()) {
        let ours = derived(&json, u64::MAX);
        let theirs = serde_json::from_str::<Call>(&json);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "{json}: derived {ours:?}, serde {theirs:?}"),
        }
    }

    #[test]
    fn reading_a_subset_reads_those_and_defaults_the_others(json in object(), read in 0u64..128) {
        // A pipeline always reads the timestamp (`at`); `tags` (no known default) is read
        // whatever `read` says.
        let read = read | 1 << 2;
        let Ok(full) = serde_json::from_str::<Call>(&json) else { return Ok(()) };
        let got = derived(&json, read).expect("what serde reads, the subset reads");
        let bit = |i: usize| read & (1 << i) != 0;
        let expect = Call {
            model: if bit(0) { full.model.clone() } else { String::new() },
            region: if bit(1) { full.region.clone() } else { String::new() },
            at: full.at,
            latency: if bit(3) { full.latency } else { 0.0 },
            tokens: if bit(4) { full.tokens } else { 0 },
            rating: if bit(5) { full.rating } else { None },
            scratch: String::new(),
            tags: full.tags.clone(),
        };
        prop_assert_eq!(got, expect);
    }
}

#[test]
fn field_names_are_the_rust_names_in_order() {
    assert_eq!(
        <Call as Event>::FIELD_NAMES,
        ["model", "region", "at", "latency", "tokens", "rating", "scratch", "tags"]
    );
}

#[tokio::test]
async fn a_pipeline_decodes_only_what_it_reads() {
    pipeline! {
        pipeline ByModel for Call {
            watermark: bounded_out_of_orderness(0s),
            window: tumbling(1m),
            key_by: (model),
            aggregate { n: count(), avg: avg(latency) }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    // `zone` and `tokens` hold the wrong types: not read by this pipeline, so not an error.
    std::fs::write(
        &path,
        concat!(
            r#"{"model":"m","zone":7,"at":1,"latency":10,"tokens":"x","tags":[]}"#,
            "\n",
            r#"{"model":"m","zone":7,"at":2,"latency":30,"tokens":"x","tags":[]}"#,
            "\n",
            r#"{"model":"m","at":3,"tags":[]}"#,
            "\n",
        ),
    )
    .unwrap();
    let rows = CollectorSink::new();
    let summary = ByModel::pipeline()
        .with_file_source(&path)
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("dead").with_dir(dir.path())),
        )
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(summary.events_aggregated, 2);
    assert_eq!(
        summary.events_dead_lettered, 1,
        "a missing `latency` is missing"
    );
    let rows = rows.items();
    assert_eq!(rows[0].n, 2);
    assert_eq!(rows[0].avg, Some(20.0));
}
