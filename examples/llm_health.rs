//! What people who run LLM services ask of a stream, in two `pipeline!` declarations: the
//! error rate, the cost per 1k tokens and the p95 latency of successful calls per model
//! (conditional aggregations and derived columns), and an alert row only when p95 latency
//! or the error rate passes a threshold (`emit_when`). Runs on the bundled sample.
//!
//! ```text
//! cargo run --release --example llm_health [-- events.jsonl]
//! ```

use llm_optimizer_processor::prelude::*;
use std::path::{Path, PathBuf};

pipeline! {
    /// Health per model, every 5 minutes.
    pub pipeline ModelHealth for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(5m, allowed_lateness = 1m),
        key_by: model,
        aggregate {
            requests:   count(),
            failures:   count_if(|e| !e.success),
            cost:       sum(cost_usd),
            tokens_in:  sum(input_tokens),
            tokens_out: sum(output_tokens),
            p95_ok:     percentile(latency_ms, 95) where |e| e.success,
        }
        derive {
            error_rate:  failures as f64 / requests as f64,
            cost_per_1k: cost / (tokens_in + tokens_out) * 1000.0,
        }
    }
}

pipeline! {
    /// An alert per model and minute: p95 latency of successful calls above 4 s, or more
    /// than 5 % of calls failing.
    pub pipeline LatencyAlert for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m),
        key_by: model,
        aggregate {
            requests: count(),
            failures: count_if(|e| !e.success),
            p95_ok:   percentile(latency_ms, 95) where |e| e.success,
        }
        derive {
            error_rate: failures as f64 / requests as f64,
        }
        emit_when: p95_ok > 4000.0 || error_rate > 0.05,
    }
}

fn show(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{:.*}", digits, v * scale))
}

/// Prints health rows.
struct PrintHealth;

#[async_trait::async_trait]
impl EventSink<ModelHealthRow> for PrintHealth {
    async fn send(&self, r: ModelHealthRow) -> ProcessorResult<()> {
        println!(
            "{} {:<16} requests={:<4} errors={:>5}% p95(ok)={:>7} ms  ${}/1k tokens{}",
            Window::new(r.window_start, r.window_end),
            r.model,
            r.requests,
            show(r.error_rate, 100.0, 1),
            show(r.p95_ok, 1.0, 0),
            show(r.cost_per_1k, 1.0, 5),
            if r.is_update { " (update)" } else { "" },
        );
        Ok(())
    }
}

/// Prints alert rows.
struct PrintAlert;

#[async_trait::async_trait]
impl EventSink<LatencyAlertRow> for PrintAlert {
    async fn send(&self, r: LatencyAlertRow) -> ProcessorResult<()> {
        println!(
            "ALERT {} {:<16} p95(ok)={:>7} ms errors={:>5}% ({} of {})",
            r.window_start.format("%H:%M"),
            r.model,
            show(r.p95_ok, 1.0, 0),
            show(r.error_rate, 100.0, 1),
            r.failures,
            r.requests,
        );
        Ok(())
    }
}

fn handler(dir: &Path, name: &str) -> ErrorHandler {
    ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(DeadLetterSink::new(name).with_dir(dir))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let input = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample-events.jsonl")
        });
    let dir = std::env::temp_dir().join("llm-optimizer-health-example");
    println!("== health per model, every 5 minutes");
    let health = ModelHealth::pipeline()
        .with_file_source(&input)
        .with_error_handler(handler(&dir, "health-dead-letter"))
        .with_late_side_output(DeadLetterSink::new("health-late").with_dir(&dir))
        .with_sink(PrintHealth)
        .build()?
        .run()
        .await?;
    println!("\n== alerts: p95 of successful calls > 4000 ms or errors > 5 %, per minute");
    let alerts = LatencyAlert::pipeline()
        .with_file_source(&input)
        .with_error_handler(handler(&dir, "alert-dead-letter"))
        .with_late_side_output(DeadLetterSink::new("alert-late").with_dir(&dir))
        .with_sink(PrintAlert)
        .build()?
        .run()
        .await?;
    eprintln!(
        "\n{} events: {} health rows, {} alerts; {} dead-lettered (side outputs in {})",
        health.events_in,
        health.rows_emitted,
        alerts.rows_emitted,
        health.events_dead_lettered,
        dir.display()
    );
    Ok(())
}
