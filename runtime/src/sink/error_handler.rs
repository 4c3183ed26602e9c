//! [`ErrorHandler`]: the error policy applied, with the dead-letter sink it routes bad
//! records to (also `llm_optimizer_processor::error::ErrorHandler`, where the API
//! reference finds it).

use std::sync::Arc;

use super::{DeadLetterRecord, DeadLetterSink, EventSink};
use crate::error::{ErrorPolicy, ProcessorResult};

/// Applies an [`ErrorPolicy`]: routes bad records to the dead-letter sink or skips them,
/// and retries transient operations with backoff.
///
/// ```
/// use llm_optimizer_processor::error::*;
/// use llm_optimizer_processor::DeadLetterSink;
/// use std::time::Duration;
///
/// let retry = ErrorHandler::new(ErrorPolicy::Retry {
///     max_attempts: 3,
///     initial_delay: Duration::from_millis(100),
///     max_delay: Duration::from_secs(5),
/// });
/// assert_eq!(retry.policy().backoff(3), Duration::from_millis(200));
/// let skip = ErrorHandler::new(ErrorPolicy::Skip);
/// let dead_letter = ErrorHandler::new(ErrorPolicy::DeadLetter)
///     .with_sink(DeadLetterSink::new("errors-topic"));
/// # let _ = (skip, dead_letter);
/// ```
#[derive(Clone)]
pub struct ErrorHandler {
    policy: ErrorPolicy,
    sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
}

impl std::fmt::Debug for ErrorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorHandler")
            .field("policy", &self.policy)
            .field("has_sink", &self.sink.is_some())
            .finish()
    }
}

impl Default for ErrorHandler {
    fn default() -> Self {
        ErrorHandler::new(ErrorPolicy::default())
    }
}

/// What the handler did with a failed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorDisposition {
    /// Written to the dead-letter sink.
    DeadLettered,
    /// Skipped on purpose (policy `Skip`).
    Skipped,
}

impl ErrorHandler {
    /// A handler with this policy. Without [`with_sink`](Self::with_sink), dead letters go
    /// to `DeadLetterSink::new("processor-dead-letter")`.
    pub fn new(policy: ErrorPolicy) -> Self {
        ErrorHandler { policy, sink: None }
    }

    /// Sends dead letters to this sink.
    pub fn with_sink<S: EventSink<DeadLetterRecord> + 'static>(mut self, sink: S) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &ErrorPolicy {
        &self.policy
    }

    /// The dead-letter sink, created with its default name when none was given.
    pub fn dead_letter_sink(&mut self) -> Arc<dyn EventSink<DeadLetterRecord>> {
        self.sink
            .get_or_insert_with(|| Arc::new(DeadLetterSink::new("processor-dead-letter")))
            .clone()
    }

    /// Handles a record that cannot be processed: dead letter (policies `DeadLetter` and
    /// `Retry`, since retrying a malformed record cannot help) or skip.
    pub async fn handle_record(
        &mut self,
        record: DeadLetterRecord,
    ) -> ProcessorResult<ErrorDisposition> {
        match self.policy {
            ErrorPolicy::Skip => {
                tracing::warn!(reason = %record.reason, position = %record.position, "skipping bad record");
                Ok(ErrorDisposition::Skipped)
            }
            ErrorPolicy::DeadLetter | ErrorPolicy::Retry { .. } => {
                let sink = self.dead_letter_sink();
                self.retry(|| sink.send(record.clone())).await?;
                Ok(ErrorDisposition::DeadLettered)
            }
        }
    }

    /// Runs `op` until it succeeds, retrying transient errors as the policy allows.
    pub async fn retry<F, Fut, T>(&self, mut op: F) -> ProcessorResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ProcessorResult<T>>,
    {
        let attempts = self.policy.attempts();
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && attempt < attempts => {
                    attempt += 1;
                    let delay = self.policy.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?delay, "retrying after transient error");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProcessorError;
    use std::time::Duration;

    fn three_quick_attempts() -> ErrorHandler {
        ErrorHandler::new(ErrorPolicy::Retry {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        })
    }

    #[tokio::test]
    async fn retry_stops_after_max_attempts() {
        let h = three_quick_attempts();
        let mut calls = 0;
        let r: ProcessorResult<()> = h
            .retry(|| {
                calls += 1;
                async {
                    Err(ProcessorError::io(
                        "broker",
                        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    ))
                }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn retry_does_not_repeat_permanent_errors() {
        let h = three_quick_attempts();
        let mut calls = 0;
        let r: ProcessorResult<()> = h
            .retry(|| {
                calls += 1;
                async { Err(ProcessorError::Deserialization("bad".into())) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
