use async_trait::async_trait;
use std::sync::{Arc, Mutex, PoisonError};

use super::EventSink;
use crate::error::ProcessorResult;

/// Keeps everything it receives in memory: for tests and for embedding the processor.
/// Clones share the same buffer.
///
/// ```
/// use llm_optimizer_processor::*;
/// let sink = CollectorSink::<AggregationResult>::new();
/// let handle = sink.clone();
/// // … .with_sink(sink) … pipeline.run().await …
/// assert!(handle.items().is_empty());
/// ```
#[derive(Debug)]
pub struct CollectorSink<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectorSink<T> {
    fn clone(&self) -> Self {
        CollectorSink {
            items: Arc::clone(&self.items),
        }
    }
}

impl<T> Default for CollectorSink<T> {
    fn default() -> Self {
        CollectorSink {
            items: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Clone> CollectorSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what was received, in order.
    pub fn items(&self) -> Vec<T> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes what was received, leaving the collector empty.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many items were received.
    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl<T: Clone + Send + 'static> EventSink<T> for CollectorSink<T> {
    async fn send(&self, item: T) -> ProcessorResult<()> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(item);
        Ok(())
    }
    fn name(&self) -> &str {
        "collector"
    }
}
