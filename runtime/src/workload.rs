//! A seeded workload of `FeedbackEvent`s shaped like a real LLM service: Zipf-distributed
//! models and tenants, log-normal latencies with spikes, out-of-order arrival. Used by the
//! benchmarks and the tests; the same seed gives the same events.

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};

use crate::event::FeedbackEvent;
use crate::time::from_millis;

/// The shape of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Events to generate.
    pub events: usize,
    /// Seed of the random generator.
    pub seed: u64,
    /// Event time covered, in milliseconds (events are spread evenly over it).
    pub span_ms: i64,
    /// Event time of the first event.
    pub start: DateTime<Utc>,
    /// Distinct models (Zipf 1.1).
    pub models: usize,
    /// Distinct regions (uniform).
    pub regions: usize,
    /// Distinct tenants (Zipf 1.2).
    pub tenants: usize,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            events: 1_000_000,
            seed: 42,
            span_ms: 2 * 3600 * 1000,
            start: from_millis(1_767_225_600_000), // 2026-01-01T00:00:00Z
            models: 20,
            regions: 12,
            tenants: 10_000,
        }
    }
}

/// Generates the events in arrival order.
///
/// Latency is log-normal with median 800 ms and σ 0.8, 0.5% of requests spike ×10; 30% of
/// ratings are null, 1% of requests fail; arrival disorder: 95% of events ≤ 2 s late,
/// 4.5% 2–30 s, 0.5% 30–300 s.
///
/// ```
/// use llm_optimizer_processor::workload::{generate, WorkloadSpec};
/// let a = generate(&WorkloadSpec { events: 100, ..Default::default() });
/// let b = generate(&WorkloadSpec { events: 100, ..Default::default() });
/// assert_eq!(a, b);
/// ```
pub fn generate(spec: &WorkloadSpec) -> Vec<FeedbackEvent> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let models: Vec<String> = (0..spec.models).map(|i| format!("model-{i:02}")).collect();
    const REGIONS: [&str; 12] = [
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-west-2",
        "eu-central-1",
        "ap-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-southeast-1",
        "sa-east-1",
    ];
    let regions: Vec<String> = (0..spec.regions)
        .map(|i| {
            REGIONS
                .get(i)
                .map_or_else(|| format!("region-{i:02}"), |r| (*r).to_owned())
        })
        .collect();
    let tenants: Vec<String> = (0..spec.tenants)
        .map(|i| format!("tenant-{i:05}"))
        .collect();
    let model_dist = Zipf::new(spec.models.max(1) as f64, 1.1).expect("valid Zipf");
    let tenant_dist = Zipf::new(spec.tenants.max(1) as f64, 1.2).expect("valid Zipf");
    let latency = LogNormal::new(800f64.ln(), 0.8).expect("valid log-normal");
    let start = spec.start.timestamp_millis();
    let step = spec.span_ms as f64 / spec.events.max(1) as f64;
    (0..spec.events)
        .map(|i| {
            let model = model_dist.sample(&mut rng) as usize - 1;
            let tenant = tenant_dist.sample(&mut rng) as usize - 1;
            let region = rng.random_range(0..spec.regions.max(1));
            let mut latency_ms: f64 = latency.sample(&mut rng);
            if rng.random_bool(0.005) {
                latency_ms *= 10.0;
            }
            let delay_ms: i64 = match rng.random_range(0..1000) {
                0..950 => rng.random_range(0..=2_000),
                950..995 => rng.random_range(2_000..=30_000),
                _ => rng.random_range(30_000..=300_000),
            };
            let input_tokens = rng.random_range(20..4_000u32);
            let output_tokens = rng.random_range(1..1_500u32);
            FeedbackEvent {
                event_id: format!("ev-{i:09}"),
                timestamp: from_millis(start + (i as f64 * step) as i64 - delay_ms),
                model: models[model].clone(),
                region: regions[region].clone(),
                tenant: tenants[tenant].clone(),
                latency_ms: (latency_ms * 1000.0).round() / 1000.0,
                ttft_ms: (latency_ms * rng.random_range(0.1..0.5) * 100.0).round() / 100.0,
                input_tokens,
                output_tokens,
                cost_usd: (f64::from(input_tokens) * 0.5e-6 + f64::from(output_tokens) * 1.5e-6),
                rating: (!rng.random_bool(0.3)).then(|| f64::from(rng.random_range(1..=5u8))),
                success: !rng.random_bool(0.01),
            }
        })
        .collect()
}

/// The same events as JSON lines.
pub fn to_json_lines(events: &[FeedbackEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 300);
    for e in events {
        serde_json::to_writer(&mut out, e).expect("a FeedbackEvent always serializes");
        out.push(b'\n');
    }
    out
}
