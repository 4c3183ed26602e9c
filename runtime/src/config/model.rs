use serde::{Deserialize, Serialize};

use crate::sink::KafkaProducerConfig;
use crate::source::KafkaConfig;

/// The whole file: everything lives under `processor:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The processor's settings.
    #[serde(default)]
    pub processor: ProcessorConfig,
}

/// Settings of one processor. Every key has an effect; defaults in [`Default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Worker tasks; events are routed to them by key hash.
    pub parallelism: usize,
    /// Records buffered between the source and the operator (backpressure bound).
    pub buffer_size: usize,
    /// Seconds between checkpoints (fractions allowed; `0` turns checkpoints off).
    pub checkpoint_interval_secs: f64,
    /// State backend.
    pub state: StateConfig,
    /// Windows.
    pub windows: WindowsConfig,
    /// Watermarks.
    pub watermark: WatermarkConfig,
    /// Statistics computed.
    pub aggregation: AggregationConfig,
    /// Bad records and failing sinks.
    pub error_handling: ErrorHandlingConfig,
    /// Kafka consumer and producer (used when `source.kind` is `kafka`).
    pub kafka: KafkaSection,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Where events come from.
    pub source: SourceConfig,
    /// Where result rows go.
    pub output: OutputConfig,
    /// Fields of `FeedbackEvent` to group by.
    pub keys: Vec<String>,
    /// The numeric field measured.
    pub measure: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            parallelism: 1,
            buffer_size: 10_000,
            checkpoint_interval_secs: 60.0,
            state: StateConfig::default(),
            windows: WindowsConfig::default(),
            watermark: WatermarkConfig::default(),
            aggregation: AggregationConfig::default(),
            error_handling: ErrorHandlingConfig::default(),
            kafka: KafkaSection::default(),
            metrics: MetricsConfig::default(),
            source: SourceConfig::default(),
            output: OutputConfig::default(),
            keys: vec!["model".into(), "region".into()],
            measure: "latency_ms".into(),
        }
    }
}

/// `state:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `memory` (checkpoints written to files in `checkpoint_path`) or `rocksdb`.
    pub backend: String,
    /// Directory of the live state (RocksDB).
    pub path: String,
    /// Directory of the checkpoints.
    pub checkpoint_path: String,
    /// Accumulators kept in memory at most before state spills to RocksDB (0: no bound).
    pub max_in_memory_windows: usize,
    /// Checkpoints kept (the oldest are deleted).
    pub retained_checkpoints: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            backend: "memory".into(),
            path: "state".into(),
            checkpoint_path: "checkpoints".into(),
            max_in_memory_windows: 0,
            retained_checkpoints: 3,
        }
    }
}

/// `windows:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsConfig {
    /// `tumbling`, `sliding` or `session`.
    pub default_type: String,
    /// Tumbling windows.
    pub tumbling: TumblingConfig,
    /// Sliding windows.
    pub sliding: SlidingConfig,
    /// Session windows.
    pub session: SessionConfig,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            default_type: "tumbling".into(),
            tumbling: TumblingConfig::default(),
            sliding: SlidingConfig::default(),
            session: SessionConfig::default(),
        }
    }
}

/// `windows.tumbling:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TumblingConfig {
    /// Window size.
    pub size_secs: u64,
    /// Allowed lateness.
    pub allowed_lateness_secs: u64,
}

impl Default for TumblingConfig {
    fn default() -> Self {
        TumblingConfig {
            size_secs: 300,
            allowed_lateness_secs: 60,
        }
    }
}

/// `windows.sliding:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlidingConfig {
    /// Window size.
    pub size_secs: u64,
    /// Distance between window starts.
    pub slide_secs: u64,
    /// Allowed lateness.
    pub allowed_lateness_secs: u64,
}

impl Default for SlidingConfig {
    fn default() -> Self {
        SlidingConfig {
            size_secs: 600,
            slide_secs: 60,
            allowed_lateness_secs: 60,
        }
    }
}

