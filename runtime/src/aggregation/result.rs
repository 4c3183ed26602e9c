use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::state::AggregationState;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::GroupingKey;
use crate::window::Window;

/// One result row: the statistics of one key in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregationResult {
    /// The grouping key.
    pub key: GroupingKey,
    /// The window.
    pub window: Window,
    /// Statistics by name: `count`, `sum`, `average`, `min`, `max`, `stddev`,
    /// `stddev_sample`, `p50`, … (only those enabled).
    pub results: BTreeMap<String, f64>,
    /// Whether this row revises an earlier row of the same key and window (an event
    /// arrived within the allowed lateness, or sessions merged).
    #[serde(default)]
    pub is_update: bool,
    /// Session windows this row replaces: sessions that were emitted and have since merged
    /// into this one. Empty for tumbling and sliding windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<Window>,
}

/// One statistic the dynamic builder can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregationKind {
    /// Number of values.
    Count,
    /// Sum.
    Sum,
    /// Mean.
    Average,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Standard deviation (population and sample).
    StdDev,
    /// Percentiles (those listed in the spec).
    Percentile,
}

impl AggregationKind {
    /// Every kind, in result order.
    pub const ALL: [AggregationKind; 7] = [
        AggregationKind::Count,
        AggregationKind::Sum,
        AggregationKind::Average,
        AggregationKind::Min,
        AggregationKind::Max,
        AggregationKind::StdDev,
        AggregationKind::Percentile,
    ];

    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            AggregationKind::Count => "count",
            AggregationKind::Sum => "sum",
            AggregationKind::Average => "average",
            AggregationKind::Min => "min",
            AggregationKind::Max => "max",
            AggregationKind::StdDev => "stddev",
            AggregationKind::Percentile => "percentile",
        }
    }

    /// Parses a name (`avg` is accepted for `average`); the error lists the valid names.
    pub fn parse(name: &str) -> ProcessorResult<Self> {
        let n = name.trim().to_ascii_lowercase();
        if n == "avg" || n == "mean" {
            return Ok(AggregationKind::Average);
        }
        AggregationKind::ALL
            .into_iter()
            .find(|k| k.name() == n)
            .ok_or_else(|| {
                let names: Vec<_> = AggregationKind::ALL.iter().map(|k| k.name()).collect();
                ProcessorError::Config(format!(
                    "unknown aggregation `{name}`; the aggregations are {}",
                    names.join(", ")
                ))
            })
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which statistics a dynamic pipeline computes, and which percentiles.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregationSpec {
    mask: u8,
    percentiles: Vec<f64>,
}

impl Default for AggregationSpec {
    fn default() -> Self {
        AggregationSpec {
            mask: AggregationKind::ALL.iter().fold(0, |m, k| m | k.bit()),
            percentiles: vec![50.0, 95.0, 99.0],
        }
    }
}

impl AggregationSpec {
    /// These statistics, with these percentiles (each in (0, 100]).
    pub fn new(kinds: &[AggregationKind], percentiles: &[f64]) -> ProcessorResult<Self> {
        if kinds.is_empty() {
            return Err(ProcessorError::Config(
                "no aggregation enabled; enable at least one, e.g. `count`".into(),
            ));
        }
        for &p in percentiles {
            if !(p > 0.0 && p <= 100.0) {
                return Err(ProcessorError::Config(format!(
                    "percentile {p} is outside (0, 100]; use e.g. 50, 95 or 99.9"
                )));
            }
        }
        if kinds.contains(&AggregationKind::Percentile) && percentiles.is_empty() {
            return Err(ProcessorError::Config(
                "`percentile` is enabled but no percentiles are listed; list them, e.g. [50, 95, 99]".into(),
            ));
        }
        Ok(AggregationSpec {
            mask: kinds.iter().fold(0, |m, k| m | k.bit()),
            percentiles: percentiles.to_vec(),
        })
    }

    /// Whether a statistic is enabled.
    pub fn has(&self, kind: AggregationKind) -> bool {
        self.mask & kind.bit() != 0
    }

    /// Whether a percentile buffer is needed.
    pub fn needs_percentiles(&self) -> bool {
        self.has(AggregationKind::Percentile) && !self.percentiles.is_empty()
    }

    /// The percentiles computed.
    pub fn percentiles(&self) -> &[f64] {
        &self.percentiles
    }

    /// The result name of percentile `p`: `p50`, `p99.9`.
    pub fn percentile_name(p: f64) -> String {
        format!("p{p}")
    }

    /// Builds the result row of a state.
    pub fn result(
        &self,
        key: GroupingKey,
        window: Window,
        state: &AggregationState,
        is_update: bool,
    ) -> AggregationResult {
        let mut results = BTreeMap::new();
        let mut put = |k: &str, v: f64| {
            if v.is_finite() {
                results.insert(k.to_owned(), v);
            }
        };
        if self.has(AggregationKind::Count) {
            put("count", state.count as f64);
        }
        if self.has(AggregationKind::Sum) {
            put("sum", state.sum);
        }
        if self.has(AggregationKind::Average) {
            put("average", state.average());
        }
        if self.has(AggregationKind::Min) {
            put("min", state.min);
        }
        if self.has(AggregationKind::Max) {
            put("max", state.max);
        }
        if self.has(AggregationKind::StdDev) {
            put("stddev", state.standard_deviation());
            put("stddev_sample", state.sample_standard_deviation());
        }
        if self.needs_percentiles() {
            if let Some(acc) = state.percentiles() {
                for (p, v) in self
                    .percentiles
                    .iter()
                    .zip(acc.percentiles(&self.percentiles))
                {
                    if let Some(v) = v {
                        put(&Self::percentile_name(*p), v);
                    }
                }
            }
        }
        AggregationResult {
            key,
            window,
            results,
            is_update,
            replaces: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_trims_results() {
        let spec =
            AggregationSpec::new(&[AggregationKind::Count, AggregationKind::Average], &[]).unwrap();
        let mut s = AggregationState::for_spec(Window::from_millis(0, 1), &spec);
        s.add_value(2.0);
        s.add_value(4.0);
        assert!(s.percentiles().is_none());
        let r = spec.result(GroupingKey::global(), s.window, &s, false);
        assert_eq!(
            r.results.keys().collect::<Vec<_>>(),
            vec!["average", "count"]
        );
    }

    #[test]
    fn parse_lists_valid_names() {
        assert_eq!(
            AggregationKind::parse("avg").unwrap(),
            AggregationKind::Average
        );
        let e = AggregationKind::parse("median").unwrap_err().to_string();
        assert!(e.contains("count, sum, average"), "{e}");
        assert!(AggregationSpec::new(&[AggregationKind::Percentile], &[0.0]).is_err());
    }
}
