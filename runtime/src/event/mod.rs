//! Events: the envelope [`ProcessorEvent`] with its timestamp, key and metadata, the
//! [`GroupingKey`] of the dynamic builder, and the built-in event types.

mod builtin;
mod feedback_decoder;
mod grouping_key;
pub mod timestamp_format;

pub use builtin::{FeedbackEvent, PerformanceMetricsEvent};
pub(crate) use feedback_decoder::static_name;
pub use feedback_decoder::{FeedbackDecoder, FeedbackFields, UnknownField};
pub use grouping_key::GroupingKey;
pub(crate) use grouping_key::KeyView;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which clock a timestamp was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventTimestamp {
    /// The time the event happened, read from the event itself (event time).
    Event(DateTime<Utc>),
    /// The time the record was written to the source (a Kafka record timestamp).
    Ingestion(DateTime<Utc>),
    /// The wall-clock time the processor saw it (processing time).
    Processing(DateTime<Utc>),
}

impl EventTimestamp {
    /// The instant, whatever its clock.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            EventTimestamp::Event(t)
            | EventTimestamp::Ingestion(t)
            | EventTimestamp::Processing(t) => *t,
        }
    }
}

/// Where a record came from and how to refer to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// An identifier of the event (the source position when the event has none).
    pub id: String,
    /// The source the record was read from (a file path, a topic).
    pub source: String,
    /// The source partition; watermarks are tracked per partition.
    pub partition: u32,
    /// The position inside the partition (line number, Kafka offset).
    pub offset: u64,
}

/// One event on its way through a pipeline: the payload, its timestamp, its key and
/// where it came from.
///
/// The envelope dereferences to its [`EventMetadata`], so `event.id` and
/// `event.partition` read directly.
///
/// ```
/// use llm_optimizer_processor::*;
/// use chrono::Utc;
///
/// let key = GroupingKey::from_fields(&[("model", "claude-3-opus"), ("region", "us-west-2")]);
/// let event = ProcessorEvent {
///     data: FeedbackEvent::default(),
///     timestamp: EventTimestamp::Event(Utc::now()),
///     processing_time: Utc::now(),
///     key: Some(key),
///     metadata: EventMetadata::default(),
/// };
/// assert_eq!(event.key.as_ref().unwrap().get("region"), Some("us-west-2"));
/// assert_eq!(event.id, "");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessorEvent<T> {
    /// The payload.
    pub data: T,
    /// Its timestamp; event time decides windows.
    pub timestamp: EventTimestamp,
    /// When the processor received it.
    pub processing_time: DateTime<Utc>,
    /// Its grouping key; `None` lets the pipeline compute it from the payload.
    pub key: Option<GroupingKey>,
    /// Where it came from.
    pub metadata: EventMetadata,
}

impl<T> ProcessorEvent<T> {
    /// An event with this payload and event time, received now, keyless, partition 0.
    pub fn new(data: T, event_time: DateTime<Utc>) -> Self {
        ProcessorEvent {
            data,
            timestamp: EventTimestamp::Event(event_time),
            processing_time: Utc::now(),
            key: None,
            metadata: EventMetadata::default(),
        }
    }

    /// The same event with this key.
    pub fn with_key(mut self, key: GroupingKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The same event, read from this source partition.
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.metadata.partition = partition;
        self
    }
}

impl<T> std::ops::Deref for ProcessorEvent<T> {
    type Target = EventMetadata;
    fn deref(&self) -> &EventMetadata {
        &self.metadata
    }
}
