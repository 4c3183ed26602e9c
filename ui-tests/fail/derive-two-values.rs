use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    #[event(value)]
    latency_ms: f64,
    #[event(value)]
    cost_usd: f64,
}

fn main() {}
