//! The front of a run: where its records come from, in order. A file, stdin or memory
//! source is read and decoded by the reader task ([`super::batch`]); a Kafka source by the
//! consumer thread ([`crate::kafka`]), whose records a decode task turns into the same
//! batches, with the assignments and revocations between them in the order they happened.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::Batch;
#[cfg(feature = "kafka")]
use super::batch::Recycler;
#[cfg(feature = "kafka")]
use super::decode::JsonDecoder;
#[cfg(feature = "kafka")]
use super::persist::Place;
#[cfg(feature = "kafka")]
use super::reader::DecodePool;
use super::reader::{decoded, Pending, Slot};
use crate::error::ProcessorResult;
#[cfg(feature = "kafka")]
use crate::kafka::{
    Commit, ConsumerHandle, Delivery, KafkaRecord, PartitionAssigned, TOPIC_STRIDE,
};
#[cfg(feature = "kafka")]
use crate::metrics::ProcessorMetrics;
#[cfg(feature = "kafka")]
use crate::watermark::WatermarkGenerator;
#[cfg(feature = "kafka")]
use serde::de::DeserializeOwned;

/// What the front hands to the run loop.
pub(super) enum Input<T> {
    /// Records, decoded (or with the reason they could not be).
    Batch(Batch<T>),
    /// Kafka partitions assigned to this instance (their records follow).
    #[cfg(feature = "kafka")]
    Assigned(Vec<PartitionAssigned>),
    /// Kafka partitions being revoked: the run loop checkpoints and answers with the
    /// offsets to commit.
    #[cfg(feature = "kafka")]
    Revoked(Vec<u32>, std::sync::mpsc::SyncSender<Commit>),
}

/// Where a run's records come from.
pub(super) enum Front<T> {
    /// A file, stdin or memory: the reader task's batches.
    Lines {
        rx: mpsc::Receiver<Pending<T>>,
        reader: JoinHandle<()>,
        /// The batch being decoded that the run loop waits for: kept here, so that a
        /// `select!` that drops the wait (a tick) does not drop the batch.
        waiting: Option<Slot<T>>,
    },
    /// Kafka: the decode task's batches, assignments and revocations.
    #[cfg(feature = "kafka")]
    Kafka {
        rx: mpsc::Receiver<FromKafka<T>>,
        /// The batch being decoded that the run loop waits for (as in `Lines`).
        waiting: Option<Slot<T>>,
        decoder: JoinHandle<()>,
        consumer: ConsumerHandle,
        /// The subscribed topics, in order: partition ids are `topic index × stride + partition`.
        topics: Vec<String>,
    },
}

impl<T: Send + 'static> Front<T> {
    /// The front of a file, stdin or memory source: the reader task's batches.
    pub fn lines(rx: mpsc::Receiver<Pending<T>>, reader: JoinHandle<()>) -> Self {
        Front::Lines {
            rx,
            reader,
            waiting: None,
        }
    }

    /// The next input; `None` when a bounded source ended.
    pub async fn recv(&mut self) -> Option<ProcessorResult<Input<T>>> {
        match self {
            Front::Lines { rx, waiting, .. } => {
                if waiting.is_none() {
                    match rx.recv().await? {
                        Pending::Ready(b) => return Some(b.map(Input::Batch)),
                        Pending::Decoding(slot) => *waiting = Some(slot),
                    }
                }
                Some(decoded(waiting).await.map(Input::Batch))
            }
            #[cfg(feature = "kafka")]
            Front::Kafka { rx, waiting, .. } => {
                if waiting.is_none() {
                    match rx.recv().await {
                        Some(FromKafka::Ready(x)) => return Some(x),
                        Some(FromKafka::Decoding(slot)) => *waiting = Some(slot),
                        // The consumer thread only ends when told to: this is a failure.
                        None => {
                            return Some(Err(crate::error::ProcessorError::Internal(
                                "the Kafka consumer stopped".into(),
                            )))
                        }
                    }
                }
                Some(decoded(waiting).await.map(Input::Batch))
            }
        }
    }

    /// Where a record is, for a dead letter or a late record.
    pub fn position(&self) -> Positioner {
        match self {
            Front::Lines { .. } => Positioner::Lines,
            #[cfg(feature = "kafka")]
            Front::Kafka { topics, .. } => Positioner::Kafka(topics.clone().into()),
        }
    }

    /// Stops taking input. A Kafka consumer stays up to take the last checkpoint's commit
    /// until [`end`](Self::end).
    pub fn close_input(&mut self) {
        match self {
            Front::Lines { rx, reader, .. } => {
                rx.close();
                reader.abort();
            }
            #[cfg(feature = "kafka")]
            Front::Kafka { rx, decoder, .. } => {
                rx.close();
                decoder.abort();
                // A revocation waiting in the queue holds the consumer thread until its
                // answer is dropped.
                while rx.try_recv().is_ok() {}
            }
        }
    }

    /// Ends the front: the reader task is gone, the consumer has committed what it was
    /// asked to and left the group.
    pub async fn end(self) {
        match self {
            Front::Lines { reader, .. } => {
                let _ = reader.await;
            }
            #[cfg(feature = "kafka")]
            Front::Kafka {
                consumer, decoder, ..
            } => {
                let _ = decoder.await;
                consumer.stop().await;
            }
        }
    }
}

