//! The API reference's snippets, as written there (with imports and a `FeedbackEvent`
//! value as glue), compiled and run.
#![allow(
    clippy::clone_on_copy,
    reason = "the reference's snippets are kept as written (`window.clone()`)"
)]

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use llm_optimizer_processor::aggregation::*;
use llm_optimizer_processor::error::*;
use llm_optimizer_processor::metrics::*;
use llm_optimizer_processor::state::*;
use llm_optimizer_processor::*;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn feedback(secs: i64, model: &str, latency: f64) -> FeedbackEvent {
    FeedbackEvent {
        event_id: format!("ev-{secs}-{model}"),
        timestamp: Utc.timestamp_opt(secs, 0).unwrap(),
        model: model.into(),
        region: "us-west-2".into(),
        latency_ms: latency,
        ..Default::default()
    }
}

#[tokio::test]
async fn quick_start_with_kafka_builds() {
    let result = create_pipeline::<FeedbackEvent>()
        .with_kafka_source(KafkaConfig {
            bootstrap_servers: "localhost:9092".to_string(),
            group_id: "my-processor".to_string(),
            topics: vec!["feedback-events".to_string()],
            ..Default::default()
        })
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_tumbling_window(Duration::from_secs(300))
        .with_state_backend(Arc::new(MemoryStateBackend::new()))
        .with_sink(ConsoleSink::new())
        .build();
    // Building connects to nothing; `run()` subscribes (tests/kafka_*.rs run it against
    // a real broker).
    assert!(result.is_ok(), "{:?}", result.err());
}

#[test]
fn window_types() {
    let assigner = TumblingWindowAssigner::new(Duration::from_secs(300));
    assert_eq!(
        assigner
            .assign_windows(Utc.timestamp_opt(299, 0).unwrap())
            .len(),
        1
    );
    let assigner = TumblingWindowAssigner::new(Duration::from_secs(300))
        .with_offset(Duration::from_secs(0))
        .with_allowed_lateness(Duration::from_secs(60));
    assert_eq!(assigner.allowed_lateness(), Some(Duration::from_secs(60)));
    let assigner = SlidingWindowAssigner::new(Duration::from_secs(600), Duration::from_secs(60));
    assert_eq!(
        assigner
            .assign_windows(Utc.timestamp_opt(601, 0).unwrap())
            .len(),
        10
    );
    let assigner = SessionWindowAssigner::new(Duration::from_secs(300));
    assert!(assigner.is_merging());
}

#[test]
fn aggregation_functions() {
    let aggregator = CountAggregator;
    let mut acc = aggregator.create_accumulator();
    let value = 1.0;
    aggregator.add(&mut acc, &value);
    let result = aggregator.get_result(&acc);
    assert_eq!(result.count, 1);

    let sum_agg = SumAggregator;
    let mut s = sum_agg.create_accumulator();
    sum_agg.add(&mut s, &2.5);
    assert_eq!(sum_agg.get_result(&s).sum, 2.5);

    let avg_agg = AverageAggregator;
    let mut acc = avg_agg.create_accumulator();
    avg_agg.add(&mut acc, &10.0);
    avg_agg.add(&mut acc, &20.0);
    avg_agg.add(&mut acc, &30.0);
    assert_eq!(acc.average(), 20.0);
    assert_eq!(acc.sum, 60.0);
    assert_eq!(acc.count, 3);

    let window = Window::new(
        Utc.timestamp_opt(0, 0).unwrap(),
        Utc.timestamp_opt(300, 0).unwrap(),
    );
    let mut state = AggregationState::new(window);
    state.add_value(10.0);
    state.add_value(50.0);
    state.add_value(30.0);
    assert_eq!(state.min, 10.0);
    assert_eq!(state.max, 50.0);

    let percentile_agg = PercentileAggregator;
    let mut acc = percentile_agg.create_accumulator();
    for value in &[10.0, 20.0, 30.0, 40.0, 50.0] {
        percentile_agg.add(&mut acc, value);
    }
    assert_eq!(acc.p50(), Some(30.0));
    assert_eq!(acc.p95(), Some(50.0));
    assert_eq!(acc.p99(), Some(50.0));

    let mut state = AggregationState::new(window);
    for value in &[10.0, 20.0, 30.0, 40.0, 50.0] {
        state.add_value(*value);
    }
    assert!((state.standard_deviation() - 200f64.sqrt()).abs() < 1e-12);
    assert!((state.sample_standard_deviation() - 250f64.sqrt()).abs() < 1e-12);

    let mut state = AggregationState::new(window);
    state.add_value(10.0);
    state.add_value(20.0);
    state.add_value(30.0);
    let result = state.to_result();
    for name in [
        "count", "sum", "average", "min", "max", "stddev", "p50", "p95", "p99",
    ] {
        assert!(result.results.contains_key(name), "missing {name}");
    }
    assert_eq!(result.results["sum"], 60.0);
    assert_eq!(result.results["p50"], 20.0);
}

