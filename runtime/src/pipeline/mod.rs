//! The dynamic pipeline: [`create_pipeline`], its builder, and the run loop that drives
//! source → decode → watermark → windows → aggregation → sinks.

mod batch;
mod builder;
mod checkpoint;
mod extract;
#[cfg(feature = "kafka")]
mod kafka_run;
mod parallel;
mod plan;
mod replay;
mod run;

pub use batch::JsonDecoder;
pub use builder::{create_pipeline, Pipeline, PipelineBuilder};
pub use plan::{key_hash, DynamicPlan, Envelope, Fed, Plan};
pub use run::{DynamicAggregation, RunSummary};
