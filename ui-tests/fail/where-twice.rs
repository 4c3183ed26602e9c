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
        aggregate {
            failures: count_if(|e| !e.success) where |e| e.latency_ms > 10.0,
            requests: count(),
        }
        derive { rate: failures / requests where |e| e.success }
    }
}

fn main() {}