/// `windows.session:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Inactivity gap.
    pub gap_secs: u64,
    /// Allowed lateness.
    pub allowed_lateness_secs: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            gap_secs: 300,
            allowed_lateness_secs: 60,
        }
    }
}

/// `watermark:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatermarkConfig {
    /// `bounded_out_of_orderness`.
    pub strategy: String,
    /// The out-of-orderness bound.
    pub max_out_of_orderness_secs: u64,
    /// How much event time passes between two pushes of the watermark downstream (0: on
    /// every event). Event time, not a clock: the same input fires the same windows.
    pub emit_interval_secs: u64,
    /// The clock-skew guard: a record stamped more than this far ahead of the wall clock
    /// is dead-lettered and does not move the watermark (0: off).
    pub max_future_skew_secs: u64,
    /// A partition that sends nothing for this long (processing time) stops holding the
    /// combined watermark back until it sends again (0: never), so that an empty or quiet
    /// Kafka partition or topic does not stall every window. A file or stdin input is one
    /// partition: idleness changes nothing there.
    pub idle_timeout_secs: u64,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            strategy: "bounded_out_of_orderness".into(),
            max_out_of_orderness_secs: 30,
            emit_interval_secs: 10,
            max_future_skew_secs: 86_400,
            idle_timeout_secs: 30,
        }
    }
}

/// `aggregation:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregationConfig {
    /// Statistics: `count`, `sum`, `average`, `min`, `max`, `percentile`, `stddev`.
    pub enabled: Vec<String>,
    /// Percentiles computed when `percentile` is enabled.
    pub percentiles: Vec<f64>,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            enabled: [
                "count",
                "sum",
                "average",
                "min",
                "max",
                "percentile",
                "stddev",
            ]
            .map(String::from)
            .to_vec(),
            percentiles: vec![50.0, 95.0, 99.0],
        }
    }
}

/// `error_handling:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorHandlingConfig {
    /// `retry`, `skip` or `dead_letter`.
    pub policy: String,
    /// Attempts after the first (policy `retry`).
    pub max_retries: u32,
    /// First retry delay.
    pub initial_retry_delay_ms: u64,
    /// Largest retry delay.
    pub max_retry_delay_ms: u64,
    /// Dead-letter queue name (file `<dir>/<topic>.jsonl` until Kafka is built).
    pub dead_letter_topic: String,
}

impl Default for ErrorHandlingConfig {
    fn default() -> Self {
        ErrorHandlingConfig {
            policy: "dead_letter".into(),
            max_retries: 3,
            initial_retry_delay_ms: 100,
            max_retry_delay_ms: 5000,
            dead_letter_topic: "processor-dead-letter".into(),
        }
    }
}

/// `kafka:`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// The consumer.
    pub consumer: KafkaConfig,
    /// The producer.
    pub producer: KafkaProducerConfig,
    /// An event without a readable timestamp takes its Kafka record's timestamp.
    pub timestamp_fallback: bool,
    /// Every producer keys its records by the grouping key (all events of a key in one
    /// partition of one topic): each partition keeps its own state, and several instances
    /// of the group split the partitions. Off: one instance reads every partition and owns
    /// every key.
    pub partitioned_by_key: bool,
}

/// `metrics:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` over HTTP while running.
    pub enabled: bool,
    /// Seconds between metric log lines (0: none).
    pub export_interval_secs: u64,
    /// Address of the `/metrics` endpoint.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: false,
            export_interval_secs: 60,
            address: "127.0.0.1:9464".into(),
        }
    }
}

/// `source:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `sample` (the bundled events), `file`, `stdin` or `kafka`.
    pub kind: String,
    /// File of JSON lines (`kind: file`).
    pub path: String,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: "sample".into(),
            path: String::new(),
        }
    }
}

/// `output:`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// `console` or `file`.
    pub kind: String,
    /// File of JSON lines (`kind: file`).
    pub path: String,
    /// Console format: `table` or `json`.
    pub format: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            kind: "console".into(),
            path: String::new(),
            format: "table".into(),
        }
    }
}
