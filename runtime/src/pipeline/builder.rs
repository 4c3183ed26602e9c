use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::plan::{DynamicAggregation, DynamicPlan, Plan};
use crate::aggregation::AggregationSpec;
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::event::{GroupingKey, ProcessorEvent};
use crate::metrics::ProcessorMetrics;
use crate::sink::EventSink;
use crate::source::{ChannelSource, EventSource, FileSource, KafkaConfig, MemorySource};
use crate::state::StateBackend;
use crate::time::duration_millis;
use crate::watermark::{BoundedOutOfOrdernessWatermark, LateEventHandler, WatermarkGenerator};
use crate::window::{
    SessionWindowAssigner, SlidingWindowAssigner, TumblingWindowAssigner, WindowAssigner,
    WindowSpec, WindowTrigger,
};

/// A future that asks the run loop to stop.
pub(crate) type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The clock-skew guard's default: one day ahead of the wall clock.
pub const DEFAULT_MAX_FUTURE_SKEW: Duration = Duration::from_secs(86_400);

pub(super) enum SourceChoice<T> {
    Source(Box<dyn EventSource<T>>),
    Kafka(KafkaConfig),
}

/// What a Kafka source needs that this build and declaration provide.
fn check_kafka(c: &KafkaConfig, spill: Option<usize>) -> ProcessorResult<()> {
    let invalid = |m: String| Err(ProcessorError::InvalidPipeline(m));
    if !cfg!(feature = "kafka") {
        return invalid(format!(
            "cannot read topics {:?} from {}: this build has no Kafka connector; build with the cargo feature `kafka` (on by default)",
            c.topics, c.bootstrap_servers
        ));
    }
    if c.topics.is_empty() {
        return invalid("the Kafka source has no topics: set KafkaConfig.topics".into());
    }
    if spill.is_some() {
        return invalid("with_spill_threshold is not available with a Kafka source yet (each partition keeps its state in memory between checkpoints); remove it".into());
    }
    Ok(())
}

/// Starts a dynamic pipeline over events of type `T` (any `Serialize + Deserialize` type;
/// the built-in [`FeedbackEvent`](crate::FeedbackEvent) needs no further setup).
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let events = (0..10).map(|i| FeedbackEvent {
///     timestamp: Utc.timestamp_opt(i * 60, 0).unwrap(),
///     model: "m".into(),
///     region: "r".into(),
///     latency_ms: 100.0 * i as f64,
///     ..Default::default()
/// });
/// let rows = CollectorSink::new();
/// let pipeline = create_pipeline::<FeedbackEvent>()
///     .with_memory_source(events)
///     .with_watermark_generator(BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30)))
///     .with_tumbling_window(Duration::from_secs(300))
///     .with_sink(rows.clone())
///     .build()?;
/// let summary = pipeline.run().await?;
/// assert_eq!(summary.events_aggregated, 10);
/// let rows = rows.items();
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows[0].results["count"], 5.0);
/// assert_eq!(rows[0].results["max"], 400.0);
/// # Ok::<(), ProcessorError>(()) }).unwrap();
/// ```
pub fn create_pipeline<T>() -> PipelineBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    PipelineBuilder::from_plan(DynamicPlan::default())
}

/// Declares a pipeline: sources, sinks, state and, for the dynamic builder, windows,
/// watermarks and aggregations; [`build`](Self::build) checks it.
pub struct PipelineBuilder<T, P: Plan<Event = T> = DynamicPlan<T>> {
    pub(super) name: String,
    pub(super) source: Option<SourceChoice<T>>,
    pub(super) watermark: Option<Box<dyn WatermarkGenerator>>,
    pub(super) window: Option<WindowSpec>,
    pub(super) assigner_lateness: Option<Duration>,
    pub(super) lateness: Option<Duration>,
    pub(super) late_handler: Option<LateEventHandler>,
    pub(super) trigger: Option<Box<dyn WindowTrigger>>,
    pub(super) state_backend: Option<Arc<dyn StateBackend>>,
    pub(super) checkpoint_interval: Duration,
    pub(super) spill_threshold: Option<usize>,
    pub(super) sinks: Vec<Arc<dyn EventSink<P::Row>>>,
    pub(super) error_handler: ErrorHandler,
    pub(super) plan: P,
    pub(super) metrics: Option<Arc<ProcessorMetrics>>,
    pub(super) buffer_size: usize,
    pub(super) shutdown: Option<Shutdown>,
    pub(super) parallelism: usize,
    pub(super) kafka_timestamp_fallback: bool,
    pub(super) kafka_partitioned_by_key: bool,
    pub(super) max_future_skew: Duration,
    pub(super) replay_rate: Option<f64>,
}

