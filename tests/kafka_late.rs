//! Allowed-late events over Kafka (`scripts/kafka-up`): events of six keys spread at random
//! over the three partitions of a topic, with allowed lateness, give the rows, the update
//! rows (`is_update`) and the late records of the same pipeline over the same events in
//! memory — as multisets, every one of them, not only the latest row per key.
//!
//! Which events are late must not depend on how the partitions interleave, so the events
//! come in phases, each produced once the pipeline has shown it took the one before:
//! 1. on-time events, in event-time order within each partition (none is late however the
//!    partitions interleave: a partition's watermark never passes its own next event);
//! 2. one sentinel per partition, ten minutes later: every partition's watermark is then
//!    the same, and every window of phase 1 fires;
//! 3. one allowed-late event per key (its window fired and takes an update) and six events
//!    too late for any window (late records), judged against that one watermark.
#![cfg(feature = "kafka")]

#[path = "support/child.rs"]
mod child;
#[path = "support/kafka.rs"]
mod kafka;

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::*;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

use kafka::{bootstrap, canonical, create_topic, produce_to, unique, Record};

const PARTITIONS: i32 = 3;
const KEYS: [(&str, &str); 6] = [
    ("gpt-4o", "eu-west-1"),
    ("gpt-4o", "us-east-1"),
    ("claude", "eu-west-1"),
    ("claude", "us-east-1"),
    ("llama", "eu-west-1"),
    ("llama", "us-east-1"),
];
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// How long the pipeline may take to show a phase's rows (a hang guard, not a timing).
const PHASE: Duration = Duration::from_secs(120);

fn event(id: String, ms: i64, key: (&str, &str), latency: f64) -> FeedbackEvent {
    FeedbackEvent {
        event_id: id,
        timestamp: Utc.timestamp_millis_opt(ms).unwrap(),
        model: key.0.into(),
        region: key.1.into(),
        latency_ms: latency,
        ..Default::default()
    }
}

/// The three phases, each event with the partition it is produced to.
fn phases() -> [Vec<(i32, FeedbackEvent)>; 3] {
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    // Ten minutes of events, one every 0.5 s, in order.
    let on_time = (0..1_200)
        .map(|i| {
            let key = KEYS[rng.random_range(0..KEYS.len())];
            let latency = rng.random_range(50.0..3_000.0_f64).round();
            let e = event(format!("ev-{i}"), T0 + i * 500, key, latency);
            (rng.random_range(0..PARTITIONS), e)
        })
        .collect();
    // At 00:12:00: the watermark (10 s bound) goes to 00:11:50 on every partition.
    let sentinels = (0..PARTITIONS)
        .map(|p| {
            let e = event(
                format!("sentinel-{p}"),
                T0 + 720_000,
                ("sentinel", "s"),
                1.0,
            );
            (p, e)
        })
        .collect();
    // The window [00:09, 00:10) fired and is kept until 00:12 (two minutes of allowed
    // lateness): an event in it updates its row. Windows before 00:09:50 are gone.
    let mut late: Vec<(i32, FeedbackEvent)> = KEYS
        .iter()
        .enumerate()
        .map(|(k, key)| {
            let ms = T0 + 540_000 + k as i64 * 7_000;
            let e = event(format!("update-{k}"), ms, *key, 10_000.0 + k as f64);
            (rng.random_range(0..PARTITIONS), e)
        })
        .collect();
    late.extend(KEYS.iter().enumerate().map(|(k, key)| {
        let ms = T0 + 60_000 * k as i64 + 1_000;
        let e = event(format!("too-late-{k}"), ms, *key, 1.0);
        (rng.random_range(0..PARTITIONS), e)
    }));
    [on_time, sentinels, late]
}

fn records(events: &[(i32, FeedbackEvent)]) -> Vec<Record> {
    events
        .iter()
        .map(|(p, e)| (*p, e.event_id.clone(), serde_json::to_vec(e).unwrap()))
        .collect()
}

