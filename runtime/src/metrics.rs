//! Operational metrics of the processor, on the `prometheus` crate.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::time::Duration;

/// Counters, gauges and a latency histogram of one processor, in their own registry.
///
/// ```
/// use llm_optimizer_processor::metrics::*;
/// use std::time::Instant;
///
/// let metrics = ProcessorMetrics::new();
/// let start = Instant::now();
/// metrics.record_processing_latency(start.elapsed());
/// metrics.record_event_processed();
/// metrics.record_error();
/// metrics.record_state_size(4096);
/// let prometheus_metrics = metrics.export();
/// assert!(prometheus_metrics.contains("processor_events_processed_total 1"));
/// assert!(prometheus_metrics.contains("processor_state_size_bytes 4096"));
/// ```
#[derive(Debug, Clone)]
pub struct ProcessorMetrics {
    registry: Registry,
    events_processed: IntCounter,
    events_late: IntCounter,
    events_dead_lettered: IntCounter,
    errors: IntCounter,
    rows_emitted: IntCounter,
    state_size: IntGauge,
    open_windows: IntGauge,
    partition_watermarks: IntGaugeVec,
    source_offsets: IntGaugeVec,
    sink_dropped: IntCounterVec,
    kafka_lag: IntGaugeVec,
    kafka_records_per_poll: Histogram,
    watermark: IntGauge,
    newest_event: IntGauge,
    processing_latency: Histogram,
    checkpoints: IntCounter,
    checkpoint_duration: Histogram,
    last_checkpoint: IntGauge,
    keys_split: IntCounter,
}

impl Default for ProcessorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("metric name is valid"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        registry,
        IntGauge::new(name, help).expect("metric name is valid"),
    )
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
    registry
        .register(Box::new(m.clone()))
        .expect("metric is registered once in a fresh registry");
    m
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("metric name is valid"),
    )
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("metric name is valid"),
    )
}

