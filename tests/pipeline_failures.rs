//! A failure never publishes unfinished windows: when the source fails mid-input, the run
//! returns the error and no row of a window that was still open reaches a sink (those
//! windows stay in the last checkpoint for the next start); windows the watermark had
//! closed before the failure are delivered, as in a run that did not fail. At parallelism
//! 1 and 4 alike. A sink that gives up ends a run over a live source (which never ends by
//! itself) with the sink's error.

#[path = "support/child.rs"]
mod child;

use async_trait::async_trait;
use child::{Deadline, RUN};
use llm_optimizer_processor::source::{EventSource, Payload, SourceRecord};
use llm_optimizer_processor::*;
use std::time::Duration;

/// `events` one second apart from the epoch, 8 keys, then an I/O error.
struct FailingSource {
    sent: u64,
    events: u64,
}

#[async_trait]
impl EventSource<FeedbackEvent> for FailingSource {
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<FeedbackEvent>>> {
        if self.sent == self.events {
            return Err(ProcessorError::io(
                "the test's source",
                std::io::Error::other("the disk went away"),
            ));
        }
        let i = self.sent;
        self.sent += 1;
        let line = format!(
            r#"{{"timestamp":{},"model":"m{}","region":"r","latency_ms":{}}}"#,
            i * 1000,
            i % 8,
            i
        );
        Ok(Some(SourceRecord {
            payload: Payload::Bytes(line.into_bytes()),
            partition: 0,
            offset: i,
            sequence: i,
        }))
    }

    fn describe(&self) -> String {
        "failing".into()
    }
}

async fn run(
    parallelism: usize,
    events: u64,
) -> (ProcessorResult<RunSummary>, Vec<AggregationResult>) {
    let rows = CollectorSink::<AggregationResult>::new();
    let result = create_pipeline::<FeedbackEvent>()
        .with_source(FailingSource { sent: 0, events })
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(5)))
        .with_tumbling_window(Duration::from_secs(60))
        .with_key_fields(&["model", "region"])
        .with_parallelism(parallelism)
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .within(RUN, "the failing run")
        .await;
    (result, rows.items())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failure_publishes_no_open_window() {
    for parallelism in [1, 4] {
        // 150 s of events: the windows [0, 60) and [60, 120) close (watermark 144 s), the
        // window [120, 180) is open when the source fails.
        let (result, rows) = run(parallelism, 150).await;
        let err = result.expect_err("the run fails with the source");
        let mut chain = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            chain.push_str(&format!(": {c}"));
            cause = c.source();
        }
        assert!(chain.contains("the disk went away"), "{chain}");
        let mut starts: Vec<i64> = rows.iter().map(|r| r.window.start.timestamp()).collect();
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(
            starts,
            vec![0, 60],
            "parallelism {parallelism}: only the closed windows are published"
        );
        assert_eq!(
            rows.len(),
            16,
            "parallelism {parallelism}: 8 keys × 2 windows"
        );
        assert!(rows.iter().all(|r| !r.is_update));
    }
}

/// A sink that refuses every row.
struct RefusingSink;

#[async_trait]
impl EventSink<AggregationResult> for RefusingSink {
    async fn send(&self, _: AggregationResult) -> ProcessorResult<()> {
        Err(ProcessorError::Sink {
            sink: "refusing".into(),
            message: "the database is read-only".into(),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_gives_up_ends_a_run_over_a_live_source() {
    for parallelism in [1, 2] {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let run = tokio::spawn(
            create_pipeline::<FeedbackEvent>()
                .with_channel_source(rx)
                .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::ZERO))
                .with_tumbling_window(Duration::from_secs(60))
                .with_parallelism(parallelism)
                .with_sink(RefusingSink)
                .build()
                .unwrap()
                .run(),
        );
        // A live source keeps sending (a minute of event time per event: every event
        // closes a window); the sender stays open, so only the failure can end the run.
        let feeder = tokio::spawn(async move {
            for i in 0.. {
                let e = FeedbackEvent {
                    timestamp: chrono::DateTime::from_timestamp(i * 60, 0).unwrap(),
                    model: "m".into(),
                    region: "r".into(),
                    latency_ms: 1.0,
                    ..Default::default()
                };
                if tx.send(e).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The run dropped its receiver: hold the sender a little longer anyway.
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let result = run.within(RUN, "the run with a refusing sink").await;
        let err = result
            .unwrap()
            .expect_err("the run ends with the sink's error");
        assert!(
            err.to_string().contains("the database is read-only"),
            "parallelism {parallelism}: {err}"
        );
        feeder.abort();
    }
}
