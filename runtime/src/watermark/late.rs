use std::sync::Arc;
use std::time::Duration;

use crate::sink::{DeadLetterRecord, EventSink};

/// What happens to events that arrive after their windows closed: how long windows stay
/// open past the watermark (allowed lateness) and where late events go.
///
/// Late events are never dropped silently: they go to the side output (a
/// [`DeadLetterSink`](crate::DeadLetterSink) or any sink of [`DeadLetterRecord`]s) with the
/// reason, or to the pipeline's dead-letter sink when no side output is set; they are
/// counted either way. [`dropping`](Self::dropping) discards them on purpose (still counted).
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
///
/// let late_handler = LateEventHandler::new(Duration::from_secs(60))
///     .with_side_output(DeadLetterSink::new("late-events-topic"));
/// assert_eq!(late_handler.allowed_lateness(), Duration::from_secs(60));
/// ```
#[derive(Clone)]
pub struct LateEventHandler {
    allowed_lateness: Duration,
    side_output: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    drop: bool,
}

impl std::fmt::Debug for LateEventHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateEventHandler")
            .field("allowed_lateness", &self.allowed_lateness)
            .field("has_side_output", &self.side_output.is_some())
            .field("drop", &self.drop)
            .finish()
    }
}

impl LateEventHandler {
    /// Windows accept events until the watermark passes `end + allowed_lateness`.
    pub fn new(allowed_lateness: Duration) -> Self {
        LateEventHandler {
            allowed_lateness,
            side_output: None,
            drop: false,
        }
    }

    /// Sends late events to this sink.
    pub fn with_side_output<S: EventSink<DeadLetterRecord> + 'static>(mut self, sink: S) -> Self {
        self.side_output = Some(Arc::new(sink));
        self.drop = false;
        self
    }

    /// Discards late events (they are still counted in the metrics and the run summary).
    pub fn dropping(mut self) -> Self {
        self.drop = true;
        self.side_output = None;
        self
    }

    /// The allowed lateness.
    pub fn allowed_lateness(&self) -> Duration {
        self.allowed_lateness
    }

    /// The side output, if one is set.
    pub fn side_output(&self) -> Option<Arc<dyn EventSink<DeadLetterRecord>>> {
        self.side_output.clone()
    }

    /// Whether late events are discarded on purpose.
    pub fn drops(&self) -> bool {
        self.drop
    }
}
