use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One LLM request and its outcome: the built-in event of the processor.
///
/// Reads and writes this JSON (unknown fields are ignored; `timestamp` is RFC 3339 or
/// epoch milliseconds and required; every other field may be missing and takes its default;
/// `rating` may be null):
///
/// ```
/// use llm_optimizer_processor::FeedbackEvent;
/// let line = r#"{"event_id":"ev-000000001","timestamp":"2026-01-01T00:00:00.720Z","model":"model-00",
///  "region":"ap-northeast-1","tenant":"tenant-00000","latency_ms":1328.738,"ttft_ms":397.61,
///  "input_tokens":760,"output_tokens":212,"cost_usd":0.000972,"rating":2,"success":true}"#;
/// let e: FeedbackEvent = serde_json::from_str(line).unwrap();
/// assert_eq!(e.model, "model-00");
/// assert_eq!(e.rating, Some(2.0));
/// let millis: FeedbackEvent = serde_json::from_str(r#"{"timestamp":1767225600720}"#).unwrap();
/// assert_eq!(millis.timestamp, e.timestamp);
/// assert!(serde_json::from_str::<FeedbackEvent>(r#"{"model":"m"}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, crate::Event)]
pub struct FeedbackEvent {
    /// Unique id of the event.
    #[serde(default)]
    pub event_id: String,
    /// When the request completed (event time).
    #[serde(with = "crate::event::timestamp_format")]
    #[event(timestamp)]
    pub timestamp: DateTime<Utc>,
    /// Model that served the request.
    #[serde(default)]
    #[event(key)]
    pub model: String,
    /// Region that served it.
    #[serde(default)]
    #[event(key)]
    pub region: String,
    /// Tenant (customer) that sent it.
    #[serde(default)]
    pub tenant: String,
    /// End-to-end latency in milliseconds.
    #[serde(default)]
    #[event(value)]
    pub latency_ms: f64,
    /// Time to first token in milliseconds.
    #[serde(default)]
    pub ttft_ms: f64,
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u32,
    /// Completion tokens.
    #[serde(default)]
    pub output_tokens: u32,
    /// Cost in US dollars.
    #[serde(default)]
    pub cost_usd: f64,
    /// User rating, when the user gave one.
    #[serde(default)]
    pub rating: Option<f64>,
    /// Whether the request succeeded (true when missing).
    #[serde(default = "succeeded")]
    pub success: bool,
}

impl Default for FeedbackEvent {
    fn default() -> Self {
        FeedbackEvent {
            event_id: String::new(),
            timestamp: DateTime::<Utc>::UNIX_EPOCH,
            model: String::new(),
            region: String::new(),
            tenant: String::new(),
            latency_ms: 0.0,
            ttft_ms: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            rating: None,
            success: true,
        }
    }
}

/// A generic performance measurement: `{metric_name, value, timestamp, tags}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceMetricsEvent {
    /// Name of the metric.
    pub metric_name: String,
    /// Its value.
    pub value: f64,
    /// When it was measured.
    #[serde(with = "crate::event::timestamp_format")]
    pub timestamp: DateTime<Utc>,
    /// Free-form dimensions (model, region, …).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn succeeded() -> bool {
    true
}
