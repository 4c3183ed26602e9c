//! The main job until the `processor` command lands: the bundled sample of LLM feedback
//! events (or a JSON-lines file given as argument), 5-minute tumbling windows per model and
//! region, latency statistics printed on the console.
//!
//! ```text
//! cargo run --release --example quickstart [-- events.jsonl]
//! ```

use llm_optimizer_processor::*;
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let input = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample-events.jsonl")
        });
    let dead_letter_dir = std::env::temp_dir().join("llm-optimizer-quickstart");
    let dead_letters = DeadLetterSink::new("dead-letter").with_dir(&dead_letter_dir);
    let dead_letter_path = dead_letters.path().to_path_buf();
    let late = DeadLetterSink::new("late-events").with_dir(&dead_letter_dir);

    let summary = create_pipeline::<FeedbackEvent>()
        .with_name("quickstart")
        .with_file_source(&input)
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_window_assigner(
            TumblingWindowAssigner::new(Duration::from_secs(300))
                .with_allowed_lateness(Duration::from_secs(60)),
        )
        .with_late_event_handler(
            LateEventHandler::new(Duration::from_secs(60)).with_side_output(late),
        )
        .with_key_fields(&["model", "region"])
        .with_value_field("latency_ms")
        .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(dead_letters))
        .with_sink(ConsoleSink::new())
        .build()?
        .run()
        .await?;

    eprintln!(
        "\n{} events read: {} aggregated, {} late, {} dead-lettered ({}); {} rows ({} updates)",
        summary.events_in,
        summary.events_aggregated,
        summary.events_late,
        summary.events_dead_lettered,
        dead_letter_path.display(),
        summary.rows_emitted,
        summary.update_rows,
    );
    Ok(())
}
