//! A pipeline over a real Kafka broker (`scripts/kafka-up`): events produced to a
//! three-partition topic come out of the result topic as the same rows the same pipeline
//! computes over the events in memory; malformed records land in the dead-letter topic
//! with their reason and position; a stopped pipeline resumes from its checkpoint and
//! committed offsets, reading nothing twice.
#![cfg(feature = "kafka")]

#[path = "support/child.rs"]
mod child;
#[path = "support/kafka.rs"]
mod kafka;

use child::within;

/// How long a stopped pipeline may take to end (a hang guard, not a timing).
const STOPS: std::time::Duration = std::time::Duration::from_secs(120);

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::*;
use std::collections::BTreeMap;
use std::time::Duration;

use kafka::{
    bootstrap, canonical, committed, create_topic, produce, produce_timed, produce_to, read_topic,
    read_topic_from, unique, Read, Record,
};
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 3;
const MODELS: [&str; 4] = ["gpt-4o", "claude", "llama", "mistral"];
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// `n` events of 8 keys over `n` × 0.6 s, each up to 3 s out of order; a key's events all
/// go to one partition (as a producer keyed by the grouping key does).
fn events(n: usize) -> Vec<(i32, FeedbackEvent)> {
    (0..n)
        .map(|i| {
            let k = (i * 7 + i / 5) % 8;
            let jitter = ((i * 37) % 7) as i64 * 500 - 1_500;
            let ms = 1_767_225_600_000 + i as i64 * 600 + jitter;
            let e = FeedbackEvent {
                event_id: format!("ev-{i}"),
                timestamp: Utc.timestamp_millis_opt(ms).unwrap(),
                model: MODELS[k % 4].into(),
                region: REGIONS[k / 4].into(),
                latency_ms: 100.0 + ((i * 7919) % 2000) as f64,
                ..Default::default()
            };
            ((k % PARTITIONS as usize) as i32, e)
        })
        .collect()
}

/// One event per partition two hours later: moves every partition's watermark past all
/// the windows of `events`.
fn sentinels() -> Vec<(i32, FeedbackEvent)> {
    (0..PARTITIONS)
        .map(|p| {
            let e = FeedbackEvent {
                event_id: format!("sentinel-{p}"),
                timestamp: Utc.timestamp_millis_opt(1_767_240_000_000).unwrap(),
                model: "sentinel".into(),
                region: format!("p{p}"),
                latency_ms: 1.0,
                ..Default::default()
            };
            (p, e)
        })
        .collect()
}

fn records(events: &[(i32, FeedbackEvent)]) -> Vec<Record> {
    events
        .iter()
        .map(|(p, e)| {
            let key = format!("{}/{}", e.model, e.region);
            (*p, key, serde_json::to_vec(e).unwrap())
        })
        .collect()
}

fn producer(servers: &str, result_topic: &str) -> KafkaProducerConfig {
    KafkaProducerConfig {
        bootstrap_servers: servers.into(),
        result_topic: result_topic.into(),
        compression_type: "lz4".into(),
        acks: "all".into(),
        retries: 3,
    }
}

struct Topics {
    /// The broker: tansu from scripts/kafka-up, or librdkafka's mock cluster.
    servers: String,
    events: String,
    rows: String,
    dead: String,
    group: String,
}

async fn topics() -> Topics {
    let t = Topics {
        servers: bootstrap(),
        events: unique("events"),
        rows: unique("rows"),
        dead: unique("dead"),
        group: unique("group"),
    };
    create_topic(&t.events, PARTITIONS).await;
    create_topic(&t.rows, 1).await;
    create_topic(&t.dead, 1).await;
    t
}

/// The pipeline under test; stops (at a checkpoint) when `stop` fires.
fn kafka_pipeline(
    t: &Topics,
    dir: &std::path::Path,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Pipeline<FeedbackEvent> {
    builder(t, dir, stop).build().unwrap()
}

fn builder(
    t: &Topics,
    dir: &std::path::Path,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> llm_optimizer_processor::PipelineBuilder<FeedbackEvent> {
    let p = producer(&t.servers, &t.rows);
    create_pipeline::<FeedbackEvent>()
        .with_name("kafka-test")
        .with_kafka_source(KafkaConfig {
            bootstrap_servers: t.servers.clone(),
            group_id: t.group.clone(),
            topics: vec![t.events.clone()],
            // tansu answers heartbeats slowly while it stores a burst of records.
            session_timeout_ms: 30_000,
            max_poll_records: 100,
            ..Default::default()
        })
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(10)))
        .with_tumbling_window(Duration::from_secs(60))
        .with_state_backend(Arc::new(MemoryStateBackend::persistent(dir)))
        .with_checkpoint_interval(Duration::from_millis(200))
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new(t.dead.clone()).with_kafka(&p).unwrap()),
        )
        .with_sink(KafkaAggregationSink::new(p))
        .with_shutdown_signal(async {
            let _ = stop.await;
        })
}

