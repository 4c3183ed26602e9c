//! The real broker the Kafka tests talk to: `scripts/kafka-up` starts it on
//! 127.0.0.1:9092 (`KAFKA_BOOTSTRAP` overrides), `.ci/run` calls that script.
//! Topics are created explicitly (tansu does not create them on produce), with names
//! unique to the test run.

#![allow(dead_code)] // each test file uses part of it

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The broker's address.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name unique to this run.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// Creates a topic with `partitions` partitions, failing with a hint when no broker runs.
pub async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        admin.create_topics([&topic], &opts),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no Kafka broker answers at {}: start one with scripts/kafka-up",
            bootstrap()
        )
    })
    .expect("create_topics");
    for r in result {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("creating topic {t}: {e}"),
        }
    }
    // Wait until the metadata shows every partition.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let md = consumer.fetch_metadata(Some(name), Duration::from_secs(5));
        if let Ok(md) = md {
            if md
                .topics()
                .iter()
                .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A record to produce: partition, key, payload.
pub type Record = (i32, String, Vec<u8>);

/// Produces `(partition, key, payload)` records and waits until all are acknowledged.
pub async fn produce(topic: &str, records: &[Record]) {
    produce_to(&bootstrap(), topic, records).await
}

/// [`produce`] to the broker at `servers`.
pub async fn produce_to(servers: &str, topic: &str, records: &[Record]) {
    let timed: Vec<_> = records.iter().map(|r| (r.clone(), None)).collect();
    produce_timed(servers, topic, &timed).await
}

/// [`produce_to`] with each record's Kafka timestamp (epoch ms) when given.
pub async fn produce_timed(servers: &str, topic: &str, records: &[(Record, Option<i64>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        // A hang guard: a record not delivered in two minutes fails the test.
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(records.len());
    for ((partition, key, payload), at) in records {
        loop {
            let mut record = FutureRecord::to(topic)
                .partition(*partition)
                .key(key.as_bytes())
                .payload(payload.as_slice());
            if let Some(ms) = at {
                record = record.timestamp(*ms);
            }
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((e, _)) => {
                    assert!(format!("{e}").contains("Queue full"), "{e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    for f in pending {
        // Bounded: librdkafka fails a record after message.timeout.ms (set above).
        f.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Read {
    pub key: Option<String>,
    pub payload: String,
    pub headers: BTreeMap<String, String>,
}

/// Reads every partition of `topic` from the start until `done(records)` holds or
/// `timeout` passes; returns what was read.
pub fn read_topic(topic: &str, timeout: Duration, done: impl Fn(&[Read]) -> bool) -> Vec<Read> {
    read_topic_from(&bootstrap(), topic, timeout, done)
}

/// [`read_topic`] from the broker at `servers`.
pub fn read_topic_from(
    servers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[Read]) -> bool,
) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        // tansu answers a fetch with one record batch: do not wait between fetches.
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    let md = (0..10)
        .find_map(|_| {
            consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .ok()
        })
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut report = Instant::now();
    while Instant::now() < deadline && !done(&out) {
        if report.elapsed() > Duration::from_secs(10) {
            eprintln!("reading {topic}: {} records so far", out.len());
            report = Instant::now();
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for x in h.iter() {
                        let v = x.value.map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.insert(x.key.to_owned(), v.unwrap_or_default());
                    }
                }
                out.push(Read {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers,
                });
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The group's committed offsets of `topic`'s partitions.
pub fn committed(group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(|p| match c.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// `v` with every number rounded to 12 significant digits: floating-point aggregates
/// (average, stddev) can differ in their last bits when the same events arrive in another
/// order (over several partitions), as in any engine that adds in arrival order.
#[allow(dead_code)]
pub fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f != 0.0 && f.is_finite() => {
                let digits = 11 - f.abs().log10().floor() as i32;
                let scale = 10f64.powi(digits);
                serde_json::json!((f * scale).round() / scale)
            }
            _ => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), canonical(x))).collect())
        }
        _ => v.clone(),
    }
}
