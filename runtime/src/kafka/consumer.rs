use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

use super::{kafka_error, PartitionCheckpoint, PartitionStore, TOPIC_STRIDE};
use crate::error::{ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::source::KafkaConfig;

/// A partition given to this instance, with its checkpoint if one was found.
#[derive(Debug)]
pub(crate) struct PartitionAssigned {
    /// Partition id inside the pipeline.
    pub id: u32,
    /// The topic.
    pub topic: String,
    /// Kafka's partition number.
    pub partition: i32,
    /// Its checkpoint; the consumer already resumes after `checkpoint.offset`.
    pub checkpoint: Option<PartitionCheckpoint>,
}

/// One record from Kafka.
#[derive(Debug)]
pub(crate) struct KafkaRecord {
    /// Partition id inside the pipeline.
    pub id: u32,
    /// Kafka offset.
    pub offset: i64,
    /// The value (`None` for a tombstone).
    pub payload: Option<Vec<u8>>,
    /// The record's timestamp (create or log-append time), epoch milliseconds.
    pub timestamp: Option<i64>,
}

/// What the consumer thread hands to the run loop, in order.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The records of one poll round: at most `max_poll_records`, in the order polled.
    Records(Vec<KafkaRecord>),
    /// Partitions assigned (their records follow).
    Assigned(Vec<PartitionAssigned>),
    /// Partitions being revoked: the run loop checkpoints them and answers with the
    /// checkpoint's id and the next offset to commit for each (none of their records
    /// follow until they are assigned again).
    Revoked(Vec<u32>, std_mpsc::SyncSender<Commit>),
    /// The consumer cannot go on.
    Failed(ProcessorError),
}

/// Offsets to commit once the checkpoint holding them is durable: the checkpoint's id and
/// the next offset to read per partition. The consumer commits only ids above the last it
/// committed, so offsets never move backwards (a periodic commit queued before a
/// revocation's synchronous one is dropped).
#[derive(Debug, Clone, Default)]
pub(crate) struct Commit {
    pub id: u64,
    pub offsets: Vec<(u32, i64)>,
}

enum Command {
    Commit(Commit),
    Stop,
}

/// Where the consumer starts reading each partition it is assigned.
#[derive(Debug)]
pub(crate) enum Start {
    /// Each partition from its own checkpoint file (a partition's state moves with it:
    /// `partitioned_by_key`); without a file, from the group's committed offset.
    PartitionFiles(Option<PartitionStore>),
    /// One instance owns every key: every partition of the topics is assigned to it
    /// directly (no group rebalances: as Flink's Kafka source), found when it starts and
    /// every [`DISCOVERY`] after; each read from these next offsets (the pipeline's
    /// checkpoint), a partition not in it from the group's committed offset. The group
    /// only keeps the committed offsets (for lag).
    Positions(HashMap<u32, i64>),
}

/// Sends commits to the consumer thread, from whoever writes the checkpoints.
#[derive(Debug, Clone)]
pub(crate) struct Committer(std_mpsc::Sender<Command>);

impl Committer {
    /// Commits `c` to the group (after the checkpoint holding it is durable).
    pub fn commit(&self, c: Commit) {
        if !c.offsets.is_empty() {
            let _ = self.0.send(Command::Commit(c));
        }
    }
}