impl<T, P: Plan<Event = T>> std::fmt::Debug for PipelineBuilder<T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl<T, P> PipelineBuilder<T, P>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    P: Plan<Event = T>,
{
    /// A builder for a compiled plan (what `pipeline!` generates calls this).
    pub fn from_plan(plan: P) -> Self {
        PipelineBuilder {
            name: "pipeline".into(),
            source: None,
            watermark: None,
            window: None,
            assigner_lateness: None,
            lateness: None,
            late_handler: None,
            trigger: None,
            state_backend: None,
            checkpoint_interval: Duration::from_secs(60),
            spill_threshold: None,
            sinks: Vec::new(),
            error_handler: ErrorHandler::default(),
            plan,
            metrics: None,
            buffer_size: 10_000,
            shutdown: None,
            parallelism: 1,
            kafka_timestamp_fallback: false,
            kafka_partitioned_by_key: false,
            max_future_skew: DEFAULT_MAX_FUTURE_SKEW,
            replay_rate: None,
        }
    }

    /// Names the pipeline (logs, state keys).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// With a Kafka source: an event whose own timestamp is missing or unreadable takes
    /// the Kafka record's timestamp (its create or log-append time) as event time,
    /// instead of going to the dead-letter path.
    pub fn with_kafka_timestamp_fallback(mut self) -> Self {
        self.kafka_timestamp_fallback = true;
        self
    }

    /// With a Kafka source: the producers key every record by the grouping key, so all
    /// events of a key are in one partition of one topic. Each partition then keeps its
    /// own window state and checkpoint file (under `<checkpoint dir>/kafka/<group>/<pipeline>/`),
    /// which moves with the partition when the group rebalances, and several instances of
    /// the pipeline in one group split the partitions between them. A key seen on a
    /// second partition is counted (`processor_keys_on_several_partitions_total`) and
    /// warned about: its rows are partial. Result sinks are at least once in this mode.
    /// Without it (the default), one instance owns every key, whatever partition its
    /// events come on. See the README's "Kafka" section.
    pub fn with_kafka_partitioned_by_key(mut self) -> Self {
        self.kafka_partitioned_by_key = true;
        self
    }

    /// Reads from Kafka: subscribes `config.topics` in the consumer group
    /// `config.group_id`. Records go to the [`with_parallelism(n)`](Self::with_parallelism)
    /// workers by key hash, whatever partition or topic they come on, so each key and
    /// window gives one row. With a state backend that writes checkpoint files
    /// ([`RocksDBStateBackend`](crate::RocksDBStateBackend),
    /// [`MemoryStateBackend::persistent`](crate::MemoryStateBackend::persistent)) the run is
    /// checkpointed as a file run is (sinks staged, each partition's offset in the
    /// checkpoint) and the group's offsets are committed after each checkpoint, so a
    /// restart resumes exactly there. The instance assigns itself every partition: run one
    /// per group (a second one reads the same partitions and publishes the same rows
    /// again), unless the input is keyed by the grouping key
    /// ([`with_kafka_partitioned_by_key`](Self::with_kafka_partitioned_by_key)).
    /// See the README's "Kafka" section.
    pub fn with_kafka_source(mut self, config: KafkaConfig) -> Self {
        self.source = Some(SourceChoice::Kafka(config));
        self
    }

