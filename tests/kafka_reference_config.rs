//! The API reference's "Complete Configuration Example" (`config/reference-complete.yaml`)
//! run as written against the local broker (`scripts/kafka-up`): RocksDB state, the retry
//! policy, both topics, lz4 and `acks: all` on the producer, `parallelism: 4`. Only what
//! cannot be as written on a test machine is overridden by `PROCESSOR_…` variables: the
//! bootstrap servers, the state paths, the metrics port, and `source.kind` / `output.kind`
//! (our extension: without them the processor reads its bundled sample). Events go to
//! `feedback-events` and `performance-metrics`, every key on every partition of both; every
//! row read back from `aggregated-metrics` (not only the latest per key: a partial or a
//! duplicate row shows) equals the same configuration's rows over a file, and the
//! malformed records are in `processor-dead-letter`.
#![cfg(all(feature = "kafka", feature = "rocksdb"))]

#[path = "support/child.rs"]
mod child;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use child::{Proc, DEADLINE};

use kafka::{bootstrap, canonical, create_topic, produce, read_topic, unique, Read, Record};
use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};
use llm_optimizer_processor::FeedbackEvent;

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/reference-complete.yaml"
);
/// Partitions of the two input topics: six partitions over four workers.
const TOPICS: [(&str, i32); 2] = [("feedback-events", 4), ("performance-metrics", 2)];

/// What differs from the reference: where things are on this machine.
fn overrides(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PROCESSOR_KAFKA__CONSUMER__BOOTSTRAP_SERVERS", bootstrap()),
        ("PROCESSOR_KAFKA__PRODUCER__BOOTSTRAP_SERVERS", bootstrap()),
        (
            "PROCESSOR_STATE__PATH",
            dir.join("state").display().to_string(),
        ),
        (
            "PROCESSOR_STATE__CHECKPOINT_PATH",
            dir.join("checkpoints").display().to_string(),
        ),
        ("PROCESSOR_METRICS__ADDRESS", "127.0.0.1:0".into()),
        (
            "PROCESSOR_DEAD_LETTER_DIR",
            dir.join("dead-letter").display().to_string(),
        ),
    ]
}

/// The key of a row: model, region and window start.
fn row_key(v: &serde_json::Value) -> String {
    format!("{}|{}|{}", v["model"], v["region"], v["window_start"])
}

/// Rows by key and window.
type Rows = BTreeMap<String, serde_json::Value>;

/// The reference's configuration over `events` as a file (in `dir`): the rows to expect.
fn file_rows(dir: &Path, events: &[FeedbackEvent]) -> Rows {
    std::fs::write(dir.join("events.jsonl"), to_json_lines(events)).unwrap();
    let out = child::run(
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .current_dir(dir)
            .args(["run", "--config", REFERENCE, "--input", "events.jsonl"])
            .args(["--output", "expected.jsonl"])
            .envs(overrides(&dir.join("file"))),
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Rows = std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| canonical(&serde_json::from_str::<serde_json::Value>(l).unwrap()))
        .map(|v| (row_key(&v), v))
        .collect();
    assert!(want.len() > 100, "{} rows expected", want.len());
    want
}

/// This run's rows among what was read (other runs' rows and the sentinels left out),
/// floats canonical.
fn our_rows<'a>(run: &'a str, reads: &'a [Read]) -> impl Iterator<Item = serde_json::Value> + 'a {
    reads
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.payload).ok())
        .filter(move |v| {
            v["model"]
                .as_str()
                .is_some_and(|m| m.starts_with(run) && !m.ends_with("sentinel"))
        })
        .map(|v| canonical(&v))
}

/// This run's rows by key and window.
fn ours(run: &str, reads: &[Read]) -> Rows {
    our_rows(run, reads).map(|v| (row_key(&v), v)).collect()
}

/// Every row of this run among what was read, as text, sorted: a multiset, in which a
/// partial or a repeated row shows.
fn all_ours(run: &str, reads: &[Read]) -> Vec<String> {
    let mut rows: Vec<String> = our_rows(run, reads).map(|v| v.to_string()).collect();
    rows.sort();
    rows
}

/// Every row of the file run (`file_rows` wrote them to `dir/expected.jsonl`), as
/// [`all_ours`] gives them.
fn all_file_rows(dir: &Path) -> Vec<String> {
    let mut rows: Vec<String> = std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| canonical(&serde_json::from_str::<serde_json::Value>(l).unwrap()).to_string())
        .collect();
    rows.sort();
    rows
}

