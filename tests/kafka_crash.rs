//! A Kafka run killed with SIGKILL at random moments: the real `processor` binary reads a
//! three-partition topic (every key on every partition, malformed records among them) into
//! a file output with file side outputs, checkpointing every 200 ms; it is killed five
//! times and restarted in the same folder each time, then events an hour on close every
//! window. Its rows, dead letters and late records equal, as multisets, those of the same
//! configuration over a file of the same events: nothing lost, nothing published twice.
//!
//! The late events are an hour older than the first event and come after a partition's
//! first records, so they are late whatever the partitions' interleaving (a partition's own
//! watermark already rules them out), in the file run as over Kafka.
#![cfg(feature = "kafka")]

#[path = "support/child.rs"]
mod child;
#[path = "support/kafka.rs"]
mod kafka;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use child::{Proc, DEADLINE};
use kafka::{bootstrap, canonical, create_topic, produce, unique, Record};
use llm_optimizer_processor::workload::{generate, WorkloadSpec};
use llm_optimizer_processor::FeedbackEvent;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 3;
const KILLS: usize = 5;

fn config(dir: &Path, topic: &str, group: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            r#"processor:
  parallelism: 2
  checkpoint_interval_secs: 0.2
  state: {{ backend: memory, checkpoint_path: {dir}/checkpoints }}
  windows:
    default_type: tumbling
    tumbling: {{ size_secs: 60, allowed_lateness_secs: 0 }}
  watermark: {{ max_out_of_orderness_secs: 30, emit_interval_secs: 0 }}
  source: {{ kind: kafka }}
  output: {{ kind: file, path: {dir}/rows.jsonl }}
  kafka:
    consumer:
      bootstrap_servers: "{servers}"
      group_id: {group}
      topics: [{topic}]
      session_timeout_ms: 30000
"#,
            dir = dir.display(),
            servers = bootstrap(),
        ),
    )
    .unwrap();
    path
}

fn command(dir: &Path, config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_processor"));
    c.current_dir(dir)
        .args(["run", "--config"])
        .arg(config)
        .env("PROCESSOR_DEAD_LETTER_DIR", dir.join("dead-letter"))
        .env("RUST_LOG", "info");
    c
}

/// Every row of `file`, floats canonical, sorted.
fn rows(file: &Path) -> Vec<String> {
    let mut rows: Vec<String> = std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains("sentinel"))
        .map(|l| canonical(&serde_json::from_str(l).unwrap()).to_string())
        .collect();
    rows.sort();
    rows
}

/// The kind and payload of every dead letter and late record in `dir`, sorted.
fn dead_letters(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("a torn dead letter ({err}): {line}"));
            out.push(format!("{}|{}", v["kind"], v["payload"]));
        }
    }
    out.sort();
    out
}

