use serde::{Deserialize, Serialize};

use super::sketch::DdSketch;
use super::Aggregator;

/// Up to this many values a window's percentiles are exact; beyond, a [`DdSketch`] with
/// 1% relative error takes over.
pub const EXACT_PERCENTILE_LIMIT: usize = 1024;

/// Nearest rank of percentile `p` (in (0, 100]) among `n` values: ⌈p·n/100⌉, at least 1.
pub(crate) fn nearest_rank(p: f64, n: u64) -> u64 {
    let r = (p * n as f64 / 100.0 - 1e-9).ceil();
    (r.max(1.0) as u64).min(n)
}

/// Percentiles of a stream of values: exact (nearest rank) while it holds at most
/// [`EXACT_PERCENTILE_LIMIT`] values, then a mergeable sketch within 1%.
///
/// ```
/// use llm_optimizer_processor::aggregation::*;
///
/// let percentile_agg = PercentileAggregator;
/// let mut acc = percentile_agg.create_accumulator();
/// for value in &[10.0, 20.0, 30.0, 40.0, 50.0] {
///     percentile_agg.add(&mut acc, value);
/// }
/// assert_eq!(acc.p50(), Some(30.0));
/// assert_eq!(acc.p95(), Some(50.0));
/// assert_eq!(acc.p99(), Some(50.0));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PercentileAccumulator {
    values: Vec<f64>,
    /// The sketch; kept allocated after [`clear`](Self::clear) for reuse.
    sketch: Option<Box<DdSketch>>,
    /// Whether the values live in the sketch (else in `values`).
    sketched: bool,
}

impl PercentileAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    fn sketch_mut(&mut self) -> &mut DdSketch {
        self.sketch.get_or_insert_with(|| Box::new(DdSketch::new()))
    }

    /// Adds a value.
    pub fn add(&mut self, v: f64) {
        if self.sketched {
            self.sketch_mut().add(v);
        } else {
            self.values.push(v);
            if self.values.len() > EXACT_PERCENTILE_LIMIT {
                self.spill_to_sketch();
            }
        }
    }

    fn spill_to_sketch(&mut self) {
        let mut values = std::mem::take(&mut self.values);
        let s = self.sketch_mut();
        s.clear();
        for v in values.drain(..) {
            s.add(v);
        }
        self.values = values;
        self.sketched = true;
    }

    /// Adds every value of another accumulator.
    pub fn merge(&mut self, o: &PercentileAccumulator) {
        match (self.sketched, o.sketched) {
            (true, true) => {
                if let Some(os) = &o.sketch {
                    self.sketch_mut().merge(os);
                }
            }
            (true, false) => {
                let s = self.sketch_mut();
                o.values.iter().for_each(|v| s.add(*v));
            }
            (false, true) => {
                self.spill_to_sketch();
                if let Some(os) = &o.sketch {
                    self.sketch_mut().merge(os);
                }
            }
            (false, false) => {
                self.values.extend_from_slice(&o.values);
                if self.values.len() > EXACT_PERCENTILE_LIMIT {
                    self.spill_to_sketch();
                }
            }
        }
    }

    /// Empties the accumulator, keeping its buffers for reuse.
    pub fn clear(&mut self) {
        self.values.clear();
        if let Some(s) = &mut self.sketch {
            s.clear();
        }
        self.sketched = false;
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        match (&self.sketch, self.sketched) {
            (Some(s), true) => s.count(),
            _ => self.values.len() as u64,
        }
    }

    /// Whether the values are still kept exactly.
    pub fn is_exact(&self) -> bool {
        !self.sketched
    }

    /// Percentile `p` in (0, 100] by nearest rank; `None` when empty or `p` is out of range.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles(&[p]).pop().flatten()
    }

    /// Several percentiles at once (one sort).
    pub fn percentiles(&self, ps: &[f64]) -> Vec<Option<f64>> {
        let n = self.count();
        let valid = |p: f64| n > 0 && p > 0.0 && p <= 100.0;
        match (&self.sketch, self.sketched) {
            (Some(s), true) => ps
                .iter()
                .map(|&p| {
                    valid(p)
                        .then(|| s.value_at_rank(nearest_rank(p, n)))
                        .flatten()
                })
                .collect(),
            _ => {
                let mut sorted = self.values.clone();
                sorted.sort_by(f64::total_cmp);
                ps.iter()
                    .map(|&p| valid(p).then(|| sorted[nearest_rank(p, n) as usize - 1]))
                    .collect()
            }
        }
    }

    /// The median.
    pub fn p50(&self) -> Option<f64> {
        self.percentile(50.0)
    }
    /// The 95th percentile.
    pub fn p95(&self) -> Option<f64> {
        self.percentile(95.0)
    }
    /// The 99th percentile.
    pub fn p99(&self) -> Option<f64> {
        self.percentile(99.0)
    }
}

/// Percentiles (p50, p95, p99 and any other) of values.
#[derive(Debug, Clone, Copy, Default)]
pub struct PercentileAggregator;

impl Aggregator<f64, PercentileAccumulator> for PercentileAggregator {
    fn create_accumulator(&self) -> PercentileAccumulator {
        PercentileAccumulator::new()
    }
    fn add(&self, acc: &mut PercentileAccumulator, value: &f64) {
        acc.add(*value);
    }
    fn merge(&self, a: &PercentileAccumulator, b: &PercentileAccumulator) -> PercentileAccumulator {
        let mut m = a.clone();
        m.merge(b);
        m
    }
    fn get_result(&self, acc: &PercentileAccumulator) -> PercentileAccumulator {
        acc.clone()
    }
    fn name(&self) -> &str {
        "percentile"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_matches_definition() {
        assert_eq!(nearest_rank(50.0, 5), 3);
        assert_eq!(nearest_rank(95.0, 5), 5);
        assert_eq!(nearest_rank(7.0, 100), 7);
        assert_eq!(nearest_rank(100.0, 3), 3);
        assert_eq!(nearest_rank(0.1, 3), 1);
    }

    #[test]
    fn switches_to_sketch_past_the_limit_and_keeps_the_bound() {
        let mut acc = PercentileAccumulator::new();
        for i in 1..=2000 {
            acc.add(i as f64);
        }
        assert!(!acc.is_exact());
        let p95 = acc.p95().unwrap();
        assert!((p95 - 1900.0).abs() <= 19.0 + 1e-9, "{p95}");
        assert_eq!(acc.percentile(0.0), None);
        assert_eq!(acc.percentile(101.0), None);
    }

    #[test]
    fn merging_exact_parts_stays_exact() {
        let mut a = PercentileAccumulator::new();
        let mut b = PercentileAccumulator::new();
        [1.0, 5.0].iter().for_each(|v| a.add(*v));
        [3.0].iter().for_each(|v| b.add(*v));
        a.merge(&b);
        assert!(a.is_exact());
        assert_eq!(a.p50(), Some(3.0));
    }
}
