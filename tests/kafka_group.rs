//! Several `processor` instances in one consumer group, against a real broker
//! (`scripts/kafka-up`): two instances split the partitions and together write exactly
//! the rows one pipeline computes over a file; an instance killed with SIGKILL mid-run
//! has its partitions taken over (state from its partition checkpoints, records from
//! its offsets) by the survivor, with nothing lost.
#![cfg(feature = "kafka")]

#[path = "support/child.rs"]
mod child;
#[path = "support/kafka.rs"]
mod kafka;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use child::{Proc, DEADLINE};

use kafka::{bootstrap, create_topic, produce_to, read_topic_from, unique, Read, Record};
use llm_optimizer_processor::workload::{generate, WorkloadSpec};
use llm_optimizer_processor::FeedbackEvent;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

const PARTITIONS: i32 = 4;

struct Setup {
    /// The broker: tansu from scripts/kafka-up, or librdkafka's mock cluster.
    servers: String,
    dir: tempfile::TempDir,
    events: String,
    rows: String,
    group: String,
}

fn config(dir: &Path, s: &Setup, kafka: bool) -> PathBuf {
    let (name, source, output, interval) = if kafka {
        ("kafka.yaml", "kafka", "kafka", 0.2)
    } else {
        ("file.yaml", "file", "file", 0.0)
    };
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"processor:
  checkpoint_interval_secs: {interval}
  state:
    backend: memory
    checkpoint_path: {dir}/checkpoints
  windows:
    default_type: tumbling
    tumbling: {{ size_secs: 600, allowed_lateness_secs: 60 }}
  watermark:
    max_out_of_orderness_secs: 400
    emit_interval_secs: 0
  source: {{ kind: {source}, path: {dir}/events.jsonl }}
  output: {{ kind: {output}, path: {dir}/expected.jsonl }}
  error_handling: {{ dead_letter_topic: {dead} }}
  kafka:
    # The producers key each record by its model and region: the instances split the
    # partitions, each partition's state moving with it.
    partitioned_by_key: true
    consumer:
      bootstrap_servers: "{bootstrap}"
      group_id: {group}
      topics: [{events}]
      session_timeout_ms: {session}
    producer:
      bootstrap_servers: "{bootstrap}"
      result_topic: {rows}
"#,
            dir = dir.display(),
            dead = format_args!("{}-dead", s.events),
            bootstrap = s.servers,
            // tansu answers heartbeats slowly while it stores records: a long session.
            session = if s.servers == bootstrap() {
                30_000
            } else {
                6_000
            },
            group = s.group,
            events = s.events,
            rows = s.rows,
        ),
    )
    .unwrap();
    path
}

async fn setup(mock: Option<&MockCluster<'static, DefaultProducerContext>>) -> Setup {
    let s = Setup {
        servers: mock.map_or_else(bootstrap, |m| m.bootstrap_servers()),
        dir: tempfile::tempdir().unwrap(),
        events: unique("group-events"),
        rows: unique("group-rows"),
        group: unique("group"),
    };
    let topics = [
        (s.events.clone(), PARTITIONS),
        (s.rows.clone(), 1),
        (format!("{}-dead", s.events), 1),
        ("late-events".to_owned(), 1),
    ];
    for (topic, partitions) in topics {
        match mock {
            Some(m) => m.create_topic(&topic, partitions, 1).unwrap(),
            None => create_topic(&topic, partitions).await,
        }
    }
    config(s.dir.path(), &s, true);
    config(s.dir.path(), &s, false);
    s
}

/// 2,000 generated events (two hours of event time, disorder up to 300 s, inside the
/// watermark bound: with no late events, per-partition and global watermarks admit the
/// same events), each to the partition of its (model, region) key; then one event per partition far ahead, which
/// moves every partition's watermark past the last window.
fn workload() -> (Vec<FeedbackEvent>, Vec<Record>) {
    let events = generate(&WorkloadSpec {
        events: 2_000,
        seed: 11,
        ..Default::default()
    });
    let partition = |e: &FeedbackEvent| {
        let h = e
            .model
            .bytes()
            .chain(e.region.bytes())
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        (h % PARTITIONS as u32) as i32
    };
    let mut recs: Vec<_> = events
        .iter()
        .map(|e| {
            (
                partition(e),
                format!("{}/{}", e.model, e.region),
                serde_json::to_vec(e).unwrap(),
            )
        })
        .collect();
    let last = events.iter().map(|e| e.timestamp).max().unwrap();
    for p in 0..PARTITIONS {
        let e = FeedbackEvent {
            event_id: format!("sentinel-{p}"),
            timestamp: last + chrono::Duration::hours(3),
            model: "sentinel".into(),
            region: format!("p{p}"),
            latency_ms: 1.0,
            ..Default::default()
        };
        recs.push((p, "sentinel".into(), serde_json::to_vec(&e).unwrap()));
    }
    (events, recs)
}

/// The rows of the same pipeline over a file, by message key (`<key>@<window start>`).
fn expected(s: &Setup, events: &[FeedbackEvent]) -> BTreeMap<String, serde_json::Value> {
    let dir = s.dir.path();
    std::fs::write(
        dir.join("events.jsonl"),
        llm_optimizer_processor::workload::to_json_lines(events),
    )
    .unwrap();
    let out = child::run(
        Command::new(env!("CARGO_BIN_EXE_processor"))
            .current_dir(dir)
            .args(["run", "--config"])
            .arg(dir.join("file.yaml"))
            .env("PROCESSOR_DEAD_LETTER_DIR", dir.join("dead-letter")),
        DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        // The processor writes flat rows (`FlatRow`).
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        rows.insert(flat_key(&v), v);
    }
    rows
}

