use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{EventSink, ResultRow};
use crate::error::{ProcessorError, ProcessorResult};

/// Settings of the Kafka producer that publishes result rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaProducerConfig {
    /// Brokers, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Topic the rows go to.
    pub result_topic: String,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression_type: String,
    /// `0`, `1` or `all`.
    pub acks: String,
    /// Retries of a failed send.
    pub retries: u32,
}

impl Default for KafkaProducerConfig {
    fn default() -> Self {
        KafkaProducerConfig {
            bootstrap_servers: "localhost:9092".into(),
            result_topic: "aggregated-metrics".into(),
            compression_type: "lz4".into(),
            acks: "all".into(),
            retries: 3,
        }
    }
}

/// Publishes result rows to a Kafka topic as JSON (the row as [`AggregationResult`]
/// serializes), with the message key `<grouping key>@<window start>` (RFC 3339), so that
/// a compacted topic keeps the latest row of each key and window, and headers
/// `window_start` / `window_end` (RFC 3339) and `is_update` (`true`/`false`).
///
/// Rows are produced without waiting per row; a checkpoint (and the end of a run) waits
/// until the broker acknowledged every row, sending failed ones again. Without
/// transactions (brokers such as tansu have none), a row produced after the last
/// checkpoint is produced again after a crash: consumers see it twice with the same key
/// and value (at-least-once, idempotent by key).
///
/// ```no_run
/// use llm_optimizer_processor::*;
/// let sink = KafkaAggregationSink::new(KafkaProducerConfig {
///     bootstrap_servers: "localhost:9092".to_string(),
///     result_topic: "aggregated-metrics".to_string(),
///     compression_type: "lz4".to_string(),
///     acks: "all".to_string(),
///     retries: 3,
/// });
/// ```
pub struct KafkaAggregationSink {
    config: KafkaProducerConfig,
    #[cfg(feature = "kafka")]
    producer: Result<crate::kafka::RecordProducer, String>,
}

impl std::fmt::Debug for KafkaAggregationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAggregationSink")
            .field("config", &self.config)
            .finish()
    }
}

impl KafkaAggregationSink {
    /// A sink for this producer configuration.
    pub fn new(config: KafkaProducerConfig) -> Self {
        KafkaAggregationSink {
            #[cfg(feature = "kafka")]
            producer: crate::kafka::RecordProducer::new(&config, &config.result_topic)
                .map_err(|e| e.to_string()),
            config,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &KafkaProducerConfig {
        &self.config
    }

    #[cfg(feature = "kafka")]
    fn producer(&self) -> ProcessorResult<&crate::kafka::RecordProducer> {
        self.producer
            .as_ref()
            .map_err(|e| ProcessorError::Config(format!("kafka.producer: {e}")))
    }
}

/// The message key of a row: grouping key and window start.
#[cfg(feature = "kafka")]
pub(crate) fn row_key<R: ResultRow>(row: &R) -> String {
    format!("{}@{}", row.key_text(), row.window_start().to_rfc3339())
}

/// Any [`ResultRow`]: `AggregationResult`s and `pipeline!` rows (their own JSON shape).
#[cfg(feature = "kafka")]
#[async_trait]
impl<R: ResultRow> EventSink<R> for KafkaAggregationSink {
    async fn send(&self, row: R) -> ProcessorResult<()> {
        let producer = self.producer()?;
        let payload = serde_json::to_vec(&row)
            .map_err(|e| ProcessorError::Serialization(format!("result row: {e}")))?;
        let headers = vec![
            ("window_start", row.window_start().to_rfc3339().into_bytes()),
            ("window_end", row.window_end().to_rfc3339().into_bytes()),
            ("is_update", row.is_update().to_string().into_bytes()),
        ];
        producer
            .send(Some(row_key(&row).into_bytes()), payload, headers)
            .await
    }
    async fn flush(&self) -> ProcessorResult<()> {
        self.producer()?.flush().await
    }
    fn name(&self) -> &str {
        "kafka"
    }
    fn check(&self) -> ProcessorResult<()> {
        self.producer().map(|_| ())
    }
}

#[cfg(not(feature = "kafka"))]
#[async_trait]
impl<R: ResultRow> EventSink<R> for KafkaAggregationSink {
    async fn send(&self, _: R) -> ProcessorResult<()> {
        <Self as EventSink<R>>::check(self)
    }
    fn name(&self) -> &str {
        "kafka"
    }
    fn check(&self) -> ProcessorResult<()> {
        Err(ProcessorError::InvalidPipeline(format!(
            "cannot publish to topic `{}`: this build has no Kafka connector; build with the cargo feature `kafka`",
            self.config.result_topic
        )))
    }
}
