use serde::{Deserialize, Serialize};

/// Settings of the Kafka consumer a pipeline reads from.
///
/// ```
/// use llm_optimizer_processor::KafkaConfig;
/// let kafka_config = KafkaConfig {
///     bootstrap_servers: "localhost:9092".to_string(),
///     group_id: "my-processor".to_string(),
///     topics: vec!["feedback-events".to_string()],
///     ..Default::default()
/// };
/// assert!(!kafka_config.enable_auto_commit);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Brokers, `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Consumer group.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Let the client commit offsets on its own; off, so offsets are committed only with
    /// checkpoints.
    pub enable_auto_commit: bool,
    /// `earliest` or `latest`: where a group without committed offsets starts.
    pub auto_offset_reset: String,
    /// Consumer session timeout.
    pub session_timeout_ms: u32,
    /// Records fetched per poll.
    pub max_poll_records: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "llm-optimizer-processor".into(),
            topics: vec!["feedback-events".into()],
            enable_auto_commit: false,
            auto_offset_reset: "earliest".into(),
            session_timeout_ms: 30_000,
            max_poll_records: 500,
        }
    }
}
