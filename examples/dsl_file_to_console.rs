//! A `pipeline!` end to end: JSON lines from a file (default: the bundled sample) through a
//! compiled pipeline, one line per row on the console.
//!
//! ```text
//! cargo run --release --example dsl_file_to_console [-- events.jsonl]
//! ```

use llm_optimizer_processor::prelude::*;
use std::path::PathBuf;

pipeline! {
    /// p50/p95/p99 latency and cost per model, every 5 minutes, sliding by 1 minute.
    pub pipeline LatencyByModel for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: sliding(5m, 1m, allowed_lateness = 1m),
        key_by: model,
        filter: |e| e.success,
        aggregate {
            requests: count(),
            p50: percentile(latency_ms, 50),
            p95: percentile(latency_ms, 95),
            p99: percentile(latency_ms, 99),
            cost: sum(cost_usd),
            rating: avg(rating),
        }
        late: side_output,
    }
}

/// Prints rows as they come.
struct Print;

#[async_trait::async_trait]
impl EventSink<LatencyByModelRow> for Print {
    async fn send(&self, r: LatencyByModelRow) -> ProcessorResult<()> {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        println!(
            "{} {:<14} n={:<4} p50={:>7} p95={:>7} p99={:>7} cost=${:.4} rating={}{}",
            Window::new(r.window_start, r.window_end),
            r.model,
            r.requests,
            f(r.p50),
            f(r.p95),
            f(r.p99),
            r.cost,
            f(r.rating),
            if r.is_update { " (update)" } else { "" },
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample-events.jsonl")
        });
    let dir = std::env::temp_dir().join("llm-optimizer-dsl-example");
    let summary = LatencyByModel::pipeline()
        .with_file_source(&input)
        .with_late_side_output(DeadLetterSink::new("late-events").with_dir(&dir))
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("dead-letter").with_dir(&dir)),
        )
        .with_sink(Print)
        .build()?
        .run()
        .await?;
    eprintln!(
        "\n{} read: {} aggregated, {} filtered, {} late, {} dead-lettered (in {})",
        summary.events_in,
        summary.events_aggregated,
        summary.events_filtered,
        summary.events_late,
        summary.events_dead_lettered,
        dir.display()
    );
    Ok(())
}