/// Reads `topic` until this run's `expected` rows are in, or `timeout`.
async fn read_rows(topic: &str, run: &str, expected: usize, timeout: Duration) -> Rows {
    let (topic, run) = (topic.to_owned(), run.to_owned());
    tokio::task::spawn_blocking(move || {
        let rows = read_topic(&topic, timeout, |r| ours(&run, r).len() >= expected);
        ours(&run, &rows)
    })
    .await
    .unwrap()
}

/// 1,200 events of this run's own models (so rows of earlier runs on the same broker are
/// told apart), with disorder inside the reference's 30 s bound, one day back.
fn workload(run: &str) -> Vec<FeedbackEvent> {
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let start = start - chrono::Duration::seconds(start.timestamp() % 3600);
    let mut events = generate(&WorkloadSpec {
        events: 1_200,
        seed: 5,
        start,
        models: 5,
        regions: 3,
        ..Default::default()
    });
    let mut newest = i64::MIN;
    events.retain(|e| {
        let t = e.timestamp.timestamp_millis();
        newest = newest.max(t);
        t >= newest - 25_000
    });
    for e in &mut events {
        e.model = format!("{run}-{}", e.model);
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_configuration_runs_as_written_at_parallelism_4() {
    let dir = tempfile::tempdir().unwrap();
    let run = unique("ref");
    for (topic, partitions) in TOPICS {
        create_topic(topic, partitions).await;
    }
    for topic in ["aggregated-metrics", "processor-dead-letter", "late-events"] {
        create_topic(topic, 1).await;
    }
    let events = workload(&run);

    // The same configuration over a file: the rows to expect.
    let want = file_rows(dir.path(), &events);

    // Every key on every partition of both topics, at random (producers keyed by request,
    // not by the grouping key); then, in every partition, one event three hours on (it
    // moves every partition's watermark past the last window) and two malformed records in
    // the first.
    let partitions: Vec<(usize, i32)> = TOPICS
        .iter()
        .enumerate()
        .flat_map(|(t, (_, n))| (0..*n).map(move |p| (t, p)))
        .collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut records: Vec<Vec<Record>> = vec![Vec::new(); TOPICS.len()];
    let mut homes: BTreeMap<String, std::collections::BTreeSet<(usize, i32)>> = BTreeMap::new();
    for e in &events {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (t, p) = partitions[(seed % partitions.len() as u64) as usize];
        homes
            .entry(format!("{}/{}", e.model, e.region))
            .or_default()
            .insert((t, p));
        records[t].push((p, e.event_id.clone(), serde_json::to_vec(e).unwrap()));
    }
    assert!(
        homes.values().all(|h| h.len() == partitions.len()),
        "every key on every partition: {homes:?}"
    );
    let last = events.iter().map(|e| e.timestamp).max().unwrap();
    for (t, (_, partitions)) in TOPICS.iter().enumerate() {
        for p in 0..*partitions {
            let e = FeedbackEvent {
                event_id: format!("sentinel-{t}-{p}"),
                timestamp: last + chrono::Duration::hours(3),
                model: format!("{run}-sentinel"),
                region: format!("t{t}p{p}"),
                latency_ms: 1.0,
                ..Default::default()
            };
            records[t].push((p, "sentinel".into(), serde_json::to_vec(&e).unwrap()));
        }
    }
    for i in 0..2 {
        records[0].push((0, "bad".into(), format!("not json {run} {i}").into_bytes()));
    }
    for (t, (topic, _)) in TOPICS.iter().enumerate() {
        produce(topic, &records[t]).await;
    }

    // The reference's configuration, as written, from Kafka to Kafka.
    // Killed when dropped, however the test ends.
    let mut child = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .current_dir(dir.path())
            .args(["run", "--config", REFERENCE])
            .envs(overrides(dir.path()))
            .env("PROCESSOR_SOURCE__KIND", "kafka")
            .env("PROCESSOR_OUTPUT__KIND", "kafka")
            .env("RUST_LOG", "info"),
    );
    let got = read_rows(
        "aggregated-metrics",
        &run,
        want.len(),
        Duration::from_secs(240),
    )
    .await;
    let text = child.stderr_text();
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(3)
        .collect();
    let different: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, v)| format!("{k}: want {v}, got {}", got[k]))
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && different.is_empty() && got.len() == want.len(),
        "{} rows expected, {} read; missing {missing:?}; different {different:#?}\nlog:\n{text}",
        want.len(),
        got.len()
    );

    let dead = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            read_topic("processor-dead-letter", Duration::from_secs(60), |r| {
                r.iter().filter(|d| d.payload.contains(&run)).count() >= 2
            })
        }
    })
    .await
    .unwrap();
    assert_eq!(
        dead.iter().filter(|d| d.payload.contains(&run)).count(),
        2,
        "both malformed records dead-lettered"
    );

    // Four workers ran, and the processor stops cleanly on SIGTERM.
    let text = child.stderr_text();
    assert!(text.contains("parallelism=4"), "{text}");
    assert!(text.contains("partition assigned"), "{text}");
    child.signal("TERM");
    let status = child.wait(Duration::from_secs(60));
    if !status.success() {
        child.fail(&format!("the processor failed after SIGTERM: {status}"));
    }

    // Every row, not only the latest per key: one per key and window, as in the file run
    // (no event is late in either order, so no update row either).
    // Read up to a marker written after the processor ended (the topic has one partition).
    let marker = format!("end of {run}");
    produce(
        "aggregated-metrics",
        &[(0, "end".into(), marker.clone().into_bytes())],
    )
    .await;
    let all = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            let reads = read_topic("aggregated-metrics", Duration::from_secs(120), |r| {
                r.iter().any(|x| x.payload == marker)
            });
            assert!(
                reads.iter().any(|x| x.payload == marker),
                "the marker was read"
            );
            all_ours(&run, &reads)
        }
    })
    .await
    .unwrap();
    let want_all = all_file_rows(dir.path());
    assert_eq!(
        want_all.len(),
        want.len(),
        "the file run: one row per key and window"
    );
    if all != want_all {
        let extra: Vec<_> = all
            .iter()
            .filter(|r| !want_all.contains(r))
            .take(3)
            .collect();
        panic!(
            "{} rows expected, {} read; not expected: {extra:#?}",
            want_all.len(),
            all.len()
        );
    }
}

