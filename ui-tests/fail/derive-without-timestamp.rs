use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(key)]
    model: String,
    latency_ms: f64,
}

fn main() {}