/// Says where a record is, for the dead-letter and late records.
#[derive(Clone)]
pub(super) enum Positioner {
    /// Partition, line and byte offset of a file, stdin or memory source.
    Lines,
    /// Topic, partition and offset.
    #[cfg(feature = "kafka")]
    Kafka(std::sync::Arc<[String]>),
}

impl Positioner {
    /// `(partition, sequence, offset)` as text.
    pub fn text(&self, (partition, sequence, offset): (u32, u64, u64)) -> String {
        match self {
            Positioner::Lines => {
                format!("partition {partition} line {sequence} (offset {offset})")
            }
            #[cfg(feature = "kafka")]
            Positioner::Kafka(topics) => {
                let _ = sequence;
                let topic = topics
                    .get((partition / TOPIC_STRIDE) as usize)
                    .map_or("?", String::as_str);
                format!(
                    "topic {topic} partition {} offset {offset}",
                    partition % TOPIC_STRIDE
                )
            }
        }
    }

    /// A Kafka partition id as `topic/partition`.
    #[cfg(feature = "kafka")]
    pub fn partition(&self, pid: u32) -> String {
        match self {
            Positioner::Kafka(topics) => format!(
                "{}/{}",
                topics
                    .get((pid / TOPIC_STRIDE) as usize)
                    .map_or("?", String::as_str),
                pid % TOPIC_STRIDE
            ),
            Positioner::Lines => format!("partition {pid}"),
        }
    }
}

/// What the Kafka decode task hands on, in the order the consumer delivered it: an input,
/// or a poll round's batch being decoded by the decoder pool.
#[cfg(feature = "kafka")]
pub(super) enum FromKafka<T> {
    Ready(ProcessorResult<Input<T>>),
    Decoding(Slot<T>),
}

/// Starts the decode task: the consumer's deliveries in, the run loop's input out. Each
/// poll round becomes a batch, decoded by a pool of `decoders` tasks when there are
/// several (the run loop takes the batches back in order, assignments and revocations
/// between them). With `timestamp_fallback`, an event without a readable timestamp takes
/// its record's.
#[cfg(feature = "kafka")]
pub(super) fn spawn_decoder<T: DeserializeOwned + Send + 'static>(
    mut deliveries: mpsc::Receiver<Delivery>,
    decoder: JsonDecoder<T>,
    recycler: Recycler<T>,
    timestamp_fallback: bool,
    decoders: usize,
) -> (mpsc::Receiver<FromKafka<T>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(4);
    let pool = (decoders > 1).then(|| DecodePool::start(decoders, decoder));
    let task = tokio::spawn(async move {
        while let Some(d) = deliveries.recv().await {
            let out = match d {
                Delivery::Records(records) => {
                    let mut batch = recycler.take();
                    for r in records {
                        add(&mut batch, r, timestamp_fallback);
                    }
                    match &pool {
                        Some(pool) => match pool.submit(batch).await {
                            Some(slot) => FromKafka::Decoding(slot),
                            None => break,
                        },
                        None => {
                            decoder.decode_batch(&mut batch);
                            FromKafka::Ready(Ok(Input::Batch(batch)))
                        }
                    }
                }
                Delivery::Assigned(a) => FromKafka::Ready(Ok(Input::Assigned(a))),
                Delivery::Revoked(ids, ack) => FromKafka::Ready(Ok(Input::Revoked(ids, ack))),
                Delivery::Failed(e) => FromKafka::Ready(Err(e)),
            };
            if tx.send(out).await.is_err() {
                break;
            }
        }
    });
    (rx, task)
}

