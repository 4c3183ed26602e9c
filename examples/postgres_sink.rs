//! The API reference's "Custom Sink", for real: `PostgresSink`, an
//! `EventSink<AggregationResult>` over an sqlx `PgPool`, writing one row per key and
//! window to a PostgreSQL table; a later row of the same key and window (an update: a late
//! event within the allowed lateness) replaces it (an upsert), so the table holds each
//! window's latest statistics, and a replay after a crash writes the same rows again.
//!
//! ```text
//! scripts/postgres-up            # PostgreSQL from Debian's packages on 127.0.0.1:55432
//! cargo run --example postgres_sink [-- postgres://postgres@127.0.0.1:55432/processor [events.jsonl]]
//! ```
//!
//! Default: the URL above, the bundled sample.

use async_trait::async_trait;
use llm_optimizer_processor::*;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the example writes, unless told otherwise (what `scripts/postgres-up` starts).
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:55432/processor";

/// Rows to PostgreSQL, as the reference's custom sink.
pub struct PostgresSink {
    pool: sqlx::PgPool,
}

impl PostgresSink {
    /// Connects and creates the table when it does not exist.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        // No statement waits forever (a lock held elsewhere fails it after 30 s).
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .options([("statement_timeout", "30s"), ("lock_timeout", "30s")]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS aggregations (
                 key          text        NOT NULL,
                 window_start timestamptz NOT NULL,
                 window_end   timestamptz NOT NULL,
                 results      jsonb       NOT NULL,
                 revisions    integer     NOT NULL DEFAULT 0,
                 PRIMARY KEY (key, window_start, window_end)
             )",
        )
        .execute(&pool)
        .await?;
        Ok(PostgresSink { pool })
    }

    /// The pool (to read the table back).
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

#[async_trait]
impl EventSink<AggregationResult> for PostgresSink {
    async fn send(&self, result: AggregationResult) -> ProcessorResult<()> {
        sqlx::query(
            "INSERT INTO aggregations (key, window_start, window_end, results)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (key, window_start, window_end)
             DO UPDATE SET results = EXCLUDED.results, revisions = aggregations.revisions + 1",
        )
        .bind(result.key.to_string())
        .bind(result.window.start)
        .bind(result.window.end)
        .bind(
            serde_json::to_value(&result.results)
                .map_err(|e| ProcessorError::Serialization(format!("statistics as JSON: {e}")))?,
        )
        .execute(&self.pool)
        .await
        .map_err(|e| ProcessorError::Sink {
            sink: "postgres".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    fn name(&self) -> &str {
        "postgres"
    }
}

/// The example's pipeline over `input`: latency per model and region in 5-minute windows.
pub fn pipeline(input: &Path) -> PipelineBuilder<FeedbackEvent> {
    let dir = std::env::temp_dir().join("llm-optimizer-postgres-example");
    create_pipeline::<FeedbackEvent>()
        .with_file_source(input)
        .with_key_fields(&["model", "region"])
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_tumbling_window(Duration::from_secs(300))
        .with_allowed_lateness(Duration::from_secs(60))
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("postgres-example-dead-letter").with_dir(&dir)),
        )
}

/// The bundled sample.
pub fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample-events.jsonl")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| DEFAULT_URL.to_owned());
    let input = args.next().map_or_else(sample, PathBuf::from);
    let sink = PostgresSink::connect(&url).await.map_err(|e| {
        format!("cannot reach PostgreSQL at {url} ({e}); start one with scripts/postgres-up")
    })?;
    let pool = sink.pool().clone();
    let summary = pipeline(&input).with_sink(sink).build()?.run().await?;
    let (windows,): (i64,) = sqlx::query_as("SELECT count(*) FROM aggregations")
        .fetch_one(&pool)
        .await?;
    println!(
        "{} events, {} rows written ({} of them updates, upserted over their window's row); the table `aggregations` holds {windows} (key, window) rows",
        summary.events_in, summary.rows_emitted, summary.update_rows
    );
    Ok(())
}
