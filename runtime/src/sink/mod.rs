//! Sinks: where result rows, dead letters and late events go.
//!
//! Every sink implements [`EventSink`], an `async_trait` so that users write their own as
//! the API reference shows (a PostgreSQL sink, a webhook, …).

mod collector;
mod console;
mod dead_letter;
mod file;
mod kafka;
mod metrics_sink;

pub use collector::CollectorSink;
pub use console::ConsoleSink;
pub use dead_letter::{DeadLetterRecord, DeadLetterSink};
pub use file::FileSink;
pub use kafka::{KafkaAggregationSink, KafkaProducerConfig};
pub use metrics_sink::MetricsSink;

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
}