/// The rows of the same pipeline over the events in memory, by message key.
async fn expected(events: &[(i32, FeedbackEvent)]) -> BTreeMap<String, serde_json::Value> {
    let rows = CollectorSink::new();
    create_pipeline::<FeedbackEvent>()
        .with_memory_source(events.iter().map(|(_, e)| e.clone()))
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(10)))
        .with_tumbling_window(Duration::from_secs(60))
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    rows.items()
        .into_iter()
        .map(|r| {
            let key = format!("{}@{}", r.key, r.window.start.to_rfc3339());
            // Through text, as the rows read back are (serde_json's float parsing is not
            // always the exact inverse of its printing).
            (
                key,
                canonical(&serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap()),
            )
        })
        .collect()
}

/// The result topic's rows by message key, the latest of each, sentinels left out.
fn latest(rows: &[Read]) -> BTreeMap<String, serde_json::Value> {
    rows.iter()
        .filter(|r| !r.payload.contains("sentinel"))
        .map(|r| {
            (
                r.key.clone().expect("rows have keys"),
                canonical(&serde_json::from_str(&r.payload).unwrap()),
            )
        })
        .collect()
}

async fn read_rows(t: &Topics, want: usize) -> BTreeMap<String, serde_json::Value> {
    let (servers, topic) = (t.servers.clone(), t.rows.clone());
    let rows = tokio::task::spawn_blocking(move || {
        read_topic_from(&servers, &topic, Duration::from_secs(90), |r| {
            latest(r).len() >= want
        })
    })
    .await
    .unwrap();
    latest(&rows)
}

