use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::builder::Pipeline;
use super::parallel::{bad, Collector, Shared, ToWorker, Workers};
use super::plan::{Envelope, Fed, Plan};
use crate::aggregation::{AggregationResult, AggregationSpec, AggregationState};
use crate::error::{ErrorDisposition, ErrorPolicy, ProcessorError, ProcessorResult};
use crate::event::{EventTimestamp, GroupingKey};
use crate::operator::{Admission, Fired, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::source::{Payload, SourceRecord};
use crate::time::{from_millis, to_millis};
use crate::window::{EventTimeTrigger, Window, WindowTrigger};

/// What a finished run did. Every record read is accounted for: `events_in =
/// events_aggregated + events_late + events_dead_lettered + events_skipped + events_filtered`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Records read from the source.
    pub events_in: u64,
    /// Events taken into at least one window.
    pub events_aggregated: u64,
    /// Events past the allowed lateness (sent to the side output, or dropped on request).
    pub events_late: u64,
    /// Records that failed and went to the dead-letter sink.
    pub events_dead_lettered: u64,
    /// Records that failed and were skipped (policy `Skip`).
    pub events_skipped: u64,
    /// Events a pipeline's filter left out.
    pub events_filtered: u64,
    /// Result rows emitted (updates included).
    pub rows_emitted: u64,
    /// Of those, rows revising an earlier row.
    pub update_rows: u64,
    /// The last combined watermark (ms), before the final flush.
    pub final_watermark: i64,
}

/// The aggregation of the dynamic builder: an [`AggregationState`] per key and window,
/// computing what an [`AggregationSpec`] enables. Events whose value is null are counted
/// in no statistic but still open their window.
#[derive(Debug, Clone, Default)]
pub struct DynamicAggregation {
    spec: AggregationSpec,
}

impl DynamicAggregation {
    /// Computes what `spec` enables.
    pub fn new(spec: AggregationSpec) -> Self {
        DynamicAggregation { spec }
    }

    /// The spec.
    pub fn spec(&self) -> &AggregationSpec {
        &self.spec
    }

    /// The result row of a fired window.
    pub fn row(&self, f: Fired<'_, GroupingKey, AggregationState>) -> AggregationResult {
        let window = Window::from_millis(f.start, f.end);
        let mut r = self.spec.result(f.key.clone(), window, f.acc, f.is_update);
        r.replaces = f
            .replaces
            .iter()
            .map(|&(s, e)| Window::from_millis(s, e))
            .collect();
        r
    }
}

impl WindowFunction for DynamicAggregation {
    type Input = Option<f64>;
    type Acc = AggregationState;
    fn create(&self) -> AggregationState {
        AggregationState::for_spec(Window::from_millis(0, 0), &self.spec)
    }
    fn add(&self, acc: &mut AggregationState, input: &Option<f64>) {
        if let Some(v) = input {
            acc.add_value(*v);
        }
    }
    fn merge(&self, into: &mut AggregationState, from: &AggregationState) {
        into.merge(from);
    }
    fn count(&self, acc: &AggregationState) -> u64 {
        acc.count
    }
}

