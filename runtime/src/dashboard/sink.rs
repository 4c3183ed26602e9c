//! The sink that hands rows to the dashboard's page.

use std::sync::Arc;

use async_trait::async_trait;

use super::feed::Feed;
use crate::aggregation::AggregationResult;
use crate::error::ProcessorResult;
use crate::sink::EventSink;

/// Sends each row to the pages of a [`Dashboard`](super::Dashboard). It never waits: a
/// page that falls behind is sent a fresh snapshot instead of slowing the pipeline.
/// Made by [`Dashboard::sink`](super::Dashboard::sink).
#[derive(Debug, Clone)]
pub struct DashboardSink {
    pub(super) feed: Arc<Feed>,
}

#[async_trait]
impl EventSink<AggregationResult> for DashboardSink {
    async fn send(&self, row: AggregationResult) -> ProcessorResult<()> {
        self.feed.push_row(&row);
        Ok(())
    }

    fn name(&self) -> &str {
        "dashboard"
    }
}