fn assert_same(
    expected: &BTreeMap<String, serde_json::Value>,
    got: &BTreeMap<String, serde_json::Value>,
) {
    assert!(expected.len() > 50, "{} rows expected", expected.len());
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, v)| format!("{k}: want {v}, got {}", got[k]))
        .take(3)
        .collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && wrong.is_empty() && extra.is_empty(),
        "{} missing {missing:?}, different {wrong:#?}, {} unexpected {extra:?}",
        missing.len(),
        extra.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_through_kafka_equal_rows_in_memory_and_bad_records_are_dead_lettered() {
    let t = topics().await;
    let events = events(3_000);
    let mut recs = records(&events);
    for p in 0..PARTITIONS {
        recs.insert(
            500 * (p as usize + 1),
            (p, "bad".into(), b"{not json".to_vec()),
        );
    }
    recs.extend(records(&sentinels()));
    produce(&t.events, &recs).await;

    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let pipeline = kafka_pipeline(&t, dir.path(), stopped);
    let metrics = pipeline.metrics();
    let run = tokio::spawn(pipeline.run());
    let want = expected(&events).await;
    let got = read_rows(&t, want.len()).await;
    assert_same(&want, &got);
    // Everything is read: each partition's consumer lag comes down to zero.
    let lag_zero = |text: &str, p: i32| {
        text.lines().any(|l| {
            l.starts_with("processor_kafka_consumer_lag{")
                && l.contains(&format!("topic=\"{}\"", t.events))
                && l.contains(&format!("partition=\"{p}\""))
                && l.ends_with(" 0")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics.export();
        if (0..PARTITIONS).all(|p| lag_zero(&text, p)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no zero lag for every partition:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dead_topic = t.dead.clone();
    let dead = tokio::task::spawn_blocking(move || {
        read_topic(&dead_topic, Duration::from_secs(30), |r| r.len() >= 3)
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for d in &dead {
        assert_eq!(d.payload, "{not json");
        assert_eq!(d.headers["dlq.kind"], "deserialization");
        assert!(d.headers["dlq.reason"].contains("cannot decode"), "{d:?}");
        assert!(
            d.headers["dlq.position"].contains(&format!("topic {} partition", t.events)),
            "{d:?}"
        );
    }

    stop.send(()).unwrap();
    let summary = within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events_in as usize, recs.len());
    assert_eq!(summary.events_dead_lettered, 3);
    assert_eq!(summary.events_late, 0);
    // Every record was taken in poll rounds of at most max_poll_records (100).
    let text = metrics.export();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert_eq!(
        value("processor_kafka_records_per_poll_sum "),
        recs.len().to_string()
    );
    let rounds = value("processor_kafka_records_per_poll_count ");
    assert_eq!(
        value("processor_kafka_records_per_poll_bucket{le=\"128\"} "),
        rounds
    );
    assert_ne!(
        value("processor_kafka_records_per_poll_bucket{le=\"64\"} "),
        rounds,
        "rounds fill up"
    );
}

/// Waits until the group has committed offset `want[p]` for every partition.
async fn wait_committed(group: &str, topic: &str, want: &[i64]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (g, t) = (group.to_owned(), topic.to_owned());
        let c = tokio::task::spawn_blocking(move || committed(&g, &t, PARTITIONS))
            .await
            .unwrap();
        if c.iter().zip(want).all(|(c, w)| *c == Some(*w)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "committed {c:?}, waiting for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn per_partition(recs: &[Record]) -> Vec<i64> {
    (0..PARTITIONS)
        .map(|p| recs.iter().filter(|r| r.0 == p).count() as i64)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_pipeline_resumes_from_its_checkpoint_and_committed_offsets() {
    let t = topics().await;
    // Every key on every partition (as a producer keyed by request, not by the grouping key).
    let mut events = events(3_000);
    for (i, (p, _)) in events.iter_mut().enumerate() {
        *p = (i % PARTITIONS as usize) as i32;
    }
    let (first, second) = events.split_at(1_700);
    let dir = tempfile::tempdir().unwrap();

    let first_recs = records(first);
    produce(&t.events, &first_recs).await;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(kafka_pipeline(&t, dir.path(), stopped).run());
    // Offsets are committed only once the checkpoint holding them is written.
    wait_committed(&t.group, &t.events, &per_partition(&first_recs)).await;
    stop.send(()).unwrap();
    let summary = within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events_in as usize, first_recs.len());
    let sealed = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .count();
    assert!(
        sealed > 0,
        "the pipeline's checkpoints are in its state backend"
    );

    let mut second_recs = records(second);
    second_recs.extend(records(&sentinels()));
    produce(&t.events, &second_recs).await;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(kafka_pipeline(&t, dir.path(), stopped).run());
    let want = expected(&events).await;
    let got = read_rows(&t, want.len()).await;
    assert_same(&want, &got);
    stop.send(()).unwrap();
    let summary = within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    let mut all = first_recs;
    all.extend(second_recs);
    // The counts go on from the checkpoint (the rows above show nothing was read twice).
    assert_eq!(summary.events_in as usize, all.len());
    wait_committed(&t.group, &t.events, &per_partition(&all)).await;
}

/// Fault injection a real broker cannot do, on librdkafka's mock cluster: the broker goes
/// down mid-run and comes back; the source and the sinks wait and retry, and the rows
/// come out complete and unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_delays_rows_but_loses_none() {
    let mock = MockCluster::new(1).unwrap();
    let t = Topics {
        servers: mock.bootstrap_servers(),
        events: unique("events"),
        rows: unique("rows"),
        dead: unique("dead"),
        group: unique("group"),
    };
    mock.create_topic(&t.events, PARTITIONS, 1).unwrap();
    mock.create_topic(&t.rows, 1, 1).unwrap();
    mock.create_topic(&t.dead, 1, 1).unwrap();
    let events = events(3_000);
    let (first, second) = events.split_at(1_500);
    produce_to(&t.servers, &t.events, &records(first)).await;

    let dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(kafka_pipeline(&t, dir.path(), stopped).run());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !run.is_finished(),
        "the pipeline should wait for the broker, not fail"
    );
    mock.broker_up(1).unwrap();
    let mut rest = records(second);
    rest.extend(records(&sentinels()));
    produce_to(&t.servers, &t.events, &rest).await;

    let want = expected(&events).await;
    let got = read_rows(&t, want.len()).await;
    assert_same(&want, &got);
    stop.send(()).unwrap();
    let summary = within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.events_in as usize,
        events.len() + PARTITIONS as usize
    );
}

/// An event type whose timestamp may be missing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Call {
    model: String,
    latency_ms: f64,
    #[serde(default)]
    timestamp: Option<chrono::DateTime<Utc>>,
}

/// Events without a timestamp of their own take their Kafka record's timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_a_timestamp_take_the_kafka_record_timestamp() {
    let t = topics().await;
    let base = 1_767_225_600_000i64;
    let calls: Vec<Call> = (0..600)
        .map(|i| Call {
            model: MODELS[i % 4].into(),
            latency_ms: 100.0 + (i * 13 % 700) as f64,
            timestamp: Some(Utc.timestamp_millis_opt(base + i as i64 * 6_000).unwrap()),
        })
        .collect();
    let mut recs: Vec<(Record, Option<i64>)> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let at = c.timestamp.unwrap().timestamp_millis();
            // Every other event leaves its timestamp to the record.
            let sent = Call {
                timestamp: c.timestamp.filter(|_| i % 2 == 0),
                ..c.clone()
            };
            (
                (0, c.model.clone(), serde_json::to_vec(&sent).unwrap()),
                Some(at),
            )
        })
        .collect();
    let end = Call {
        model: "sentinel".into(),
        latency_ms: 1.0,
        timestamp: None,
    };
    recs.push((
        (0, "sentinel".into(), serde_json::to_vec(&end).unwrap()),
        Some(base + 7_200_000),
    ));
    create_topic(&format!("{}-1", t.events), 1).await;
    let events_topic = format!("{}-1", t.events);
    produce_timed(&t.servers, &events_topic, &recs).await;

    let build = || {
        create_pipeline::<Call>()
            .with_key_fields(&["model"])
            .with_value_field("latency_ms")
            .with_tumbling_window(Duration::from_secs(60))
    };
    let rows = CollectorSink::new();
    build()
        .with_memory_source(calls)
        .with_sink(rows.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let want: BTreeMap<String, serde_json::Value> = rows
        .items()
        .into_iter()
        .map(|r| {
            let key = format!("{}@{}", r.key, r.window.start.to_rfc3339());
            (
                key,
                canonical(&serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap()),
            )
        })
        .collect();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        build()
            .with_kafka_source(KafkaConfig {
                bootstrap_servers: t.servers.clone(),
                group_id: t.group.clone(),
                topics: vec![events_topic],
                ..Default::default()
            })
            .with_kafka_timestamp_fallback()
            .with_sink(KafkaAggregationSink::new(producer(&t.servers, &t.rows)))
            .with_shutdown_signal(async {
                let _ = stopped.await;
            })
            .build()
            .unwrap()
            .run(),
    );
    let got = read_rows(&t, want.len()).await;
    assert_same(&want, &got);
    stop.send(()).unwrap();
    let summary = within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.events_dead_lettered, 0);
    assert_eq!(summary.events_aggregated, 601);
}

