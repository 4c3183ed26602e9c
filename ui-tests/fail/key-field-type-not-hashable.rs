use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Version {
    major: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Req {
    #[event(key)]
    model: String,
    version: Version,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
}

pipeline! {
    pipeline ByVersion for Req {
        window: tumbling(5m),
        key_by: version,
        aggregate { requests: count() }
    }
}

fn main() {}
