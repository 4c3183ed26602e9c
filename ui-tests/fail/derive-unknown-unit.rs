use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(timestamp, unit = "min")]
    timestamp: i64,
}

fn main() {}
