//! # llm-optimizer-processor
//!
//! Event-time windowed metrics over streams of LLM feedback and performance events:
//! count, sum, average, min, max, standard deviation and percentiles per key, in tumbling,
//! sliding or session windows, with watermarks, allowed lateness and a side output for
//! late events.
//!
//! ```
//! use llm_optimizer_processor::*;
//! use std::time::Duration;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let input = dir.path().join("events.jsonl");
//! std::fs::write(&input, concat!(
//!     r#"{"timestamp":"2026-01-01T00:00:01Z","model":"a","region":"eu","latency_ms":120}"#, "\n",
//!     r#"{"timestamp":"2026-01-01T00:00:02Z","model":"a","region":"eu","latency_ms":80}"#, "\n",
//!     "not json\n",
//! )).unwrap();
//! let rows = CollectorSink::new();
//! let summary = create_pipeline::<FeedbackEvent>()
//!     .with_file_source(&input)
//!     .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
//!     .with_tumbling_window(Duration::from_secs(300))
//!     .with_error_handler(ErrorHandler::new(ErrorPolicy::DeadLetter)
//!         .with_sink(DeadLetterSink::new("errors").with_dir(dir.path())))
//!     .with_sink(rows.clone())
//!     .build()?
//!     .run()
//!     .await?;
//! assert_eq!(summary.events_dead_lettered, 1);
//! assert_eq!(rows.items()[0].results["average"], 100.0);
//! # Ok::<(), ProcessorError>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

extern crate self as llm_optimizer_processor;

pub mod aggregation;
pub mod config;
pub mod dashboard;
pub mod dsl;
pub mod error;
pub mod event;
pub mod http;
#[cfg(feature = "kafka")]
mod kafka;
pub mod metrics;
pub mod metrics_server;
pub mod operator;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod state;
pub mod time;
pub mod watermark;
pub mod window;
pub mod workload;

pub use aggregation::{AggregationResult, AggregationState, Aggregator};
pub use config::load_config;
pub use error::{ErrorHandler, ErrorPolicy, ProcessorError, ProcessorResult};
pub use event::{
    EventMetadata, EventTimestamp, FeedbackEvent, GroupingKey, PerformanceMetricsEvent,
    ProcessorEvent,
};
pub use metrics::ProcessorMetrics;
pub use pipeline::{create_pipeline, Pipeline, PipelineBuilder, Plan, RunSummary};
pub use sink::{
    CollectorSink, ConsoleSink, DeadLetterRecord, DeadLetterSink, EventSink, FileSink, FlatRow,
    FlatRows, KafkaAggregationSink, KafkaProducerConfig, MetricsSink, ResultRow, WebSocketSink,
};
pub use source::{EventSource, FileSource, KafkaConfig};
#[cfg(feature = "rocksdb")]
pub use state::RocksDBStateBackend;
pub use state::{MemoryStateBackend, StateBackend, WindowStateManager};
pub use watermark::{
    BoundedOutOfOrdernessWatermark, LateEventHandler, PeriodicWatermarkGenerator, Watermark,
    WatermarkGenerator,
};
pub use window::{
    CountTrigger, EventTimeTrigger, SessionWindowAssigner, SlidingWindowAssigner,
    TumblingWindowAssigner, Window, WindowAssigner, WindowTrigger,
};

pub use std::sync::Arc;

pub use dsl::Event;
/// `pipeline! { … }`: a pipeline checked at compile time; see the README's DSL section.
pub use llm_optimizer_processor_macros::pipeline;
/// `#[derive(Event)]`: see [`dsl::Event`] and the README's DSL section.
pub use llm_optimizer_processor_macros::Event;

/// What generated code refers to. Not a public API: it changes with the macros.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregation::{Aggregator, PercentileAccumulator, StdDevAccumulator};
    pub use crate::dsl::*;
    pub use crate::error::{ProcessorError, ProcessorResult};
    pub use crate::event::GroupingKey;
    pub use crate::operator::{Admission, Fired, KeyRef, WindowFunction, WindowOperator};
    pub use crate::pipeline::{
        key_hash, DynamicPlan, Envelope, Fed, JsonDecoder, Pipeline, PipelineBuilder, Plan,
    };
    pub use crate::sink::{key_part, key_text_of, ResultRow};
    pub use crate::time::from_millis;
    pub use crate::watermark::{
        BoundedOutOfOrdernessWatermark, LateEventHandler, PeriodicWatermarkGenerator,
    };
    pub use crate::window::{WindowSpec, WindowTrigger};
    pub use chrono::{DateTime, Utc};
    pub use serde;
    pub use std::option::Option;
    pub use std::time::Duration;
}

/// Everything a pipeline declaration needs, in one import.
pub mod prelude {
    pub use crate::*;
    pub use chrono::{DateTime, Utc};
    pub use serde::{Deserialize, Serialize};
}

/// The README's code, compiled and run as a doc test.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