impl ProcessorMetrics {
    /// Metrics in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = |start, factor, n| {
            prometheus::exponential_buckets(start, factor, n).expect("valid buckets")
        };
        let processing_latency = histogram(
            &registry,
            "processor_processing_latency_seconds",
            "time to process one event",
            buckets(1e-7, 4.0, 12),
        );
        let partition_watermarks = gauge_vec(
            &registry,
            "processor_partition_watermark_millis",
            "watermark of each source partition, epoch milliseconds (lag: time() * 1000 - this)",
            &["partition"],
        );
        let source_offsets = gauge_vec(
            &registry,
            "processor_source_offset",
            "where the source is: the offset of the last record read in each partition (its byte offset in a file)",
            &["partition"],
        );
        let sink_dropped = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "processor_sink_dropped_total",
                    "rows a best-effort sink dropped (the oldest first) because its buffer was full while it could not deliver",
                ),
                &["sink"],
            )
            .expect("metric name is valid"),
        );
        let kafka_lag = gauge_vec(
            &registry,
            "processor_kafka_consumer_lag",
            "records in each assigned Kafka partition not yet handed to the pipeline: high watermark - position (librdkafka statistics, every second)",
            &["topic", "partition"],
        );
        let kafka_records_per_poll = histogram(
            &registry,
            "processor_kafka_records_per_poll",
            "records the Kafka consumer took in one poll round (at most max_poll_records)",
            buckets(1.0, 2.0, 15),
        );
        let checkpoint_duration = histogram(
            &registry,
            "processor_checkpoint_duration_seconds",
            "time to take one checkpoint (sinks staged, state written, sealed, published)",
            buckets(1e-3, 2.0, 16),
        );
        ProcessorMetrics {
            checkpoints: counter(
                &registry,
                "processor_checkpoints_total",
                "checkpoints completed",
            ),
            last_checkpoint: gauge(
                &registry,
                "processor_last_checkpoint_id",
                "id of the last checkpoint completed",
            ),
            checkpoint_duration,
            keys_split: counter(
                &registry,
                "processor_keys_on_several_partitions_total",
                "keys seen on a second Kafka partition (their rows are partial, one per partition, until the keyed exchange of issue #25)",
            ),
            partition_watermarks,
            source_offsets,
            sink_dropped,
            kafka_lag,
            kafka_records_per_poll,
            events_processed: counter(&registry, "processor_events_processed_total", "events read"),
            events_late: counter(
                &registry,
                "processor_events_late_total",
                "events past the allowed lateness",
            ),
            events_dead_lettered: counter(
                &registry,
                "processor_events_dead_lettered_total",
                "records sent to the dead-letter sink",
            ),
            errors: counter(&registry, "processor_errors_total", "errors of any kind"),
            rows_emitted: counter(
                &registry,
                "processor_rows_emitted_total",
                "result rows emitted",
            ),
            state_size: gauge(
                &registry,
                "processor_state_size_bytes",
                "size of the state, in bytes",
            ),
            open_windows: gauge(
                &registry,
                "processor_open_windows",
                "accumulators held: (key, pane or session) pairs not yet purged",
            ),
            watermark: gauge(
                &registry,
                "processor_watermark_millis",
                "combined watermark, epoch milliseconds",
            ),
            newest_event: gauge(
                &registry,
                "processor_newest_event_millis",
                "event time of the newest event read, epoch milliseconds (the watermark's lag: this - processor_watermark_millis)",
            ),
            processing_latency,
            registry,
        }
    }

    /// The registry holding these metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Records a completed checkpoint and the time it took.
    pub fn record_checkpoint(&self, id: u64, took: Duration) {
        self.checkpoints.inc();
        self.last_checkpoint.set(id as i64);
        self.checkpoint_duration.observe(took.as_secs_f64());
    }

    /// Records the time one batch of events took (the run loops observe per batch).
    pub fn record_processing_latency(&self, d: Duration) {
        self.processing_latency.observe(d.as_secs_f64());
    }
    /// Counts an event read.
    pub fn record_event_processed(&self) {
        self.events_processed.inc();
    }
    /// Counts `n` events read (one batch).
    pub fn record_events_processed(&self, n: u64) {
        self.events_processed.inc_by(n);
    }
    /// Counts a key seen on a second Kafka partition.
    pub fn record_key_split(&self) {
        self.keys_split.inc();
    }
    /// Counts a late event.
    pub fn record_late_event(&self) {
        self.events_late.inc();
    }
    /// Counts a dead-lettered record.
    pub fn record_dead_letter(&self) {
        self.events_dead_lettered.inc();
    }
    /// Counts an error.
    pub fn record_error(&self) {
        self.errors.inc();
    }
    /// Counts emitted rows.
    pub fn record_rows_emitted(&self, n: u64) {
        self.rows_emitted.inc_by(n);
    }
    /// Sets the state size.
    pub fn record_state_size(&self, bytes: u64) {
        self.state_size
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    /// Sets the watermark of one source partition.
    pub fn record_partition_watermark(&self, partition: u32, millis: i64) {
        self.partition_watermarks
            .with_label_values(&[partition.to_string().as_str()])
            .set(millis);
    }
    /// Sets the number of accumulators the operator holds.
    pub fn record_open_windows(&self, n: u64) {
        self.open_windows.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    /// Sets the combined watermark.
    pub fn record_watermark(&self, millis: i64) {
        self.watermark.set(millis);
    }

    /// Raises the newest event time read to `millis` (never lowers it).
    pub fn record_newest_event(&self, millis: i64) {
        if millis > self.newest_event.get() {
            self.newest_event.set(millis);
        }
    }

    /// `n` rows dropped by the best-effort sink `sink` (a full buffer while disconnected).
    pub fn record_sink_dropped(&self, sink: &str, n: u64) {
        self.sink_dropped.with_label_values(&[sink]).inc_by(n);
    }

    /// The consumer lag of a Kafka partition (high watermark − position).
    pub fn record_kafka_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.kafka_lag
            .with_label_values(&[topic, partition.to_string().as_str()])
            .set(lag);
    }

    /// A Kafka partition was revoked: its lag is no longer this instance's to report.
    pub fn forget_kafka_partition(&self, topic: &str, partition: i32) {
        let _ = self
            .kafka_lag
            .remove_label_values(&[topic, partition.to_string().as_str()]);
    }

    /// One Kafka poll round took `records` records.
    pub fn record_kafka_poll(&self, records: usize) {
        self.kafka_records_per_poll.observe(records as f64);
    }

    /// Sets where the source is in `partition` (the offset of the last record read).
    pub fn record_source_offset(&self, partition: u32, offset: u64) {
        self.source_offsets
            .with_label_values(&[partition.to_string().as_str()])
            .set(i64::try_from(offset).unwrap_or(i64::MAX));
    }

    /// Where the source is in `partition` (0 before the first record).
    pub fn source_offset(&self, partition: u32) -> u64 {
        let g = self
            .source_offsets
            .with_label_values(&[partition.to_string().as_str()]);
        u64::try_from(g.get()).unwrap_or(0)
    }

    /// The combined watermark (epoch milliseconds; 0 before the first).
    pub fn watermark(&self) -> i64 {
        self.watermark.get()
    }

    /// The event time of the newest event read (epoch milliseconds; 0 before the first).
    pub fn newest_event(&self) -> i64 {
        self.newest_event.get()
    }

    /// Events past the allowed lateness so far.
    pub fn events_late(&self) -> u64 {
        self.events_late.get()
    }

    /// Records dead-lettered so far.
    pub fn events_dead_lettered(&self) -> u64 {
        self.events_dead_lettered.get()
    }

    /// Result rows emitted so far.
    pub fn rows_emitted(&self) -> u64 {
        self.rows_emitted.get()
    }

    /// Events read so far.
    pub fn events_processed(&self) -> u64 {
        self.events_processed.get()
    }

    /// The metrics in the Prometheus text format.
    pub fn export(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
