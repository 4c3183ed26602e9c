//! Errors, error policies and the error handler that routes bad records.
//!
//! One `#[non_exhaustive]` error enum for the whole crate ([`ProcessorError`]), a
//! [`ProcessorResult`] alias, and the [`ErrorPolicy`] / [`ErrorHandler`] pair that decides
//! what happens to a record that cannot be processed: retried with backoff, skipped (and
//! counted), or sent to a dead-letter sink with its reason.

use std::time::Duration;

/// Result type of every fallible call of the crate.
pub type ProcessorResult<T> = Result<T, ProcessorError>;

/// Everything that can go wrong in the processor.
///
/// Messages are lowercase, without a trailing period, and say what to change where the
/// cause is a declaration or a config value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// A timestamp could not be assigned to a window (missing, out of range, …).
    #[error("window assignment failed: {0}")]
    WindowAssignment(String),
    /// An aggregation received a value it cannot use (NaN, infinity, …).
    #[error("aggregation failed: {0}")]
    Aggregation(String),
    /// The state backend failed or holds state this pipeline cannot read.
    #[error("state error: {0}")]
    State(String),
    /// The Kafka client (librdkafka through `rdkafka`) reported an error.
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaFailure),
    /// A record could not be decoded.
    #[error("cannot decode record: {0}")]
    Deserialization(String),
    /// A value could not be encoded.
    #[error("cannot encode value: {0}")]
    Serialization(String),
    /// A record lacks a field its key is made of (it is dead-lettered: grouping it under
    /// an empty key would invent a key nobody sent).
    #[error("missing key field `{0}`")]
    MissingKeyField(String),
    /// A record is stamped further in the future than the clock-skew guard allows
    /// (`watermark.max_future_skew_secs`); it would move the watermark past every
    /// honest record.
    #[error("clock skew: {0}")]
    ClockSkew(String),
    /// The pipeline declaration is invalid; the message says what to change.
    #[error("invalid pipeline: {0}")]
    InvalidPipeline(String),
    /// A configuration value is invalid; the message names the key and the fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A sink failed to accept a result.
    #[error("sink `{sink}` failed: {message}")]
    Sink {
        /// Name of the sink.
        sink: String,
        /// What went wrong.
        message: String,
    },
    /// An I/O operation failed.
    #[error("i/o error on {context}")]
    Io {
        /// What was being done (a path, a stream).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Any other failure, with its description.
    #[error("internal error: {0}")]
    Internal(String),
}

/// rdkafka's error type (an empty enum in a build without the `kafka` feature).
#[cfg(feature = "kafka")]
pub use rdkafka::error::KafkaError as KafkaClientError;

/// rdkafka's error type (an empty enum in a build without the `kafka` feature).
#[cfg(not(feature = "kafka"))]
#[derive(Debug, thiserror::Error)]
#[error("no Kafka client in this build")]
pub enum KafkaClientError {}

/// What the Kafka client failed to do, and rdkafka's error.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct KafkaFailure {
    /// What was being done (`producing to topic x`, `subscribing to [..]`).
    pub context: String,
    /// rdkafka's error (boxed: it is large, and errors travel in every `Result`).
    #[source]
    pub source: Box<KafkaClientError>,
}

impl ProcessorError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProcessorError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether retrying the same operation may succeed (I/O, Kafka, sinks).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProcessorError::Io { .. } | ProcessorError::Kafka(_) | ProcessorError::Sink { .. }
        )
    }

    /// A short stable name of the error kind, used in dead-letter records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProcessorError::WindowAssignment(_) => "window_assignment",
            ProcessorError::Aggregation(_) => "aggregation",
            ProcessorError::State(_) => "state",
            ProcessorError::Kafka(_) => "kafka",
            ProcessorError::Deserialization(_) => "deserialization",
            ProcessorError::Serialization(_) => "serialization",
            ProcessorError::MissingKeyField(_) => "missing_key_field",
            ProcessorError::ClockSkew(_) => "clock_skew",
            ProcessorError::InvalidPipeline(_) => "invalid_pipeline",
            ProcessorError::Config(_) => "config",
            ProcessorError::Sink { .. } => "sink",
            ProcessorError::Io { .. } => "io",
            ProcessorError::Internal(_) => "internal",
        }
    }
}

/// What to do with a record or a result that fails.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ErrorPolicy {
    /// Retry transient failures (sinks, I/O, Kafka) with exponential backoff; records that
    /// can never succeed (malformed input) go to the dead-letter sink.
    Retry {
        /// Attempts in all, the first included.
        max_attempts: u32,
        /// Delay before the second attempt; doubled after each failure.
        initial_delay: Duration,
        /// Upper bound of the delay.
        max_delay: Duration,
    },
    /// Skip the failing record; it is counted and logged, not kept.
    Skip,
    /// Send the failing record with its reason to the dead-letter sink (the default).
    #[default]
    DeadLetter,
}

impl ErrorPolicy {
    /// The delay before attempt `attempt` (1-based; attempt 1 has no delay).
    pub fn backoff(&self, attempt: u32) -> Duration {
        match self {
            ErrorPolicy::Retry {
                initial_delay,
                max_delay,
                ..
            } if attempt > 1 => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(2).min(30));
                initial_delay.saturating_mul(factor).min(*max_delay)
            }
            _ => Duration::ZERO,
        }
    }

    /// How many attempts a transient operation gets under this policy.
    pub fn attempts(&self) -> u32 {
        match self {
            ErrorPolicy::Retry { max_attempts, .. } => (*max_attempts).max(1),
            _ => 1,
        }
    }
}

pub use crate::sink::{ErrorDisposition, ErrorHandler};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = ErrorPolicy::Retry {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        assert_eq!(p.backoff(1), Duration::ZERO);
        assert_eq!(p.backoff(2), Duration::from_millis(100));
        assert_eq!(p.backoff(3), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(300));
        assert_eq!(p.attempts(), 5);
        assert_eq!(ErrorPolicy::Skip.attempts(), 1);
    }
}
