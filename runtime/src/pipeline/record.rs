//! One record's way through a plan, shared by the run loops: what the record's envelope
//! gives ([`Envelope`]), what became of the event ([`Fed`]), the key hash that routes it,
//! the clock-skew guard, where each partition is, the rows a firing window gives, and the
//! dead-letter and late records a record may become.

use chrono::Utc;
use serde::Serialize;

use crate::error::ProcessorError;
use crate::event::GroupingKey;
use crate::operator::Admission;
use crate::sink::DeadLetterRecord;
use crate::source::SourcePosition;
use crate::time::from_millis;

/// Timestamp and key given by the record's envelope, which win over the event's own.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    /// Event time in epoch milliseconds.
    pub timestamp: Option<i64>,
    /// Grouping key (dynamic pipelines only).
    pub key: Option<GroupingKey>,
    /// Event time (ms) for an event whose own timestamp is missing or unreadable (a Kafka
    /// record's timestamp); derived events always have theirs.
    pub fallback_timestamp: Option<i64>,
    /// The fields the record had, when its decoder knows (the built-in
    /// [`FeedbackEvent`](crate::FeedbackEvent) decoded from JSON): a field outside the set
    /// was missing or null, which is not the same as zero.
    pub present: Option<crate::event::FeedbackFields>,
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// The event at this event time (ms) was offered to the operator.
    Offered(i64, Admission),
    /// The pipeline's filter left it out; its event time (ms) still moves the watermark.
    Filtered(i64),
}

/// A hash of a key that is the same in every process and run (SipHash with fixed keys).
pub fn key_hash<K: std::hash::Hash + ?Sized>(key: &K) -> u64 {
    use std::hash::Hasher;
    #[allow(
        deprecated,
        reason = "SipHasher is the stable, seedless hasher std offers"
    )]
    let mut h = std::hash::SipHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// A tick of processing time (every run loop's 200 ms ticker): a partition that went idle,
/// or a live source with nothing read since the last tick (`fed` false), releases the
/// watermark it holds; every partition's watermark goes to the metrics. Returns the
/// watermark to advance to, if it moved.
pub(super) fn idle_tick(
    watermark: &mut dyn crate::watermark::WatermarkGenerator,
    live: bool,
    fed: bool,
    metrics: &crate::metrics::ProcessorMetrics,
) -> Option<i64> {
    let mut pushed = watermark.on_tick(std::time::Instant::now());
    if live && !fed {
        pushed = watermark.on_source_idle().or(pushed);
    }
    for (p, _) in watermark.snapshot() {
        metrics.record_partition_watermark(p, watermark.partition_watermark(p));
    }
    if let Some(wm) = pushed {
        metrics.record_watermark(wm);
    }
    pushed
}

/// The clock-skew guard of one batch: records stamped after the wall clock plus the
/// allowed skew are dead letters.
#[derive(Debug, Clone, Copy)]
pub(super) struct SkewGuard {
    pub skew_ms: i64,
    pub wall_ms: i64,
}

impl SkewGuard {
    /// The guard as of now.
    pub fn now(skew_ms: i64) -> Self {
        SkewGuard {
            skew_ms,
            wall_ms: Utc::now().timestamp_millis(),
        }
    }

    /// The error for a record stamped `event_time`, if it is too far ahead.
    pub fn check(&self, event_time: i64) -> Option<ProcessorError> {
        (event_time > self.wall_ms.saturating_add(self.skew_ms)).then(|| {
            ProcessorError::ClockSkew(format!(
                "event time {} is more than {} s ahead of the wall clock ({}); raise watermark.max_future_skew_secs if such clocks are right",
                from_millis(event_time).to_rfc3339(),
                self.skew_ms / 1000,
                from_millis(self.wall_ms).to_rfc3339(),
            ))
        })
    }
}

/// The last record read per partition: what a checkpoint resumes after.
#[derive(Debug, Clone, Default)]
pub(super) struct Positions(Vec<Option<SourcePosition>>);

impl Positions {
    pub fn from_list(list: &[SourcePosition]) -> Self {
        let mut p = Positions::default();
        for x in list {
            p.record(x.partition, x.offset, x.sequence);
        }
        p
    }

    #[inline]
    pub fn record(&mut self, partition: u32, offset: u64, sequence: u64) {
        let i = partition as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(SourcePosition {
            partition,
            offset,
            sequence,
        });
    }

    /// The offset of the last record of `partition`.
    #[inline]
    pub fn offset(&self, partition: u32) -> Option<u64> {
        self.0
            .get(partition as usize)
            .copied()
            .flatten()
            .map(|p| p.offset)
    }

    pub fn list(&self) -> Vec<SourcePosition> {
        self.0.iter().flatten().copied().collect()
    }
}

/// The side-output record of an event late for every window it belongs to.
pub(super) fn late_record(
    event_time: i64,
    watermark: i64,
    lateness_ms: i64,
    source: &str,
    position: String,
    payload: String,
) -> DeadLetterRecord {
    DeadLetterRecord {
        kind: "late".into(),
        reason: format!(
            "late: event time {} is more than the allowed lateness ({lateness_ms} ms) behind the watermark {} for every window it belongs to",
            from_millis(event_time).to_rfc3339(),
            from_millis(watermark).to_rfc3339(),
        ),
        source: source.to_owned(),
        position,
        payload,
        timestamp: Utc::now(),
    }
}

pub(super) fn payload_text<T: Serialize>(event: &T, raw: Option<&[u8]>) -> String {
    match raw {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => serde_json::to_string(event).unwrap_or_default(),
    }
}

pub(super) fn dead_letter(
    err: &ProcessorError,
    source: &str,
    position: String,
    payload: String,
) -> DeadLetterRecord {
    DeadLetterRecord {
        kind: err.kind().into(),
        reason: err.to_string(),
        source: source.to_owned(),
        position,
        payload,
        timestamp: Utc::now(),
    }
}
