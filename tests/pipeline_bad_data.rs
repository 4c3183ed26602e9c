//! Nothing lost, nothing invented: rows are a function of the input (not of batching or
//! clocks), a missing measure is not a zero, a record without a key field is a dead letter,
//! one bad clock cannot poison the stream, and garbage of every kind is accounted for.

use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};
use llm_optimizer_processor::*;
use std::path::Path;
use std::time::Duration;

/// The processor's default pipeline shape: key model+region, latency, 1-min tumbling
/// windows, 30 s out-of-orderness, 60 s allowed lateness, late records and dead letters to
/// files in `dir`.
fn pipeline(dir: &Path, emit_every: Duration) -> PipelineBuilder<FeedbackEvent> {
    let bounded = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
    let b = create_pipeline::<FeedbackEvent>()
        .with_key_fields(&["model", "region"])
        .with_value_field("latency_ms")
        .with_tumbling_window(Duration::from_secs(60))
        .with_late_event_handler(
            LateEventHandler::new(Duration::from_secs(60))
                .with_side_output(DeadLetterSink::new("late-events").with_dir(dir)),
        )
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("dead-letter").with_dir(dir)),
        );
    if emit_every.is_zero() {
        b.with_watermark_generator(bounded)
    } else {
        b.with_watermark_generator(PeriodicWatermarkGenerator::new(
            emit_every,
            Box::new(bounded),
        ))
    }
}

