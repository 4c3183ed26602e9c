// The DESIGN's example, as written there.
use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
pub struct FeedbackEvent {
    #[event(key)]       pub model: String,
    #[event(key)]       pub region: String,
    #[event(timestamp)] pub timestamp: DateTime<Utc>,   // also i64/u64 epoch millis, SystemTime
    pub latency_ms: f64,
    pub tokens: u32,
    pub rating: Option<f64>,
}

pipeline! {
    /// Latency per model and region, every 5 minutes.
    pub pipeline LatencyByModel for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(5m, allowed_lateness = 1m),   // sliding(10m, 1m) · session(gap = 5m)
        key_by: (model, region),                        // default: the #[event(key)] fields
        aggregate {
            requests:    count(),
            avg_latency: avg(latency_ms),
            p95_latency: percentile(latency_ms, 95),
            tokens:      sum(tokens),
            latency_sd:  stddev(latency_ms),
        }
        late: side_output,                              // or drop
    }
}

fn main() {
    let _builder = LatencyByModel::pipeline();
    let row: Option<LatencyByModelRow> = None;
    let _ = row.map(|r| (r.model, r.region, r.requests, r.avg_latency, r.p95_latency, r.tokens, r.latency_sd));
}
