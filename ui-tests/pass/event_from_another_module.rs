// `key_by` names fields of an event declared in another module, reached by a `use`, by a
// path, and from a function body: the derive's field list travels with the struct's name.
mod events {
    use llm_optimizer_processor::prelude::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    pub struct Req {
        #[event(key)]
        pub model: String,
        pub region: String,
        #[event(timestamp)]
        pub timestamp: DateTime<Utc>,
        pub latency_ms: f64,
    }
}

mod by_use {
    use crate::events::Req;
    use llm_optimizer_processor::prelude::*;

    pipeline! {
        pub pipeline ByRegion for Req {
            window: tumbling(1m),
            key_by: region,
            aggregate { n: count(), p99: percentile(latency_ms, 99) }
        }
    }
}

mod by_path {
    use llm_optimizer_processor::prelude::*;

    pipeline! {
        pub pipeline ByModelRegion for crate::events::Req {
            window: sliding(10m, 1m),
            key_by: (model, region),
            aggregate { n: count() }
        }
    }
}

fn main() {
    use llm_optimizer_processor::prelude::*;

    #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    struct Local {
        #[event(timestamp, unit = "s")]
        at: i64,
        tenant: u32,
    }
    pipeline! {
        pipeline PerTenant for Local {
            window: session(gap = 30s),
            key_by: tenant,
            aggregate { n: count() }
        }
    }

    let _ = by_use::ByRegion::pipeline();
    let _ = by_path::ByModelRegion::pipeline();
    let _ = PerTenant::pipeline();
    let row = by_use::ByRegionRow {
        region: "eu".into(),
        window_start: Utc::now(),
        window_end: Utc::now(),
        is_update: false,
        n: 1,
        p99: None,
    };
    let _: String = row.region;
}