/// The consumer thread, seen from the run loop.
#[derive(Debug)]
pub(crate) struct ConsumerHandle {
    commands: std_mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl ConsumerHandle {
    /// A sender of commits for the collector.
    pub fn committer(&self) -> Committer {
        Committer(self.commands.clone())
    }

    /// Commits what was asked, leaves the group and ends the thread.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

struct Context {
    topics: Vec<String>,
    /// Per-partition checkpoint files (`partitioned_by_key`).
    store: Option<PartitionStore>,
    /// The highest checkpoint id committed.
    committed: AtomicU64,
    pipeline: String,
    tx: mpsc::Sender<Delivery>,
    closing: AtomicBool,
    /// The records of the poll round so far: handed on when the round ends, or before a
    /// rebalance is (so that the run loop sees records and assignments in polled order).
    pending: Mutex<Vec<KafkaRecord>>,
    metrics: Arc<ProcessorMetrics>,
}

impl Context {
    /// Hands the poll round's records to the run loop; `false` when it has gone.
    fn hand_on(&self) -> bool {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return true;
        }

        self.metrics.record_kafka_poll(batch.len());
        self.tx.blocking_send(Delivery::Records(batch)).is_ok()
    }

    fn id(&self, topic: &str, partition: i32) -> Option<u32> {
        let t = self.topics.iter().position(|x| x == topic)? as u32;
        Some(t * TOPIC_STRIDE + partition as u32)
    }

    fn tpl(&self, offsets: &[(u32, i64)]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for &(id, next) in offsets {
            let topic = &self.topics[(id / TOPIC_STRIDE) as usize];
            let _ =
                tpl.add_partition_offset(topic, (id % TOPIC_STRIDE) as i32, Offset::Offset(next));
        }
        tpl
    }

    fn assign(&self, consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) {
        self.hand_on();
        let mut given = Vec::new();
        let mut list = TopicPartitionList::new();
        for e in tpl.elements() {
            let (topic, partition) = (e.topic().to_owned(), e.partition());
            let Some(id) = self.id(&topic, partition) else {
                continue;
            };
            let (checkpoint, offset) = match &self.store {
                Some(store) => match store.load(&topic, partition, &self.pipeline) {
                    Ok(Some(c)) => {
                        let next = Offset::Offset(c.offset + 1);
                        (Some(c), next)
                    }
                    Ok(None) => (None, Offset::Stored),
                    Err(err) => {
                        let _ = self.tx.blocking_send(Delivery::Failed(err));
                        (None, Offset::Stored)
                    }
                },
                None => (None, Offset::Stored),
            };
            tracing::info!(%topic, partition, ?offset, "partition assigned");
            let _ = list.add_partition_offset(&topic, partition, offset);
            given.push(PartitionAssigned {
                id,
                topic,
                partition,
                checkpoint,
            });
        }
        if let Err(e) = consumer.assign(&list) {
            let _ = self
                .tx
                .blocking_send(Delivery::Failed(kafka_error("assigning partitions")(e)));
        }
        let _ = self.tx.blocking_send(Delivery::Assigned(given));
    }

    /// One instance owns every key: assigns the partitions of the topics not assigned
    /// yet (all of them at the start), each from its offset in `resume` or the group's
    /// committed one, and tells the run loop.
    fn discover(&self, consumer: &BaseConsumer<Context>, d: &mut Discovery) -> bool {
        let mut list = TopicPartitionList::new();
        let mut given = Vec::new();
        for topic in &self.topics {
            let metadata = match consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "cannot read the topic's partitions; trying again");
                    continue;
                }
            };
            for t in metadata.topics() {
                if let Some(e) = t.error() {
                    if d.warned.insert(t.name().to_owned()) {
                        tracing::warn!(topic = t.name(), error = ?e, "the topic cannot be read yet; looking again every {} s", DISCOVERY.as_secs());
                    }
                    continue;
                }
                for p in t.partitions() {
                    let Some(id) = self.id(t.name(), p.id()) else {
                        continue;
                    };
                    if !d.known.insert(id) {
                        continue;
                    }
                    let offset = d
                        .resume
                        .get(&id)
                        .map_or(Offset::Stored, |&next| Offset::Offset(next));
                    tracing::info!(
                        topic = t.name(),
                        partition = p.id(),
                        ?offset,
                        "partition assigned"
                    );
                    let _ = list.add_partition_offset(t.name(), p.id(), offset);
                    given.push(PartitionAssigned {
                        id,
                        topic: t.name().to_owned(),
                        partition: p.id(),
                        checkpoint: None,
                    });
                }
            }
        }
        if given.is_empty() {
            return true;
        }
        if let Err(e) = consumer.incremental_assign(&list) {
            let e = kafka_error("assigning partitions")(e);
            return self.tx.blocking_send(Delivery::Failed(e)).is_ok();
        }
        // Before any record of them (records are handed on after the next poll round).
        self.hand_on() && self.tx.blocking_send(Delivery::Assigned(given)).is_ok()
    }

    fn revoke(&self, consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) {
        let ids: Vec<u32> = tpl
            .elements()
            .iter()
            .filter_map(|e| self.id(e.topic(), e.partition()))
            .collect();
        tracing::info!(partitions = ?ids, "partitions revoked");
        for e in tpl.elements() {
            self.metrics
                .forget_kafka_partition(e.topic(), e.partition());
        }
        if !self.closing.load(Ordering::Acquire) && self.hand_on() {
            let (ack, answer) = std_mpsc::sync_channel(1);
            if self.tx.blocking_send(Delivery::Revoked(ids, ack)).is_ok() {
                if let Ok(c) = answer.recv() {
                    self.commit(consumer, c);
                }
            }
        }
        if let Err(e) = consumer.unassign() {
            tracing::warn!(error = %e, "unassigning revoked partitions failed");
        }
    }
}

