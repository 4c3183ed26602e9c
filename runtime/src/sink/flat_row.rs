use async_trait::async_trait;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::EventSink;
use crate::aggregation::AggregationResult;
use crate::error::ProcessorResult;
use crate::time::Rfc3339;

/// A result row in the flat shape people and tools read, the shape `pipeline!` rows have:
/// `window_start`, `window_end`, the key fields by name, each statistic by name (`count`
/// as an integer), `is_update`, and `replaces` (the windows of merged sessions, only when
/// there are some). [`AggregationResult`] stays the Rust API's type; this is how the
/// `processor` writes it as JSON.
///
/// ```
/// use llm_optimizer_processor::*;
/// use llm_optimizer_processor::sink::FlatRow;
/// use chrono::{TimeZone, Utc};
/// let row = AggregationResult {
///     key: GroupingKey::from_fields(&[("model", "m"), ("region", "eu")]),
///     window: Window::new(Utc.timestamp_opt(0, 0).unwrap(), Utc.timestamp_opt(60, 0).unwrap()),
///     results: [("count".to_string(), 3.0), ("p95".to_string(), 12.5)].into(),
///     is_update: false,
///     replaces: vec![],
/// };
/// assert_eq!(
///     serde_json::to_string(&FlatRow(row)).unwrap(),
///     r#"{"window_start":"1970-01-01T00:00:00Z","window_end":"1970-01-01T00:01:00Z","model":"m","region":"eu","count":3,"p95":12.5,"is_update":false}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FlatRow(pub AggregationResult);

impl Serialize for FlatRow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = &self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("window_start", &Rfc3339(&r.window.start))?;
        m.serialize_entry("window_end", &Rfc3339(&r.window.end))?;
        for (name, value) in r.key.fields() {
            m.serialize_entry(name, value)?;
        }
        for (name, value) in &r.results {
            let whole = value.fract() == 0.0 && value.abs() < 9.0e15;
            if name == "count" && whole {
                m.serialize_entry(name, &(*value as i64))?;
            } else {
                m.serialize_entry(name, value)?;
            }
        }
        m.serialize_entry("is_update", &r.is_update)?;
        if !r.replaces.is_empty() {
            let replaced: Vec<[Rfc3339<'_>; 2]> = r
                .replaces
                .iter()
                .map(|w| [Rfc3339(&w.start), Rfc3339(&w.end)])
                .collect();
            m.serialize_entry("replaces", &replaced)?;
        }
        m.end()
    }
}

/// Writes [`AggregationResult`] rows to a sink of [`FlatRow`]s (a [`FileSink`] or the
/// console), taking part in checkpoints as the inner sink does.
///
/// [`FileSink`]: super::FileSink
#[derive(Debug)]
pub struct FlatRows<S>(pub S);

#[async_trait]
impl<S: EventSink<FlatRow>> EventSink<AggregationResult> for FlatRows<S> {
    async fn send(&self, row: AggregationResult) -> ProcessorResult<()> {
        self.0.send(FlatRow(row)).await
    }
    async fn flush(&self) -> ProcessorResult<()> {
        self.0.flush().await
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn check(&self) -> ProcessorResult<()> {
        self.0.check()
    }
    fn bind_metrics(&self, metrics: &std::sync::Arc<crate::metrics::ProcessorMetrics>) {
        self.0.bind_metrics(metrics);
    }
    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        self.0.prepare_commit(checkpoint_id).await
    }
    async fn commit(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        self.0.commit(checkpoint_id).await
    }
    async fn recover(&self, checkpoint: Option<(u64, &[u8])>) -> ProcessorResult<()> {
        self.0.recover(checkpoint).await
    }
}
