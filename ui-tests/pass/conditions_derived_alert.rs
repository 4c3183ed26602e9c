// Conditional aggregations, derived columns and an alert condition, on the built-in event.
use llm_optimizer_processor::prelude::*;

pipeline! {
    /// Health per model: error rate, cost per 1k output tokens, p95 of successful calls.
    pub pipeline ModelHealth for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m),
        key_by: model,
        aggregate {
            requests: count(),
            failures: count_if(|e| !e.success),
            cost:     sum_if(cost_usd, |e| e.success),
            tokens:   sum(output_tokens) where |e| e.success,
            p95_ok:   percentile(latency_ms, 95) where |e| e.success,
        }
        derive {
            error_rate:  failures as f64 / requests as f64,
            cost_per_1k: cost / tokens * 1000.0,
            headroom:    2000.0 - p95_ok,
        }
        emit_when: !is_update && (p95_ok > 2000.0 || error_rate >= 0.05),
    }
}

fn main() {
    let _ = ModelHealth::pipeline();
    let row: Option<ModelHealthRow> = None;
    if let Some(r) = row {
        let _: u64 = r.failures;
        let _: Option<f64> = r.error_rate;
        let _: Option<f64> = r.cost_per_1k;
    }
}