/// Adds a Kafka record to `batch`, to be decoded: its payload copied into the batch's text.
#[cfg(feature = "kafka")]
fn add<T>(batch: &mut Batch<T>, r: KafkaRecord, timestamp_fallback: bool) {
    let offset = u64::try_from(r.offset).unwrap_or(0);
    let start = batch.text.len();
    batch
        .text
        .extend_from_slice(r.payload.as_deref().unwrap_or_default());
    let end = batch.text.len();
    let item = batch.push(r.id, offset, offset);
    item.raw = Some((start, end));
    item.envelope.fallback_timestamp = r.timestamp.filter(|_| timestamp_fallback);
}

/// The partition each key was first seen on, with `partitioned_by_key` (each partition
/// its own operator): a key whose events arrive on two partitions (or two topics) gets
/// one partial row per partition, never silently. The first partition wins; each key seen
/// on another one is counted (`processor_keys_on_several_partitions_total`) and warned
/// about once.
#[cfg(feature = "kafka")]
#[derive(Default)]
pub(super) struct KeyHomes {
    /// Looked up per record: hashbrown's fast hasher (the key is already a hash).
    home: hashbrown::HashMap<u64, u32>,
    split: hashbrown::HashSet<u64>,
}

/// Keys warned about by name at most; the metric counts them all.
#[cfg(feature = "kafka")]
const SPLIT_WARNINGS: usize = 20;

#[cfg(feature = "kafka")]
impl KeyHomes {
    fn check(&mut self, hash: u64, pid: u32, positioner: &Positioner, metrics: &ProcessorMetrics) {
        let home = *self.home.entry(hash).or_insert(pid);
        if home == pid || !self.split.insert(hash) {
            return;
        }
        metrics.record_key_split();
        if self.split.len() <= SPLIT_WARNINGS {
            tracing::warn!(
                key_hash = hash,
                first = %positioner.partition(home),
                now = %positioner.partition(pid),
                "a key arrives on a second partition while partitioned_by_key is set: its rows are partial, one per partition; key the producers by the grouping key, or remove partitioned_by_key (one instance then owns every key)"
            );
        }
    }
}

/// Which worker holds each Kafka partition's operator, with `partitioned_by_key`.
#[cfg(feature = "kafka")]
pub(super) struct PartitionHomes {
    owner: std::collections::HashMap<u32, usize>,
    /// Partitions per worker.
    load: Vec<usize>,
    keys: KeyHomes,
}

#[cfg(feature = "kafka")]
impl PartitionHomes {
    /// No partition yet, over `workers` workers.
    pub fn new(workers: usize) -> Self {
        PartitionHomes {
            owner: Default::default(),
            load: vec![0; workers.max(1)],
            keys: KeyHomes::default(),
        }
    }

    /// A partition assigned: its watermark restored from its checkpoint (or registered),
    /// its operator given to the worker holding the fewest. Returns that worker, where the
    /// partition is and its checkpointed state with the last offset in it.
    pub fn assigned(
        &mut self,
        a: PartitionAssigned,
        watermark: &mut dyn WatermarkGenerator,
    ) -> (usize, Place, Option<(Vec<u8>, i64)>) {
        let now = std::time::Instant::now();
        let restored = match a.checkpoint {
            Some(c) => {
                watermark.restore(&[(a.id, c.max_event_time)], now);
                tracing::info!(topic = %a.topic, partition = a.partition, offset = c.offset, "partition restored from its checkpoint");
                Some((c.operator, c.offset))
            }
            None => {
                watermark.register_partition(a.id, now);
                None
            }
        };
        let w = (0..self.load.len())
            .min_by_key(|&w| self.load[w])
            .unwrap_or(0);
        self.load[w] += 1;
        self.owner.insert(a.id, w);
        let place = Place {
            topic: a.topic,
            partition: a.partition,
        };
        (w, place, restored)
    }

    /// A partition revoked (after its checkpoint): the worker that held it.
    pub fn revoked(&mut self, id: u32, watermark: &mut dyn WatermarkGenerator) -> Option<usize> {
        watermark.unregister_partition(id);
        let w = self.owner.remove(&id)?;
        self.load[w] -= 1;
        Some(w)
    }