fn lines(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn run_file(
    dir: &Path,
    input: &[u8],
    emit_every: Duration,
) -> (RunSummary, Vec<AggregationResult>) {
    run_file_at(dir, input, emit_every, 1).await
}

async fn run_file_at(
    dir: &Path,
    input: &[u8],
    emit_every: Duration,
    parallelism: usize,
) -> (RunSummary, Vec<AggregationResult>) {
    let path = dir.join("events.jsonl");
    std::fs::write(&path, input).unwrap();
    let rows = CollectorSink::new();
    let summary = pipeline(dir, emit_every)
        .with_parallelism(parallelism)
        .with_file_source(&path)
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    (summary, rows.items())
}

/// 100 events of one key a second apart from 2026-01-01T00:00:00Z, with `extra` (a line)
/// before the eleventh.
fn hundred_events_with(extra: &str) -> String {
    let mut input = String::new();
    for i in 0..100 {
        if i == 10 {
            input.push_str(extra);
            input.push('\n');
        }
        input.push_str(&format!(
            r#"{{"timestamp":"2026-01-01T00:{:02}:{:02}Z","model":"m","region":"r","latency_ms":1}}"#,
            i / 60,
            i % 60
        ));
        input.push('\n');
    }
    input
}

/// A row as (key, window start s, count, is_update).
fn brief(r: &AggregationResult) -> (String, i64, f64, bool) {
    (
        r.key.to_string(),
        r.window.start_millis() / 1000,
        r.results["count"],
        r.is_update,
    )
}

#[tokio::test]
async fn a_late_but_allowed_event_updates_a_fired_window_whatever_the_speed() {
    // 00:00:00, 00:01:40, then 00:00:10: the second pushes the watermark to 00:01:10,
    // which fires [00:00, 00:01); the third is late but allowed, so it updates that row.
    let input = concat!(
        r#"{"timestamp":"2026-01-01T00:00:00Z","model":"m","region":"r","latency_ms":1}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:01:40Z","model":"m","region":"r","latency_ms":2}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:10Z","model":"m","region":"r","latency_ms":3}"#,
        "\n",
    );
    let start = 1_767_225_600;
    let key = "model=m,region=r".to_string();
    for every in [Duration::ZERO, Duration::from_secs(10)] {
        let dir = tempfile::tempdir().unwrap();
        let (summary, rows) = run_file(dir.path(), input.as_bytes(), every).await;
        let rows: Vec<_> = rows.iter().map(brief).collect();
        assert_eq!(
            rows,
            [
                (key.clone(), start, 1.0, false),
                (key.clone(), start, 2.0, true),
                (key.clone(), start + 60, 1.0, false),
            ],
            "emit interval {every:?}"
        );
        assert_eq!(summary.update_rows, 1);
    }
}

#[tokio::test]
async fn rows_are_the_same_whatever_the_batches() {
    let events = generate(&WorkloadSpec {
        events: 30_000,
        seed: 11,
        span_ms: 30 * 60 * 1000,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let every = Duration::from_secs(10);
    // A file: batches of up to 1024 records.
    let (s_file, from_file) = run_file(dir.path(), &to_json_lines(&events), every).await;
    assert!(
        s_file.events_late > 0 && s_file.update_rows > 0,
        "{s_file:?}"
    );
    // A channel fed one event at a time: batches of one.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let feeder = {
        let events = events.clone();
        tokio::spawn(async move {
            for e in events {
                tx.send(e).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let rows = CollectorSink::new();
    let s_chan = pipeline(dir.path(), every)
        .with_channel_source(rx)
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    feeder.await.unwrap();
    let from_channel = rows.items();
    assert_eq!(s_file.events_late, s_chan.events_late);
    assert_eq!(s_file.update_rows, s_chan.update_rows);
    assert_eq!(from_file.len(), from_channel.len());
    for (a, b) in from_file.iter().zip(&from_channel) {
        assert_eq!(
            serde_json::to_string(a).unwrap(),
            serde_json::to_string(b).unwrap(),
            "the same rows, flags and order"
        );
    }
}

#[tokio::test]
async fn a_missing_measure_is_not_a_zero_and_a_missing_key_is_a_dead_letter() {
    let input = concat!(
        r#"{"timestamp":"2026-01-01T00:00:01Z","model":"m","region":"r","latency_ms":100}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:02Z","model":"m","region":"r"}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:03Z","model":"m","region":"r","latency_ms":null}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:04Z","region":"r","latency_ms":7}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:05Z","model":null,"region":"r","latency_ms":7}"#,
        "\n",
        r#"{"timestamp":"2026-01-01T00:00:06Z","model":"m","region":"r","latency_ms":300}"#,
        "\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let (summary, rows) = run_file(dir.path(), input.as_bytes(), Duration::ZERO).await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0].results;
    assert_eq!(
        summary.events_aggregated, 4,
        "unmeasured events are taken in"
    );
    assert_eq!(r["count"], 2.0, "`count` counts measured values");
    assert_eq!(r["min"], 100.0, "not 0");
    assert_eq!(r["average"], 200.0, "not 100");
    assert_eq!(summary.events_dead_lettered, 2);
    let dead = lines(dir.path(), "dead-letter.jsonl");
    assert_eq!(dead.len(), 2);
    for d in &dead {
        assert_eq!(d["kind"], "missing_key_field");
        assert_eq!(d["reason"], "missing key field `model`");
    }
}

#[tokio::test]
async fn a_record_from_the_far_future_does_not_poison_the_stream() {
    let input = hundred_events_with(
        r#"{"timestamp":"9999-12-31T23:59:59Z","model":"m","region":"r","latency_ms":1}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let (summary, rows) = run_file(dir.path(), input.as_bytes(), Duration::ZERO).await;
    assert_eq!(
        summary.events_late, 0,
        "nothing is behind a year-9999 watermark"
    );
    assert_eq!(summary.events_aggregated, 100);
    assert_eq!(summary.events_dead_lettered, 1);
    let dead = lines(dir.path(), "dead-letter.jsonl");
    assert_eq!(dead[0]["kind"], "clock_skew");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("9999-12-31T23:59:59"),
        "{}",
        dead[0]["reason"]
    );
    assert_eq!(rows.iter().map(|r| r.results["count"]).sum::<f64>(), 100.0);

    // Off: the same record moves the watermark to year 9999 (what the guard prevents).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &input).unwrap();
    let summary = pipeline(dir.path(), Duration::ZERO)
        .with_max_future_skew(Duration::ZERO)
        .with_file_source(&path)
        .with_sink(CollectorSink::new())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(summary.events_late, 90);
}

/// A record that is a dead letter (here: no key) moves no watermark, at any parallelism:
/// its timestamp an hour ahead would otherwise close every window and make the rest late.
#[tokio::test]
async fn a_dead_lettered_record_moves_no_watermark() {
    let input =
        hundred_events_with(r#"{"timestamp":"2026-01-01T01:00:00Z","region":"r","latency_ms":1}"#);
    for parallelism in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (summary, rows) =
            run_file_at(dir.path(), input.as_bytes(), Duration::ZERO, parallelism).await;
        assert_eq!(
            (
                summary.events_aggregated,
                summary.events_late,
                summary.events_dead_lettered
            ),
            (100, 0, 1),
            "parallelism {parallelism}"
        );
        let dead = lines(dir.path(), "dead-letter.jsonl");
        assert_eq!(dead[0]["kind"], "missing_key_field");
        assert_eq!(rows.iter().map(|r| r.results["count"]).sum::<f64>(), 100.0);
        assert!(rows.iter().all(|r| !r.is_update));
    }
}

#[tokio::test]
async fn garbage_of_every_kind_is_accounted_for_and_every_dead_letter_is_in_its_file() {
    let ok = |s: u32| {
        format!(r#"{{"timestamp":"2026-01-01T00:00:{s:02}Z","model":"m","region":"r","latency_ms":{s}}}"#)
            .into_bytes()
    };
    let mut bad: Vec<Vec<u8>> = vec![
        vec![0, 159, 146, 150, 255, 254, 1, 2, 3], // binary
        [b"{\"timestamp\":\"".as_slice(), &vec![b'a'; 10 << 20]].concat(), // a 10 MB line
        br#"{"timestamp":"2026-01-01T00:00:01Z","model":"m","region":"r","latency_ms":NaN}"#
            .to_vec(),
        br#"{"timestamp":"2026-01-01T00:00:01Z","model":"m","region":"r","latency_ms":1e400}"#
            .to_vec(),
        br#"{"timestamp":"9999-01-01T00:00:00Z","model":"m","region":"r","latency_ms":1}"#.to_vec(),
        br#"{"timestamp":"-0001-01-01T00:00:00Z","model":"m","region":"r","latency_ms":1}"#
            .to_vec(),
        br#"{"timestamp":99999999999999999999999,"model":"m","region":"r","latency_ms":1}"#
            .to_vec(),
        br#"{"timestamp":9000000000000000,"model":"m","region":"r","latency_ms":1}"#.to_vec(),
        br#"{"model":"m","region":"r","latency_ms":1}"#.to_vec(),
        br#"{"timestamp":"2026-01-01T00:00:01Z","region":"r","latency_ms":1}"#.to_vec(),
        br#"[1,2,3]"#.to_vec(),
        br#""a string""#.to_vec(),
        br#"42"#.to_vec(),
        br#"null"#.to_vec(),
        br#"{"timestamp":"2026-01-01T00:00:01Z","model":"a","model":"b","region":"r"}"#.to_vec(),
        [
            b"{\"timestamp\":\"2026-01-01T00:00:01Z\",\"model\":\"".as_slice(),
            &[0xff, 0xfe],
            b"\",\"region\":\"r\"}",
        ]
        .concat(),
    ];
    // Year -1 parses in some RFC 3339 readers: then it is late, not lost; both count.
    let mut input = Vec::new();
    for (i, line) in bad.iter().enumerate() {
        input.extend_from_slice(&ok(i as u32));
        input.extend_from_slice(b"\r\n"); // CRLF: read as a normal line
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(&ok(59));
    input.push(b'\n');
    let dir = tempfile::tempdir().unwrap();
    let (s, rows) = run_file(dir.path(), &input, Duration::ZERO).await;
    assert_eq!(s.events_in, bad.len() as u64 * 2 + 1);
    assert_eq!(
        s.events_in,
        s.events_aggregated + s.events_late + s.events_dead_lettered + s.events_skipped,
        "{s:?}"
    );
    assert_eq!(
        s.events_aggregated,
        bad.len() as u64 + 1,
        "every good line: {s:?}"
    );
    assert_eq!(
        rows.iter().map(|r| r.results["count"]).sum::<f64>(),
        s.events_aggregated as f64
    );
    let dead = lines(dir.path(), "dead-letter.jsonl");
    let late = lines(dir.path(), "late-events.jsonl");
    assert_eq!(dead.len() as u64, s.events_dead_lettered);
    assert_eq!(late.len() as u64, s.events_late);
    let written: Vec<&str> = dead
        .iter()
        .chain(&late)
        .map(|d| d["payload"].as_str().unwrap())
        .collect();
    for line in bad.drain(..) {
        let text = String::from_utf8_lossy(&line).into_owned();
        assert!(
            written.contains(&text.as_str()),
            "not in the dead letters: {}",
            &text[..text.len().min(80)]
        );
    }
}