#[test]
fn watermarking() {
    let watermark_gen = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
    let _pipeline = create_pipeline::<FeedbackEvent>().with_watermark_generator(watermark_gen);

    let base_gen = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
    let periodic_gen = PeriodicWatermarkGenerator::new(Duration::from_secs(10), Box::new(base_gen));
    assert_eq!(periodic_gen.interval(), Duration::from_secs(10));

    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("PROCESSOR_DEAD_LETTER_DIR", dir.path());
    let late_handler = LateEventHandler::new(Duration::from_secs(60))
        .with_side_output(DeadLetterSink::new("late-events-topic"));
    assert_eq!(late_handler.allowed_lateness(), Duration::from_secs(60));
}

#[tokio::test]
async fn state_management() -> ProcessorResult<()> {
    let state_backend = Arc::new(MemoryStateBackend::new());
    let _builder = create_pipeline::<FeedbackEvent>().with_state_backend(state_backend.clone());

    let state_manager =
        WindowStateManager::<AggregationState>::new(state_backend.clone(), "my-aggregation");
    let window = Window::from_millis(0, 300_000);
    let acc = state_manager.get_accumulator(&window).await?;
    let mut acc = acc.unwrap_or_else(|| AggregationState::new(window.clone()));
    acc.add_value(42.0);
    state_manager.put_accumulator(&window, &acc).await?;

    let checkpoint_id = 7;
    state_backend.checkpoint(checkpoint_id).await?;
    state_manager.delete_window(&window).await?;
    assert!(state_manager.get_accumulator(&window).await?.is_none());
    state_backend.restore(checkpoint_id).await?;
    let restored = state_manager.get_accumulator(&window).await?.unwrap();
    assert_eq!(restored.sum, 42.0);

    // State written for another accumulator type is refused with a clear error.
    let wrong = WindowStateManager::<String>::new(state_backend, "my-aggregation");
    let err = wrong
        .get_accumulator(&window)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be read"), "{err}");
    Ok(())
}

