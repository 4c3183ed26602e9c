//! A whole run allocates nothing per event in steady state: `Pipeline::run` over a
//! JSON-lines file (the reader cutting lines of one buffer, the decoder pool decoding into
//! recycled batches, the run loop, the workers, the collector and a sink), counted with a
//! counting global allocator. Two runs that differ only in their number of events: the
//! allocations of the longer one exceed the shorter one's by far less than one per extra
//! event (what is left is per batch and per window, not per event; the batches themselves
//! and their events' strings are allocated once, while the recycler's pool fills).

use llm_optimizer_processor::aggregation::AggregationSpec;
use llm_optimizer_processor::*;
use std::path::Path;
use std::time::Duration;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

/// `n` events 1 ms apart from a minute's start, 12 keys, in `dir`.
fn input(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::with_capacity(n * 260);
    for i in 0..n {
        text.push_str(&format!(
            r#"{{"event_id":"ev-{i:09}","timestamp":{},"model":"model-{:02}","region":"region-{}","tenant":"tenant-{:03}","latency_ms":{}.{:03},"ttft_ms":94.8,"input_tokens":2524,"output_tokens":197,"cost_usd":0.0015,"rating":3.0,"success":true}}"#,
            1_767_225_600_000_i64 + i as i64,
            i % 4,
            i % 3,
            i % 200,
            100 + i % 900,
            i % 1000,
        ));
        text.push('\n');
    }
    let path = dir.join(format!("events-{n}.jsonl"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Allocations of one whole run (build, run, end) over `path`.
async fn allocations(path: &Path, parallelism: usize) -> (u64, u64) {
    let rows = CollectorSink::new();
    let before = counting_alloc::allocations();
    let summary = create_pipeline::<FeedbackEvent>()
        .with_key_fields(&["model", "region"])
        .with_value_field("latency_ms")
        .with_tumbling_window(Duration::from_secs(60))
        .with_aggregations(AggregationSpec::default()) // every statistic, p50/p95/p99
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_parallelism(parallelism)
        // Few batches in flight: the recycler's pool fills early in either run (how many
        // batches a run creates depends on how far the reader runs ahead).
        .with_buffer_size(2048)
        .with_file_source(path)
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let n = counting_alloc::allocations() - before;
    let windows = (summary.events_in as usize).div_ceil(60_000);
    assert_eq!(
        rows.items().len(),
        12 * windows,
        "12 keys, one row per window"
    );
    (n, summary.events_in)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_allocates_nothing_per_event_in_steady_state() {
    let dir = tempfile::tempdir().unwrap();
    let short = input(dir.path(), 50_000);
    let long = input(dir.path(), 150_000);
    for parallelism in [1, 2] {
        // A first run warms up what is allocated once per process (runtime, metrics).
        allocations(&short, parallelism).await;
        let (a, n) = allocations(&short, parallelism).await;
        let (b, m) = allocations(&long, parallelism).await;
        assert_eq!((n, m), (50_000, 150_000));
        let per_event = b.saturating_sub(a) as f64 / (m - n) as f64;
        println!(
            "parallelism {parallelism}: {a} allocations for {n} events, {b} for {m}: {per_event:.4} per extra event"
        );
        // What is left is per batch (about 20 at parallelism 1: a decoder's reply slot,
        // the workers' parts, a read of the file) and per window, and, above parallelism
        // 1, batches created while the pool fills (when depends on the scheduling): far
        // below one per event either way.
        assert!(
            per_event < 0.1,
            "parallelism {parallelism}: {per_event:.4} allocations per event ({a} for {n} events, {b} for {m})"
        );
    }
}