impl ClientContext for Context {
    /// librdkafka's statistics (every `statistics.interval.ms`): the consumer lag of each
    /// assigned partition, high watermark − position (the offset after the last record
    /// handed to the pipeline, or the committed offset before the first).
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (&partition, p) in &topic.partitions {
                if partition < 0 || !p.desired || p.hi_offset < 0 {
                    continue;
                }
                let position = if p.app_offset >= 0 {
                    p.app_offset
                } else if p.committed_offset >= 0 {
                    p.committed_offset
                } else {
                    continue;
                };
                self.metrics
                    .record_kafka_lag(name, partition, (p.hi_offset - position).max(0));
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::warn!(error = ?other, "rebalance error; dropping the assignment");
                self.revoke(consumer, tpl);
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &Rebalance<'_>) {}
}

impl Context {
    /// Commits `c` unless a checkpoint at least as new was committed already.
    fn commit(&self, consumer: &BaseConsumer<Context>, c: Commit) {
        if c.id <= self.committed.load(Ordering::Acquire) {
            tracing::debug!(
                checkpoint = c.id,
                "an older checkpoint's offsets: not committed"
            );
            return;
        }
        self.committed.fetch_max(c.id, Ordering::AcqRel);
        commit(consumer, &self.tpl(&c.offsets));
    }
}

/// How long a look for the topics' partitions waits for their metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How often one owner of every key looks for new partitions (a topic created or grown).
pub(crate) const DISCOVERY: Duration = Duration::from_secs(10);

/// The partitions one owner of every key has assigned itself.
struct Discovery {
    /// Where to start each partition (the checkpoint's next offsets).
    resume: HashMap<u32, i64>,
    known: HashSet<u32>,
    /// Topics said to be unreadable.
    warned: HashSet<String>,
    /// The last look (`None`: look at once).
    last: Option<std::time::Instant>,
}

fn commit(consumer: &BaseConsumer<Context>, tpl: &TopicPartitionList) {
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(tpl, CommitMode::Sync) {
        Ok(()) => tracing::debug!(partitions = tpl.count(), "offsets committed"),
        // The checkpoint files hold the positions; a failed commit only delays what
        // the group shows (lag) and is repeated with the next checkpoint.
        Err(e) => {
            tracing::warn!(error = %e, "committing offsets failed; retried at the next checkpoint")
        }
    }
}

/// The librdkafka settings of a consumer for `config`.
fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", config.enable_auto_commit.to_string())
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &config.auto_offset_reset)
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string());
    c
}

/// How often librdkafka reports statistics (the consumer-lag gauge follows them).
const STATISTICS_INTERVAL_MS: u32 = 1_000;

