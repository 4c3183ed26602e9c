// No key_by: the event's #[event(key)] fields, as one `key` column.
use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Click {
    #[event(key)]
    user: u64,
    #[event(timestamp)]
    at: DateTime<Utc>,
    dwell_ms: Option<u32>,
}

pipeline! {
    pipeline Sessions for Click {
        watermark: bounded_out_of_orderness(5s, emit_every = 1s, idle_timeout = 1m),
        window: session(gap = 30m),
        aggregate { clicks: count(), dwell: sum(dwell_ms), longest: max(dwell_ms) }
    }
}

fn main() {
    let row: Option<SessionsRow> = None;
    let _: Option<(u64,)> = row.map(|r| r.key);
    let _ = Sessions::pipeline();
}
