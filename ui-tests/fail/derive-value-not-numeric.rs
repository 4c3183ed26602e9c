use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    #[event(value)]
    label: String,
}

fn main() {}
