use async_trait::async_trait;
use prometheus::{GaugeVec, IntCounter, Opts, Registry};

use super::EventSink;
use crate::aggregation::AggregationResult;
use crate::error::{ProcessorError, ProcessorResult};

/// Publishes the latest value of every statistic of every key as Prometheus gauges
/// (`processor_window_value{key, statistic}`) in the registry it is given, plus a count of
/// rows (`processor_result_rows_total`).
///
/// ```
/// use llm_optimizer_processor::*;
/// let prometheus_registry = prometheus::Registry::new();
/// let sink = MetricsSink::new(prometheus_registry.clone());
/// # let _ = sink;
/// ```
#[derive(Debug, Clone)]
pub struct MetricsSink {
    values: Option<GaugeVec>,
    rows: Option<IntCounter>,
    error: Option<String>,
}

impl MetricsSink {
    /// A sink registering its metrics in `registry`.
    pub fn new(registry: Registry) -> Self {
        let build = || -> Result<(GaugeVec, IntCounter), prometheus::Error> {
            let values = GaugeVec::new(
                Opts::new(
                    "processor_window_value",
                    "latest value of a windowed statistic",
                ),
                &["key", "statistic"],
            )?;
            let rows = IntCounter::new("processor_result_rows_total", "result rows published")?;
            registry.register(Box::new(values.clone()))?;
            registry.register(Box::new(rows.clone()))?;
            Ok((values, rows))
        };
        match build() {
            Ok((values, rows)) => MetricsSink {
                values: Some(values),
                rows: Some(rows),
                error: None,
            },
            Err(e) => MetricsSink {
                values: None,
                rows: None,
                error: Some(e.to_string()),
            },
        }
    }
}

#[async_trait]
impl EventSink<AggregationResult> for MetricsSink {
    async fn send(&self, r: AggregationResult) -> ProcessorResult<()> {
        let (Some(values), Some(rows)) = (&self.values, &self.rows) else {
            return Err(self.check().unwrap_err());
        };
        let key = r.key.to_string();
        for (stat, v) in &r.results {
            values
                .with_label_values(&[key.as_str(), stat.as_str()])
                .set(*v);
        }
        rows.inc();
        Ok(())
    }
    fn name(&self) -> &str {
        "metrics"
    }
    fn check(&self) -> ProcessorResult<()> {
        match &self.error {
            Some(e) => Err(ProcessorError::Config(format!(
                "cannot register the metrics sink's gauges: {e}; give each MetricsSink its own registry"
            ))),
            None => Ok(()),
        }
    }
}
