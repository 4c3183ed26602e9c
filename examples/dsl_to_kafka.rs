//! `pipeline!` rows to Kafka: the same `KafkaAggregationSink` as the dynamic builder's,
//! keyed `<key>@<window start>` with `window_start`, `window_end` and `is_update` headers
//! (through the `ResultRow` impl `pipeline!` generates), each row as its own flat JSON.
//!
//! ```text
//! scripts/kafka-up
//! tansu topic create --broker tcp://127.0.0.1:9092 --partitions 1 model-latency
//! cargo run --example dsl_to_kafka [-- 127.0.0.1:9092 model-latency [events.jsonl]]
//! ```

use llm_optimizer_processor::prelude::*;
use std::path::{Path, PathBuf};

pipeline! {
    /// p95 latency, cost and error count per model, every 5 minutes.
    pub pipeline ModelLatency for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(5m, allowed_lateness = 1m),
        key_by: model,
        aggregate {
            requests: count(),
            failures: count_if(|e| !e.success),
            p95:      percentile(latency_ms, 95),
            cost:     sum(cost_usd),
        }
    }
}

/// The example's pipeline over `input`, its rows to `sink`.
pub fn pipeline<S: EventSink<ModelLatencyRow> + 'static>(
    input: &Path,
    sink: S,
) -> ProcessorResult<Pipeline<FeedbackEvent, ModelLatency>> {
    let dir = std::env::temp_dir().join("llm-optimizer-dsl-to-kafka");
    ModelLatency::pipeline()
        .with_file_source(input)
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("dsl-to-kafka-dead-letter").with_dir(&dir)),
        )
        .with_late_side_output(DeadLetterSink::new("dsl-to-kafka-late").with_dir(&dir))
        .with_sink(sink)
        .build()
}

/// The producer settings for `topic` at `servers`.
pub fn producer(servers: &str, topic: &str) -> KafkaProducerConfig {
    KafkaProducerConfig {
        bootstrap_servers: servers.into(),
        result_topic: topic.into(),
        ..Default::default()
    }
}

/// The bundled sample.
pub fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample-events.jsonl")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let servers = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "model-latency".into());
    let input = args.next().map_or_else(sample, PathBuf::from);
    let sink = KafkaAggregationSink::new(producer(&servers, &topic));
    let summary = pipeline(&input, sink)?.run().await?;
    println!(
        "{} events: {} rows to topic {topic} at {servers}",
        summary.events_in, summary.rows_emitted
    );
    Ok(())
}
