//! `examples/postgres_sink.rs` (the reference's custom sink) against a real PostgreSQL:
//! the one `scripts/postgres-up` starts on 127.0.0.1:55432 (`POSTGRES_URL` overrides).
//! The table must hold exactly the latest row of each key and window that the same
//! pipeline gives in memory, with one revision per update row.

#[path = "../examples/postgres_sink.rs"]
#[allow(dead_code)]
mod example;

#[path = "support/child.rs"]
mod child;

use child::{Deadline, RUN};
use llm_optimizer_processor::*;
use std::collections::BTreeMap;

type Latest = BTreeMap<(String, i64, i64), (serde_json::Value, i32)>;
type Stamp = chrono::DateTime<chrono::Utc>;
/// A row of the table: key, window start and end, statistics, revisions.
type TableRow = (String, Stamp, Stamp, serde_json::Value, i32);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_custom_sink_upserts_rows_into_postgresql(
) -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("POSTGRES_URL").unwrap_or_else(|_| example::DEFAULT_URL.to_owned());
    let sink = example::PostgresSink::connect(&url).await.map_err(|e| {
        format!(
            "no PostgreSQL at {url} ({e}): start one with scripts/postgres-up (scripts/test does)"
        )
    })?;
    let pool = sink.pool().clone();
    // Bounded by the pool's statement_timeout (a TRUNCATE behind a lock fails, it does not wait).
    sqlx::query("TRUNCATE aggregations").execute(&pool).await?;

    let input = example::sample();
    let summary = example::pipeline(&input)
        .with_sink(sink)
        .build()?
        .run()
        .within(RUN, "the pipeline run (its PostgreSQL sink)")
        .await?;

    // The same pipeline in memory: the latest row of each key and window, and its updates.
    let rows = CollectorSink::<AggregationResult>::new();
    let again = example::pipeline(&input)
        .with_sink(rows.clone())
        .build()?
        .run()
        .within(RUN, "the pipeline run (its PostgreSQL sink)")
        .await?;
    assert_eq!(summary.rows_emitted, again.rows_emitted);
    let mut want = Latest::new();
    for r in rows.items() {
        let k = (
            r.key.to_string(),
            r.window.start.timestamp_millis(),
            r.window.end.timestamp_millis(),
        );
        let revisions = want.get(&k).map_or(0, |(_, n)| n + 1);
        want.insert(k, (serde_json::to_value(&r.results)?, revisions));
    }
    assert!(
        want.values().any(|(_, n)| *n > 0),
        "the sample has update rows"
    );

    let got: Vec<TableRow> = sqlx::query_as(
        "SELECT key, window_start, window_end, results, revisions FROM aggregations",
    )
    .fetch_all(&pool)
    .await?;
    let got: Latest = got
        .into_iter()
        .map(|(k, s, e, results, n)| {
            (
                (k, s.timestamp_millis(), e.timestamp_millis()),
                (results, n),
            )
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (k, (results, n)) in &want {
        let (g, gn) = got.get(k).ok_or_else(|| format!("no row for {k:?}"))?;
        assert_eq!(gn, n, "revisions of {k:?}");
        // jsonb keeps the decimals exactly; serde_json reads them back without its
        // (slower) float_roundtrip parser, so the last bit may differ.
        for (stat, v) in results.as_object().unwrap() {
            let (a, b) = (g[stat].as_f64().unwrap(), v.as_f64().unwrap());
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{stat} of {k:?}: {a} != {b}"
            );
        }
    }
    Ok(())
}