/// The key and window of a flat row.
fn flat_key(v: &serde_json::Value) -> String {
    format!("{}|{}|{}", v["model"], v["region"], v["window_start"])
}

fn latest(rows: &[Read]) -> BTreeMap<String, serde_json::Value> {
    rows.iter()
        .filter(|r| !r.payload.contains("sentinel"))
        .map(|r| {
            // The processor writes flat rows to Kafka too, keyed `<key>@<window start>`.
            let v: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            assert_eq!(
                r.key.as_deref(),
                Some(
                    format!(
                        "model={},region={}@{}",
                        v["model"].as_str().unwrap(),
                        v["region"].as_str().unwrap(),
                        chrono::DateTime::parse_from_rfc3339(v["window_start"].as_str().unwrap())
                            .unwrap()
                            .to_rfc3339()
                    )
                    .as_str()
                ),
            );
            (flat_key(&v), v)
        })
        .collect()
}

fn compare(want: &BTreeMap<String, serde_json::Value>, got: &BTreeMap<String, serde_json::Value>) {
    // tansu (sqlite) reads a topic slower the longer it gets: keep it to a few hundred rows.
    assert!(want.len() > 100, "{} rows expected", want.len());
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, v)| format!("{k}: want {v}, got {}", got[k]))
        .take(3)
        .collect();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    assert!(
        missing == 0 && wrong.is_empty() && extra == 0,
        "{} rows: {missing} missing, {extra} unexpected, different: {wrong:#?}",
        want.len()
    );
}

/// One `processor` of the group (killed when dropped, however the test ends).
struct Instance(Proc);

impl Instance {
    fn start(s: &Setup) -> Instance {
        let dir = s.dir.path();
        Instance(Proc::spawn(
            Command::new(env!("CARGO_BIN_EXE_processor"))
                .current_dir(dir)
                .args(["run", "--config"])
                .arg(dir.join("kafka.yaml"))
                .env("RUST_LOG", "info"),
        ))
    }

    fn log(&self) -> String {
        self.0.stderr_text()
    }

    fn assigned(&self) -> bool {
        self.log().contains("partition assigned")
    }

    /// SIGTERM: the instance checkpoints, leaves the group and exits 0 within a minute.
    fn stop(mut self) {
        self.0.signal("TERM");
        let status = self.0.wait(Duration::from_secs(60));
        if !status.success() {
            self.0.fail(&format!("the instance failed: {status}"));
        }
    }

    fn kill(mut self) {
        self.0.kill();
    }
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn read_rows(s: &Setup, want: usize) -> BTreeMap<String, serde_json::Value> {
    let (servers, topic) = (s.servers.clone(), s.rows.clone());
    let rows = tokio::task::spawn_blocking(move || {
        read_topic_from(&servers, &topic, Duration::from_secs(180), |r| {
            latest(r).len() >= want
        })
    })
    .await
    .unwrap();
    latest(&rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_partitions_and_together_write_the_single_pipeline_rows() {
    let s = setup(None).await;
    let (events, recs) = workload();
    let want = expected(&s, &events);
    // Produced first: the instance that joins first reads some of the others' records
    // before the group rebalances, so partitions move with their state mid-stream.
    produce_to(&s.servers, &s.events, &recs).await;
    let a = Instance::start(&s);
    let b = Instance::start(&s);
    let got = read_rows(&s, want.len()).await;
    if got.len() < want.len() {
        eprintln!("A:\n{}\nB:\n{}", a.log(), b.log());
    }
    compare(&want, &got);
    wait_for(
        "both instances to get partitions",
        Duration::from_secs(90),
        || a.assigned() && b.assigned(),
    )
    .await;
    a.stop();
    b.stop();
}

/// On librdkafka's mock cluster (real sockets on 127.0.0.1, real processes), not tansu:
/// when a member of a formed group dies without leaving, tansu 0.6 drops it from the
/// group but gives the survivor back only its own partitions, so the dead member's
/// partitions stay unread (seen here: the survivor rejoins after the session timeout and
/// is assigned the same two of four partitions). The mock cluster's coordinator expires
/// the session and reassigns, as Kafka does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_s_partitions_are_taken_over_with_nothing_lost() {
    let mock = MockCluster::new(1).unwrap();
    let s = setup(Some(&mock)).await;
    let (events, recs) = workload();
    let want = expected(&s, &events);
    let (first, second) = recs.split_at(recs.len() / 2);
    produce_to(&s.servers, &s.events, first).await;
    let survivor = Instance::start(&s);
    wait_for(
        "the first instance to get partitions",
        Duration::from_secs(60),
        || survivor.assigned(),
    )
    .await;
    let victim = Instance::start(&s);
    wait_for(
        "the second instance to get partitions",
        Duration::from_secs(90),
        || victim.assigned(),
    )
    .await;
    // Mid-run: the victim has read some of its records and checkpointed some of those.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let victim_log = victim.log();
    victim.kill();
    produce_to(&s.servers, &s.events, second).await;
    let got = read_rows(&s, want.len()).await;
    if got.len() < want.len() {
        eprintln!("victim:\n{victim_log}\nsurvivor:\n{}", survivor.log());
    }
    compare(&want, &got);
    survivor.stop();
}
