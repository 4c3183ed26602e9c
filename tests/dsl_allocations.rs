//! The generated operator allocates nothing per event in steady state: over 1M events,
//! allocations stay below the number of new (key, window) pairs plus a small constant.
//! Counted with a counting global allocator around the operator's per-event path
//! (building output rows, which clones the key, is per window and not counted here).

use chrono::{TimeZone, Utc};
use llm_optimizer_processor::prelude::*;
use llm_optimizer_processor::Plan;
use std::collections::HashSet;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Call {
    #[event(key)]
    model: String,
    #[event(key)]
    region: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    latency_ms: f64,
    cost_usd: f64,
}

pipeline! {
    /// The benchmark's Q1: every statistic of latency per model and region, per minute.
    pipeline Q1 for Call {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        key_by: (model, region),
        aggregate {
            requests: count(),
            total: sum(latency_ms),
            avg: avg(latency_ms),
            lo: min(latency_ms),
            hi: max(latency_ms),
            sd: stddev(latency_ms),
            p50: percentile(latency_ms, 50),
            p95: percentile(latency_ms, 95),
            p99: percentile(latency_ms, 99),
            cost: sum(cost_usd),
        }
    }
}

pipeline! {
    /// Sliding windows share panes: still no allocation per event.
    pipeline Q2 for Call {
        window: sliding(5m, 1m),
        key_by: model,
        aggregate { requests: count(), p99: percentile(latency_ms, 99) }
    }
}

fn events(n: usize) -> Vec<Call> {
    let models: Vec<String> = (0..20).map(|i| format!("model-{i:02}")).collect();
    let regions: Vec<String> = (0..12).map(|i| format!("region-{i:02}")).collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let jitter = (x % 20_000) as i64;
            Call {
                model: models[(x >> 20) as usize % models.len()].clone(),
                region: regions[(x >> 40) as usize % regions.len()].clone(),
                timestamp: Utc
                    .timestamp_millis_opt(i as i64 * 10 - jitter + 1_000_000)
                    .unwrap(),
                latency_ms: (x % 5000) as f64,
                cost_usd: 0.001,
            }
        })
        .collect()
}

fn run<P: Plan<Event = Call>>(
    plan: P,
    spec: llm_optimizer_processor::window::WindowSpec,
    evs: &[Call],
    by_region: bool,
) -> (u64, usize, u64) {
    use llm_optimizer_processor::operator::WindowOperator;
    use llm_optimizer_processor::pipeline::Envelope;
    use llm_optimizer_processor::watermark::WatermarkGenerator;
    use std::time::{Duration, Instant};

    let mut op: WindowOperator<P::Key, P::Func> =
        WindowOperator::new(spec, 60_000, plan.function()).unwrap();
    let mut wm = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
    let now = Instant::now();
    wm.register_partition(0, now);
    let mut rows = 0u64;
    // Distinct (key, window) pairs, computed before counting.
    let size = match spec {
        llm_optimizer_processor::window::WindowSpec::Tumbling { size, .. } => size,
        llm_optimizer_processor::window::WindowSpec::Sliding { slide, .. } => slide,
        llm_optimizer_processor::window::WindowSpec::Session { .. } => unreachable!(),
    };
    let pairs: HashSet<(String, String, i64)> = evs
        .iter()
        .map(|e| {
            (
                e.model.clone(),
                if by_region {
                    e.region.clone()
                } else {
                    String::new()
                },
                e.timestamp.timestamp_millis().div_euclid(size),
            )
        })
        .collect();
    let mut emit = |f: llm_optimizer_processor::operator::Fired<'_, P::Key, _>| {
        rows += 1;
        std::hint::black_box(f.acc);
    };
    let before = counting_alloc::allocations();
    for e in evs {
        let pw = wm.partition_watermark(0);
        let fed = plan
            .feed(&mut op, pw, e, Envelope::default(), &mut emit)
            .unwrap();
        let llm_optimizer_processor::pipeline::Fed::Offered(ts, _) = fed else {
            unreachable!()
        };
        if let Some(w) = wm.on_event(0, ts, now) {
            op.advance_to(w, &mut emit);
        }
    }
    op.flush(&mut emit);
    let allocations = counting_alloc::allocations() - before;
    (allocations, pairs.len(), rows)
}

#[test]
fn steady_state_allocates_nothing_per_event() {
    let evs = events(1_000_000);
    let (allocations, pairs, rows) = run(
        Q1,
        llm_optimizer_processor::window::WindowSpec::Tumbling {
            size: 60_000,
            offset: 0,
        },
        &evs,
        true,
    );
    println!(
        "Q1: {allocations} allocations for {} events, {pairs} (key, window) pairs, {rows} rows",
        evs.len()
    );
    assert!(rows >= pairs as u64);
    assert!(
        allocations <= pairs as u64 + 1_000,
        "{allocations} allocations for {pairs} (key, window) pairs"
    );

    let (allocations, pairs, _) = run(
        Q2,
        llm_optimizer_processor::window::WindowSpec::Sliding {
            size: 300_000,
            slide: 60_000,
            offset: 0,
        },
        &evs,
        false,
    );
    println!("Q2: {allocations} allocations, {pairs} (key, pane) pairs");
    assert!(
        allocations <= pairs as u64 + 1_000,
        "{allocations} allocations for {pairs} (key, pane) pairs"
    );
}