    /// The worker holding partition `id`, if it is assigned.
    #[inline]
    pub fn owner(&self, id: u32) -> Option<usize> {
        self.owner.get(&id).copied()
    }

    /// Notes that a key of this hash came from partition `pid` (see [`KeyHomes`]).
    #[inline]
    pub fn check_key(
        &mut self,
        hash: u64,
        pid: u32,
        positioner: &Positioner,
        metrics: &ProcessorMetrics,
    ) {
        self.keys.check(hash, pid, positioner, metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::Recycler;
    use super::super::decode::JsonDecoder;
    use super::super::reader::spawn_reader;
    use super::*;
    use crate::source::FileSource;
    use crate::FeedbackEvent;

    /// Batches decoded by several decoders reach the run loop in the order they were
    /// read, none lost when the loop's wait for one is dropped (a `select!` whose tick
    /// came first), as it is in the run loop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_decoded_in_parallel_come_in_order_and_survive_a_dropped_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let lines: String = (0..20_000)
            .map(|i| {
                format!(
                    "{{\"timestamp\":{},\"model\":\"m{}\",\"region\":\"r\",\"latency_ms\":{i}}}\n",
                    1_767_225_600_000_i64 + i,
                    i % 7
                )
            })
            .collect();
        std::fs::write(&path, lines).unwrap();
        let (rx, reader) = spawn_reader(
            Box::new(FileSource::new(&path)),
            JsonDecoder::<FeedbackEvent>::serde(None),
            Recycler::default(),
            2_000,
            64,
            3,
        );
        let mut front = Front::lines(rx, reader);
        let mut next = 0.0;
        let mut dropped_waits = 0;
        loop {
            let input = tokio::select! {
                biased;
                _ = tokio::task::yield_now() => {
                    dropped_waits += 1;
                    continue;
                }
                r = front.recv() => r,
            };
            let Some(input) = input else { break };
            let Ok(Input::Batch(batch)) = input else {
                panic!("a batch")
            };
            for item in batch.items() {
                assert!(item.failed.is_none());
                let event = item.event.as_ref().expect("decoded");
                assert_eq!(event.latency_ms, next, "in input order");
                next += 1.0;
            }
        }
        assert_eq!(next, 20_000.0, "every record");
        assert!(dropped_waits > 0);
    }

    /// Kafka poll rounds decoded by a pool come back in the order delivered, assignments
    /// in their place between them, each record with its fallback timestamp.
    #[cfg(feature = "kafka")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_rounds_decoded_by_a_pool_keep_their_order() {
        let (tx, deliveries) = mpsc::channel(8);
        let (mut rx, _task) = spawn_decoder(
            deliveries,
            JsonDecoder::<FeedbackEvent>::serde(None),
            Recycler::default(),
            true,
            3,
        );
        tokio::spawn(async move {
            for round in 0..200i64 {
                if round == 100 {
                    let _ = tx.send(Delivery::Assigned(Vec::new())).await;
                }
                let records = (0..50)
                    .map(|k| {
                        let i = round * 50 + k;
                        KafkaRecord {
                            id: (i % 3) as u32,
                            offset: i,
                            payload: Some(
                                format!(r#"{{"timestamp":{i},"model":"m","latency_ms":{i}}}"#)
                                    .into_bytes(),
                            ),
                            timestamp: Some(1_000_000 + i),
                        }
                    })
                    .collect();
                let _ = tx.send(Delivery::Records(records)).await;
            }
        });
        let mut next = 0i64;
        let mut assigned_after = None;
        while next < 10_000 {
            let batch = match rx.recv().await.expect("more") {
                FromKafka::Ready(Ok(Input::Assigned(_))) => {
                    assigned_after = Some(next);
                    continue;
                }
                FromKafka::Ready(Ok(Input::Batch(b))) => b,
                FromKafka::Decoding(slot) => slot.await.unwrap().unwrap(),
                _ => panic!("a batch or an assignment"),
            };
            for item in batch.items() {
                assert_eq!(item.offset, next as u64, "in delivery order");
                assert_eq!(item.envelope.fallback_timestamp, Some(1_000_000 + next));
                match &item.failed {
                    None => assert_eq!(item.event.as_ref().unwrap().latency_ms, next as f64),
                    Some(e) => panic!("{e}"),
                }
                next += 1;
            }
        }
        assert_eq!(
            assigned_after,
            Some(5_000),
            "the assignment between rounds 99 and 100"
        );
    }
}
