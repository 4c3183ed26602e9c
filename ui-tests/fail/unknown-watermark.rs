use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Req {
    #[event(key)]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    latency_ms: f64,
    label: String,
}

pipeline! {
    pipeline Latency for Req {
        watermark: fixed(30s),
        window: tumbling(5m),
        aggregate { requests: count() }
    }
}

fn main() {}