/// Starts the consumer thread: subscribes `config.topics` in `config.group_id` and sends
/// records and assignment changes to the returned receiver; `start` says where each
/// assigned partition is read from (where nothing says, the group's committed offsets, or
/// `auto_offset_reset`).
pub(crate) fn start_consumer(
    config: &KafkaConfig,
    start: Start,
    pipeline: String,
    buffer: usize,
    metrics: Arc<ProcessorMetrics>,
) -> ProcessorResult<(ConsumerHandle, mpsc::Receiver<Delivery>)> {
    let batch = config.max_poll_records.max(1) as usize;
    // `buffer` records wait between the consumer and the pipeline, in rounds of `batch`.
    let (tx, rx) = mpsc::channel(buffer.div_ceil(batch).max(2));
    let context = Context {
        topics: config.topics.clone(),
        store: match &start {
            Start::PartitionFiles(store) => store.clone(),
            Start::Positions(_) => None,
        },
        committed: AtomicU64::new(0),
        pipeline,
        tx,
        closing: AtomicBool::new(false),
        pending: Mutex::new(Vec::with_capacity(batch)),
        metrics,
    };
    let consumer: BaseConsumer<Context> = client_config(config)
        .create_with_context(context)
        .map_err(kafka_error(format!(
            "creating a consumer for {}",
            config.bootstrap_servers
        )))?;
    let discovery = match start {
        Start::PartitionFiles(_) => {
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&topics)
                .map_err(kafka_error(format!("subscribing to {:?}", config.topics)))?;
            None
        }
        Start::Positions(resume) => Some(Discovery {
            resume,
            known: HashSet::new(),
            warned: HashSet::new(),
            last: None,
        }),
    };
    let (commands, inbox) = std_mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || poll_loop(consumer, inbox, batch, discovery))
        .map_err(|e| ProcessorError::io("starting the Kafka consumer thread", e))?;
    Ok((
        ConsumerHandle {
            commands,
            thread: Some(thread),
        },
        rx,
    ))
}

/// Polls in rounds of at most `batch` records (`max_poll_records`), each handed to the
/// run loop as one delivery; between rounds, commits what the run loop asked for and (one
/// owner of every key) looks for new partitions.
fn poll_loop(
    consumer: BaseConsumer<Context>,
    inbox: std_mpsc::Receiver<Command>,
    batch: usize,
    mut discovery: Option<Discovery>,
) {
    let mut failures = 0u32;
    // The run loop no longer reads: it is ending. Its last checkpoint's commit may still
    // come; wait for it, or for the stop.
    let ending = |consumer: &BaseConsumer<Context>| {
        for command in inbox.iter() {
            match command {
                Command::Commit(c) => consumer.context().commit(consumer, c),
                Command::Stop => break,
            }
        }
    };
    'outer: loop {
        let due = |d: &&mut Discovery| d.last.is_none_or(|t| t.elapsed() >= DISCOVERY);
        if let Some(d) = discovery.as_mut().filter(due) {
            d.last = Some(std::time::Instant::now());
            if !consumer.context().discover(&consumer, d) {
                ending(&consumer);
                break;
            }
        }
        loop {
            match inbox.try_recv() {
                Ok(Command::Commit(c)) => consumer.context().commit(&consumer, c),
                Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => break 'outer,
                Err(std_mpsc::TryRecvError::Empty) => break,
            }
        }
        for i in 0..batch {
            // Wait for the round's first record; take what is there for the rest.
            let wait = if i == 0 { 100 } else { 0 };
            match consumer.poll(Duration::from_millis(wait)) {
                None => break,
                Some(Ok(m)) => {
                    failures = 0;
                    let context = consumer.context();
                    let Some(id) = context.id(m.topic(), m.partition()) else {
                        continue;
                    };
                    context
                        .pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(KafkaRecord {
                            id,
                            offset: m.offset(),
                            payload: m.payload().map(<[u8]>::to_vec),
                            timestamp: m.timestamp().to_millis(),
                        });
                }
                Some(Err(e)) => {
                    // librdkafka reconnects by itself; say so, and do not spin.
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(error = %e, failures, "kafka consumer error; retrying");
                    }
                    std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(20))));
                    break;
                }
            }
        }
        if !consumer.context().hand_on() {
            ending(&consumer);
            break 'outer;
        }
    }
    // Dropping the consumer leaves the group; the revoke that brings is not handed to the
    // run loop, which checkpointed and asked for its last commit before stopping.
    consumer.context().closing.store(true, Ordering::Release);
    drop(consumer);
}
