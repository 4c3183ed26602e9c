//! With N workers, a pipeline emits the same rows (as a set; the interleaving across keys
//! differs) and the same counts as with one, for each window kind, dynamic and generated.

use llm_optimizer_processor::prelude::*;
use llm_optimizer_processor::workload::{generate, WorkloadSpec};
use std::time::Duration;

pipeline! {
    /// Sessions per tenant.
    pipeline Sessions for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: session(gap = 30s, allowed_lateness = 10s),
        key_by: (tenant, model),
        aggregate { n: count(), cost: sum(cost_usd), p99: percentile(latency_ms, 99) }
    }
}

fn sorted_json<R: serde::Serialize>(rows: Vec<R>) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    v.sort();
    v
}

async fn dynamic(
    events: &[FeedbackEvent],
    parallelism: usize,
    sliding: bool,
) -> (RunSummary, Vec<String>) {
    let rows = CollectorSink::new();
    let b = create_pipeline::<FeedbackEvent>()
        .with_memory_source(events.to_vec())
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(5)))
        .with_late_event_handler(LateEventHandler::new(Duration::from_secs(5)).dropping())
        .with_parallelism(parallelism)
        .with_sink(rows.clone());
    let b = if sliding {
        b.with_sliding_window(Duration::from_secs(120), Duration::from_secs(30))
    } else {
        b.with_tumbling_window(Duration::from_secs(60))
    };
    let s = b.build().unwrap().run().await.unwrap();
    (s, sorted_json::<AggregationResult>(rows.items()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_tumbling_and_sliding() {
    let events = generate(&WorkloadSpec {
        events: 30_000,
        span_ms: 20 * 60_000,
        ..Default::default()
    });
    for sliding in [false, true] {
        let (s1, r1) = dynamic(&events, 1, sliding).await;
        assert!(s1.events_late > 0, "the workload has late events");
        for n in [2, 4] {
            let (sn, rn) = dynamic(&events, n, sliding).await;
            assert_eq!(s1, sn, "summary with {n} workers");
            assert_eq!(r1, rn, "rows with {n} workers");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_sessions() {
    let events = generate(&WorkloadSpec {
        events: 30_000,
        span_ms: 20 * 60_000,
        tenants: 300,
        ..Default::default()
    });
    let run = |n: usize| {
        let events = events.clone();
        async move {
            let rows = CollectorSink::<SessionsRow>::new();
            let s = Sessions::pipeline()
                .with_memory_source(events)
                .with_late_side_output(CollectorSink::<DeadLetterRecord>::new())
                .with_parallelism(n)
                .with_sink(rows.clone())
                .build()
                .unwrap()
                .run()
                .await
                .unwrap();
            (s, sorted_json(rows.items()))
        }
    };
    let (s1, r1) = run(1).await;
    let (s3, r3) = run(3).await;
    assert_eq!(s1, s3);
    assert_eq!(r1, r3);
}