/// A future that asks the run loop to stop.
pub(crate) type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    P: Plan<Event = T>,
{
    /// Runs until a bounded source ends (then every open window is flushed) or an
    /// unrecoverable error occurs (a sink failing past its retries).
    #[tracing::instrument(skip_all, fields(pipeline = %self.name))]
    pub async fn run(self) -> ProcessorResult<RunSummary> {
        let Pipeline {
            name: _,
            source,
            mut watermark,
            window,
            lateness_ms,
            late_handler,
            trigger,
            state_backend: _,
            sinks,
            mut error_handler,
            plan,
            metrics,
            buffer_size,
            shutdown,
            parallelism,
        } = self;
        let mut shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let source_name = source.describe();
        let started = Instant::now();
        for p in source.partitions() {
            watermark.register_partition(p, started);
        }
        let trigger: Box<dyn WindowTrigger> = trigger.unwrap_or_else(|| Box::new(EventTimeTrigger));

        // The source runs in its own task; the bounded channel gives backpressure.
        let (tx, mut rx) = mpsc::channel::<ProcessorResult<SourceRecord<T>>>(buffer_size);
        let reader = tokio::spawn(async move {
            let mut source = source;
            loop {
                match source.next().await {
                    Ok(Some(r)) => {
                        if tx.send(Ok(r)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                }
            }
        });

        let late_sink = late_handler.as_ref().and_then(|h| h.side_output());
        let drop_late = late_handler.as_ref().is_some_and(|h| h.drops());
        let mut summary = RunSummary::default();
        let mut out: Vec<(P::Row, bool)> = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(source = %source_name, parallelism, "pipeline started");

        if parallelism > 1 {
            let plan = Arc::new(plan);
            let workers = Workers::start(
                parallelism,
                buffer_size,
                Shared {
                    plan: Arc::clone(&plan),
                    window,
                    lateness_ms,
                    trigger: Arc::from(trigger),
                    source_name: source_name.clone(),
                },
                Collector {
                    sinks,
                    error_handler,
                    late_sink,
                    drop_late,
                    metrics: Arc::clone(&metrics),
                },
            )?;
            let mut events_in = 0u64;
            loop {
                let record = tokio::select! {
                    r = rx.recv() => r,
                    _ = &mut shutdown => None,
                    _ = ticker.tick() => {
                        if let Some(wm) = watermark.on_tick(Instant::now()) {
                            workers.advance(wm).await?;
                            metrics.record_watermark(wm);
                        }
                        for (p, _) in watermark.snapshot() {
                            metrics.record_partition_watermark(p, watermark.partition_watermark(p));
                        }
                        continue;
                    }
                };
                let Some(record) = record else { break };
                let record = record?;
                let t0 = Instant::now();
                events_in += 1;
                metrics.record_event_processed();
                let SourceRecord {
                    payload,
                    partition,
                    offset,
                    sequence,
                } = record;
                let position =
                    || format!("partition {partition} line {sequence} (offset {offset})");
                let (event, raw, mut envelope) = match decode(payload) {
                    Ok(d) => d,
                    Err((err, text)) => {
                        let _ = workers
                            .outcomes
                            .send(bad(&err, &source_name, position(), text));
                        continue;
                    }
                };
                match plan.route(&event, &mut envelope) {
                    Err(err) => {
                        let text = payload_text(&event, raw.as_deref());
                        let _ = workers
                            .outcomes
                            .send(bad(&err, &source_name, position(), text));
                    }
                    Ok((ts, hash)) => {
                        let partition_watermark = watermark.partition_watermark(partition);
                        let position = position();
                        workers
                            .route(
                                hash,
                                ToWorker::Event {
                                    event,
                                    envelope,
                                    partition_watermark,
                                    raw,
                                    position,
                                },
                            )
                            .await?;
                        if let Some(wm) = watermark.on_event(partition, ts, t0) {
                            workers.advance(wm).await?;
                            metrics.record_watermark(wm);
                        }
                    }
                }
                metrics.record_processing_latency(t0.elapsed());
            }
            drop(rx);
            reader.abort();
            let _ = reader.await;
            let final_watermark = watermark.emitted_millis();
            let mut summary = workers.finish().await?;
            summary.events_in = events_in;
            summary.final_watermark = final_watermark;
            return Ok(summary);
        }

        let func = plan.function();
        let mut op: WindowOperator<P::Key, P::Func, Box<dyn WindowTrigger>> =
            WindowOperator::with_trigger(window, lateness_ms, func.clone(), trigger)?;

        loop {
            let record = tokio::select! {
                r = rx.recv() => r,
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested: flushing open windows and sinks");
                    None
                }
                _ = ticker.tick() => {
                    if let Some(wm) = watermark.on_tick(Instant::now()) {
                        op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                        metrics.record_watermark(wm);
                metrics.record_open_windows(op.state_len() as u64);
                        let before = summary.rows_emitted;
            deliver(&sinks, &error_handler, &mut out, &mut summary).await?;
            metrics.record_rows_emitted(summary.rows_emitted - before);
                    }
                    for (p, _) in watermark.snapshot() {
                        metrics.record_partition_watermark(p, watermark.partition_watermark(p));
                    }
                    continue;
                }
            };
            let Some(record) = record else { break };
            let record = record?;
            let t0 = Instant::now();
            summary.events_in += 1;
            metrics.record_event_processed();
            let SourceRecord {
                payload,
                partition,
                offset,
                sequence,
            } = record;
            let position = || format!("partition {partition} line {sequence} (offset {offset})");

            let (event, raw, envelope) = match decode(payload) {
                Ok(d) => d,
                Err((err, text)) => {
                    let rec = dead_letter(&err, &source_name, position(), text);
                    handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?;
                    continue;
                }
            };
            let partition_wm = watermark.partition_watermark(partition);
            let fed = plan.feed(
                &mut op,
                partition_wm,
                &event,
                envelope,
                &mut collect_rows(&plan, &func, &mut out),
            );
            let (event_time, admission) = match fed {
                Ok(Fed::Offered(ts, admission)) => (ts, Some(admission)),
                Ok(Fed::Filtered(ts)) => (ts, None),
                Err(err) => {
                    let payload = payload_text(&event, raw.as_deref());
                    let rec = dead_letter(&err, &source_name, position(), payload);
                    handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?;
                    continue;
                }
            };
            match admission {
                None => summary.events_filtered += 1,
                Some(Admission::Accepted) => summary.events_aggregated += 1,
                Some(Admission::Late) => {
                    summary.events_late += 1;
                    metrics.record_late_event();
                    if !drop_late {
                        let reason = format!(
                            "late: event time {} is more than the allowed lateness ({lateness_ms} ms) behind the watermark {} for every window it belongs to",
                            from_millis(event_time).to_rfc3339(),
                            from_millis(partition_wm.max(op.watermark())).to_rfc3339(),
                        );
                        let rec = DeadLetterRecord {
                            kind: "late".into(),
                            reason,
                            source: source_name.clone(),
                            position: position(),
                            payload: payload_text(&event, raw.as_deref()),
                            timestamp: Utc::now(),
                        };
                        let sink = match &late_sink {
                            Some(s) => Arc::clone(s),
                            None => error_handler.dead_letter_sink(),
                        };
                        error_handler.retry(|| sink.send(rec.clone())).await?;
                    }
                }
            }
            if let Some(wm) = watermark.on_event(partition, event_time, t0) {
                op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                metrics.record_watermark(wm);
                metrics.record_open_windows(op.state_len() as u64);
            }
            let before = summary.rows_emitted;
            deliver(&sinks, &error_handler, &mut out, &mut summary).await?;
            metrics.record_rows_emitted(summary.rows_emitted - before);
            metrics.record_processing_latency(t0.elapsed());
        }
        drop(rx);
        reader.abort();
        let _ = reader.await;

        summary.final_watermark = op.watermark();
        op.flush(&mut collect_rows(&plan, &func, &mut out));
        let before = summary.rows_emitted;
        deliver(&sinks, &error_handler, &mut out, &mut summary).await?;
        metrics.record_rows_emitted(summary.rows_emitted - before);
        for sink in &sinks {
            error_handler.retry(|| sink.flush()).await?;
        }
        if let Some(s) = &late_sink {
            s.flush().await?;
        }
        error_handler.dead_letter_sink().flush().await?;
        tracing::info!(
            events_in = summary.events_in,
            rows = summary.rows_emitted,
            late = summary.events_late,
            dead_lettered = summary.events_dead_lettered,
            "pipeline finished"
        );
        Ok(summary)
    }
}

/// The operator's emit callback: builds each fired window's row and notes whether it is
/// an update, into `out`.
pub(super) fn collect_rows<'a, P: Plan>(
    plan: &'a P,
    func: &'a P::Func,
    out: &'a mut Vec<(P::Row, bool)>,
) -> impl FnMut(Fired<'_, P::Key, <P::Func as WindowFunction>::Acc>) + 'a {
    move |fired| {
        let is_update = fired.is_update;
        out.push((plan.row(func, fired), is_update));
    }
}

/// A decoded record: the event, its raw bytes when it came as bytes, what its envelope gave.
type Decoded<T> = (T, Option<Vec<u8>>, Envelope);

/// A record as a [`Decoded`]; or the decoding error with the payload as text.
fn decode<T: DeserializeOwned>(
    payload: Payload<T>,
) -> Result<Decoded<T>, (ProcessorError, String)> {
    match payload {
        Payload::Bytes(bytes) => match serde_json::from_slice::<T>(&bytes) {
            Ok(e) => Ok((e, Some(bytes), Envelope::default())),
            Err(e) => Err((
                ProcessorError::Deserialization(e.to_string()),
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
        },
        Payload::Event(e) => Ok((e, None, Envelope::default())),
        Payload::Envelope(pe) => {
            let timestamp = match pe.timestamp {
                EventTimestamp::Event(t) | EventTimestamp::Ingestion(t) => Some(to_millis(t)),
                EventTimestamp::Processing(_) => None,
            };
            Ok((
                pe.data,
                None,
                Envelope {
                    timestamp,
                    key: pe.key,
                },
            ))
        }
    }
}

pub(super) fn payload_text<T: Serialize>(event: &T, raw: Option<&[u8]>) -> String {
    match raw {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => serde_json::to_string(event).unwrap_or_default(),
    }
}

pub(super) fn dead_letter(
    err: &ProcessorError,
    source: &str,
    position: String,
    payload: String,
) -> DeadLetterRecord {
    DeadLetterRecord {
        kind: err.kind().into(),
        reason: err.to_string(),
        source: source.to_owned(),
        position,
        payload,
        timestamp: Utc::now(),
    }
}

pub(super) async fn handle_bad(
    handler: &mut crate::error::ErrorHandler,
    record: DeadLetterRecord,
    summary: &mut RunSummary,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    metrics.record_error();
    match handler.handle_record(record).await? {
        ErrorDisposition::DeadLettered => {
            summary.events_dead_lettered += 1;
            metrics.record_dead_letter();
        }
        ErrorDisposition::Skipped => summary.events_skipped += 1,
    }
    Ok(())
}

/// Sends pending rows to every sink, retrying as the error policy allows.
pub(super) async fn deliver<R: Clone + Send + 'static>(
    sinks: &[Arc<dyn EventSink<R>>],
    handler: &crate::error::ErrorHandler,
    out: &mut Vec<(R, bool)>,
    summary: &mut RunSummary,
) -> ProcessorResult<()> {
    if out.is_empty() {
        return Ok(());
    }
    for (row, is_update) in out.drain(..) {
        summary.rows_emitted += 1;
        summary.update_rows += u64::from(is_update);
        for sink in sinks {
            let result = handler.retry(|| sink.send(row.clone())).await;
            if let Err(e) = result {
                match handler.policy() {
                    ErrorPolicy::Skip => {
                        tracing::warn!(sink = sink.name(), error = %e, "row skipped after sink failure");
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}
