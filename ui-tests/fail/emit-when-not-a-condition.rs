use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ev {
    #[event(key)]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    latency_ms: f64,
    success: bool,
}

pipeline! {
    pub pipeline P for Ev {
        window: tumbling(1m),
        aggregate { requests: count(), p95: percentile(latency_ms, 95) }
        emit_when: p95 * 2.0,
    }
}

fn main() {}
