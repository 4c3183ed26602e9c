use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req {
    #[event(timestamp)]
    started: DateTime<Utc>,
    #[event(timestamp)]
    finished: DateTime<Utc>,
}

fn main() {}