#[test]
fn kafka_sink_builds_as_in_the_reference() {
    let producer_config = KafkaProducerConfig {
        bootstrap_servers: "localhost:9092".to_string(),
        result_topic: "aggregated-metrics".to_string(),
        compression_type: "lz4".to_string(),
        acks: "all".to_string(),
        retries: 3,
    };
    let sink = KafkaAggregationSink::new(producer_config);
    let pipeline = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .with_tumbling_window(Duration::from_secs(60))
        .with_sink(sink)
        .build();
    assert!(pipeline.is_ok(), "{:?}", pipeline.err());
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CustomEvent {
    metric_name: String,
    value: f64,
    timestamp: DateTime<Utc>,
}

#[tokio::test]
async fn custom_event_processing_and_builder_pattern() -> ProcessorResult<()> {
    let events: Vec<CustomEvent> = (0..6)
        .map(|i| CustomEvent {
            metric_name: if i % 2 == 0 {
                "gpu_util"
            } else {
                "queue_depth"
            }
            .into(),
            value: i as f64,
            timestamp: Utc.timestamp_opt(i * 100, 0).unwrap(),
        })
        .collect();
    let rows = CollectorSink::new();
    let prometheus_registry = prometheus::Registry::new();
    let pipeline = create_pipeline::<CustomEvent>()
        .with_memory_source(events)
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_tumbling_window(Duration::from_secs(300))
        .with_key_fields(&["metric_name"])
        .with_state_backend(Arc::new(MemoryStateBackend::new()))
        .with_sink(rows.clone())
        .with_sink(MetricsSink::new(prometheus_registry.clone()))
        .build()?;
    pipeline.run().await?;
    let rows = rows.items();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].key.to_string(), "metric_name=gpu_util");
    assert_eq!(rows[0].results["sum"], 0.0 + 2.0);
    let exported = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus_registry.gather())
        .unwrap();
    assert!(
        exported.contains("processor_result_rows_total 4"),
        "{exported}"
    );
    Ok(())
}

#[test]
fn error_types_match_as_in_the_reference() {
    #[allow(unused_mut)]
    let mut results: Vec<ProcessorResult<u32>> = vec![
        Ok(1),
        Err(ProcessorError::WindowAssignment("w".into())),
        Err(ProcessorError::Aggregation("a".into())),
        Err(ProcessorError::State("s".into())),
        Err(ProcessorError::Internal("i".into())),
    ];
    #[cfg(feature = "kafka")]
    results.insert(
        4,
        Err(ProcessorError::Kafka(KafkaFailure {
            context: "k".into(),
            source: Box::new(KafkaClientError::Canceled),
        })),
    );
    let mut seen = Vec::new();
    for result in results {
        match result {
            Ok(value) => seen.push(format!("Success: {:?}", value)),
            Err(ProcessorError::WindowAssignment(msg)) => {
                seen.push(format!("Window error: {}", msg))
            }
            Err(ProcessorError::Aggregation(msg)) => {
                seen.push(format!("Aggregation error: {}", msg))
            }
            Err(ProcessorError::State(msg)) => seen.push(format!("State error: {}", msg)),
            Err(ProcessorError::Kafka(e)) => seen.push(format!("Kafka error: {}", e)),
            Err(e) => seen.push(format!("Other error: {}", e)),
        }
    }
    assert_eq!(seen.last().unwrap(), "Other error: internal error: i");

    let _error_handler = ErrorHandler::new(ErrorPolicy::Retry {
        max_attempts: 3,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
    });
    let _error_handler = ErrorHandler::new(ErrorPolicy::Skip);
    let _error_handler =
        ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(DeadLetterSink::new("errors-topic"));
}

#[test]
fn metrics_and_observability() {
    let metrics = ProcessorMetrics::new();
    let start = Instant::now();
    metrics.record_processing_latency(start.elapsed());
    metrics.record_event_processed();
    metrics.record_error();
    let state_size_bytes = 1024;
    metrics.record_state_size(state_size_bytes);
    let prometheus_metrics = metrics.export();
    assert!(prometheus_metrics.contains("processor_errors_total 1"));
    assert!(prometheus_metrics.contains("processor_processing_latency_seconds_count 1"));
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CustomAccumulator {
    pub sum_of_squares: f64,
    pub count: u64,
}

struct VarianceAggregator;

impl Aggregator<f64, CustomAccumulator> for VarianceAggregator {
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

#[test]
fn custom_aggregator() {
    let agg = VarianceAggregator;
    let mut a = agg.create_accumulator();
    agg.add(&mut a, &2.0);
    let m = agg.merge(&a, &a);
    assert_eq!(agg.get_result(&m).sum_of_squares, 8.0);
    assert_eq!(agg.name(), "variance");
}

struct HybridTrigger {
    count_threshold: u64,
    #[allow(
        dead_code,
        reason = "field of the reference's example, not read by its logic"
    )]
    time_threshold: Duration,
}

