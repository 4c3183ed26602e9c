//! Durable state in process: a `pipeline!` pipeline stopped at a checkpoint and resumed on
//! RocksDB writes the rows of an uninterrupted run; spilling past a memory bound (RocksDB)
//! changes no row; a checkpoint of another pipeline is refused.
#![cfg(feature = "rocksdb")]

use async_trait::async_trait;
use llm_optimizer_processor::operator::SpillStore;
use llm_optimizer_processor::prelude::*;
use llm_optimizer_processor::state::RocksDBStateBackend;
use llm_optimizer_processor::workload::{generate, WorkloadSpec};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pipeline! {
    /// Q1-like: latency per model and region, 1-minute tumbling windows.
    pub pipeline Latency for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        aggregate {
            n: count(),
            mean: avg(latency_ms),
            p99: percentile(latency_ms, 99),
        }
        late: drop,
    }
}

fn events() -> Vec<FeedbackEvent> {
    generate(&WorkloadSpec {
        events: 20_000,
        seed: 11,
        ..Default::default()
    })
}

fn lines<R: serde::Serialize>(rows: &[R]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    v.sort();
    v
}

/// Dead letters in the test's own folder: a file has one writer, and tests run at once.
fn dead_letters(dir: &std::path::Path) -> ErrorHandler {
    ErrorHandler::new(ErrorPolicy::DeadLetter)
        .with_sink(DeadLetterSink::new("dead-letter").with_dir(dir))
}

/// A sink that asks the pipeline to stop once it has `after` rows.
#[derive(Clone)]
struct StopAfter {
    rows: CollectorSink<LatencyRow>,
    after: usize,
    stop: std::sync::Arc<tokio::sync::Notify>,
}

#[async_trait]
impl EventSink<LatencyRow> for StopAfter {
    async fn send(&self, row: LatencyRow) -> ProcessorResult<()> {
        self.rows.send(row).await?;
        if self.rows.items().len() == self.after {
            self.stop.notify_one();
        }
        Ok(())
    }
}

/// Runs `Latency` once uninterrupted; then on RocksDB with `first` workers, stopped at a
/// checkpoint after a quarter of the rows, and resumed with `second` workers: the rows of
/// the two runs together are those of the uninterrupted one. Small buffers keep the
/// source from running to its end before the stop is asked for.
async fn stop_and_resume(first: usize, second: usize) {
    let all = CollectorSink::new();
    Latency::pipeline()
        .with_memory_source(events())
        .with_sink(all.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StateBackend> = Arc::new(
        RocksDBStateBackend::new(dir.path().join("state"), dir.path().join("cp")).unwrap(),
    );
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let stopping = StopAfter {
        rows: CollectorSink::new(),
        after: all.items().len() / 4,
        stop: stop.clone(),
    };
    let s1 = Latency::pipeline()
        .with_memory_source(events())
        .with_buffer_size(1024)
        .with_parallelism(first)
        .with_state_backend(backend.clone())
        .with_error_handler(dead_letters(dir.path()))
        .with_sink(stopping.clone())
        .with_shutdown_signal(async move { stop.notified().await })
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(s1.events_in < 20_000, "stopped mid-way: {s1:?}");
    assert_eq!(backend.list_checkpoints().await.unwrap().len(), 1);

    let resumed = CollectorSink::new();
    let s2 = Latency::pipeline()
        .with_memory_source(events())
        .with_parallelism(second)
        .with_state_backend(backend)
        .with_error_handler(dead_letters(dir.path()))
        .with_sink(resumed.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(s2.events_in, 20_000, "counts continue: {s2:?}");
    let mut got = stopping.rows.items();
    got.extend(resumed.items());
    assert_eq!(lines(&got), lines(&all.items()));
}

#[tokio::test]
async fn a_generated_pipeline_stops_at_a_checkpoint_and_resumes_on_rocksdb() {
    stop_and_resume(1, 1).await;
}

#[tokio::test]
async fn a_checkpoint_of_two_workers_resumes_on_one() {
    stop_and_resume(2, 1).await;
}

/// Counts what the operator spills through a RocksDB backend.
struct Counting {
    inner: RocksDBStateBackend,
    puts: Arc<AtomicUsize>,
}

struct CountingSpill(Arc<dyn SpillStore>, Arc<AtomicUsize>);

impl SpillStore for CountingSpill {
    fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.put(key, value)
    }
    fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        self.0.get(key)
    }
    fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        self.0.delete(key)
    }
}

