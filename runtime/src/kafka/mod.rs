//! The Kafka connector (cargo feature `kafka`, on by default), on `rdkafka` (librdkafka):
//! a source, a result-row producer and a dead-letter producer.
//!
//! How a Kafka pipeline keeps its promises (see `pipeline/kafka_run.rs`):
//! - **Keys own state (the default).** The consumer assigns itself every partition of the
//!   topics ([`Start::Positions`]); records go to workers by key hash whatever partition
//!   they came on, and the pipeline is checkpointed as a file run is, each partition's
//!   offset in the checkpoint. Offsets are committed to the group after each checkpoint,
//!   with its id, never backwards ([`Commit`]).
//! - **Partitions are tasks (`partitioned_by_key`).** The consumer joins the group; each
//!   assigned partition has its own window operator and checkpoint file
//!   (`<checkpoint dir>/<group>/<pipeline>/<topic>-<partition>.ckpt`, sealed, atomic),
//!   which the next owner of the partition loads, so all instances of a group must reach
//!   the same checkpoint directory.
//! - **Watermarks per partition, combined by minimum**, an idle partition left out after
//!   the watermark generator's idle timeout.

mod consumer;
mod partition_store;
mod producer;

pub(crate) use consumer::{
    start_consumer, Commit, Committer, ConsumerHandle, Delivery, KafkaRecord, PartitionAssigned,
    Start,
};
pub(crate) use partition_store::{PartitionCheckpoint, PartitionStore, Saved};
pub(crate) use producer::RecordProducer;

use rdkafka::error::KafkaError;

use crate::error::ProcessorError;

/// Wraps rdkafka's error with what was being done.
pub(crate) fn kafka_error(context: impl Into<String>) -> impl FnOnce(KafkaError) -> ProcessorError {
    let context = context.into();
    move |source| {
        ProcessorError::Kafka(crate::error::KafkaFailure {
            context,
            source: Box::new(source),
        })
    }
}

/// How many partitions of one topic a pipeline tells apart: partition ids inside the
/// pipeline are `topic index × TOPIC_STRIDE + partition`.
pub(crate) const TOPIC_STRIDE: u32 = 4096;
