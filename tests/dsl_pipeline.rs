//! `pipeline!` end to end: the DESIGN's declaration compiles, runs on the runtime, and
//! gives the same rows as the dynamic builder with the same declaration, for every window
//! kind, on random out-of-order streams.

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::prelude::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// One LLM request.
pub struct Request {
    #[event(key)]
    /// `model`.
    pub model: String,
    #[event(key)]
    /// `region`.
    pub region: String,
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
    /// Latency per model and region, every 5 minutes.
    pub pipeline LatencyByModel for Request {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(5m, allowed_lateness = 1m),
        key_by: (model, region),
        aggregate {
            requests:    count(),
            avg_latency: avg(latency_ms),
            min_latency: min(latency_ms),
            max_latency: max(latency_ms),
            p50_latency: percentile(latency_ms, 50),
            p95_latency: percentile(latency_ms, 95),
            tokens:      sum(tokens),
            latency_sd:  stddev(latency_ms),
            avg_rating:  avg(rating),
        }
        late: side_output,
    }
}

pipeline! {
    /// Sliding.
    pub pipeline SlidingByModel for Request {
        watermark: bounded_out_of_orderness(20ms),
        window: sliding(60ms, 20ms, allowed_lateness = 30ms),
        key_by: model,
        aggregate { n: count(), total: sum(latency_ms), hi: max(latency_ms), p99: percentile(latency_ms, 99) }
    }
}

pipeline! {
    /// Sessions.
    pub pipeline Sessions for Request {
        watermark: bounded_out_of_orderness(10ms),
        window: session(gap = 25ms, allowed_lateness = 15ms),
        aggregate { n: count(), total: sum(latency_ms), lo: min(latency_ms) }
        late: drop,
    }
}

pipeline! {
    /// Successes.
    pub pipeline Successes for Request {
        window: tumbling(100ms),
        key_by: region,
        filter: |r| r.success,
        aggregate { n: count() }
    }
}

fn req(ms: i64, model: &str, latency: f64) -> Request {
    Request {
        model: model.into(),
        region: "eu".into(),
        timestamp: Utc.timestamp_millis_opt(ms).unwrap(),
        latency_ms: latency,
        tokens: 10,
        rating: if ms % 2 == 0 { Some(4.0) } else { None },
        success: ms % 3 != 0,
    }
}

#[tokio::test]
async fn design_example_runs_and_names_its_columns() -> ProcessorResult<()> {
    let rows = CollectorSink::<LatencyByModelRow>::new();
    let late = CollectorSink::<DeadLetterRecord>::new();
    let events = vec![
        req(1_000, "a", 100.0),
        req(2_000, "a", 300.0),
        req(340_000, "a", 50.0), // moves the watermark past the first window
        req(3_000, "a", 200.0),  // within the allowed lateness: an update
        req(500_000, "a", 1.0),
        req(4_000, "a", 1.0), // too late
    ];
    let summary = LatencyByModel::pipeline()
        .with_memory_source(events)
        .with_late_side_output(late.clone())
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;
    assert_eq!(summary.events_late, 1);
    assert_eq!(late.len(), 1);
    let rows = rows.items();
    let first = &rows[0];
    assert_eq!((first.model.as_str(), first.region.as_str()), ("a", "eu"));
    assert_eq!(first.requests, 2);
    assert_eq!(first.avg_latency, Some(200.0));
    assert_eq!(first.tokens, 20.0);
    assert_eq!(first.avg_rating, Some(4.0));
    assert!(!first.is_update);
    let update = &rows[1];
    assert!(update.is_update);
    assert_eq!(update.requests, 3);
    assert_eq!(update.p50_latency, Some(200.0));
    assert_eq!(update.p95_latency, Some(300.0));
    assert_eq!(update.min_latency, Some(100.0));
    let json = serde_json::to_value(update).unwrap();
    assert_eq!(json["model"], "a");
    assert!(json["window_start"].is_string());
    Ok(())
}

#[tokio::test]
async fn filter_leaves_events_out_but_counts_them() -> ProcessorResult<()> {
    let rows = CollectorSink::<SuccessesRow>::new();
    let summary = Successes::pipeline()
        .with_memory_source((0..9).map(|i| req(i, "m", 1.0)))
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;
    assert_eq!(summary.events_filtered, 3);
    assert_eq!(rows.items()[0].n, 6);
    assert_eq!(rows.items()[0].region, "eu");
    Ok(())
}

#[test]
fn derived_event_works_in_the_dynamic_builder_too() {
    use llm_optimizer_processor::dsl::Event as _;
    let r = req(5, "m", 2.0);
    assert_eq!(r.key(), ("m".to_string(), "eu".to_string()));
    assert_eq!(r.event_time_millis(), 5);
    assert_eq!(r.grouping_key().to_string(), "model=m,region=eu");
    assert_eq!(
        <Request as llm_optimizer_processor::dsl::Event>::KEY_FIELDS,
        ["model", "region"]
    );
}

type Final = BTreeMap<(String, i64, i64), (u64, f64, f64)>;