    /// Reads JSON lines from a file (`-` for standard input).
    pub fn with_file_source(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(FileSource::new(path))));
        self
    }

    /// Reads JSON lines from standard input.
    pub fn with_stdin_source(mut self) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(FileSource::stdin())));
        self
    }

    /// Reads these events, in order, as partition 0.
    pub fn with_memory_source(mut self, events: impl IntoIterator<Item = T>) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(MemorySource::new(events))));
        self
    }

    /// Reads these envelopes; their timestamp, key and partition are used as given.
    pub fn with_envelope_source(
        mut self,
        events: impl IntoIterator<Item = ProcessorEvent<T>>,
    ) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(
            MemorySource::from_envelopes(events),
        )));
        self
    }

    /// Reads events sent through a channel until every sender is dropped.
    pub fn with_channel_source(mut self, rx: tokio::sync::mpsc::Receiver<T>) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(ChannelSource::new(rx))));
        self
    }

    /// Reads from any source.
    pub fn with_source<S: EventSource<T> + 'static>(mut self, source: S) -> Self {
        self.source = Some(SourceChoice::Source(Box::new(source)));
        self
    }

    /// How watermarks are made (default: bounded out-of-orderness of 0 s).
    pub fn with_watermark_generator<G: WatermarkGenerator + 'static>(
        mut self,
        generator: G,
    ) -> Self {
        self.watermark = Some(Box::new(generator));
        self
    }

    /// Tumbling windows of this size.
    pub fn with_tumbling_window(self, size: Duration) -> Self {
        self.with_window_assigner(TumblingWindowAssigner::new(size))
    }

    /// Sliding windows of `size`, one every `slide`.
    pub fn with_sliding_window(self, size: Duration, slide: Duration) -> Self {
        self.with_window_assigner(SlidingWindowAssigner::new(size, slide))
    }

    /// Session windows closed by `gap` of inactivity.
    pub fn with_session_window(self, gap: Duration) -> Self {
        self.with_window_assigner(SessionWindowAssigner::new(gap))
    }

    /// Windows of this shape (milliseconds), as `pipeline!` declares them.
    pub fn with_window(mut self, spec: WindowSpec) -> Self {
        self.window = Some(spec);
        self
    }

    /// Sends late events to this sink, keeping the declared allowed lateness.
    pub fn with_late_side_output<S: EventSink<crate::sink::DeadLetterRecord> + 'static>(
        mut self,
        sink: S,
    ) -> Self {
        let lateness = self
            .late_handler
            .as_ref()
            .map(|h| h.allowed_lateness())
            .or(self.lateness)
            .or(self.assigner_lateness)
            .unwrap_or(Duration::ZERO);
        self.late_handler = Some(LateEventHandler::new(lateness).with_side_output(sink));
        self
    }

    /// Windows from an assigner (with its offset and allowed lateness).
    pub fn with_window_assigner<A: WindowAssigner>(mut self, assigner: A) -> Self {
        self.window = Some(assigner.spec());
        self.assigner_lateness = assigner.allowed_lateness();
        self
    }

    /// How long windows accept events after the watermark passed their end.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = Some(lateness);
        self
    }

    /// Allowed lateness and where late events go.
    pub fn with_late_event_handler(mut self, handler: LateEventHandler) -> Self {
        self.late_handler = Some(handler);
        self
    }

    /// When windows fire (default: [`EventTimeTrigger`](crate::EventTimeTrigger)).
    pub fn with_trigger<Tr: WindowTrigger + 'static>(mut self, trigger: Tr) -> Self {
        self.trigger = Some(Box::new(trigger));
        self
    }

    /// The state backend for checkpoints. With one, a pipeline whose source can be read
    /// again (a file, memory, Kafka) takes a checkpoint every
    /// [`checkpoint interval`](Self::with_checkpoint_interval) and resumes from the
    /// latest one when it starts (see the README's "State and checkpoints").
    pub fn with_state_backend(mut self, backend: Arc<dyn StateBackend>) -> Self {
        self.state_backend = Some(backend);
        self
    }

    /// Keeps at most `max_windows` accumulators ((key, pane or session) pairs) in memory;
    /// past it, the state of other keys is spilled to the state backend (RocksDB) until an
    /// event or a timer needs it. Needs a backend that can hold spilled state.
    pub fn with_spill_threshold(mut self, max_windows: usize) -> Self {
        self.spill_threshold = Some(max_windows);
        self
    }

    /// Time between checkpoints (default 60 s; zero: none); used with a state backend.
    pub fn with_checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Adds a sink for result rows (several may be added).
    pub fn with_sink<S: EventSink<P::Row> + 'static>(mut self, sink: S) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// How bad records and failing sinks are handled (default: dead letter).
    pub fn with_error_handler(mut self, handler: ErrorHandler) -> Self {
        self.error_handler = handler;
        self
    }

    /// Records metrics here.
    pub fn with_metrics(mut self, metrics: Arc<ProcessorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Stops reading when `signal` completes (e.g. `tokio::signal::ctrl_c()`): the run then
    /// ends as at the end of a bounded input — open windows fire, sinks are flushed.
    pub fn with_shutdown_signal<F>(mut self, signal: F) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// Runs `n` worker tasks (default 1): over a file or stdin each owns the keys whose
    /// hash falls to it; over Kafka each owns some of the assigned partitions. The rows
    /// are the same as with one worker; only their interleaving across keys differs.
    pub fn with_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n;
        self
    }

    /// The clock-skew guard: a record stamped more than `skew` ahead of the wall clock
    /// goes to the dead-letter sink (kind `clock_skew`) and does not move the watermark,
    /// so one bad clock cannot push every later record behind the watermark. Default one
    /// day; zero turns the guard off.
    pub fn with_max_future_skew(mut self, skew: Duration) -> Self {
        self.max_future_skew = skew;
        self
    }

    /// Replays a recorded input at `rate` times the pace of its event time (`60.0`: an
    /// hour of events in a minute) instead of as fast as it can be read: for demos and
    /// dashboards. Rows are the same as without it; only their timing changes. A live
    /// source (Kafka) arrives at its own pace and refuses it.
    ///
    /// ```
    /// use llm_optimizer_processor::*;
    /// use std::time::Duration;
    ///
    /// let pipeline = create_pipeline()
    ///     .with_memory_source(Vec::<FeedbackEvent>::new())
    ///     .with_tumbling_window(Duration::from_secs(60))
    ///     .with_replay_rate(30.0)
    ///     .build();
    /// assert!(pipeline.is_ok());
    /// ```
    pub fn with_replay_rate(mut self, rate: f64) -> Self {
        self.replay_rate = Some(rate);
        self
    }

    /// Records buffered between the source and the operator (backpressure bound).
    pub fn with_buffer_size(mut self, n: usize) -> Self {
        self.buffer_size = n;
        self
    }

    /// Checks the declaration and returns a runnable pipeline.
    pub fn build(mut self) -> ProcessorResult<Pipeline<T, P>> {
        let invalid = |m: &str| Err(ProcessorError::InvalidPipeline(m.to_owned()));
        let source = match self.source.take() {
            None => return invalid("no source: add .with_file_source(path), .with_memory_source(events) or .with_kafka_source(config)"),
            Some(SourceChoice::Kafka(_)) if self.replay_rate.is_some() => {
                return invalid("with_replay_rate with a Kafka source: a live source arrives at its own pace; replay a recorded file instead")
            }
            Some(SourceChoice::Kafka(c)) => {
                check_kafka(&c, self.spill_threshold)?;
                SourceChoice::Kafka(c)
            }
            Some(s) => s,
        };
        let Some(window) = self.window else {
            return invalid("no window: add .with_tumbling_window(size), .with_sliding_window(size, slide) or .with_session_window(gap)");
        };
        window.validate()?;
        if self.parallelism == 0 {
            return invalid("parallelism must be at least 1");
        }
        if self.buffer_size == 0 {
            return invalid("buffer size must be at least 1");
        }
        if let Some(rate) = self.replay_rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(ProcessorError::InvalidPipeline(format!(
                "with_replay_rate({rate}): the rate must be a positive number (1.0: event time's own pace, 60.0: a minute per second)"
            )));
        }
        let mut candidates = [
            ("the window assigner", self.assigner_lateness),
            ("with_allowed_lateness", self.lateness),
            (
                "the late event handler",
                self.late_handler.as_ref().map(|h| h.allowed_lateness()),
            ),
        ]
        .into_iter()
        .filter_map(|(who, d)| d.map(|d| (who, d)));
        let lateness = match candidates.next() {
            None => Duration::ZERO,
            Some((who, d)) => {
                if let Some((other, d2)) = candidates.find(|(_, d2)| *d2 != d) {
                    return Err(ProcessorError::InvalidPipeline(format!(
                        "allowed lateness is set twice with different values: {d:?} by {who} and {d2:?} by {other}; set it in one place"
                    )));
                }
                d
            }
        };
        for sink in &self.sinks {
            sink.check()?;
        }
        let spill = match self.spill_threshold {
            None => None,
            Some(n) => match self.state_backend.as_ref().and_then(|b| b.spill_store()) {
                Some(store) => Some((store, n)),
                None => {
                    return Err(ProcessorError::InvalidPipeline(format!(
                        "with_spill_threshold({n}) needs a state backend that can hold spilled state: add .with_state_backend(Arc::new(RocksDBStateBackend::new(state_path, checkpoint_path)?))"
                    )))
                }
            },
        };
        let metrics = self
            .metrics
            .unwrap_or_else(|| Arc::new(ProcessorMetrics::new()));
        for sink in &self.sinks {
            sink.bind_metrics(&metrics);
        }
        Ok(Pipeline {
            name: self.name,
            source,
            kafka_timestamp_fallback: self.kafka_timestamp_fallback,
            kafka_partitioned_by_key: self.kafka_partitioned_by_key,
            watermark: self
                .watermark
                .unwrap_or_else(|| Box::new(BoundedOutOfOrdernessWatermark::new(Duration::ZERO))),
            window,
            lateness_ms: duration_millis(lateness),
            late_handler: self.late_handler,
            trigger: self.trigger,
            state_backend: self.state_backend,
            checkpoint_interval: self.checkpoint_interval,
            spill,
            sinks: self.sinks,
            error_handler: self.error_handler,
            plan: self.plan,
            metrics,
            buffer_size: self.buffer_size,
            shutdown: self.shutdown,
            parallelism: self.parallelism,
            max_future_skew_ms: (!self.max_future_skew.is_zero())
                .then(|| duration_millis(self.max_future_skew)),
            replay_rate: self.replay_rate,
        })
    }
}

