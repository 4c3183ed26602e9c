//! `pipeline!`'s conditional aggregations (`count_if`, `sum_if`, `… where |e| …`), derived
//! columns (`derive { … }`) and row filters (`emit_when`), against a hand computation on
//! random out-of-order streams.

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::prelude::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// One LLM request.
pub struct Call {
    #[event(key)]
    /// `model`.
    pub model: String,
    #[event(timestamp)]
    /// `timestamp`.
    pub timestamp: DateTime<Utc>,
    /// `latency_ms`.
    pub latency_ms: f64,
    /// `tokens`.
    pub tokens: u32,
    /// `rating`.
    pub rating: Option<f64>,
    /// `success`.
    pub success: bool,
}

pipeline! {
    /// Health per model; a row only when the error rate is high or calls are slow.
    pub pipeline Health for Call {
        watermark: bounded_out_of_orderness(1h),
        window: tumbling(20ms),
        key_by: model,
        aggregate {
            requests:   count(),
            failures:   count_if(|e| !e.success),
            ok_latency: sum_if(latency_ms, |e| e.success),
            ok_tokens:  sum(tokens) where |e| e.success,
            ok_max:     max(latency_ms) where |e| e.success,
            slow:       count_if(|e| e.latency_ms > 250.0),
            ok_rating:  avg(rating) where |r| r.success,
        }
        derive {
            error_rate: failures as f64 / requests as f64,
            per_1k:     ok_latency / ok_tokens * 1000.0,
            spare:      -(ok_max - 500.0) / 2.0,
        }
        emit_when: error_rate > 0.2 || slow >= 3,
    }
}

/// What a row holds, for comparison.
#[derive(Debug, Clone, PartialEq)]
struct Values {
    requests: u64,
    failures: u64,
    ok_latency: f64,
    ok_tokens: f64,
    ok_max: Option<f64>,
    slow: u64,
    ok_rating: Option<f64>,
    error_rate: Option<f64>,
    per_1k: Option<f64>,
    spare: Option<f64>,
}

type Rows = BTreeMap<(String, i64), Values>;

fn call(ms: i64, model: &str, latency: f64, tokens: u32, success: bool) -> Call {
    Call {
        model: model.into(),
        timestamp: Utc.timestamp_millis_opt(ms).unwrap(),
        latency_ms: latency,
        tokens,
        rating: (ms % 2 == 0).then_some((ms % 5) as f64),
        success,
    }
}

fn run(events: &[Call]) -> (RunSummary, Rows) {
    run_from(Health::pipeline().with_memory_source(events.to_vec()))
}

/// The same events as JSON lines through a file source: the decoder reads only the fields
/// the pipeline reads, the predicates' among them.
fn run_json(events: &[Call]) -> (RunSummary, Rows) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    assert_eq!(
        Health.fields_read().map(|mut f| {
            f.sort_unstable();
            f
        }),
        Some(vec![
            "latency_ms",
            "model",
            "rating",
            "success",
            "timestamp",
            "tokens"
        ]),
    );
    run_from(Health::pipeline().with_file_source(&path))
}

fn run_from(builder: PipelineBuilder<Call, Health>) -> (RunSummary, Rows) {
    let rows = CollectorSink::<HealthRow>::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(builder.with_sink(rows.clone()).build().unwrap().run())
        .unwrap();
    let out = rows
        .items()
        .into_iter()
        .map(|r| {
            (
                (r.model.clone(), r.window_start.timestamp_millis()),
                Values {
                    requests: r.requests,
                    failures: r.failures,
                    ok_latency: r.ok_latency,
                    ok_tokens: r.ok_tokens,
                    ok_max: r.ok_max,
                    slow: r.slow,
                    ok_rating: r.ok_rating,
                    error_rate: r.error_rate,
                    per_1k: r.per_1k,
                    spare: r.spare,
                },
            )
        })
        .collect();
    (summary, out)
}

