use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::{spawn_reader, Decoded, Recycler, BATCH};
use super::builder::{Pipeline, SourceChoice};
use super::checkpoint::{Checkpointer, Meta};
use super::parallel::{run_parallel, Parallel};
use super::plan::{Fed, Plan};
use super::replay::Pacer;
use crate::aggregation::{AggregationResult, AggregationSpec, AggregationState};
use crate::error::{ErrorDisposition, ErrorPolicy, ProcessorError, ProcessorResult};
use crate::event::GroupingKey;
use crate::operator::{Admission, Fired, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::source::SourcePosition;
use crate::time::from_millis;
use crate::window::{EventTimeTrigger, Window, WindowTrigger};

/// What a finished run did. Every record read is accounted for: `events_in =
/// events_aggregated + events_late + events_dead_lettered + events_skipped + events_filtered`.
/// A run resumed from a checkpoint counts from the start of the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    ///
    /// With a state backend and a source that can be read again, the run resumes from the
    /// latest checkpoint and takes one every checkpoint interval; a stop request then
    /// takes a last checkpoint instead of firing the open windows, which the next run
    /// resumes (see [`checkpoint`](super::checkpoint)).
    #[tracing::instrument(skip_all, fields(pipeline = %self.name))]
    pub async fn run(self) -> ProcessorResult<RunSummary> {
        #[cfg(feature = "kafka")]
        if matches!(self.source, SourceChoice::Kafka(_)) {
            return self.run_kafka().await;
        }
        let Pipeline {
            kafka_timestamp_fallback: _,
            name,
            source,
            mut watermark,
            window,
            lateness_ms,
            late_handler,
            trigger,
            state_backend,
            checkpoint_interval,
            spill,
            sinks,
            mut error_handler,
            plan,
            metrics,
            buffer_size,
            shutdown,
            parallelism,
            max_future_skew_ms: skew,
            replay_rate,
        } = self;
        let mut source = match source {
            SourceChoice::Source(s) => s,
            SourceChoice::Kafka(_) => {
                return Err(ProcessorError::InvalidPipeline(
                    "this build has no Kafka connector; build with the cargo feature `kafka`"
                        .into(),
                ))
            }
        };
        let mut shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let source_name = source.describe();
        let started = Instant::now();
        for p in source.partitions() {
            watermark.register_partition(p, started);
        }
        let trigger: Box<dyn WindowTrigger> = trigger.unwrap_or_else(|| Box::new(EventTimeTrigger));
        let late_sink = late_handler.as_ref().and_then(|h| h.side_output());
        let drop_late = late_handler.as_ref().is_some_and(|h| h.drops());

        // Checkpoints: restore the latest before the first record is read.
        let mut checkpointer = match state_backend {
            Some(_) if checkpoint_interval.is_zero() => None,
            Some(backend) if source.resumable() => Some(Checkpointer::new(
                backend,
                &name,
                format!("{}; {window:?}; lateness {lateness_ms} ms", plan.describe()),
                checkpoint_interval,
            )),
            Some(_) => {
                tracing::info!(source = %source_name, "checkpoints are off: this source cannot be read again after a restart");
                None
            }
            None => None,
        };
        let mut summary = RunSummary::default();
        let mut positions = Positions::default();
        let mut restored = None;
        if let Some(c) = checkpointer.as_mut() {
            let restored_ckpt = c
                .restore::<P::Key, <P::Func as WindowFunction>::Acc>(parallelism)
                .await?;
            let mut set = SinkSet {
                results: &sinks,
                late: late_sink.as_ref(),
                handler: &mut error_handler,
            };
            set.recover(restored_ckpt.as_ref().map(|r| &r.meta)).await?;
            if let Some(r) = restored_ckpt {
                source.seek(&r.meta.positions).await?;
                watermark.restore(&r.meta.watermarks, Instant::now());
                watermark.restore_emitted(r.meta.summary.final_watermark);
                summary = r.meta.summary;
                positions = Positions::from_list(&r.meta.positions);
                tracing::info!(
                    checkpoint = r.meta.id,
                    events_in = summary.events_in,
                    "resuming from checkpoint"
                );
                restored = Some(r.operators);
            }
        }

        // The source runs in its own task, which decodes too; the bounded channel of
        // batches gives backpressure.
        let live = !source.resumable();
        let decoder = plan.json_decoder();
        // A paced replay takes records one at a time, so that each is fed (and its rows
        // delivered) when its time comes.
        let pacer = replay_rate.map(Pacer::new);
        let batch = if pacer.is_some() { 1 } else { BATCH };
        let recycler = Recycler::new(decoder.reuses_events());
        let (mut rx, reader) = spawn_reader(source, decoder, recycler.clone(), buffer_size, batch);

        let mut out: Vec<(P::Row, bool)> = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(source = %source_name, parallelism, "pipeline started");

        if parallelism > 1 {
            return run_parallel(
                Parallel {
                    plan,
                    window,
                    lateness_ms,
                    trigger,
                    source_name,
                    sinks,
                    error_handler,
                    late_sink,
                    drop_late,
                    metrics,
                    buffer_size,
                    parallelism,
                    checkpointer,
                    restored,
                    summary,
                    positions,
                    spill,
                    skew,
                    live,
                    pacer,
                    recycler,
                },
                rx,
                reader,
                watermark,
                shutdown,
                ticker,
            )
            .await;
        }

        let func = plan.function();
        let mut op: WindowOperator<P::Key, P::Func, Box<dyn WindowTrigger>> =
            WindowOperator::with_trigger(window, lateness_ms, func.clone(), trigger)?;
        if let Some((store, max_windows)) = spill {
            op = op.with_spill(store, max_windows);
        }
        if let Some(mut ops) = restored {
            op.restore(ops.pop().expect("one snapshot per worker"));
        }
        let mut stopped = false;
        let mut fed_since_tick = false;
        let mut pacer = pacer;
        let mut newest = i64::MIN;

        loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = &mut shutdown => {
                    stopped = true;
                    None
                }
                _ = ticker.tick() => {
                    // Processing time decides only idleness: a partition that went idle, or
                    // a live source with nothing to read, releases the watermark it holds.
                    let mut pushed = watermark.on_tick(Instant::now());
                    if live && !fed_since_tick {
                        pushed = watermark.on_source_idle().or(pushed);
                    }
                    fed_since_tick = false;
                    if let Some(wm) = pushed {
                        op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                        metrics.record_watermark(wm);
                        metrics.record_open_windows(op.state_len() as u64);
                        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
                    }
                    for (p, _) in watermark.snapshot() {
                        metrics.record_partition_watermark(p, watermark.partition_watermark(p));
                    }
                    if let Some(c) = checkpointer.as_mut().filter(|c| c.due()) {
                        summary.final_watermark = op.watermark();
                        let state = encode_state(&op)?;
                        let sinks = SinkSet { results: &sinks, late: late_sink.as_ref(), handler: &mut error_handler };
                        let meta = checkpoint_meta(c.next_id(), false, &positions, &*watermark, summary);
                        take_checkpoint(c, sinks, meta, vec![state], &metrics).await?;
                    }
                    continue;
                }
            };
            let Some(batch) = batch else { break };
            let mut batch = batch?;
            fed_since_tick = true;
            // One clock read per batch: for idleness and the skew guard, never for lateness.
            let t0 = Instant::now();
            let guard = skew.map(SkewGuard::now);
            summary.events_in += batch.len() as u64;
            metrics.record_events_processed(batch.len() as u64);
            if let Some(last) = batch.last() {
                metrics.record_source_offset(last.partition, last.offset);
            }
            for item in batch.iter_mut() {
                if let (Some(p), Ok((event, _, envelope))) = (pacer.as_mut(), &item.decoded) {
                    if let Ok(ts) = plan.event_time(event, &mut envelope.clone()) {
                        p.pace(ts).await;
                    }
                }
                positions.record(item.partition, item.offset, item.sequence);
                let (partition, sequence, offset) = (item.partition, item.sequence, item.offset);
                let position =
                    move || format!("partition {partition} line {sequence} (offset {offset})");
                let partition_wm = watermark.partition_watermark(partition);
                let offered = RecordPath {
                    plan: &plan,
                    func: &func,
                    source_name: &source_name,
                    late_sink: late_sink.as_ref(),
                    drop_late,
                    lateness_ms,
                    metrics: &metrics,
                    handler: &mut error_handler,
                    summary: &mut summary,
                    skew: guard,
                }
                .offer(&mut op, &mut item.decoded, position, partition_wm, &mut out)
                .await?;
                let Some(event_time) = offered else { continue };
                newest = newest.max(event_time);
                if let Some(wm) = watermark.on_event(partition, event_time, t0) {
                    op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                    metrics.record_watermark(wm);
                }
            }
            // The records go back to the reader to be read and decoded into again.
            recycler.give_batch(batch);
            metrics.record_newest_event(newest);
            metrics.record_open_windows(op.state_len() as u64);
            deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
            metrics.record_processing_latency(t0.elapsed());
        }
        drop(rx);
        reader.abort();
        let _ = reader.await;

        summary.final_watermark = op.watermark();
        if let (true, Some(c)) = (stopped, checkpointer.as_mut()) {
            // Stop with a checkpoint: the open windows stay open for the next run.
            let state = encode_state(&op)?;
            let set = SinkSet {
                results: &sinks,
                late: late_sink.as_ref(),
                handler: &mut error_handler,
            };
            let meta = checkpoint_meta(c.next_id(), false, &positions, &*watermark, summary);
            take_checkpoint(c, set, meta, vec![state], &metrics).await?;
            tracing::info!(
                events_in = summary.events_in,
                "stopped at a checkpoint: open windows resume on the next start"
            );
            return Ok(summary);
        }
        if stopped {
            tracing::info!("shutdown requested: flushing open windows and sinks");
        }
        op.flush(&mut collect_rows(&plan, &func, &mut out));
        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
        if let Some(c) = checkpointer.as_mut() {
            // The input is done and every window fired: publish, and let a new run start over.
            let set = SinkSet {
                results: &sinks,
                late: late_sink.as_ref(),
                handler: &mut error_handler,
            };
            let meta = checkpoint_meta(c.next_id(), true, &positions, &*watermark, summary);
            take_checkpoint(c, set, meta, vec![Vec::new()], &metrics).await?;
        }
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

