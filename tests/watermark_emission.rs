//! Periodic emission changes when windows fire, never the final rows; idle partitions stop
//! holding the watermark back.

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn events() -> Vec<FeedbackEvent> {
    // a deterministic, out-of-order stream over 20 minutes
    (0..2000u64)
        .map(|i| {
            let jitter = (i * 7919 % 97) as i64 * 1500;
            FeedbackEvent {
                event_id: i.to_string(),
                timestamp: Utc
                    .timestamp_millis_opt(i as i64 * 600 - jitter + 40_000)
                    .unwrap(),
                model: format!("m{}", i % 3),
                region: "r".into(),
                latency_ms: (i * 31 % 1000) as f64,
                ..Default::default()
            }
        })
        .collect()
}

fn final_rows(rows: Vec<AggregationResult>) -> BTreeMap<(String, i64), BTreeMap<String, f64>> {
    rows.into_iter()
        .map(|r| ((r.key.to_string(), r.window.start_millis()), r.results))
        .collect()
}

async fn run(generator: impl WatermarkGenerator + 'static) -> (RunSummary, Vec<AggregationResult>) {
    let rows = CollectorSink::new();
    let summary = create_pipeline::<FeedbackEvent>()
        .with_memory_source(events())
        .with_watermark_generator(generator)
        .with_sliding_window(Duration::from_secs(120), Duration::from_secs(60))
        .with_late_event_handler(LateEventHandler::new(Duration::from_secs(10)).dropping())
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    (summary, rows.items())
}

#[tokio::test]
async fn periodic_emission_keeps_final_rows_and_late_set() {
    let (s1, r1) = run(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(20))).await;
    let (s2, r2) = run(PeriodicWatermarkGenerator::new(
        Duration::from_secs(3600),
        Box::new(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(20))),
    ))
    .await;
    assert!(
        s1.events_late > 0,
        "the stream must have late events to mean anything"
    );
    assert_eq!(s1.events_late, s2.events_late);
    assert_eq!(s1.events_aggregated, s2.events_aggregated);
    assert_eq!(final_rows(r1), final_rows(r2));
}

#[test]
fn idle_partition_stops_holding_the_watermark() {
    let t0 = Instant::now();
    let mut g = BoundedOutOfOrdernessWatermark::new(Duration::ZERO)
        .with_idle_timeout(Duration::from_secs(1));
    g.register_partition(0, t0);
    g.register_partition(1, t0);
    assert_eq!(
        g.on_event(0, 5_000, t0),
        None,
        "partition 1 has sent nothing yet"
    );
    assert_eq!(g.on_tick(t0 + Duration::from_millis(500)), None);
    // partition 1 goes idle; partition 0 keeps sending
    assert_eq!(g.on_event(0, 6_000, t0 + Duration::from_millis(1200)), None);
    assert_eq!(g.on_tick(t0 + Duration::from_millis(1300)), Some(6_000));
}