/// The reference's configuration with its second topic empty: with
/// `watermark.idle_timeout_secs` the empty topic's partitions stop holding the watermark
/// back, and every window fires (without it, none ever did). Topics and group of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_topic_does_not_stall_the_windows() {
    let dir = tempfile::tempdir().unwrap();
    let run = unique("idle");
    let (busy, empty) = (format!("{run}-feedback"), format!("{run}-metrics"));
    // Rows to a topic of its own: the shared one grows with every run of the other test.
    let rows_topic = format!("{run}-rows");
    create_topic(&busy, 4).await;
    create_topic(&empty, 2).await;
    create_topic(&rows_topic, 1).await;
    for topic in ["processor-dead-letter", "late-events"] {
        create_topic(topic, 1).await;
    }
    let events = workload(&run);
    let want = file_rows(dir.path(), &events);

    // Every key on every partition of the busy topic, then one event three hours on in
    // each of its partitions; nothing to the other topic.
    let mut records: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                (i % 4) as i32,
                e.event_id.clone(),
                serde_json::to_vec(e).unwrap(),
            )
        })
        .collect();
    let last = events.iter().map(|e| e.timestamp).max().unwrap();
    for p in 0..4 {
        let e = FeedbackEvent {
            timestamp: last + chrono::Duration::hours(3),
            model: format!("{run}-sentinel"),
            region: format!("p{p}"),
            latency_ms: 1.0,
            ..Default::default()
        };
        records.push((p, "sentinel".into(), serde_json::to_vec(&e).unwrap()));
    }
    produce(&busy, &records).await;

    let mut child = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .current_dir(dir.path())
            .args(["run", "--config", REFERENCE])
            .envs(overrides(dir.path()))
            .env("PROCESSOR_KAFKA__CONSUMER__GROUP_ID", &run)
            .env(
                "PROCESSOR_KAFKA__CONSUMER__TOPICS",
                format!("[{busy}, {empty}]"),
            )
            .env("PROCESSOR_KAFKA__PRODUCER__RESULT_TOPIC", &rows_topic)
            // The default `watermark.idle_timeout_secs` (30): long enough for every busy
            // partition's first fetch on a loaded broker (a partition whose backlog has not
            // arrived within it is passed over: see the README).
            .env("PROCESSOR_SOURCE__KIND", "kafka")
            .env("PROCESSOR_OUTPUT__KIND", "kafka")
            .env("RUST_LOG", "info"),
    );
    let got = read_rows(&rows_topic, &run, want.len(), Duration::from_secs(180)).await;
    if got != want {
        child.fail(&format!(
            "{} rows expected, {} read, {} of them different",
            want.len(),
            got.len(),
            want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).count()
        ));
    }
    child.signal("TERM");
    let status = child.wait(Duration::from_secs(60));
    if !status.success() {
        child.fail(&format!("the processor failed after SIGTERM: {status}"));
    }
}
