use llm_optimizer_processor::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Ev {
    #[event(key)]
    model: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    latency_ms: f64,
    success: bool,
}

/// A custom aggregator whose result is not a number.
struct Spread;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Range {
    lo: f64,
    hi: f64,
}

impl Aggregator<f64, Range, Range> for Spread {
    fn create_accumulator(&self) -> Range {
        Range { lo: f64::INFINITY, hi: f64::NEG_INFINITY }
    }
    fn add(&self, acc: &mut Range, v: &f64) {
        acc.lo = acc.lo.min(*v);
        acc.hi = acc.hi.max(*v);
    }
    fn merge(&self, a: &Range, b: &Range) -> Range {
        Range { lo: a.lo.min(b.lo), hi: a.hi.max(b.hi) }
    }
    fn get_result(&self, acc: &Range) -> Range {
        acc.clone()
    }
    fn name(&self) -> &str {
        "range"
    }
}

pipeline! {
    pub pipeline P for Ev {
        window: tumbling(1m),
        aggregate { requests: count(), range: custom::<Range>(Spread, latency_ms) }
        derive { per_request: range / requests }
    }
}

fn main() {}
