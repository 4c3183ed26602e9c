//! Kafka end to end: events produced to a three-partition topic on the local broker
//! (`scripts/kafka-up`), through Q1 (tumbling 1 min per model and region, latency
//! statistics) with the Kafka source and `KafkaAggregationSink` to a result topic;
//! events/s from the pipelines' start until the last event is processed: one instance at
//! `parallelism` 1 and 2, and two instances in one consumer group.
//!
//! ```text
//! scripts/kafka-up
//! cargo bench --bench kafka [-- EVENTS]      # default 3,000
//! ```
//!
//! Not run by `cargo test`: it measures, it does not check (the Kafka tests check).

#[path = "../tests/support/kafka.rs"]
mod kafka;

use kafka::{bootstrap, create_topic, produce, unique, Record};
use llm_optimizer_processor::workload::{generate, WorkloadSpec};
use llm_optimizer_processor::*;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 3;

fn records(n: usize) -> Vec<Record> {
    generate(&WorkloadSpec {
        events: n,
        ..Default::default()
    })
    .iter()
    .map(|e| {
        // Keyed by the grouping key: a key's events in one partition.
        let key = format!("{}/{}", e.model, e.region);
        let p = (key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % PARTITIONS as u32) as i32;
        (p, key, serde_json::to_vec(e).unwrap())
    })
    .collect()
}

/// One instance: its pipeline, its metrics and its stop switch.
fn instance(
    topic: &str,
    rows: &str,
    group: &str,
    dir: &std::path::Path,
    parallelism: usize,
) -> (
    Pipeline<FeedbackEvent>,
    std::sync::Arc<ProcessorMetrics>,
    tokio::sync::oneshot::Sender<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline = create_pipeline::<FeedbackEvent>()
        .with_name("kafka-bench")
        .with_kafka_source(KafkaConfig {
            bootstrap_servers: bootstrap(),
            group_id: group.into(),
            topics: vec![topic.into()],
            session_timeout_ms: 30_000,
            ..Default::default()
        })
        .with_key_fields(&["model", "region"])
        .with_parallelism(parallelism)
        .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
        .with_tumbling_window(Duration::from_secs(60))
        .with_allowed_lateness(Duration::from_secs(60))
        .with_sink(KafkaAggregationSink::new(KafkaProducerConfig {
            bootstrap_servers: bootstrap(),
            result_topic: rows.into(),
            ..Default::default()
        }))
        .with_error_handler(
            ErrorHandler::new(ErrorPolicy::DeadLetter)
                .with_sink(DeadLetterSink::new("bench-dead-letter").with_dir(dir)),
        )
        .with_shutdown_signal(async {
            let _ = stopped.await;
        })
        .build()
        .expect("the bench pipeline builds");
    let metrics = pipeline.metrics();
    (pipeline, metrics, stop)
}

/// User + system CPU seconds of a process so far (`/proc/<pid>/stat`; "self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name, in clock ticks.
    match (f.get(10), f.get(11)) {
        (Some(u), Some(s)) => (u + s) as f64 / 100.0,
        _ => f64::NAN,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let topic = unique("bench-events");
        let rows = unique("bench-rows");
        create_topic(&topic, PARTITIONS).await;
        create_topic(&rows, 1).await;
        let recs = records(n);
        let t = Instant::now();
        produce(&topic, &recs).await;
        let produced = t.elapsed();
        println!("{n} events, {PARTITIONS} partitions, broker {}\n", bootstrap());
        println!("| what | seconds | events/s |\n|---|---:|---:|");
        // The broker's process, when scripts/kafka-up started it here.
        let broker = std::fs::read_to_string("/var/tmp/llm-optimizer-processor-kafka/tansu.pid")
            .map(|p| p.trim().to_owned())
            .unwrap_or_default();
        println!(
            "| produce (rdkafka FutureProducer, acks) | {:.2} | {:.0} |",
            produced.as_secs_f64(),
            n as f64 / produced.as_secs_f64()
        );
        for (instances, parallelism) in [(1, 1), (1, 2), (2, 1)] {
            let group = unique("bench-group");
            let dirs: Vec<_> = (0..instances)
                .map(|_| tempfile::tempdir().unwrap())
                .collect();
            let started: Vec<_> = dirs
                .iter()
                .map(|d| instance(&topic, &rows, &group, d.path(), parallelism))
                .collect();
            let (ours0, broker0) = (cpu_seconds("self"), cpu_seconds(&broker));
            let t = Instant::now();
            let mut handles = Vec::new();
            let mut all = Vec::new();
            for (pipeline, metrics, stop) in started {
                handles.push(tokio::spawn(pipeline.run()));
                all.push((metrics, stop));
            }
            let deadline = t + Duration::from_secs(120);
            let mut first = None;
            loop {
                let done: u64 = all.iter().map(|(m, _)| m.events_processed()).sum();
                if done > 0 && first.is_none() {
                    first = Some(t.elapsed());
                }
                if done >= n as u64 {
                    break;
                }
                if Instant::now() > deadline {
                    println!("| {instances} instance(s), parallelism {parallelism}: only {done} of {n} events in 120 s (the broker stalled) | | |");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = t.elapsed();
            for (_, stop) in all {
                let _ = stop.send(());
            }
            for h in handles {
                h.await.unwrap().unwrap();
            }
            let (ours, brokers) = (
                cpu_seconds("self") - ours0,
                cpu_seconds(&broker) - broker0,
            );
            let first = first.unwrap_or(took);
            println!(
                "| consume → Q1 → produce rows, {instances} instance(s) in one group, parallelism {parallelism}: start to last event | {:.2} | {:.0} |",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
            println!(
                "| … of which joining the group, start to first event | {:.2} | |",
                first.as_secs_f64()
            );
            println!(
                "| … first to last event | {:.2} | {:.0} |",
                (took - first).as_secs_f64(),
                n as f64 / (took - first).as_secs_f64().max(1e-9)
            );
            println!("| … CPU seconds meanwhile: the pipeline(s) (this process) {ours:.2}, the broker {brokers:.2} | | |");
        }
    });
}
