use serde::{Deserialize, Serialize};

use super::basic::StdDevAccumulator;
use super::percentile::PercentileAccumulator;
use super::result::{AggregationResult, AggregationSpec};
use crate::event::GroupingKey;
use crate::window::Window;

/// Every statistic of one window at once: count, sum, average, min, max, standard
/// deviation and percentiles — what the dynamic builder keeps per key and window.
///
/// ```
/// use llm_optimizer_processor::aggregation::*;
/// use llm_optimizer_processor::Window;
///
/// let window = Window::from_millis(0, 300_000);
/// let mut state = AggregationState::new(window);
/// for value in &[10.0, 20.0, 30.0, 40.0, 50.0] {
///     state.add_value(*value);
/// }
/// assert_eq!(state.min, 10.0);
/// assert_eq!(state.max, 50.0);
/// assert!((state.standard_deviation() - 14.142135623730951).abs() < 1e-12);
/// let result = state.to_result();
/// assert_eq!(result.results["count"], 5.0);
/// assert_eq!(result.results["average"], 30.0);
/// assert_eq!(result.results["p50"], 30.0);
/// assert_eq!(result.results["p95"], 50.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationState {
    /// The window this state belongs to.
    pub window: Window,
    /// Values added.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest (+∞ when empty).
    pub min: f64,
    /// The largest (−∞ when empty).
    pub max: f64,
    stddev: StdDevAccumulator,
    percentiles: Option<PercentileAccumulator>,
}

impl AggregationState {
    /// An empty state computing every statistic.
    pub fn new(window: Window) -> Self {
        AggregationState {
            window,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            stddev: StdDevAccumulator::default(),
            percentiles: Some(PercentileAccumulator::new()),
        }
    }

    /// An empty state computing only what `spec` asks for (no percentile buffer unless a
    /// percentile is enabled).
    pub fn for_spec(window: Window, spec: &AggregationSpec) -> Self {
        let mut s = AggregationState::new(window);
        if !spec.needs_percentiles() {
            s.percentiles = None;
        }
        s
    }

    /// Adds a value.
    pub fn add_value(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.stddev.add(v);
        if let Some(p) = &mut self.percentiles {
            p.add(v);
        }
    }

    /// Adds everything of another state (its window is ignored).
    pub fn merge(&mut self, o: &AggregationState) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.stddev.merge(&o.stddev);
        match (&mut self.percentiles, &o.percentiles) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.percentiles = Some(b.clone()),
            _ => {}
        }
    }

    /// The mean (NaN when empty).
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }

    /// Population standard deviation (like Flink's `STDDEV_POP`).
    pub fn standard_deviation(&self) -> f64 {
        self.stddev.population()
    }

    /// Sample standard deviation (`STDDEV_SAMP`).
    pub fn sample_standard_deviation(&self) -> f64 {
        self.stddev.sample()
    }

    /// The percentile accumulator, when percentiles are computed.
    pub fn percentiles(&self) -> Option<&PercentileAccumulator> {
        self.percentiles.as_ref()
    }

    /// Percentile `p` in (0, 100].
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles.as_ref().and_then(|a| a.percentile(p))
    }

    /// Every statistic by name (`count`, `sum`, `average`, `min`, `max`, `stddev`,
    /// `stddev_sample`, `p50`, `p95`, `p99`), for the global key.
    pub fn to_result(&self) -> AggregationResult {
        AggregationSpec::default().result(GroupingKey::global(), self.window, self, false)
    }
}
