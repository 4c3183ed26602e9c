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

/// A dead-letter queue. By default file-backed: records go as JSON lines to
/// `<dir>/<topic>.jsonl`, where `<dir>` is `$PROCESSOR_DEAD_LETTER_DIR` or `dead-letter`
/// (the file is created with the first record, and a new run adds to it: it is never
/// truncated). In a pipeline that takes checkpoints the file takes part in them like a
/// [`FileSink`] of results: records are staged, published with the checkpoint and cut
/// back to it on restore, so after any number of crashes each record is in the file
/// exactly once.
///
/// With [`with_kafka`](Self::with_kafka) they are produced to the Kafka topic `topic`
/// instead: the original payload as the value, the record key `<source>@<position>`
/// (the same for a record dead-lettered again after a restart, so duplicates are
/// recognisable: Kafka output is at least once), and headers `dlq.kind`, `dlq.reason`,
/// `dlq.source`, `dlq.position`, `dlq.timestamp`.
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
    #[cfg(feature = "kafka")]
    kafka: Option<crate::kafka::RecordProducer>,
}

impl DeadLetterSink {
    /// A dead-letter queue named `topic`.
    pub fn new(topic: impl Into<String>) -> Self {
        let dir = std::env::var_os("PROCESSOR_DEAD_LETTER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("dead-letter"));
        let topic = topic.into();
        DeadLetterSink {
            file: FileSink::appending(dir.join(format!("{topic}.jsonl"))),
            topic,
            #[cfg(feature = "kafka")]
            kafka: None,
        }
    }

    /// Keeps the file in `dir` instead.
    pub fn with_dir(self, dir: impl AsRef<Path>) -> Self {
        DeadLetterSink {
            file: FileSink::appending(dir.as_ref().join(format!("{}.jsonl", self.topic))),
            ..self
        }
    }

    /// Produces the records to the Kafka topic named like this queue, with the brokers,
    /// compression, acks and retries of `config` (its `result_topic` is not used).
    #[cfg(feature = "kafka")]
    pub fn with_kafka(self, config: &super::KafkaProducerConfig) -> ProcessorResult<Self> {
        Ok(DeadLetterSink {
            kafka: Some(crate::kafka::RecordProducer::new(config, &self.topic)?),
            ..self
        })
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
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            let key = format!("{}@{}", record.source, record.position).into_bytes();
            let headers = vec![
                ("dlq.kind", record.kind.into_bytes()),
                ("dlq.reason", record.reason.into_bytes()),
                ("dlq.source", record.source.into_bytes()),
                ("dlq.position", record.position.into_bytes()),
                ("dlq.timestamp", record.timestamp.to_rfc3339().into_bytes()),
            ];
            return k
                .send(Some(key), record.payload.into_bytes(), headers)
                .await;
        }
        self.file.send(record).await
    }
    async fn flush(&self) -> ProcessorResult<()> {
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            return k.flush().await;
        }
        EventSink::<DeadLetterRecord>::flush(&self.file).await
    }
    fn name(&self) -> &str {
        &self.topic
    }
    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            k.flush().await?;
            return Ok(Vec::new());
        }
        self.file.prepare_commit(checkpoint_id).await
    }
    async fn commit(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        #[cfg(feature = "kafka")]
        if self.kafka.is_some() {
            return Ok(());
        }
        EventSink::<DeadLetterRecord>::commit(&self.file, checkpoint_id).await
    }
    async fn recover(&self, checkpoint: Option<(u64, &[u8])>) -> ProcessorResult<()> {
        #[cfg(feature = "kafka")]
        if self.kafka.is_some() {
            return Ok(());
        }
        EventSink::<DeadLetterRecord>::recover(&self.file, checkpoint).await
    }
}
