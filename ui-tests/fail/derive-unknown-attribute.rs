use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(keys)]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
}

fn main() {}
