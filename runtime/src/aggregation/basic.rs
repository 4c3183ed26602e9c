use serde::{Deserialize, Serialize};

use super::Aggregator;

/// Accumulator of [`CountAggregator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CountAccumulator {
    /// Values seen.
    pub count: u64,
}

/// Counts values.
///
/// ```
/// use llm_optimizer_processor::aggregation::*;
/// let aggregator = CountAggregator;
/// let mut acc = aggregator.create_accumulator();
/// let value = 42.0;
/// aggregator.add(&mut acc, &value);
/// let result = aggregator.get_result(&acc);
/// assert_eq!(result.count, 1);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountAggregator;

impl Aggregator<f64, CountAccumulator> for CountAggregator {
    fn create_accumulator(&self) -> CountAccumulator {
        CountAccumulator::default()
    }
    fn add(&self, acc: &mut CountAccumulator, _value: &f64) {
        acc.count += 1;
    }
    fn merge(&self, a: &CountAccumulator, b: &CountAccumulator) -> CountAccumulator {
        CountAccumulator {
            count: a.count + b.count,
        }
    }
    fn get_result(&self, acc: &CountAccumulator) -> CountAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "count"
    }
}

/// Accumulator of [`SumAggregator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SumAccumulator {
    /// Sum of the values.
    pub sum: f64,
}

/// Sums values.
#[derive(Debug, Clone, Copy, Default)]
pub struct SumAggregator;

impl Aggregator<f64, SumAccumulator> for SumAggregator {
    fn create_accumulator(&self) -> SumAccumulator {
        SumAccumulator::default()
    }
    fn add(&self, acc: &mut SumAccumulator, value: &f64) {
        acc.sum += value;
    }
    fn merge(&self, a: &SumAccumulator, b: &SumAccumulator) -> SumAccumulator {
        SumAccumulator { sum: a.sum + b.sum }
    }
    fn get_result(&self, acc: &SumAccumulator) -> SumAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "sum"
    }
}

/// Accumulator of [`AverageAggregator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AverageAccumulator {
    /// Sum of the values.
    pub sum: f64,
    /// Values seen.
    pub count: u64,
}

impl AverageAccumulator {
    /// The mean (NaN when empty).
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.sum / self.count as f64
        }
    }
}

/// Averages values.
#[derive(Debug, Clone, Copy, Default)]
pub struct AverageAggregator;

impl Aggregator<f64, AverageAccumulator> for AverageAggregator {
    fn create_accumulator(&self) -> AverageAccumulator {
        AverageAccumulator::default()
    }
    fn add(&self, acc: &mut AverageAccumulator, value: &f64) {
        acc.sum += value;
        acc.count += 1;
    }
    fn merge(&self, a: &AverageAccumulator, b: &AverageAccumulator) -> AverageAccumulator {
        AverageAccumulator {
            sum: a.sum + b.sum,
            count: a.count + b.count,
        }
    }
    fn get_result(&self, acc: &AverageAccumulator) -> AverageAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "average"
    }
}

/// Accumulator of [`MinAggregator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinAccumulator {
    /// Smallest value seen (+∞ when empty).
    pub min: f64,
}

impl Default for MinAccumulator {
    fn default() -> Self {
        MinAccumulator { min: f64::INFINITY }
    }
}

/// Smallest value.
#[derive(Debug, Clone, Copy, Default)]
pub struct MinAggregator;

impl Aggregator<f64, MinAccumulator> for MinAggregator {
    fn create_accumulator(&self) -> MinAccumulator {
        MinAccumulator::default()
    }
    fn add(&self, acc: &mut MinAccumulator, value: &f64) {
        acc.min = acc.min.min(*value);
    }
    fn merge(&self, a: &MinAccumulator, b: &MinAccumulator) -> MinAccumulator {
        MinAccumulator {
            min: a.min.min(b.min),
        }
    }
    fn get_result(&self, acc: &MinAccumulator) -> MinAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "min"
    }
}

/// Accumulator of [`MaxAggregator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaxAccumulator {
    /// Largest value seen (−∞ when empty).
    pub max: f64,
}

impl Default for MaxAccumulator {
    fn default() -> Self {
        MaxAccumulator {
            max: f64::NEG_INFINITY,
        }
    }
}

/// Largest value.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxAggregator;

impl Aggregator<f64, MaxAccumulator> for MaxAggregator {
    fn create_accumulator(&self) -> MaxAccumulator {
        MaxAccumulator::default()
    }
    fn add(&self, acc: &mut MaxAccumulator, value: &f64) {
        acc.max = acc.max.max(*value);
    }
    fn merge(&self, a: &MaxAccumulator, b: &MaxAccumulator) -> MaxAccumulator {
        MaxAccumulator {
            max: a.max.max(b.max),
        }
    }
    fn get_result(&self, acc: &MaxAccumulator) -> MaxAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "max"
    }
}

/// Accumulator of [`StdDevAggregator`]: Welford's running mean and sum of squared
/// deviations, merged with Chan's formula.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StdDevAccumulator {
    /// Values seen.
    pub count: u64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl StdDevAccumulator {
    /// Folds one value in.
    pub fn add(&mut self, v: f64) {
        self.count += 1;
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
    }

    /// Combines with another accumulator.
    pub fn merge(&mut self, o: &StdDevAccumulator) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let n = (self.count + o.count) as f64;
        let delta = o.mean - self.mean;
        self.mean += delta * o.count as f64 / n;
        self.m2 += o.m2 + delta * delta * (self.count as f64) * (o.count as f64) / n;
        self.count += o.count;
    }

    /// Population standard deviation (Flink's `STDDEV_POP`); NaN when empty.
    pub fn population(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            (self.m2.max(0.0) / self.count as f64).sqrt()
        }
    }

    /// Sample standard deviation (`STDDEV_SAMP`); NaN with fewer than two values.
    pub fn sample(&self) -> f64 {
        if self.count < 2 {
            f64::NAN
        } else {
            (self.m2.max(0.0) / (self.count - 1) as f64).sqrt()
        }
    }
}

/// Population standard deviation.
///
/// ```
/// use llm_optimizer_processor::aggregation::*;
/// let agg = StdDevAggregator;
/// let mut acc = agg.create_accumulator();
/// for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] { agg.add(&mut acc, &v); }
/// assert!((acc.population() - 2.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdDevAggregator;

impl Aggregator<f64, StdDevAccumulator> for StdDevAggregator {
    fn create_accumulator(&self) -> StdDevAccumulator {
        StdDevAccumulator::default()
    }
    fn add(&self, acc: &mut StdDevAccumulator, value: &f64) {
        acc.add(*value);
    }
    fn merge(&self, a: &StdDevAccumulator, b: &StdDevAccumulator) -> StdDevAccumulator {
        let mut m = *a;
        m.merge(b);
        m
    }
    fn get_result(&self, acc: &StdDevAccumulator) -> StdDevAccumulator {
        *acc
    }
    fn name(&self) -> &str {
        "stddev"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stddev_merge_equals_sequential() {
        let values: Vec<f64> = (0..100).map(|i| (i as f64 * 1.7).sin() * 100.0).collect();
        let mut all = StdDevAccumulator::default();
        values.iter().for_each(|v| all.add(*v));
        let mut a = StdDevAccumulator::default();
        let mut b = StdDevAccumulator::default();
        values[..37].iter().for_each(|v| a.add(*v));
        values[37..].iter().for_each(|v| b.add(*v));
        a.merge(&b);
        assert!((a.population() - all.population()).abs() < 1e-9);
        assert!((a.sample() - all.sample()).abs() < 1e-9);
        assert_eq!(a.count, 100);
    }
}
