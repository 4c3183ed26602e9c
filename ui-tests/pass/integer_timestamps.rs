// Integer timestamps with a unit, SystemTime, and an event without key fields.
use llm_optimizer_processor::prelude::*;
use std::time::SystemTime;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Seconds {
    #[event(timestamp, unit = "s")]
    ts: u64,
    #[event(value)]
    v: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Nanos {
    #[event(key)]
    host: String,
    #[event(timestamp, unit = "ns")]
    ts: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Wall {
    #[event(timestamp)]
    at: SystemTime,
}

fn main() {
    assert_eq!(Seconds { ts: 2, v: 1 }.event_time_millis(), 2000);
    assert_eq!(Nanos { host: "h".into(), ts: 3_000_000 }.event_time_millis(), 3);
    assert_eq!(Wall { at: SystemTime::UNIX_EPOCH }.event_time_millis(), 0);
    assert_eq!(<Seconds as llm_optimizer_processor::dsl::Event>::VALUE_FIELD, Some("v"));
    Seconds { ts: 0, v: 0 }.key();
}
