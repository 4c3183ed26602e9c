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
        key_by: model,
        aggregate { requests: count(), p95: percentile(latency_ms, 95) }
        derive {
            labelled: p95 + "ms",
            per_model: requests / model,
            early: later * 2.0,
            later: p95 / 1000.0,
        }
        emit_when: p95 > 2000.0 && window_start > 0,
    }
}

fn main() {}