/// What only the dynamic builder declares at run time: fields and statistics.
impl<T> PipelineBuilder<T, DynamicPlan<T>>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Reads event time, key and measured value as `#[derive(Event)]` declares them
    /// (timestamp units included) instead of by field name.
    ///
    /// ```
    /// use llm_optimizer_processor::prelude::*;
    /// use std::time::Duration;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
    /// struct Gpu {
    ///     #[event(key)] node: String,
    ///     #[event(timestamp, unit = "s")] at: u64,
    ///     #[event(value)] utilization: f64,
    /// }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let rows = CollectorSink::new();
    /// create_pipeline::<Gpu>()
    ///     .with_event_fields()
    ///     .with_memory_source(vec![Gpu { node: "n1".into(), at: 61, utilization: 0.5 }])
    ///     .with_tumbling_window(Duration::from_secs(60))
    ///     .with_sink(rows.clone())
    ///     .build()?
    ///     .run()
    ///     .await?;
    /// let row = &rows.items()[0];
    /// assert_eq!(row.key.to_string(), "node=n1");
    /// assert_eq!(row.window.start_millis(), 60_000);
    /// assert_eq!(row.results["average"], 0.5);
    /// # Ok::<(), ProcessorError>(()) }).unwrap();
    /// ```
    pub fn with_event_fields(mut self) -> Self
    where
        T: crate::dsl::Event,
    {
        self.plan.extractor.timestamp_fn = Some(Box::new(|e: &T| {
            Some(crate::time::from_millis(
                crate::dsl::Event::event_time_millis(e),
            ))
        }));
        self.plan.extractor.key_fn = Some(Box::new(|e: &T| crate::dsl::Event::grouping_key(e)));
        self.plan.extractor.key_fields = T::KEY_FIELDS.iter().map(|f| (*f).to_owned()).collect();
        if let Some(v) = T::VALUE_FIELD {
            self.plan.extractor.value_field = Some(v.to_owned());
        }
        self
    }

    /// Which statistics are computed (default: all, percentiles 50, 95, 99).
    pub fn with_aggregations(mut self, spec: AggregationSpec) -> Self {
        self.plan.func = DynamicAggregation::new(spec);
        self
    }

    /// Groups by these fields of the event. A record that lacks one of them (or has it
    /// `null`) goes to the dead-letter sink with `missing key field `…``: grouping it under
    /// an empty key would invent a key nobody sent. Without this call the key is `model`,
    /// `region`, and fields the event lacks are left out of it.
    pub fn with_key_fields<S: AsRef<str>>(mut self, fields: &[S]) -> Self {
        self.plan.extractor.key_fields = fields.iter().map(|f| f.as_ref().to_owned()).collect();
        self.plan.extractor.keys_required = true;
        self
    }

    /// Measures this numeric field (default: `latency_ms`, else `value`).
    pub fn with_value_field(mut self, field: impl Into<String>) -> Self {
        self.plan.extractor.value_field = Some(field.into());
        self
    }

    /// Reads event time from this field (default: `timestamp`).
    pub fn with_timestamp_field(mut self, field: impl Into<String>) -> Self {
        self.plan.extractor.timestamp_field = field.into();
        self
    }

    /// Reads event time with a closure.
    pub fn with_timestamp_fn(
        mut self,
        f: impl Fn(&T) -> Option<DateTime<Utc>> + Send + Sync + 'static,
    ) -> Self {
        self.plan.extractor.timestamp_fn = Some(Box::new(f));
        self
    }

    /// Computes the key with a closure.
    pub fn with_key_fn(mut self, f: impl Fn(&T) -> GroupingKey + Send + Sync + 'static) -> Self {
        self.plan.extractor.key_fn = Some(Box::new(f));
        self
    }

    /// Reads the measured value with a closure (`None`: the event has no value).
    pub fn with_value_fn(mut self, f: impl Fn(&T) -> Option<f64> + Send + Sync + 'static) -> Self {
        self.plan.extractor.value_fn = Some(Box::new(f));
        self
    }
}