/// The pipeline's windows and lateness, over any source.
fn configured(b: PipelineBuilder<FeedbackEvent>) -> PipelineBuilder<FeedbackEvent> {
    b.with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(10)))
        .with_tumbling_window(Duration::from_secs(60))
        .with_allowed_lateness(Duration::from_secs(120))
}

/// Rows as canonical JSON, sentinels left out, sorted: a multiset.
fn rows(items: Vec<AggregationResult>) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .filter(|r| !r.key.to_string().contains("sentinel"))
        .map(|r| canonical(&serde_json::to_value(r).unwrap()).to_string())
        .collect();
    v.sort();
    v
}

/// Late records by what must not depend on the source: kind, reason, payload.
fn lates(items: Vec<DeadLetterRecord>) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|r| format!("{}|{}|{}", r.kind, r.reason, r.payload))
        .collect();
    v.sort();
    v
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PHASE;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {PHASE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_late_events_over_kafka_give_the_update_rows_and_late_records_of_a_file_run() {
    let phases = phases();

    // The same pipeline over the same events, in phase order, in memory.
    let want_rows = CollectorSink::<AggregationResult>::new();
    let want_late = CollectorSink::<DeadLetterRecord>::new();
    configured(create_pipeline::<FeedbackEvent>())
        .with_memory_source(phases.iter().flatten().map(|(_, e)| e.clone()))
        .with_late_side_output(want_late.clone())
        .with_sink(want_rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let want = rows(want_rows.items());
    let want_late = lates(want_late.items());
    let updates = want
        .iter()
        .filter(|r| r.contains("\"is_update\":true"))
        .count();
    assert_eq!(updates, KEYS.len(), "one update row per key: {want:#?}");
    assert_eq!(want_late.len(), KEYS.len(), "{want_late:#?}");
    let first = want.len() - updates;

    let topic = unique("late-events");
    create_topic(&topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let got_rows = CollectorSink::<AggregationResult>::new();
    let got_late = CollectorSink::<DeadLetterRecord>::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline = configured(create_pipeline::<FeedbackEvent>())
        .with_name("kafka-late")
        .with_kafka_source(KafkaConfig {
            bootstrap_servers: bootstrap(),
            group_id: unique("late-group"),
            topics: vec![topic.clone()],
            session_timeout_ms: 30_000,
            max_poll_records: 100,
            ..Default::default()
        })
        .with_parallelism(2)
        .with_state_backend(Arc::new(MemoryStateBackend::persistent(dir.path())))
        .with_checkpoint_interval(Duration::from_millis(200))
        .with_late_side_output(got_late.clone())
        .with_sink(got_rows.clone())
        .with_shutdown_signal(async {
            let _ = stopped.await;
        })
        .build()
        .unwrap();
    let run = tokio::spawn(pipeline.run());

    let servers = bootstrap();
    produce_to(&servers, &topic, &records(&phases[0])).await;
    produce_to(&servers, &topic, &records(&phases[1])).await;
    wait_for("the on-time rows", || rows(got_rows.items()).len() >= first).await;
    produce_to(&servers, &topic, &records(&phases[2])).await;
    wait_for("the update rows and late records", || {
        rows(got_rows.items()).len() >= want.len() && got_late.items().len() >= want_late.len()
    })
    .await;
    let _ = stop.send(());
    let summary = tokio::time::timeout(PHASE, run)
        .await
        .expect("the run stops")
        .unwrap()
        .unwrap();

    let got = rows(got_rows.items());
    let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(3).collect();
    let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(3).collect();
    assert!(
        got == want,
        "{} rows instead of {}: missing {missing:#?}, unexpected {extra:#?}",
        got.len(),
        want.len()
    );
    assert_eq!(lates(got_late.items()), want_late);
    assert_eq!(summary.update_rows, updates as u64);
    assert_eq!(summary.events_late, want_late.len() as u64);
}