#[async_trait]
impl StateBackend for Counting {
    async fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        self.inner.put(key, value).await
    }
    async fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        self.inner.delete(key).await
    }
    async fn scan_prefix(&self, prefix: &[u8]) -> ProcessorResult<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(prefix).await
    }
    async fn checkpoint(&self, id: u64) -> ProcessorResult<()> {
        self.inner.checkpoint(id).await
    }
    async fn restore(&self, id: u64) -> ProcessorResult<()> {
        self.inner.restore(id).await
    }
    async fn list_checkpoints(&self) -> ProcessorResult<Vec<u64>> {
        self.inner.list_checkpoints().await
    }
    fn spill_store(&self) -> Option<Arc<dyn SpillStore>> {
        Some(Arc::new(CountingSpill(
            self.inner.spill_store()?,
            self.puts.clone(),
        )))
    }
}

#[tokio::test]
async fn spilling_past_the_memory_bound_changes_no_row() {
    for (parallelism, window) in [(1, 0), (2, 1), (1, 2)] {
        let build = |b: PipelineBuilder<FeedbackEvent>| {
            let b = b
                .with_memory_source(events())
                .with_key_fields(&["model", "tenant"])
                .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(
                    30,
                )))
                .with_allowed_lateness(Duration::from_secs(60))
                .with_parallelism(parallelism);
            match window {
                0 => b.with_tumbling_window(Duration::from_secs(60)),
                1 => b.with_sliding_window(Duration::from_secs(300), Duration::from_secs(60)),
                _ => b.with_session_window(Duration::from_secs(30)),
            }
        };
        let plain = CollectorSink::new();
        build(create_pipeline::<FeedbackEvent>())
            .with_sink(plain.clone())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let puts = Arc::new(AtomicUsize::new(0));
        let backend = Counting {
            inner: RocksDBStateBackend::new(dir.path().join("s"), dir.path().join("c")).unwrap(),
            puts: puts.clone(),
        };
        let spilled = CollectorSink::new();
        build(create_pipeline::<FeedbackEvent>())
            .with_state_backend(Arc::new(backend))
            .with_error_handler(dead_letters(dir.path()))
            .with_checkpoint_interval(Duration::from_millis(5))
            .with_spill_threshold(200)
            .with_sink(spilled.clone())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(
            puts.load(Ordering::Relaxed) > 100,
            "window {window}: state was spilled"
        );
        assert_eq!(
            lines(&spilled.items()),
            lines(&plain.items()),
            "window {window}, parallelism {parallelism}"
        );
    }
}

#[tokio::test]
async fn spilling_needs_a_backend_that_can_hold_it() {
    let e = create_pipeline::<FeedbackEvent>()
        .with_memory_source(events())
        .with_tumbling_window(Duration::from_secs(60))
        .with_state_backend(Arc::new(MemoryStateBackend::new()))
        .with_spill_threshold(10)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("RocksDBStateBackend"), "{e}");
}

#[tokio::test]
async fn a_checkpoint_of_another_pipeline_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        Arc::new(RocksDBStateBackend::new(dir.path().join("s"), dir.path().join("c")).unwrap());
    // Stopped as it starts: its checkpoint is of an unfinished run of this pipeline (a run
    // that reached the end of its input would let the next one start over).
    Latency::pipeline()
        .with_memory_source(events())
        .with_state_backend(backend.clone())
        .with_error_handler(dead_letters(dir.path()))
        .with_sink(CollectorSink::new())
        .with_shutdown_signal(async {})
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let e = create_pipeline::<FeedbackEvent>()
        .with_memory_source(events())
        .with_tumbling_window(Duration::from_secs(60))
        .with_state_backend(backend)
        .with_error_handler(dead_letters(dir.path()))
        .with_sink(CollectorSink::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("was written by another pipeline") && e.contains("remove the checkpoint"),
        "{e}"
    );
}
