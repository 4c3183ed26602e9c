use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
enum Req {
    A { timestamp: DateTime<Utc> },
}

fn main() {}
