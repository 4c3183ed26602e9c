use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::EventSink;
use crate::aggregation::AggregationResult;
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

/// Publishes result rows to a Kafka topic.
///
/// The Kafka connector is not part of this build yet: a pipeline holding this sink is
/// rejected by `build()` with an error that says so, rather than accepting rows it would
/// not deliver.
#[derive(Debug, Clone)]
pub struct KafkaAggregationSink {
    config: KafkaProducerConfig,
}

impl KafkaAggregationSink {
    /// A sink for this producer configuration.
    pub fn new(config: KafkaProducerConfig) -> Self {
        KafkaAggregationSink { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &KafkaProducerConfig {
        &self.config
    }

    fn unavailable(&self) -> ProcessorError {
        ProcessorError::Kafka(format!(
            "cannot publish to topic `{}`: the Kafka connector is not available in this build; use a file or console sink",
            self.config.result_topic
        ))
    }
}

#[async_trait]
impl EventSink<AggregationResult> for KafkaAggregationSink {
    async fn send(&self, _: AggregationResult) -> ProcessorResult<()> {
        Err(self.unavailable())
    }
    fn name(&self) -> &str {
        "kafka"
    }
    fn check(&self) -> ProcessorResult<()> {
        Err(self.unavailable())
    }
}
