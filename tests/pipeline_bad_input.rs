//! Bad input never stops the pipeline and is never lost: malformed lines, missing or
//! unparseable timestamps and non-numeric or non-finite values go to the dead-letter sink
//! with their position and reason, and every record is accounted for.

use llm_optimizer_processor::*;
use std::time::Duration;

fn lines() -> String {
    [
        r#"{"event_id":"a","timestamp":"2026-01-01T00:00:01Z","model":"m","region":"r","latency_ms":100}"#,
        r#"{"event_id":"b","timestamp":"2026-01-01T00:00:02Z","model":"m","region":"r","latency_ms":300}"#,
        "{ this is not json",
        r#"{"event_id":"c","timestamp":"yesterday","model":"m","region":"r","latency_ms":1}"#,
        "",
        r#"{"event_id":"d","model":"m","region":"r","latency_ms":1}"#,
        r#"{"event_id":"e","timestamp":1767225603000,"model":"m","region":"r","latency_ms":200}"#,
        r#"{"event_id":"f","timestamp":"2026-01-01T00:00:04Z","model":"m","region":"r","latency_ms":"fast"}"#,
        r#"{"event_id":"g","timestamp":"2026-01-01T00:00:05Z","model":"m","region":"r","latency_ms":1e999}"#,
    ]
    .join("\n")
}

#[tokio::test]
async fn malformed_records_go_to_dead_letter_and_processing_continues() -> ProcessorResult<()> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, lines()).unwrap();
    let dead = CollectorSink::<DeadLetterRecord>::new();
    let rows = CollectorSink::new();
    let summary = create_pipeline::<FeedbackEvent>()
        .with_file_source(&input)
        .with_tumbling_window(Duration::from_secs(60))
        .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(dead.clone()))
        .with_sink(rows.clone())
        .build()?
        .run()
        .await?;

    assert_eq!(summary.events_in, 8, "blank lines are not records");
    assert_eq!(summary.events_aggregated, 3);
    assert_eq!(summary.events_dead_lettered, 5);
    assert_eq!(
        summary.events_in,
        summary.events_aggregated
            + summary.events_late
            + summary.events_dead_lettered
            + summary.events_skipped
    );
    let dead = dead.items();
    let kinds: Vec<&str> = dead.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "deserialization",
            "deserialization",
            "deserialization",
            "deserialization",
            "deserialization"
        ]
    );
    assert!(dead[0].position.contains("line 3"), "{}", dead[0].position);
    assert_eq!(dead[0].payload, "{ this is not json");
    assert!(dead[0].source.starts_with("file:"));
    assert!(
        dead[1].reason.contains("invalid timestamp `yesterday`"),
        "{}",
        dead[1].reason
    );
    assert!(
        dead[2].reason.contains("missing field `timestamp`"),
        "{}",
        dead[2].reason
    );
    assert!(dead[2].position.contains("line 6"), "{}", dead[2].position);

    let rows = rows.items();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].results["count"], 3.0);
    assert_eq!(rows[0].results["average"], 200.0);
    Ok(())
}

#[tokio::test]
async fn skip_policy_counts_skipped_records() -> ProcessorResult<()> {
    let summary = create_pipeline::<FeedbackEvent>()
        .with_source(source::MemorySource::from_json_lines(
            lines()
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec()),
        ))
        .with_tumbling_window(Duration::from_secs(60))
        .with_error_handler(ErrorHandler::new(ErrorPolicy::Skip))
        .build()?
        .run()
        .await?;
    assert_eq!(summary.events_skipped, 5);
    assert_eq!(summary.events_dead_lettered, 0);
    Ok(())
}

#[tokio::test]
async fn non_finite_values_from_memory_are_dead_lettered() -> ProcessorResult<()> {
    let dead = CollectorSink::<DeadLetterRecord>::new();
    let e = FeedbackEvent {
        latency_ms: f64::NAN,
        ..Default::default()
    };
    let summary = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![e, FeedbackEvent::default()])
        .with_tumbling_window(Duration::from_secs(60))
        .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(dead.clone()))
        .build()?
        .run()
        .await?;
    assert_eq!(summary.events_dead_lettered, 1);
    assert_eq!(dead.items()[0].kind, "aggregation");
    assert!(dead.items()[0].reason.contains("not finite"));
    Ok(())
}

#[tokio::test]
async fn default_dead_letter_sink_writes_a_file() -> ProcessorResult<()> {
    let dir = tempfile::tempdir().unwrap();
    let sink = DeadLetterSink::new("bad-records").with_dir(dir.path());
    let path = sink.path().to_path_buf();
    create_pipeline::<FeedbackEvent>()
        .with_source(source::MemorySource::from_json_lines(
            vec![b"nope".to_vec()],
        ))
        .with_tumbling_window(Duration::from_secs(60))
        .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter).with_sink(sink))
        .build()?
        .run()
        .await?;
    let written = std::fs::read_to_string(path).unwrap();
    let rec: DeadLetterRecord = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(rec.payload, "nope");
    Ok(())
}

#[test]
fn build_rejects_invalid_pipelines_with_the_fix() {
    let no_source = create_pipeline::<FeedbackEvent>()
        .with_tumbling_window(Duration::from_secs(60))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        no_source.contains("no source") && no_source.contains("with_file_source"),
        "{no_source}"
    );

    let no_window = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .build()
        .unwrap_err()
        .to_string();
    assert!(no_window.contains("no window"), "{no_window}");

    let zero = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .with_tumbling_window(Duration::ZERO)
        .build()
        .unwrap_err()
        .to_string();
    assert!(zero.contains("at least 1 ms"), "{zero}");

    let slide = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .with_sliding_window(Duration::from_secs(60), Duration::from_secs(120))
        .build()
        .unwrap_err()
        .to_string();
    assert!(slide.contains("larger than its size"), "{slide}");

    let session = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .with_session_window(Duration::ZERO)
        .build()
        .unwrap_err()
        .to_string();
    assert!(session.contains("session gap"), "{session}");

    let conflict = create_pipeline::<FeedbackEvent>()
        .with_memory_source(vec![])
        .with_window_assigner(
            TumblingWindowAssigner::new(Duration::from_secs(60))
                .with_allowed_lateness(Duration::from_secs(5)),
        )
        .with_late_event_handler(LateEventHandler::new(Duration::from_secs(10)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(conflict.contains("set it in one place"), "{conflict}");
}
