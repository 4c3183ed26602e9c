use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(timestamp, unit = "ms")]
    timestamp: DateTime<Utc>,
}

fn main() {}
