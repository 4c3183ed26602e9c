// A derived event in the dynamic builder: fields by name.
use llm_optimizer_processor::prelude::*;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
struct Gpu {
    #[event(key)]
    node: String,
    #[event(timestamp)]
    timestamp: DateTime<Utc>,
    #[event(value)]
    utilization: f64,
}

fn main() {
    let rows = CollectorSink::new();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(
        create_pipeline::<Gpu>()
            .with_memory_source(vec![Gpu { node: "n1".into(), timestamp: Utc::now(), utilization: 0.5 }])
            .with_key_fields(<Gpu as llm_optimizer_processor::dsl::Event>::KEY_FIELDS)
            .with_value_field("utilization")
            .with_tumbling_window(Duration::from_secs(60))
            .with_sink(rows.clone())
            .build()
            .unwrap()
            .run(),
    )
    .unwrap();
    assert_eq!(rows.items()[0].key.to_string(), "node=n1");
}