fn run<P: Plan<Event = Request>>(
    builder: PipelineBuilder<Request, P>,
    events: &[Request],
    to: impl Fn(&P::Row) -> ((String, i64, i64), (u64, f64, f64)),
) -> (RunSummary, Final)
where
    P::Row: Clone + Send + 'static,
{
    let rows = CollectorSink::<P::Row>::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(
            builder
                .with_memory_source(events.to_vec())
                .with_sink(rows.clone())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap();
    (s, rows.items().iter().map(to).collect())
}

fn stream() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec((0i64..15, -60i64..10, 0u8..3, 0u32..500), 1..120).prop_map(|raw| {
        let mut clock = 0;
        raw.into_iter()
            .map(|(step, jitter, m, v)| {
                clock += step;
                req((clock + jitter).max(0), &format!("m{m}"), v as f64)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sliding_dsl_equals_dynamic(events in stream()) {
        let (s1, a) = run(SlidingByModel::pipeline(), &events, |r: &SlidingByModelRow| {
            ((r.model.clone(), r.window_start.timestamp_millis(), r.window_end.timestamp_millis()), (r.n, r.total, r.hi.unwrap()))
        });
        let dynamic = create_pipeline::<Request>()
            .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_millis(20)))
            .with_sliding_window(Duration::from_millis(60), Duration::from_millis(20))
            .with_allowed_lateness(Duration::from_millis(30))
            .with_late_event_handler(LateEventHandler::new(Duration::from_millis(30)).dropping())
            .with_key_fields(&["model"]);
        let (s2, b) = run(dynamic, &events, |r: &AggregationResult| {
            ((r.key.get("model").unwrap().to_string(), r.window.start_millis(), r.window.end_millis()),
             (r.results["count"] as u64, r.results["sum"], r.results["max"]))
        });
        prop_assert_eq!(s1.events_late, s2.events_late);
        prop_assert_eq!(s1.rows_emitted, s2.rows_emitted);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn session_dsl_equals_dynamic(events in stream()) {
        let (s1, a) = run(Sessions::pipeline(), &events, |r: &SessionsRow| {
            ((format!("{:?}", r.key), r.window_start.timestamp_millis(), r.window_end.timestamp_millis()), (r.n, r.total, r.lo.unwrap()))
        });
        let dynamic = create_pipeline::<Request>()
            .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_millis(10)))
            .with_session_window(Duration::from_millis(25))
            .with_late_event_handler(LateEventHandler::new(Duration::from_millis(15)).dropping());
        let (s2, b) = run(dynamic, &events, |r: &AggregationResult| {
            let key = (r.key.get("model").unwrap().to_string(), r.key.get("region").unwrap().to_string());
            ((format!("{key:?}"), r.window.start_millis(), r.window.end_millis()),
             (r.results["count"] as u64, r.results["sum"], r.results["min"]))
        });
        prop_assert_eq!(s1.events_late, s2.events_late);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn tumbling_dsl_equals_dynamic(events in stream()) {
        let scaled: Vec<Request> = events.iter().map(|r| Request { timestamp: Utc.timestamp_millis_opt(r.timestamp.timestamp_millis() * 5000).unwrap(), ..r.clone() }).collect();
        let (s1, a) = run(LatencyByModel::pipeline(), &scaled, |r: &LatencyByModelRow| {
            ((r.model.clone(), r.window_start.timestamp_millis(), r.window_end.timestamp_millis()), (r.requests, r.tokens, r.max_latency.unwrap()))
        });
        let dynamic = create_pipeline::<Request>()
            .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
            .with_tumbling_window(Duration::from_secs(300))
            .with_late_event_handler(LateEventHandler::new(Duration::from_secs(60)).dropping())
            .with_key_fields(&["model"]);
        let (s2, b) = run(dynamic, &scaled, |r: &AggregationResult| {
            ((r.key.get("model").unwrap().to_string(), r.window.start_millis(), r.window.end_millis()),
             (r.results["count"] as u64, r.results["count"] * 10.0, r.results["max"]))
        });
        prop_assert_eq!(s1.events_late, s2.events_late);
        prop_assert_eq!(a, b);
    }
}

/// The reference's custom accumulator.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CustomAccumulator {
    /// Σ x².
    pub sum_of_squares: f64,
    /// Values.
    pub count: u64,
}

/// The reference's custom aggregator.
pub struct VarianceAggregator;

impl llm_optimizer_processor::aggregation::Aggregator<f64, CustomAccumulator>
    for VarianceAggregator
{
    fn create_accumulator(&self) -> CustomAccumulator {
        CustomAccumulator::default()
    }
    fn add(&self, acc: &mut CustomAccumulator, value: &f64) {
        acc.sum_of_squares += value * value;
        acc.count += 1;
    }
    fn merge(&self, acc1: &CustomAccumulator, acc2: &CustomAccumulator) -> CustomAccumulator {
        CustomAccumulator {
            sum_of_squares: acc1.sum_of_squares + acc2.sum_of_squares,
            count: acc1.count + acc2.count,
        }
    }
    fn get_result(&self, acc: &CustomAccumulator) -> CustomAccumulator {
        acc.clone()
    }
    fn name(&self) -> &str {
        "variance"
    }
}

pipeline! {
    /// A custom aggregator next to built-in ones, on sliding windows (so it is merged).
    pub pipeline Custom for Request {
        window: sliding(100ms, 50ms),
        key_by: model,
        aggregate { n: count(), squares: custom::<CustomAccumulator>(VarianceAggregator, latency_ms) }
    }
}

#[tokio::test]
async fn custom_aggregators_run_inside_pipelines() -> ProcessorResult<()> {
    let rows = CollectorSink::<CustomRow>::new();
    Custom::pipeline()
        .with_memory_source(vec![req(10, "m", 2.0), req(60, "m", 3.0)])
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;
    let rows = rows.items();
    // windows [-50, 50) holds 2.0; [0, 100) holds both (panes merged); [50, 150) holds 3.0
    let squares: Vec<(u64, f64)> = rows
        .iter()
        .map(|r| (r.squares.count, r.squares.sum_of_squares))
        .collect();
    assert_eq!(squares, vec![(1, 4.0), (2, 13.0), (1, 9.0)]);
    assert_eq!(rows[1].n, 2);
    Ok(())
}
