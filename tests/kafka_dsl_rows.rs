//! `pipeline!` rows to a real Kafka broker (`scripts/kafka-up`), through
//! `examples/dsl_to_kafka.rs`: every row of the same pipeline in memory arrives, as its own
//! flat JSON, keyed `<key>@<window start>` with the window and update flag in headers.
#![cfg(feature = "kafka")]

#[path = "support/kafka.rs"]
mod kafka;

#[path = "../examples/dsl_to_kafka.rs"]
#[allow(dead_code)]
mod example;

#[path = "support/child.rs"]
mod child;

use child::{Deadline, RUN};
use kafka::{bootstrap, create_topic, read_topic, unique};
use llm_optimizer_processor::*;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_rows_go_to_kafka_keyed_by_key_and_window() {
    let topic = unique("dsl-rows");
    create_topic(&topic, 1).await;
    let input = example::sample();
    let sink = KafkaAggregationSink::new(example::producer(&bootstrap(), &topic));
    let summary = example::pipeline(&input, sink)
        .unwrap()
        .run()
        .within(RUN, "the pipeline run (its Kafka sink flushing)")
        .await
        .unwrap();

    let rows = CollectorSink::<example::ModelLatencyRow>::new();
    example::pipeline(&input, rows.clone())
        .unwrap()
        .run()
        .within(RUN, "the pipeline run (its Kafka sink flushing)")
        .await
        .unwrap();
    let want = rows.items();
    assert_eq!(want.len() as u64, summary.rows_emitted);
    assert!(
        want.iter().any(|r| r.is_update),
        "the sample has update rows"
    );

    let n = want.len();
    let got = tokio::task::spawn_blocking(move || {
        read_topic(&topic, Duration::from_secs(30), |r| r.len() >= n)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), n);
    // In order (one partition): each row with its key, headers and flat JSON.
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    for (row, read) in want.iter().zip(&got) {
        let start = row.window_start.to_rfc3339();
        assert_eq!(
            read.key.as_deref(),
            Some(format!("model={}@{start}", row.model).as_str())
        );
        assert_eq!(read.headers["window_start"], start);
        assert_eq!(read.headers["window_end"], row.window_end.to_rfc3339());
        assert_eq!(read.headers["is_update"], row.is_update.to_string());
        // Byte for byte the row's own JSON (flat: key fields and outputs by name).
        assert_eq!(read.payload, serde_json::to_string(row).unwrap());
        let json: serde_json::Value = serde_json::from_str(&read.payload).unwrap();
        assert_eq!(json["requests"], row.requests);
        *by_key.entry(read.key.clone().unwrap()).or_default() += 1;
    }
    // Updates share their window's message key: a compacted topic keeps the latest.
    assert!(by_key.values().any(|n| *n > 1));
}