impl WindowTrigger for HybridTrigger {
    fn should_fire(&self, window: &Window, watermark: &Watermark, element_count: u64) -> bool {
        element_count >= self.count_threshold || watermark.timestamp >= window.end
    }
    fn should_purge(&self, window: &Window, watermark: &Watermark) -> bool {
        watermark.timestamp >= window.end + chrono::Duration::hours(1)
    }
}

#[tokio::test]
async fn custom_trigger_fires_early_on_count() -> ProcessorResult<()> {
    let rows = CollectorSink::new();
    let events = (0..5).map(|i| feedback(i, "m", 10.0));
    create_pipeline::<FeedbackEvent>()
        .with_memory_source(events)
        .with_tumbling_window(Duration::from_secs(300))
        .with_trigger(HybridTrigger {
            count_threshold: 3,
            time_threshold: Duration::from_secs(60),
        })
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;
    let counts: Vec<f64> = rows.items().iter().map(|r| r.results["count"]).collect();
    // early at 3, 4 and 5 elements, then on time at the end of the input
    assert_eq!(counts, vec![3.0, 4.0, 5.0, 5.0]);
    Ok(())
}

/// (window start, window end, results as JSON): what the reference's SQL insert writes.
type InsertedRow = (DateTime<Utc>, DateTime<Utc>, serde_json::Value);

struct PostgresLikeSink {
    rows: Mutex<Vec<InsertedRow>>,
}

#[async_trait]
impl EventSink<AggregationResult> for PostgresLikeSink {
    async fn send(&self, result: AggregationResult) -> ProcessorResult<()> {
        let value = serde_json::to_value(&result.results)
            .map_err(|e| ProcessorError::Internal(e.to_string()))?;
        self.rows
            .lock()
            .unwrap()
            .push((result.window.start, result.window.end, value));
        Ok(())
    }
}

#[tokio::test]
async fn custom_sink() -> ProcessorResult<()> {
    let sink = Arc::new(PostgresLikeSink {
        rows: Mutex::new(Vec::new()),
    });
    create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![feedback(1, "m", 5.0)])
        .with_tumbling_window(Duration::from_secs(60))
        .with_sink(sink.clone())
        .build()?
        .run()
        .await?;
    let rows = sink.rows.lock().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2["max"], 5.0);
    Ok(())
}

#[tokio::test]
async fn keyed_aggregation_with_explicit_envelopes() -> ProcessorResult<()> {
    let feedback_event = feedback(10, "ignored", 7.0);
    let key = GroupingKey::from_fields(&[("model", "claude-3-opus"), ("region", "us-west-2")]);
    let event = ProcessorEvent {
        data: feedback_event,
        timestamp: EventTimestamp::Event(Utc.timestamp_opt(10, 0).unwrap()),
        processing_time: Utc::now(),
        key: Some(key),
        metadata: EventMetadata::default(),
    };
    let rows = CollectorSink::new();
    create_pipeline::<FeedbackEvent>()
        .with_envelope_source(vec![event])
        .with_tumbling_window(Duration::from_secs(60))
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;
    assert_eq!(rows.items()[0].key.get("model"), Some("claude-3-opus"));
    Ok(())
}

/// "Loading Configuration", as written: `load_config` with nothing imported but the crate's
/// root; the environment overrides the file (`PROCESSOR_…`, checked in `config`'s tests).
#[tokio::test]
async fn loading_configuration() -> ProcessorResult<()> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processor-config.yaml");
    std::fs::write(&path, "processor:\n  parallelism: 2\n").unwrap();
    let config = load_config(&path).await?;
    assert_eq!(config.processor.parallelism, 2);
    Ok(())
}