/// The clock-skew guard of one batch: records stamped after the wall clock plus the
/// allowed skew are dead letters.
#[derive(Debug, Clone, Copy)]
pub(super) struct SkewGuard {
    pub skew_ms: i64,
    pub wall_ms: i64,
}

impl SkewGuard {
    /// The guard as of now.
    pub fn now(skew_ms: i64) -> Self {
        SkewGuard {
            skew_ms,
            wall_ms: Utc::now().timestamp_millis(),
        }
    }

    /// The error for a record stamped `event_time`, if it is too far ahead.
    pub fn check(&self, event_time: i64) -> Option<ProcessorError> {
        (event_time > self.wall_ms.saturating_add(self.skew_ms)).then(|| {
            ProcessorError::ClockSkew(format!(
                "event time {} is more than {} s ahead of the wall clock ({}); raise watermark.max_future_skew_secs if such clocks are right",
                from_millis(event_time).to_rfc3339(),
                self.skew_ms / 1000,
                from_millis(self.wall_ms).to_rfc3339(),
            ))
        })
    }
}

/// What a run loop needs to take one record through the plan and lateness.
pub(super) struct RecordPath<'a, P: Plan> {
    pub plan: &'a P,
    pub func: &'a P::Func,
    pub source_name: &'a str,
    pub late_sink: Option<&'a Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub lateness_ms: i64,
    pub metrics: &'a crate::metrics::ProcessorMetrics,
    pub handler: &'a mut crate::error::ErrorHandler,
    pub summary: &'a mut RunSummary,
    pub skew: Option<SkewGuard>,
}