/// The same, by hand: every event in its window (the bound is an hour, so none is late),
/// each statistic over the events meeting its condition, then the row filter.
fn by_hand(events: &[Call]) -> Rows {
    let mut groups: BTreeMap<(String, i64), Vec<&Call>> = BTreeMap::new();
    for e in events {
        let ms = e.timestamp.timestamp_millis();
        groups
            .entry((e.model.clone(), ms - ms.rem_euclid(20)))
            .or_default()
            .push(e);
    }
    let div = |a: f64, b: f64| (b != 0.0 && (a / b).is_finite()).then(|| a / b);
    let mut out = Rows::new();
    for (k, calls) in groups {
        let ok: Vec<&&Call> = calls.iter().filter(|c| c.success).collect();
        let requests = calls.len() as u64;
        let failures = calls.iter().filter(|c| !c.success).count() as u64;
        let ok_latency = ok.iter().fold(0.0, |s, c| s + c.latency_ms);
        let ok_tokens = ok.iter().fold(0.0, |s, c| s + f64::from(c.tokens));
        let ok_max = ok.iter().map(|c| c.latency_ms).reduce(f64::max);
        let slow = calls.iter().filter(|c| c.latency_ms > 250.0).count() as u64;
        let ratings: Vec<f64> = ok.iter().filter_map(|c| c.rating).collect();
        let ok_rating = (!ratings.is_empty())
            .then(|| ratings.iter().fold(0.0, |s, r| s + r) / ratings.len() as f64);
        let error_rate = div(failures as f64, requests as f64);
        let per_1k = div(ok_latency, ok_tokens).map(|v| v * 1000.0);
        let spare = ok_max.map(|m| -(m - 500.0) / 2.0);
        if error_rate.is_some_and(|r| r > 0.2) || slow >= 3 {
            out.insert(
                k,
                Values {
                    requests,
                    failures,
                    ok_latency,
                    ok_tokens,
                    ok_max,
                    slow,
                    ok_rating,
                    error_rate,
                    per_1k,
                    spare,
                },
            );
        }
    }
    out
}

#[test]
fn a_window_without_successes_has_no_cost_per_token_and_is_not_an_infinity() {
    let events = vec![
        // m0 in [0, 20): two failures of three: an error rate of 2/3, emitted.
        call(1, "m0", 100.0, 10, true),
        call(2, "m0", 300.0, 0, false),
        call(3, "m0", 50.0, 7, false),
        // m1 in [0, 20): all fine, fast: not emitted.
        call(4, "m1", 10.0, 10, true),
        // m1 in [20, 40): failures only: per_1k has no value (0 / 0 tokens).
        call(25, "m1", 90.0, 5, false),
    ];
    let (summary, rows) = run(&events);
    assert_eq!(summary.rows_emitted, 2, "{rows:?}");
    let m0 = &rows[&("m0".into(), 0)];
    assert_eq!((m0.requests, m0.failures, m0.slow), (3, 2, 1));
    assert_eq!(m0.error_rate, Some(2.0 / 3.0));
    assert_eq!(m0.ok_latency, 100.0);
    assert_eq!(m0.per_1k, Some(10_000.0));
    assert_eq!(m0.spare, Some(200.0));
    let m1 = &rows[&("m1".into(), 20)];
    assert_eq!((m1.requests, m1.failures), (1, 1));
    assert_eq!(m1.error_rate, Some(1.0));
    assert_eq!(
        (m1.ok_tokens, m1.per_1k, m1.ok_max, m1.spare),
        (0.0, None, None, None)
    );
    assert!(!rows.contains_key(&("m1".into(), 0)));
    assert_eq!(rows, by_hand(&events));
    assert_eq!(run_json(&events).1, rows);
}

fn stream() -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (
            0i64..6,
            -40i64..10,
            0u8..3,
            0u32..500,
            0u32..3,
            any::<bool>(),
        ),
        1..150,
    )
    .prop_map(|raw| {
        let mut clock = 0;
        raw.into_iter()
            .map(|(step, jitter, m, v, tokens, ok)| {
                clock += step;
                call(
                    (clock + jitter).max(0),
                    &format!("m{m}"),
                    f64::from(v),
                    tokens,
                    ok,
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conditions_derived_columns_and_emit_when_equal_a_hand_computation(events in stream()) {
        let (summary, rows) = run(&events);
        let expected = by_hand(&events);
        prop_assert_eq!(summary.rows_emitted, expected.len() as u64);
        prop_assert_eq!(&rows, &expected);
        prop_assert_eq!(run_json(&events).1, rows);
    }
}