/// With `partitioned_by_key`, a corrupt partition state file stops the run with the
/// reason, and no row is published: the records the other partitions delivered meanwhile
/// stay in open windows, which a failure never fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_partition_state_file_stops_the_run_and_publishes_no_row() {
    let t = topics().await;
    let dir = tempfile::tempdir().unwrap();
    let mut recs = records(&events(600));
    recs.extend(records(&sentinels()));
    produce(&t.events, &recs).await;
    let states = dir.path().join("kafka").join(&t.group).join("kafka-test");
    std::fs::create_dir_all(&states).unwrap();
    std::fs::write(
        states.join(format!("{}-1.ckpt", t.events)),
        b"not a checkpoint",
    )
    .unwrap();

    let (_stop, stopped) = tokio::sync::oneshot::channel();
    let pipeline = builder(&t, dir.path(), stopped)
        .with_kafka_partitioned_by_key()
        .build()
        .unwrap();
    let err = within(
        STOPS,
        "the run to stop on the corrupt state file",
        pipeline.run(),
    )
    .await
    .expect_err("the run fails");
    assert!(err.to_string().contains("corrupted"), "{err}");
    let (servers, topic) = (t.servers.clone(), t.rows.clone());
    let rows = tokio::task::spawn_blocking(move || {
        read_topic_from(&servers, &topic, Duration::from_secs(10), |r| !r.is_empty())
    })
    .await
    .unwrap();
    assert!(rows.is_empty(), "published: {:?}", rows.first());
}

/// With `partitioned_by_key` (each partition its own state), a key whose events arrive on
/// two partitions is never silent: it is counted in
/// `processor_keys_on_several_partitions_total` (once per key) and warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_on_two_partitions_is_counted_and_warned_about() {
    let t = topics().await;
    let mut evs = events(40);
    // Every event of one key, alternately on partitions 0 and 1; the others as usual.
    for (i, (p, e)) in evs.iter_mut().enumerate() {
        if e.model == MODELS[0] && e.region == REGIONS[0] {
            *p = (i % 2) as i32;
        }
    }
    let mut recs = records(&evs);
    recs.extend(records(&sentinels()));
    produce(&t.events, &recs).await;
    let metrics = Arc::new(ProcessorMetrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(
        create_pipeline::<FeedbackEvent>()
            .with_kafka_source(KafkaConfig {
                bootstrap_servers: t.servers.clone(),
                group_id: t.group.clone(),
                topics: vec![t.events.clone()],
                session_timeout_ms: 30_000,
                ..Default::default()
            })
            .with_kafka_partitioned_by_key()
            .with_tumbling_window(Duration::from_secs(60))
            .with_metrics(Arc::clone(&metrics))
            .with_sink(CollectorSink::<AggregationResult>::new())
            .with_shutdown_signal(async {
                let _ = stopped.await;
            })
            .build()
            .unwrap()
            .run(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let want = "processor_keys_on_several_partitions_total 1";
    while !metrics.export().contains(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {want} within 90 s:\n{}",
            metrics.export()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    within(STOPS, "the pipeline's run to end after its stop", run)
        .await
        .unwrap()
        .unwrap();
    assert!(metrics.export().contains(want), "one key, counted once");
}
