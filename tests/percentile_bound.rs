//! Percentiles past the exact limit stay within the sketch's 1% bound, merged or not.

use llm_optimizer_processor::aggregation::{PercentileAccumulator, SKETCH_RELATIVE_ACCURACY};
use proptest::prelude::*;

fn exact(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    sorted[((p * n as f64 / 100.0 - 1e-9).ceil().max(1.0) as usize).min(n) - 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sketch_percentiles_within_bound(
        values in prop::collection::vec(prop_oneof![
            (1.0f64..10_000.0),
            (-500.0f64..-0.001),
            Just(0.0),
            (0.5f64..2.0).prop_map(|x| x * 1e6),
        ], 1025..4000),
        parts in 1usize..6,
        ps in prop::collection::vec(0.1f64..100.0, 1..6),
    ) {
        // Split into `parts` accumulators and merge them, as panes and partitions do.
        let chunk = values.len().div_ceil(parts);
        let mut merged = PercentileAccumulator::new();
        for part in values.chunks(chunk) {
            let mut acc = PercentileAccumulator::new();
            part.iter().for_each(|v| acc.add(*v));
            merged.merge(&acc);
        }
        prop_assert!(!merged.is_exact());
        prop_assert_eq!(merged.count() as usize, values.len());
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for p in ps.into_iter().chain([50.0, 95.0, 99.0, 100.0]) {
            let want = exact(&sorted, p);
            let got = merged.percentile(p).unwrap();
            prop_assert!(
                (got - want).abs() <= SKETCH_RELATIVE_ACCURACY * want.abs() + 1e-9,
                "p{}: got {} want {}", p, got, want
            );
        }
    }

    #[test]
    fn exact_mode_is_nearest_rank(values in prop::collection::vec(-1e3f64..1e3, 1..1024), p in 0.01f64..100.0) {
        let mut acc = PercentileAccumulator::new();
        values.iter().for_each(|v| acc.add(*v));
        prop_assert!(acc.is_exact());
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        prop_assert_eq!(acc.percentile(p), Some(exact(&sorted, p)));
    }
}
