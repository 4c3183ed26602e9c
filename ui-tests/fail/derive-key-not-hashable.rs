use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(key)]
    latency_ms: f64,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
}

fn main() {}
