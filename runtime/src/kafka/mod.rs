//! The Kafka connector (cargo feature `kafka`, on by default), on `rdkafka` (librdkafka):
//! a consumer-group source whose partitions each carry their own window state and
//! checkpoint, a result-row producer and a dead-letter producer.
//!
//! How a Kafka pipeline keeps its promises:
//! - **Partitions are tasks.** Each assigned partition has its own window operator, as a
//!   Kafka Streams task has its own store: a partition's state moves with the partition
//!   when the group rebalances. Produce events keyed by the grouping key (all events of a
//!   key in one partition), or each partition reports its own row for that key.
//! - **Checkpoints per partition.** Every checkpoint interval, and when a partition is
//!   revoked, its operator state, watermark and last offset are written to
//!   `<checkpoint dir>/<group>/<pipeline>/<topic>-<partition>.ckpt` (sealed, atomic), and
//!   only then is the offset committed to the group. The instance that gets the partition
//!   next loads that file and seeks to the offset after it, so all instances of a group
//!   must reach the same checkpoint directory (a shared volume, as Flink's checkpoint
//!   storage).
//! - **Watermarks per partition, combined by minimum** over the assigned partitions, an
//!   idle partition left out after the watermark generator's idle timeout.

mod consumer;
mod partition_store;
mod producer;

pub(crate) use consumer::{start_consumer, Delivery, KafkaRecord};
pub(crate) use partition_store::{PartitionCheckpoint, PartitionStore};
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