impl<P: Plan> RecordPath<'_, P> {
    /// Offers one decoded record to `op` (rows fired go to `out`): a record that failed
    /// to decode, lacks a key field or is stamped too far ahead is dead-lettered, a late
    /// one sent to the side output, and every one counted. Returns the event time that
    /// moves the watermark, or `None` when the record failed. The record stays where it
    /// is, to be given back for reuse.
    pub async fn offer<Tr: WindowTrigger>(
        self,
        op: &mut WindowOperator<P::Key, P::Func, Tr>,
        decoded: &mut Result<Decoded<P::Event>, (ProcessorError, String)>,
        position: impl Fn() -> String,
        partition_wm: i64,
        out: &mut Vec<(P::Row, bool)>,
    ) -> ProcessorResult<Option<i64>> {
        let (event, raw, envelope) = match decoded {
            Ok((event, raw, envelope)) => (&*event, raw.as_deref(), envelope),
            Err((err, text)) => {
                let rec = dead_letter(err, self.source_name, position(), std::mem::take(text));
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        };
        if let Some(guard) = self.skew {
            let refused = match self.plan.event_time(event, envelope) {
                Ok(ts) => guard.check(ts),
                Err(e) => Some(e),
            };
            if let Some(err) = refused {
                let payload = payload_text(event, raw);
                let rec = dead_letter(&err, self.source_name, position(), payload);
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        }
        let fed = self.plan.feed(
            op,
            partition_wm,
            event,
            std::mem::take(envelope),
            &mut collect_rows(self.plan, self.func, out),
        );
        if let Some(e) = op.take_spill_error() {
            return Err(e);
        }
        let (event_time, admission) = match fed {
            Ok(Fed::Offered(ts, admission)) => (ts, Some(admission)),
            Ok(Fed::Filtered(ts)) => (ts, None),
            Err(err) => {
                let payload = payload_text(event, raw);
                let rec = dead_letter(&err, self.source_name, position(), payload);
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        };
        match admission {
            None => self.summary.events_filtered += 1,
            Some(Admission::Accepted) => self.summary.events_aggregated += 1,
            Some(Admission::Late) => {
                self.summary.events_late += 1;
                self.metrics.record_late_event();
                if !self.drop_late {
                    let rec = late_record(
                        event_time,
                        partition_wm.max(op.watermark()),
                        self.lateness_ms,
                        self.source_name,
                        position(),
                        payload_text(event, raw),
                    );
                    send_late(self.late_sink, self.handler, rec).await?;
                }
            }
        }
        Ok(Some(event_time))
    }
}

/// The last record read per partition: what a checkpoint resumes after.
#[derive(Debug, Clone, Default)]
pub(super) struct Positions(Vec<Option<SourcePosition>>);

impl Positions {
    pub fn from_list(list: &[SourcePosition]) -> Self {
        let mut p = Positions::default();
        for x in list {
            p.record(x.partition, x.offset, x.sequence);
        }
        p
    }

    #[inline]
    pub fn record(&mut self, partition: u32, offset: u64, sequence: u64) {
        let i = partition as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(SourcePosition {
            partition,
            offset,
            sequence,
        });
    }

    pub fn list(&self) -> Vec<SourcePosition> {
        self.0.iter().flatten().copied().collect()
    }
}

/// The sinks a checkpoint involves: result sinks, the late side output and the
/// dead-letter sink all stage with it and publish once it is sealed.
pub(super) struct SinkSet<'a, R: Send + 'static> {
    pub results: &'a [Arc<dyn EventSink<R>>],
    pub late: Option<&'a Arc<dyn EventSink<DeadLetterRecord>>>,
    pub handler: &'a mut crate::error::ErrorHandler,
}

impl<R: Send + 'static> SinkSet<'_, R> {
    /// Before the first record of a run that takes checkpoints: every sink finishes or
    /// undoes the commit of the checkpoint the run resumes from (`None`: a fresh start).
    pub async fn recover(&mut self, from: Option<&Meta>) -> ProcessorResult<()> {
        if let Some(m) = from {
            if m.sinks.len() != self.results.len() {
                return Err(ProcessorError::Config(format!(
                    "checkpoint {} was taken with {} result sinks and this pipeline has {}: restore with the same sinks or remove the checkpoint directory",
                    m.id,
                    m.sinks.len(),
                    self.results.len()
                )));
            }
        }
        for (i, sink) in self.results.iter().enumerate() {
            let state = from.map(|m| (m.id, m.sinks[i].as_slice()));
            sink.recover(state).await?;
        }
        let side = |i: usize| from.and_then(|m| m.side.get(i).map(|s| (m.id, s.as_slice())));
        if let Some(late) = self.late {
            late.recover(side(0)).await?;
        }
        self.handler.dead_letter_sink().recover(side(1)).await
    }
}

/// An operator's state for a checkpoint.
pub(super) fn encode_state<K, F, Tr>(op: &WindowOperator<K, F, Tr>) -> ProcessorResult<Vec<u8>>
where
    K: std::hash::Hash + Eq + Serialize,
    F: WindowFunction<Acc: Serialize>,
    Tr: WindowTrigger,
{
    postcard::to_allocvec(&op.snapshot()?)
        .map_err(|e| ProcessorError::Serialization(format!("operator state for a checkpoint: {e}")))
}

/// The record of checkpoint `id` as the run loop knows it.
pub(super) fn checkpoint_meta(
    id: u64,
    finished: bool,
    positions: &Positions,
    watermark: &dyn crate::watermark::WatermarkGenerator,
    summary: RunSummary,
) -> Meta {
    let mut meta = Meta::new(id, finished);
    meta.positions = positions.list();
    meta.watermarks = watermark.snapshot();
    meta.summary = summary;
    meta
}

/// Takes one checkpoint: sinks stage, state is written and sealed, sinks publish.
pub(super) async fn take_checkpoint<R: Send + 'static>(
    c: &mut Checkpointer,
    sinks: SinkSet<'_, R>,
    mut meta: Meta,
    operators: Vec<Vec<u8>>,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    let t0 = Instant::now();
    let id = meta.id;
    meta.sinks.clear();
    for sink in sinks.results {
        meta.sinks.push(sink.prepare_commit(id).await?);
    }
    let dead = sinks.handler.dead_letter_sink();
    meta.side = vec![
        match sinks.late {
            Some(s) => s.prepare_commit(id).await?,
            None => Vec::new(),
        },
        dead.prepare_commit(id).await?,
    ];
    c.write(meta, operators).await?;
    for sink in sinks.results {
        sink.commit(id).await?;
    }
    if let Some(s) = sinks.late {
        s.commit(id).await?;
    }
    dead.commit(id).await?;
    metrics.record_checkpoint(id, t0.elapsed());
    Ok(())
}

/// The operator's emit callback: builds each fired window's row and notes whether it is
/// an update, into `out` (unless the plan's [`emits`](Plan::emits) holds it back).
pub(super) fn collect_rows<'a, P: Plan>(
    plan: &'a P,
    func: &'a P::Func,
    out: &'a mut Vec<(P::Row, bool)>,
) -> impl FnMut(Fired<'_, P::Key, <P::Func as WindowFunction>::Acc>) + 'a {
    move |fired| {
        let is_update = fired.is_update;
        let row = plan.row(func, fired);
        if plan.emits(&row) {
            out.push((row, is_update));
        }
    }
}

/// The side-output record of an event late for every window it belongs to.
pub(super) fn late_record(
    event_time: i64,
    watermark: i64,
    lateness_ms: i64,
    source: &str,
    position: String,
    payload: String,
) -> DeadLetterRecord {
    DeadLetterRecord {
        kind: "late".into(),
        reason: format!(
            "late: event time {} is more than the allowed lateness ({lateness_ms} ms) behind the watermark {} for every window it belongs to",
            from_millis(event_time).to_rfc3339(),
            from_millis(watermark).to_rfc3339(),
        ),
        source: source.to_owned(),
        position,
        payload,
        timestamp: Utc::now(),
    }
}

/// Sends a late event to the late side output, or to the dead-letter sink without one.
pub(super) async fn send_late(
    late_sink: Option<&Arc<dyn EventSink<DeadLetterRecord>>>,
    handler: &mut crate::error::ErrorHandler,
    rec: DeadLetterRecord,
) -> ProcessorResult<()> {
    let sink = match late_sink {
        Some(s) => Arc::clone(s),
        None => handler.dead_letter_sink(),
    };
    handler.retry(|| sink.send(rec.clone())).await
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

/// [`deliver`], counting the rows in the metrics.
pub(super) async fn deliver_rows<R: Clone + Send + 'static>(
    sinks: &[Arc<dyn EventSink<R>>],
    handler: &crate::error::ErrorHandler,
    out: &mut Vec<(R, bool)>,
    summary: &mut RunSummary,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    let before = summary.rows_emitted;
    deliver(sinks, handler, out, summary).await?;
    metrics.record_rows_emitted(summary.rows_emitted - before);
    Ok(())
}

/// Sends pending rows to every sink, retrying as the error policy allows.
async fn deliver<R: Clone + Send + 'static>(
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
