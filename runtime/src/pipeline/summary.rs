//! What a run did: the counts every run loop keeps and a checkpoint records.

/// What a finished run did. Every record read is accounted for: `events_in =
/// events_aggregated + events_late + events_dead_lettered + events_skipped + events_filtered`.
/// A run resumed from a checkpoint counts from the start of the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Records read from the source.
    pub events_in: u64,
    /// Events taken into at least one window.
    pub events_aggregated: u64,
    /// Events past the allowed lateness (sent to the side output, or dropped on request).
    pub events_late: u64,
    /// Records that failed and went to the dead-letter sink.
    pub events_dead_lettered: u64,
    /// Records that failed and were skipped (policy `Skip`).
    pub events_skipped: u64,
    /// Events a pipeline's filter left out.
    pub events_filtered: u64,
    /// Result rows emitted (updates included).
    pub rows_emitted: u64,
    /// Of those, rows revising an earlier row.
    pub update_rows: u64,
    /// The last combined watermark (ms), before the final flush.
    pub final_watermark: i64,
}
