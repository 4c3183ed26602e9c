// The built-in FeedbackEvent derives Event: key model and region, value latency_ms.
use llm_optimizer_processor::prelude::*;

pipeline! {
    pipeline CostByTenant for FeedbackEvent {
        window: sliding(10m, 1m, offset = 30s),
        key_by: (tenant, model),
        aggregate { cost: sum(cost_usd), p99: percentile(latency_ms, 99.9), ttft: avg(ttft_ms) }
        late: drop,
    }
}

fn main() {
    let rows = CollectorSink::<CostByTenantRow>::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let summary = rt
        .block_on(
            CostByTenant::pipeline()
                .with_memory_source(vec![FeedbackEvent { tenant: "t".into(), cost_usd: 2.0, ..Default::default() }])
                .with_sink(rows.clone())
                .build()
                .unwrap()
                .run(),
        )
        .unwrap();
    assert_eq!(summary.events_aggregated, 1);
    assert_eq!(rows.len(), 10, "one row per sliding window containing the event");
    assert_eq!(rows.items()[0].cost, 2.0);
}
