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
        aggregate { slow: count_if(|e| e.latency_ms) }
    }
}

fn main() {}
