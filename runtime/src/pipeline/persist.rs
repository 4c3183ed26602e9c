//! Where a run's checkpoints go and what one holds per worker: the pipeline's
//! [`Checkpointer`] (file and stdin runs), or one file per Kafka partition.

#[cfg(feature = "kafka")]
use std::time::Instant;

use super::checkpoint::{Checkpointer, Meta};
#[cfg(feature = "kafka")]
use super::sinks::SinkSet;
#[cfg(feature = "kafka")]
use crate::error::ProcessorResult;
#[cfg(feature = "kafka")]
use crate::kafka::{PartitionCheckpoint, PartitionStore, Saved};
#[cfg(feature = "kafka")]
use crate::metrics::ProcessorMetrics;

/// Where a Kafka partition's operator reads from.
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub topic: String,
    pub partition: i32,
}

/// One operator of a worker at a checkpoint barrier.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(super) struct SlotState {
    pub slot: u32,
    pub place: Option<Place>,
    /// The offset of the last record in it (Kafka).
    pub last_offset: Option<i64>,
    pub state: Vec<u8>,
}

/// What a checkpoint writes once every worker's state is in. `reply`, if given, gets the
/// offsets the checkpoint made durable (a Kafka revocation waits for them).
pub(super) enum Begin {
    /// The pipeline's checkpoint record (the [`Checkpointer`]).
    Files {
        meta: Meta,
        reply: Option<tokio::sync::oneshot::Sender<Commit>>,
    },
    /// A checkpoint of each Kafka partition's own state (`partitioned_by_key`), with its
    /// watermark mark.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Kafka {
        id: u64,
        marks: Vec<(u32, i64)>,
        reply: Option<tokio::sync::oneshot::Sender<Commit>>,
    },
}

#[cfg(feature = "kafka")]
pub(super) use crate::kafka::{Commit, Committer};

/// The offsets a checkpoint made durable (see `crate::kafka`; without Kafka, never sent).
#[cfg(not(feature = "kafka"))]
#[derive(Debug, Clone, Default)]
pub(super) struct Commit {
    pub id: u64,
    pub offsets: Vec<(u32, i64)>,
}

/// Sends commits to a Kafka consumer; there is none without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
#[derive(Debug, Clone)]
pub(super) enum Committer {}

#[cfg(not(feature = "kafka"))]
impl Committer {
    pub fn commit(&self, _: Commit) {
        match *self {}
    }
}

/// Where checkpoints go.
pub(super) enum Persist {
    Files(Checkpointer),
    #[cfg(feature = "kafka")]
    Kafka(KafkaPersist),
}

#[cfg(feature = "kafka")]
/// Where a Kafka pipeline's checkpoints go: each partition's state in its own file,
/// between the result sinks' prepare and commit, as one aligned checkpoint over every
/// worker (see [`super::router`]).
pub(crate) struct KafkaPersist {
    pub store: PartitionStore,
    pub describe: String,
}

#[cfg(feature = "kafka")]
impl KafkaPersist {
    /// Writes checkpoint `id`: result sinks deliver everything, each partition's state is
    /// written with its watermark mark, sinks publish; returns the next offset to commit
    /// per partition.
    pub(super) async fn checkpoint<R: Send + 'static>(
        &self,
        id: u64,
        marks: &[(u32, i64)],
        states: Vec<SlotState>,
        set: SinkSet<'_, R>,
        metrics: &ProcessorMetrics,
    ) -> ProcessorResult<Vec<(u32, i64)>> {
        let t0 = Instant::now();
        for sink in set.results {
            set.handler.retry(|| sink.prepare_commit(id)).await?;
        }
        if let Some(s) = set.late {
            set.handler.retry(|| s.flush()).await?;
        }
        let dead = set.handler.dead_letter_sink();
        set.handler.retry(|| dead.flush()).await?;
        let mut offsets = Vec::new();
        for s in states {
            let (Some(place), Some(offset)) = (s.place, s.last_offset) else {
                continue;
            };
            let max_event_time = marks
                .iter()
                .find(|(p, _)| *p == s.slot)
                .map_or(i64::MIN, |&(_, m)| m);
            let c = PartitionCheckpoint {
                pipeline: self.describe.clone(),
                offset,
                max_event_time,
                operator: s.state,
            };
            match self.store.save(&place.topic, place.partition, &c)? {
                Saved::Written => offsets.push((s.slot, offset + 1)),
                Saved::Fenced { current, mine } => {
                    // The group gave the partition to another instance since: its state
                    // and offsets are the new owner's to write.
                    tracing::warn!(
                        topic = %place.topic,
                        partition = place.partition,
                        epoch = current,
                        claimed = ?mine,
                        "partition claimed by another instance since: its checkpoint is not written"
                    );
                }
            }
        }
        for sink in set.results {
            sink.commit(id).await?;
        }
        metrics.record_checkpoint(id, t0.elapsed());
        tracing::debug!(
            checkpoint = id,
            partitions = offsets.len(),
            "partitions checkpointed"
        );
        Ok(offsets)
    }
}
