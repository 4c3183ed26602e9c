use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::{EventSink, FileSink};
use crate::error::ProcessorResult;

/// A record that could not be processed, with why and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// What kind of failure: `late`, `deserialization`, `window_assignment`, `aggregation`, …
    pub kind: String,
    /// The reason, readable.
    pub reason: String,
    /// Where it came from (`file:events.jsonl`, `stdin`, `memory`, a topic).
    pub source: String,
    /// Position inside the source (`line 17 (byte 2048)`, `partition 3 offset 42`).
    pub position: String,
    /// The original payload (the JSON line as read, or the event re-encoded).
    pub payload: String,
    /// When it was dead-lettered.
    pub timestamp: DateTime<Utc>,
}

/// A dead-letter queue. Until Kafka is connected it is file-backed: records go as JSON
/// lines to `<dir>/<topic>.jsonl`, where `<dir>` is `$PROCESSOR_DEAD_LETTER_DIR` or
/// `dead-letter` (the file is created with the first record).
///
/// ```
/// use llm_optimizer_processor::*;
/// let dir = tempfile::tempdir().unwrap();
/// let sink = DeadLetterSink::new("errors-topic").with_dir(dir.path());
/// assert!(sink.path().ends_with("errors-topic.jsonl"));
/// ```
#[derive(Debug)]
pub struct DeadLetterSink {
    topic: String,
    file: FileSink<DeadLetterRecord>,
}

impl DeadLetterSink {
    /// A dead-letter queue named `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        let dir = std::env::var_os("PROCESSOR_DEAD_LETTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("dead-letter"));
        let topic = topic.into();
        DeadLetterSink {
            file: FileSink::new(dir.join(format!("{topic}.jsonl"))),
            topic,
        }
    }

    /// Keeps the file in `dir` instead.
    pub fn with_dir(self, dir: impl AsRef<Path>) -> Self {
        DeadLetterSink {
            file: FileSink::new(dir.as_ref().join(format!("{}.jsonl", self.topic))),
            topic: self.topic,
        }
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The file the records go to.
    pub fn path(&self) -> &Path {
        self.file.path()
    }
}

#[async_trait]
impl EventSink<DeadLetterRecord> for DeadLetterSink {
    async fn send(&self, record: DeadLetterRecord) -> ProcessorResult<()> {
        tracing::debug!(kind = %record.kind, reason = %record.reason, "dead letter");
        self.file.send(record).await
    }
    async fn flush(&self) -> ProcessorResult<()> {
        EventSink::<DeadLetterRecord>::flush(&self.file).await
    }
    fn name(&self) -> &str {
        &self.topic
    }
}
