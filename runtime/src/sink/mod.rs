//! Sinks: where result rows, dead letters and late events go.
//!
//! Every sink implements [`EventSink`], an `async_trait` so that users write their own as
//! the API reference shows (a PostgreSQL sink, a webhook, …).

mod collector;
mod console;
mod dead_letter;
mod error_handler;
mod file;
mod flat_row;
mod kafka;
mod metrics_sink;
mod result_row;
mod websocket;

pub use collector::CollectorSink;
pub use console::ConsoleSink;
pub use dead_letter::{DeadLetterRecord, DeadLetterSink};
pub use error_handler::{ErrorDisposition, ErrorHandler};
pub use file::FileSink;
pub use flat_row::{FlatRow, FlatRows};
pub use kafka::{KafkaAggregationSink, KafkaProducerConfig};
pub use metrics_sink::MetricsSink;
pub use result_row::{key_part, key_text_of, ResultRow};
pub use websocket::WebSocketSink;

use async_trait::async_trait;

use crate::error::ProcessorResult;

/// A destination for items of type `T` (result rows, dead letters).
///
/// ```
/// use llm_optimizer_processor::*;
/// use async_trait::async_trait;
/// use std::sync::Mutex;
///
/// struct CountingSink { rows: Mutex<u64> }
///
/// #[async_trait]
/// impl EventSink<AggregationResult> for CountingSink {
///     async fn send(&self, _result: AggregationResult) -> ProcessorResult<()> {
///         *self.rows.lock().unwrap() += 1;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait EventSink<T: Send + 'static>: Send + Sync {
    /// Delivers one item.
    async fn send(&self, item: T) -> ProcessorResult<()>;

    /// Makes everything sent so far durable or visible (called at checkpoints and at the end).
    async fn flush(&self) -> ProcessorResult<()> {
        Ok(())
    }

    /// A name for logs and errors.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Checks, when the pipeline is built, that the sink can work in this build and config.
    fn check(&self) -> ProcessorResult<()> {
        Ok(())
    }

    /// Gives the sink the pipeline's metrics, when the pipeline is built (a sink that
    /// counts what it drops, as [`WebSocketSink`] does, keeps them). The default ignores them.
    fn bind_metrics(&self, metrics: &std::sync::Arc<crate::metrics::ProcessorMetrics>) {
        let _ = metrics;
    }

    /// Checkpoint, phase one: makes everything sent since the previous checkpoint durable
    /// without publishing it yet, and returns what [`recover`](Self::recover) needs to
    /// finish or undo it (stored in checkpoint `checkpoint_id`). The default flushes.
    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        let _ = checkpoint_id;
        self.flush().await?;
        Ok(Vec::new())
    }

    /// Checkpoint, phase two: checkpoint `checkpoint_id` is durable, publish what
    /// [`prepare_commit`](Self::prepare_commit) staged. The default does nothing: a sink
    /// that cannot take back what it sent is at-least-once.
    async fn commit(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let _ = checkpoint_id;
        Ok(())
    }

    /// Called once before the first row of a pipeline that takes checkpoints: with the
    /// checkpoint it resumes from and what `prepare_commit` returned then (finish that
    /// commit, drop anything published after it), or `None` on a fresh start.
    async fn recover(&self, checkpoint: Option<(u64, &[u8])>) -> ProcessorResult<()> {
        let _ = checkpoint;
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static, S: EventSink<T> + ?Sized> EventSink<T> for std::sync::Arc<S> {
    async fn send(&self, item: T) -> ProcessorResult<()> {
        (**self).send(item).await
    }
    async fn flush(&self) -> ProcessorResult<()> {
        (**self).flush().await
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn check(&self) -> ProcessorResult<()> {
        (**self).check()
    }
    fn bind_metrics(&self, metrics: &std::sync::Arc<crate::metrics::ProcessorMetrics>) {
        (**self).bind_metrics(metrics);
    }
    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        (**self).prepare_commit(checkpoint_id).await
    }
    async fn commit(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        (**self).commit(checkpoint_id).await
    }
    async fn recover(&self, checkpoint: Option<(u64, &[u8])>) -> ProcessorResult<()> {
        (**self).recover(checkpoint).await
    }
}
