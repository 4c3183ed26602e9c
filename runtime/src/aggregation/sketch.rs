use serde::{Deserialize, Serialize};

/// Relative accuracy of [`DdSketch`]: every quantile it returns is within 1% of the true
/// value at that rank.
pub const SKETCH_RELATIVE_ACCURACY: f64 = 0.01;

/// Magnitudes below this count as zero.
const MIN_MAGNITUDE: f64 = 1e-9;

fn gamma() -> f64 {
    (1.0 + SKETCH_RELATIVE_ACCURACY) / (1.0 - SKETCH_RELATIVE_ACCURACY)
}

/// Dense counts of logarithmic buckets `(γ^(i−1), γ^i]`, indices `offset..offset+len`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Store {
    offset: i32,
    bins: Vec<u64>,
}

impl Store {
    fn add(&mut self, index: i32, n: u64) {
        if self.bins.is_empty() {
            self.offset = index;
            self.bins.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.bins.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        } else if index >= self.offset + self.bins.len() as i32 {
            let len = (index - self.offset + 1) as usize;
            self.bins.resize(len, 0);
        }
        self.bins[(index - self.offset) as usize] += n;
    }

    fn merge(&mut self, o: &Store) {
        for (i, &n) in o.bins.iter().enumerate() {
            if n > 0 {
                self.add(o.offset + i as i32, n);
            }
        }
    }
}

/// A mergeable quantile sketch with relative-error guarantees (DDSketch, Masson et al.,
/// VLDB 2019): logarithmic buckets of ratio γ = (1+α)/(1−α), α = 1%.
///
/// Quantiles use the nearest-rank definition (rank ⌈q·n⌉), like the exact mode of
/// [`PercentileAccumulator`](super::PercentileAccumulator), so the sketch's answer is
/// within α of the exact answer. Merging adds bucket counts and keeps the bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DdSketch {
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl DdSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        DdSketch {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        }
    }

    fn index(magnitude: f64) -> i32 {
        (magnitude.ln() / gamma().ln()).ceil() as i32
    }

    fn value(index: i32) -> f64 {
        let g = gamma();
        2.0 * g.powi(index) / (g + 1.0)
    }

    /// Empties the sketch, keeping its buffers.
    pub fn clear(&mut self) {
        self.positive.bins.clear();
        self.negative.bins.clear();
        self.zero = 0;
        self.count = 0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }

    /// Adds a finite value (non-finite values are ignored: the pipeline rejects them first).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v > MIN_MAGNITUDE {
            self.positive.add(Self::index(v), 1);
        } else if v < -MIN_MAGNITUDE {
            self.negative.add(Self::index(-v), 1);
        } else {
            self.zero += 1;
        }
    }

    /// Adds every value of another sketch.
    pub fn merge(&mut self, o: &DdSketch) {
        if o.count == 0 {
            return;
        }
        self.positive.merge(&o.positive);
        self.negative.merge(&o.negative);
        self.zero += o.zero;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value of nearest rank `rank` (1-based), within α of the exact one.
    pub fn value_at_rank(&self, rank: u64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = rank.clamp(1, self.count);
        let mut seen = 0u64;
        // Negative values, most negative first: highest magnitude index first.
        for (i, &n) in self.negative.bins.iter().enumerate().rev() {
            seen += n;
            if seen >= rank {
                let v = -Self::value(self.negative.offset + i as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        seen += self.zero;
        if seen >= rank {
            return Some(0.0f64.clamp(self.min, self.max));
        }
        for (i, &n) in self.positive.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let v = Self::value(self.positive.offset + i as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_relative_error() {
        let mut s = DdSketch::new();
        let mut values: Vec<f64> = (1..=5000).map(|i| (i as f64).powf(1.7) - 3000.0).collect();
        for v in &values {
            s.add(*v);
        }
        values.sort_by(f64::total_cmp);
        for rank in [1u64, 10, 2500, 4750, 4950, 5000] {
            let exact = values[rank as usize - 1];
            let got = s.value_at_rank(rank).unwrap();
            assert!(
                (got - exact).abs() <= SKETCH_RELATIVE_ACCURACY * exact.abs() + 1e-9,
                "rank {rank}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = DdSketch::new();
        let mut b = DdSketch::new();
        (1..=100).for_each(|i| a.add(i as f64));
        (101..=200).for_each(|i| b.add(i as f64));
        a.merge(&b);
        assert_eq!(a.count(), 200);
        let median = a.value_at_rank(100).unwrap();
        assert!((median - 100.0).abs() <= 1.0 + 1e-9, "{median}");
    }
}
