use llm_optimizer_processor::prelude::*;

#[derive(Serialize, Deserialize, Event)]
struct Req(String, DateTime<Utc>);

fn main() {}
