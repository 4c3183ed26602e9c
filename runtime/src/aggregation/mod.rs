//! Aggregations: the [`Aggregator`] trait, one aggregator per statistic, and
//! [`AggregationState`], which keeps all of them at once for a window.
//!
//! Every accumulator is mergeable, so sliding-window panes, session merges and partitions
//! combine exactly (percentiles within the sketch's bound).
//!
//! ```
//! use llm_optimizer_processor::aggregation::*;
//!
//! let avg_agg = AverageAggregator;
//! let mut acc = avg_agg.create_accumulator();
//! avg_agg.add(&mut acc, &10.0);
//! avg_agg.add(&mut acc, &20.0);
//! avg_agg.add(&mut acc, &30.0);
//! assert_eq!(acc.average(), 20.0);
//! assert_eq!(acc.sum, 60.0);
//! assert_eq!(acc.count, 3);
//! ```

mod basic;
mod percentile;
mod result;
mod sketch;
mod state;

pub use basic::{
    AverageAccumulator, AverageAggregator, CountAccumulator, CountAggregator, MaxAccumulator,
    MaxAggregator, MinAccumulator, MinAggregator, StdDevAccumulator, StdDevAggregator,
    SumAccumulator, SumAggregator,
};
pub use percentile::{PercentileAccumulator, PercentileAggregator, EXACT_PERCENTILE_LIMIT};
pub use result::{AggregationKind, AggregationResult, AggregationSpec};
pub use sketch::{DdSketch, SKETCH_RELATIVE_ACCURACY};
pub use state::AggregationState;

/// An incremental, mergeable aggregation from inputs `In` through an accumulator `Acc` to
/// a result `Out` (by default the accumulator itself).
///
/// ```
/// use llm_optimizer_processor::aggregation::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Default, Serialize, Deserialize)]
/// struct CustomAccumulator { pub sum_of_squares: f64, pub count: u64 }
///
/// struct VarianceAggregator;
///
/// impl Aggregator<f64, CustomAccumulator> for VarianceAggregator {
///     fn create_accumulator(&self) -> CustomAccumulator { CustomAccumulator::default() }
///     fn add(&self, acc: &mut CustomAccumulator, value: &f64) {
///         acc.sum_of_squares += value * value;
///         acc.count += 1;
///     }
///     fn merge(&self, acc1: &CustomAccumulator, acc2: &CustomAccumulator) -> CustomAccumulator {
///         CustomAccumulator {
///             sum_of_squares: acc1.sum_of_squares + acc2.sum_of_squares,
///             count: acc1.count + acc2.count,
///         }
///     }
///     fn get_result(&self, acc: &CustomAccumulator) -> CustomAccumulator { acc.clone() }
///     fn name(&self) -> &str { "variance" }
/// }
///
/// let agg = VarianceAggregator;
/// let mut a = agg.create_accumulator();
/// agg.add(&mut a, &3.0);
/// let b = agg.merge(&a, &a);
/// assert_eq!(agg.get_result(&b).sum_of_squares, 18.0);
/// ```
pub trait Aggregator<In, Acc, Out = Acc> {
    /// A fresh, empty accumulator.
    fn create_accumulator(&self) -> Acc;
    /// Folds one input in.
    fn add(&self, acc: &mut Acc, value: &In);
    /// Combines two accumulators (panes, partitions, merged sessions).
    fn merge(&self, acc1: &Acc, acc2: &Acc) -> Acc;
    /// The result of an accumulator.
    fn get_result(&self, acc: &Acc) -> Out;
    /// The name of the result.
    fn name(&self) -> &str;
}
