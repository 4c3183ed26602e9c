//! A dynamic pipeline over `FeedbackEvent`s from a [`Config`]: every key has its effect here.

use std::sync::Arc;
use std::time::Duration;

use super::{check_runnable, Config};
use crate::aggregation::{AggregationKind, AggregationSpec};
use crate::error::{ErrorHandler, ErrorPolicy, ProcessorResult};
use crate::event::FeedbackEvent;
use crate::pipeline::{create_pipeline, PipelineBuilder};
use crate::sink::DeadLetterSink;
use crate::state::{MemoryStateBackend, StateBackend};
use crate::watermark::{
    BoundedOutOfOrdernessWatermark, LateEventHandler, PeriodicWatermarkGenerator,
};
use crate::window::{SessionWindowAssigner, SlidingWindowAssigner, TumblingWindowAssigner};

/// The state backend `processor.state` names: RocksDB at `path` with checkpoints in
/// `checkpoint_path`, or memory with its checkpoints written to files in `checkpoint_path`.
pub fn state_backend(config: &Config) -> ProcessorResult<Arc<dyn StateBackend>> {
    let s = &config.processor.state;
    #[cfg(feature = "rocksdb")]
    if s.backend == "rocksdb" {
        return Ok(Arc::new(
            crate::state::RocksDBStateBackend::new(&s.path, &s.checkpoint_path)?
                .with_retention(s.retained_checkpoints),
        ));
    }
    Ok(Arc::new(
        MemoryStateBackend::persistent(&s.checkpoint_path).with_retention(s.retained_checkpoints),
    ))
}

/// A dead-letter queue named `topic`: a Kafka topic when the pipeline writes its rows to
/// Kafka (with the `kafka.producer` settings), else a file.
fn queue(config: &Config, topic: &str, kafka: bool) -> ProcessorResult<DeadLetterSink> {
    let q = DeadLetterSink::new(topic);
    #[cfg(feature = "kafka")]
    if kafka {
        return q.with_kafka(&config.processor.kafka.producer);
    }
    let _ = (config, kafka);
    Ok(q)
}

/// The pipeline a config describes, without source and sinks (the caller adds them:
/// they depend on command-line flags too).
pub fn pipeline_from_config(config: &Config) -> ProcessorResult<PipelineBuilder<FeedbackEvent>> {
    check_runnable(config)?;
    let p = &config.processor;
    let secs = Duration::from_secs;
    let mut bounded =
        BoundedOutOfOrdernessWatermark::new(secs(p.watermark.max_out_of_orderness_secs));
    if p.watermark.idle_timeout_secs > 0 {
        bounded = bounded.with_idle_timeout(secs(p.watermark.idle_timeout_secs));
    }
    let kinds: Vec<AggregationKind> = p
        .aggregation
        .enabled
        .iter()
        .map(|n| AggregationKind::parse(n))
        .collect::<ProcessorResult<_>>()?;
    let spec = AggregationSpec::new(&kinds, &p.aggregation.percentiles)?;
    let eh = &p.error_handling;
    let policy = match eh.policy.as_str() {
        "retry" => ErrorPolicy::Retry {
            max_attempts: eh.max_retries.saturating_add(1),
            initial_delay: Duration::from_millis(eh.initial_retry_delay_ms),
            max_delay: Duration::from_millis(eh.max_retry_delay_ms),
        },
        "skip" => ErrorPolicy::Skip,
        _ => ErrorPolicy::DeadLetter,
    };
    let keys: Vec<&str> = p.keys.iter().map(String::as_str).collect();
    // Side outputs go where the rows go: to Kafka with a Kafka output, else to files
    // (staged with each checkpoint, whatever the source).
    let kafka = p.output.kind == "kafka";
    let dead_letters = queue(config, &eh.dead_letter_topic, kafka)?;
    let late_events = queue(config, "late-events", kafka)?;
    let mut b = create_pipeline::<FeedbackEvent>()
        .with_name("processor")
        .with_buffer_size(p.buffer_size)
        .with_parallelism(p.parallelism)
        .with_max_future_skew(secs(p.watermark.max_future_skew_secs))
        .with_key_fields(&keys)
        .with_value_field(p.measure.clone())
        .with_aggregations(spec)
        .with_error_handler(ErrorHandler::new(policy).with_sink(dead_letters));
    b = if p.watermark.emit_interval_secs > 0 {
        b.with_watermark_generator(PeriodicWatermarkGenerator::new(
            secs(p.watermark.emit_interval_secs),
            Box::new(bounded),
        ))
    } else {
        b.with_watermark_generator(bounded)
    };
    let w = &p.windows;
    let lateness = match w.default_type.as_str() {
        "sliding" => {
            b = b.with_window_assigner(SlidingWindowAssigner::new(
                secs(w.sliding.size_secs),
                secs(w.sliding.slide_secs),
            ));
            w.sliding.allowed_lateness_secs
        }
        "session" => {
            b = b.with_window_assigner(SessionWindowAssigner::new(secs(w.session.gap_secs)));
            w.session.allowed_lateness_secs
        }
        _ => {
            b = b.with_window_assigner(TumblingWindowAssigner::new(secs(w.tumbling.size_secs)));
            w.tumbling.allowed_lateness_secs
        }
    };
    if p.checkpoint_interval_secs > 0.0 || p.state.max_in_memory_windows > 0 {
        b = b
            .with_state_backend(state_backend(config)?)
            .with_checkpoint_interval(Duration::from_secs_f64(p.checkpoint_interval_secs));
    }
    if p.state.max_in_memory_windows > 0 {
        b = b.with_spill_threshold(p.state.max_in_memory_windows);
    }
    Ok(b.with_late_event_handler(
        LateEventHandler::new(secs(lateness)).with_side_output(late_events),
    ))
}