/// A checked pipeline, ready to [`run`](Pipeline::run).
pub struct Pipeline<T, P: Plan<Event = T> = DynamicPlan<T>> {
    pub(super) name: String,
    pub(super) source: SourceChoice<T>,
    /// Read by the Kafka run loop only.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(super) kafka_timestamp_fallback: bool,
    /// Read by the Kafka run loop only.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(super) kafka_partitioned_by_key: bool,
    pub(super) watermark: Box<dyn WatermarkGenerator>,
    pub(super) window: WindowSpec,
    pub(super) lateness_ms: i64,
    pub(super) late_handler: Option<LateEventHandler>,
    pub(super) trigger: Option<Box<dyn WindowTrigger>>,
    pub(super) state_backend: Option<Arc<dyn StateBackend>>,
    pub(super) checkpoint_interval: Duration,
    pub(super) spill: Option<(Arc<dyn crate::operator::SpillStore>, usize)>,
    pub(super) sinks: Vec<Arc<dyn EventSink<P::Row>>>,
    pub(super) error_handler: ErrorHandler,
    pub(super) plan: P,
    pub(super) metrics: Arc<ProcessorMetrics>,
    pub(super) buffer_size: usize,
    pub(super) shutdown: Option<Shutdown>,
    pub(super) parallelism: usize,
    /// The clock-skew guard (`None`: off).
    pub(super) max_future_skew_ms: Option<i64>,
    /// Paced replay (`None`: as fast as the input can be read).
    pub(super) replay_rate: Option<f64>,
}

impl<T, P: Plan<Event = T>> std::fmt::Debug for Pipeline<T, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("lateness_ms", &self.lateness_ms)
            .finish()
    }
}

impl<T, P: Plan<Event = T>> Pipeline<T, P> {
    /// The pipeline's metrics.
    pub fn metrics(&self) -> Arc<ProcessorMetrics> {
        Arc::clone(&self.metrics)
    }
}
