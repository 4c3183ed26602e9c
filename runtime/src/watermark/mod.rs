//! Watermarks: how far event time has progressed, per source partition and combined.
//!
//! A watermark `W` says "no more events older than `W` are expected". The bounded
//! out-of-orderness generator keeps, per partition, `W = max event time seen − bound`;
//! the pipeline's watermark is the minimum over the active partitions. Lateness is judged
//! against the event's own partition watermark as it stood after that partition's previous
//! record, so the outcome does not depend on how partitions interleave or on any clock.

mod bounded;
mod late;
mod periodic;

pub use bounded::BoundedOutOfOrdernessWatermark;
pub use late::LateEventHandler;
pub use periodic::PeriodicWatermarkGenerator;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Instant;

use crate::time::{from_millis, to_millis};

/// A point in event time: every event older than it is expected to have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Watermark {
    /// The event time reached.
    pub timestamp: DateTime<Utc>,
}

impl Watermark {
    /// A watermark at this instant.
    pub fn new(timestamp: DateTime<Utc>) -> Self {
        Watermark { timestamp }
    }
    /// A watermark from epoch milliseconds (clamped to chrono's range).
    pub fn from_millis(ms: i64) -> Self {
        Watermark::new(from_millis(ms))
    }
    /// The watermark in epoch milliseconds.
    pub fn millis(&self) -> i64 {
        to_millis(self.timestamp)
    }
    /// The watermark before any event: the earliest representable instant.
    pub fn min() -> Self {
        Watermark::new(DateTime::<Utc>::MIN_UTC)
    }
}

/// Produces watermarks from the events of a stream.
///
/// Times are epoch milliseconds (`i64::MIN` = no watermark yet); `now` is processing time,
/// used only for idleness, never to judge lateness or to decide when to emit.
pub trait WatermarkGenerator: Send {
    /// Observes an event of `partition`; returns the combined watermark when it advanced
    /// and is due to be emitted now.
    fn on_event(&mut self, partition: u32, event_time_ms: i64, now: Instant) -> Option<i64>;
    /// A periodic tick: returns the combined watermark when it advanced and is due
    /// (periodic emission, partitions that went idle).
    fn on_tick(&mut self, now: Instant) -> Option<i64>;
    /// The watermark of one partition (what its lateness is judged against).
    fn partition_watermark(&self, partition: u32) -> i64;
    /// The last combined watermark emitted, in milliseconds.
    fn emitted_millis(&self) -> i64;
    /// Makes a partition known before its first event, so that it holds the combined
    /// watermark back until it sends something or goes idle.
    fn register_partition(&mut self, partition: u32, now: Instant);
    /// Forgets a partition (a Kafka partition revoked from this instance): it no longer
    /// holds the combined watermark back. The default keeps it.
    fn unregister_partition(&mut self, partition: u32) {
        let _ = partition;
    }
    /// The last combined watermark emitted.
    fn current_watermark(&self) -> Watermark {
        Watermark::from_millis(self.emitted_millis())
    }
    /// Per-partition event-time state, for checkpoints: `(partition, max event time)`.
    fn snapshot(&self) -> Vec<(u32, i64)>;
    /// Restores what [`snapshot`](Self::snapshot) returned.
    fn restore(&mut self, partitions: &[(u32, i64)], now: Instant);
    /// After [`restore`](Self::restore): the last watermark the restored run had pushed
    /// downstream, so that the next pushes fall where an uninterrupted run's would. The
    /// default keeps what `restore` computed.
    fn restore_emitted(&mut self, emitted_ms: i64) {
        let _ = emitted_ms;
    }
    /// A live source has had no records for a while: returns the combined watermark when
    /// it is ahead of what was pushed (a generator that holds pushes back releases them).
    /// The default pushes nothing: a generator that emits on every event holds nothing.
    fn on_source_idle(&mut self) -> Option<i64> {
        None
    }
}

impl<G: WatermarkGenerator + ?Sized> WatermarkGenerator for Box<G> {
    fn on_event(&mut self, partition: u32, event_time_ms: i64, now: Instant) -> Option<i64> {
        (**self).on_event(partition, event_time_ms, now)
    }
    fn on_tick(&mut self, now: Instant) -> Option<i64> {
        (**self).on_tick(now)
    }
    fn partition_watermark(&self, partition: u32) -> i64 {
        (**self).partition_watermark(partition)
    }
    fn emitted_millis(&self) -> i64 {
        (**self).emitted_millis()
    }
    fn register_partition(&mut self, partition: u32, now: Instant) {
        (**self).register_partition(partition, now)
    }
    fn unregister_partition(&mut self, partition: u32) {
        (**self).unregister_partition(partition)
    }
    fn snapshot(&self) -> Vec<(u32, i64)> {
        (**self).snapshot()
    }
    fn restore(&mut self, partitions: &[(u32, i64)], now: Instant) {
        (**self).restore(partitions, now)
    }
    fn restore_emitted(&mut self, emitted_ms: i64) {
        (**self).restore_emitted(emitted_ms)
    }
    fn on_source_idle(&mut self) -> Option<i64> {
        (**self).on_source_idle()
    }
}
