use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(key, unit = "s")]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
}

fn main() {}
