//! Kafka in, Kafka out: feedback events from the topic `feedback-events` → 1-minute
//! latency windows per model and region → result rows in `aggregated-metrics`; malformed
//! records to `processor-dead-letter`. Stop with Ctrl-C (a checkpoint is taken; the next
//! start resumes from it).
//!
//! ```sh
//! scripts/kafka-up                      # a local broker on 127.0.0.1:9092
//! T=/var/cache/llm-optimizer-processor/tools/bin/tansu
//! for t in feedback-events aggregated-metrics processor-dead-letter late-events; do
//!   $T topic create --broker tcp://127.0.0.1:9092 "$t"
//! done
//! cargo run --example kafka_to_kafka     # KAFKA_BOOTSTRAP overrides the broker address
//! ```

use llm_optimizer_processor::*;
use std::time::Duration;

#[tokio::main]
async fn main() -> ProcessorResult<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let brokers = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let kafka_config = KafkaConfig {
        bootstrap_servers: brokers.clone(),
        group_id: "kafka-to-kafka-example".to_string(),
        topics: vec!["feedback-events".to_string()],
        ..Default::default()
    };
    let producer_config = KafkaProducerConfig {
        bootstrap_servers: brokers,
        result_topic: "aggregated-metrics".to_string(),
        ..Default::default()
    };
    let dead_letters = DeadLetterSink::new("processor-dead-letter").with_kafka(&producer_config)?;
    let late_events = DeadLetterSink::new("late-events").with_kafka(&producer_config)?;
    let pipeline = create_pipeline::<FeedbackEvent>()
        .with_name("kafka-to-kafka")
        .with_kafka_source(kafka_config)
        .with_watermark_generator(
            BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30))
                .with_idle_timeout(Duration::from_secs(60)),
        )
        .with_tumbling_window(Duration::from_secs(60))
        .with_late_event_handler(
            LateEventHandler::new(Duration::from_secs(60)).with_side_output(late_events),
        )
        // Partition checkpoints go to checkpoints/kafka/<group>/<pipeline>/.
        .with_state_backend(Arc::new(MemoryStateBackend::persistent("checkpoints")))
        .with_checkpoint_interval(Duration::from_secs(10))
        .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(dead_letters))
        .with_sink(KafkaAggregationSink::new(producer_config))
        .with_shutdown_signal(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .build()?;
    let summary = pipeline.run().await?;
    println!(
        "{} events read, {} rows produced, {} dead-lettered",
        summary.events_in, summary.rows_emitted, summary.events_dead_lettered
    );
    Ok(())
}
