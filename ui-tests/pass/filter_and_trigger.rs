// A filter closure and a trigger expression.
use llm_optimizer_processor::prelude::*;

pipeline! {
    pipeline Failures for FeedbackEvent {
        window: tumbling(1m),
        key_by: region,
        filter: |e| !e.success,
        trigger: CountTrigger::new(100),
        aggregate { failures: count(), sd: stddev_sample(latency_ms), low: min(latency_ms) }
    }
}

fn main() {
    let _ = Failures::pipeline();
}
