use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ev {
    #[event(key)]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    latency_ms: f64,
}

pipeline! {
    pub pipeline P for Ev {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(5m),
        aggregate { }
    }
}

fn main() {}
