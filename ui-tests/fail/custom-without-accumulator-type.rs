use llm_optimizer_processor::prelude::*;

struct Variance;

pipeline! {
    pipeline Latency for FeedbackEvent {
        window: tumbling(5m),
        aggregate { v: custom(Variance, latency_ms) }
    }
}

fn main() {}