#[test]
fn a_kafka_run_killed_five_times_writes_each_row_dead_letter_and_late_record_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let root = tempfile::tempdir().unwrap();
    let (expected_dir, killed_dir) = (root.path().join("file"), root.path().join("kafka"));
    std::fs::create_dir_all(&expected_dir).unwrap();
    std::fs::create_dir_all(&killed_dir).unwrap();
    let topic = unique("crash");
    let group = unique("crash-group");
    rt.block_on(create_topic(&topic, PARTITIONS));

    // Two hours of events with disorder inside the 30 s bound, every key on every
    // partition, ten malformed records; then an event an hour on in every partition.
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let mut events: Vec<FeedbackEvent> = generate(&WorkloadSpec {
        events: 2_400,
        seed: 11,
        start,
        models: 4,
        regions: 2,
        ..Default::default()
    });
    let mut newest = i64::MIN;
    events.retain(|e| {
        let t = e.timestamp.timestamp_millis();
        newest = newest.max(t);
        t >= newest - 25_000
    });
    let last = events.iter().map(|e| e.timestamp).max().unwrap();
    let mut lines: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    for i in 0..10 {
        lines.insert(100 + i * 200, format!("{{not json {i}").into_bytes());
    }
    for i in 0..10 {
        let e = FeedbackEvent {
            event_id: format!("late-{i}"),
            timestamp: start - chrono::Duration::hours(1) + chrono::Duration::seconds(i),
            model: "late".into(),
            region: "r".into(),
            latency_ms: i as f64,
            ..Default::default()
        };
        lines.insert(150 + i as usize * 200, serde_json::to_vec(&e).unwrap());
    }
    let records: Vec<Record> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| ((i as i32) % PARTITIONS, format!("r{i}"), l.clone()))
        .collect();
    let sentinels: Vec<Record> = (0..PARTITIONS)
        .map(|p| {
            let e = FeedbackEvent {
                timestamp: last + chrono::Duration::hours(1),
                model: "sentinel".into(),
                region: format!("p{p}"),
                latency_ms: 1.0,
                ..Default::default()
            };
            (p, "sentinel".into(), serde_json::to_vec(&e).unwrap())
        })
        .collect();

    // The same configuration over a file of the same lines: what to expect.
    let mut file_lines = lines.clone();
    file_lines.extend(sentinels.iter().map(|r| r.2.clone()));
    let mut text = file_lines.join(&b'\n');
    text.push(b'\n');
    std::fs::write(expected_dir.join("events.jsonl"), &text).unwrap();
    let cfg = config(&expected_dir, &topic, &group);
    let out = child::run(
        command(&expected_dir, &cfg)
            .env("PROCESSOR_SOURCE__KIND", "file")
            .env("PROCESSOR_SOURCE__PATH", expected_dir.join("events.jsonl")),
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = rows(&expected_dir.join("rows.jsonl"));
    let want_dead = dead_letters(&expected_dir.join("dead-letter"));
    assert!(
        want.len() > 100
            && want_dead
                .iter()
                .filter(|d| d.contains("deserialization"))
                .count()
                == 10
            && want_dead
                .iter()
                .filter(|d| d.starts_with("\"late\""))
                .count()
                == 10,
        "{} rows, side records {want_dead:#?}",
        want.len()
    );

    // The Kafka run, killed at random moments while the records arrive in three parts.
    rt.block_on(produce(&topic, &records[..records.len() / 3]));
    let cfg = config(&killed_dir, &topic, &group);
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let parts = [
        &records[records.len() / 3..records.len() * 2 / 3],
        &records[records.len() * 2 / 3..],
    ];
    for kill in 0..KILLS {
        let mut child = Proc::spawn(&mut command(&killed_dir, &cfg));
        if let Some(part) = parts.get(kill) {
            rt.block_on(produce(&topic, part));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2_500)));
        if child.try_wait().is_some() {
            child.fail(&format!("start {} ended before its kill", kill + 1));
        }
        child.kill();
    }
    // The last start: the sentinels close every window; it stops on SIGTERM once the
    // rows are in.
    let mut child = Proc::spawn(&mut command(&killed_dir, &cfg));
    rt.block_on(produce(&topic, &sentinels));
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows(&killed_dir.join("rows.jsonl")).len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Checkpoints publish the file output; one more interval, then stop.
    std::thread::sleep(Duration::from_secs(1));
    child.signal("TERM");
    let status = child.wait(Duration::from_secs(60));
    if !status.success() {
        child.fail(&format!("the last start failed: {status}"));
    }
    let log = child.stderr_text();
    assert!(
        log.contains("resuming from checkpoint"),
        "the last start restored:\n{log}"
    );
    let got = rows(&killed_dir.join("rows.jsonl"));
    let got_dead = dead_letters(&killed_dir.join("dead-letter"));
    if got != want || got_dead != want_dead {
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).collect();
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).collect();
        child.fail(&format!(
            "rows: {} instead of {} ({} missing, {} not expected; the first: {:#?} {:#?}); dead letters and late records: {} instead of {}",
            got.len(),
            want.len(),
            missing.len(),
            extra.len(),
            missing.first(),
            extra.first(),
            got_dead.len(),
            want_dead.len()
        ));
    }
}
