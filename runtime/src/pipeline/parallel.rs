//! `parallelism` > 1: the run loop reads, decodes and judges each record against its
//! partition's watermark, then routes it by key hash to one of N worker tasks, each with
//! its own operator; watermark advances go to every worker in order with the events. Rows,
//! late events and failures come back to one collector, which owns the sinks and the error
//! handler. Each key lives in one worker, so the rows are those of a single worker; only
//! their interleaving across keys differs.
//!
//! Checkpoints use barriers: the run loop sends the checkpoint's record (positions,
//! watermarks) to the collector, then a barrier down every worker's queue, behind the
//! events routed so far. Each worker answers with its state after the rows those events
//! produced; once the collector holds every worker's state it writes the checkpoint.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

use super::checkpoint::{Checkpointer, Meta};
use super::plan::{Envelope, Fed, Plan};
use super::run::{
    checkpoint_meta, collect_rows, dead_letter, decode, deliver_rows, encode_state, handle_bad,
    late_record, payload_text, send_late, take_checkpoint, Positions, RunSummary, Shutdown,
    SinkSet,
};
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::operator::{Admission, OperatorSnapshot, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::source::SourceRecord;
use crate::watermark::WatermarkGenerator;
use crate::window::{WindowSpec, WindowTrigger};

pub(super) enum ToWorker<T> {
    Event {
        event: T,
        envelope: Envelope,
        partition_watermark: i64,
        raw: Option<Vec<u8>>,
        position: String,
    },
    Advance(i64),
    /// A checkpoint barrier: send the state; with `stop`, end without firing windows.
    Barrier {
        stop: bool,
    },
}

pub(super) enum Outcome<R> {
    Rows(Vec<(R, bool)>),
    Accepted,
    Filtered,
    Late(DeadLetterRecord),
    Bad(DeadLetterRecord),
    /// A checkpoint starts: its record, as the run loop knows it.
    Begin(Box<Meta>),
    /// A worker's state at the barrier.
    State(usize, ProcessorResult<Vec<u8>>),
    /// A worker cannot go on (its spill store failed).
    Fatal(ProcessorError),
}

type Snapshots<P> =
    Vec<OperatorSnapshot<<P as Plan>::Key, <<P as Plan>::Func as WindowFunction>::Acc>>;

/// What the parallel run takes over from [`Pipeline::run`](super::Pipeline::run).
pub(super) struct Parallel<P: Plan> {
    pub plan: P,
    pub window: WindowSpec,
    pub lateness_ms: i64,
    pub trigger: Box<dyn WindowTrigger>,
    pub source_name: String,
    pub sinks: Vec<Arc<dyn EventSink<P::Row>>>,
    pub error_handler: ErrorHandler,
    pub late_sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub metrics: Arc<ProcessorMetrics>,
    pub buffer_size: usize,
    pub parallelism: usize,
    pub checkpointer: Option<Checkpointer>,
    pub restored: Option<Snapshots<P>>,
    pub summary: RunSummary,
    pub positions: Positions,
    pub spill: Option<(Arc<dyn crate::operator::SpillStore>, usize)>,
}

/// The run loop with N workers.
pub(super) async fn run_parallel<T, P>(
    run: Parallel<P>,
    mut rx: mpsc::Receiver<ProcessorResult<SourceRecord<T>>>,
    reader: tokio::task::JoinHandle<()>,
    mut watermark: Box<dyn WatermarkGenerator>,
    mut shutdown: Shutdown,
    mut ticker: tokio::time::Interval,
) -> ProcessorResult<RunSummary>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    P: Plan<Event = T>,
{
    let Parallel {
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
        mut positions,
        spill,
    } = run;
    let plan = Arc::new(plan);
    let mut schedule = checkpointer
        .as_ref()
        .map(|c| (c.next_id(), c.interval(), Instant::now()));
    let workers = Workers::start(
        parallelism,
        buffer_size,
        Shared {
            plan: Arc::clone(&plan),
            window,
            lateness_ms,
            trigger: Arc::from(trigger),
            source_name: source_name.clone(),
            spill,
        },
        Collector {
            sinks,
            error_handler,
            late_sink,
            drop_late,
            metrics: Arc::clone(&metrics),
            checkpointer,
            summary,
        },
        restored,
    )?;
    let mut events_in = summary.events_in;
    let mut stopped = false;
    loop {
        let record = tokio::select! {
            r = rx.recv() => r,
            _ = &mut shutdown => {
                stopped = true;
                None
            }
            _ = ticker.tick() => {
                if let Some(wm) = watermark.on_tick(Instant::now()) {
                    workers.advance(wm).await?;
                    metrics.record_watermark(wm);
                }
                for (p, _) in watermark.snapshot() {
                    metrics.record_partition_watermark(p, watermark.partition_watermark(p));
                }
                if let Some((id, interval, last)) = schedule.as_mut() {
                    if last.elapsed() >= *interval {
                        let meta = barrier_meta(*id, &positions, &*watermark, events_in);
                        workers.barrier(meta, false).await?;
                        *id += 1;
                        *last = Instant::now();
                    }
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
        positions.record(partition, offset, sequence);
        let position = || format!("partition {partition} line {sequence} (offset {offset})");
        let (event, raw, mut envelope) = match decode(payload) {
            Ok(d) => d,
            Err((err, text)) => {
                workers.report(bad(&err, &source_name, position(), text));
                continue;
            }
        };
        match plan.route(&event, &mut envelope) {
            Err(err) => {
                let text = payload_text(&event, raw.as_deref());
                workers.report(bad(&err, &source_name, position(), text));
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
    let last = match schedule {
        Some((id, _, _)) => {
            let meta = barrier_meta(id, &positions, &*watermark, events_in);
            if stopped {
                // Stop with a checkpoint: the workers end without firing their windows.
                workers.barrier(meta, true).await?;
                None
            } else {
                Some(meta)
            }
        }
        None => None,
    };
    let mut summary = workers.finish(last).await?;
    summary.events_in = events_in;
    summary.final_watermark = final_watermark;
    Ok(summary)
}

fn barrier_meta(
    id: u64,
    positions: &Positions,
    watermark: &dyn WatermarkGenerator,
    events_in: u64,
) -> Meta {
    let summary = RunSummary {
        events_in,
        final_watermark: watermark.emitted_millis(),
        ..RunSummary::default()
    };
    checkpoint_meta(id, false, positions, watermark, summary)
}

pub(super) struct Workers<T, R> {
    senders: Vec<mpsc::Sender<ToWorker<T>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Outcomes tagged with who sent them: a worker's index, or N for the run loop.
    outcomes: mpsc::UnboundedSender<(usize, Outcome<R>)>,
    collector: tokio::task::JoinHandle<ProcessorResult<RunSummary>>,
}

/// What the workers share.
pub(super) struct Shared<P> {
    pub plan: Arc<P>,
    pub window: WindowSpec,
    pub lateness_ms: i64,
    pub trigger: Arc<dyn WindowTrigger>,
    pub source_name: String,
    /// Spill store and the memory bound of the whole pipeline (split over the workers).
    pub spill: Option<(Arc<dyn crate::operator::SpillStore>, usize)>,
}

pub(super) struct Collector<R: Clone + Send + Sync + 'static> {
    pub sinks: Vec<Arc<dyn EventSink<R>>>,
    pub error_handler: ErrorHandler,
    pub late_sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub metrics: Arc<ProcessorMetrics>,
    pub checkpointer: Option<Checkpointer>,
    /// Counts restored from a checkpoint.
    pub summary: RunSummary,
}

/// A checkpoint the collector is gathering worker states for.
struct Gathering<R> {
    meta: Meta,
    states: Vec<Option<Vec<u8>>>,
    /// Who has passed the barrier: workers by index, the run loop at N.
    passed: Vec<bool>,
    held: Vec<(usize, Outcome<R>)>,
}

impl<T, R> Workers<T, R>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    pub fn start<P>(
        n: usize,
        buffer: usize,
        shared: Shared<P>,
        collector: Collector<R>,
        restored: Option<Snapshots<P>>,
    ) -> ProcessorResult<Self>
    where
        P: Plan<Event = T, Row = R> + Sync,
    {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(usize, Outcome<R>)>();
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let mut restored = restored.map(Vec::into_iter);
        for worker in 0..n {
            let (tx, mut rx) = mpsc::channel::<ToWorker<T>>(buffer.max(1));
            let plan = Arc::clone(&shared.plan);
            let trigger = Arc::clone(&shared.trigger);
            let out = out_tx.clone();
            let func = plan.function();
            let mut op: WindowOperator<P::Key, P::Func, Arc<dyn WindowTrigger>> =
                WindowOperator::with_trigger(
                    shared.window,
                    shared.lateness_ms,
                    func.clone(),
                    trigger,
                )?;
            if let Some((store, max_windows)) = &shared.spill {
                op = op.with_spill(Arc::clone(store), max_windows / n);
            }
            if let Some(snap) = restored.as_mut().and_then(Iterator::next) {
                op.restore(snap);
            }
            let lateness_ms = shared.lateness_ms;
            let source_name = shared.source_name.clone();
            senders.push(tx);
            tasks.push(tokio::spawn(async move {
                let mut rows: Vec<(R, bool)> = Vec::new();
                while let Some(msg) = rx.recv().await {
                    match msg {
                        ToWorker::Advance(wm) => {
                            op.advance_to(wm, &mut collect_rows(&*plan, &func, &mut rows))
                        }
                        ToWorker::Barrier { stop } => {
                            let _ = out.send((worker, Outcome::State(worker, encode_state(&op))));
                            if stop {
                                return;
                            }
                        }
                        ToWorker::Event {
                            event,
                            envelope,
                            partition_watermark,
                            raw,
                            position,
                        } => {
                            let fed = plan.feed(
                                &mut op,
                                partition_watermark,
                                &event,
                                envelope,
                                &mut collect_rows(&*plan, &func, &mut rows),
                            );
                            let outcome = match fed {
                                Ok(Fed::Offered(_, Admission::Accepted)) => Outcome::Accepted,
                                Ok(Fed::Filtered(_)) => Outcome::Filtered,
                                Ok(Fed::Offered(ts, Admission::Late)) => {
                                    Outcome::Late(late_record(
                                        ts,
                                        partition_watermark.max(op.watermark()),
                                        lateness_ms,
                                        &source_name,
                                        position,
                                        payload_text(&event, raw.as_deref()),
                                    ))
                                }
                                Err(err) => Outcome::Bad(dead_letter(
                                    &err,
                                    &source_name,
                                    position,
                                    payload_text(&event, raw.as_deref()),
                                )),
                            };
                            let _ = out.send((worker, outcome));
                        }
                    }
                    if !rows.is_empty() {
                        let _ = out.send((worker, Outcome::Rows(std::mem::take(&mut rows))));
                    }
                    if let Some(e) = op.take_spill_error() {
                        let _ = out.send((worker, Outcome::Fatal(e)));
                        return;
                    }
                }
                op.flush(&mut collect_rows(&*plan, &func, &mut rows));
                if !rows.is_empty() {
                    let _ = out.send((worker, Outcome::Rows(rows)));
                }
            }));
        }
        let Collector {
            sinks,
            mut error_handler,
            late_sink,
            drop_late,
            metrics,
            mut checkpointer,
            summary: restored_summary,
        } = collector;
        let collector = tokio::spawn(async move {
            let mut summary = restored_summary;
            let mut gathering: Option<Gathering<R>> = None;
            // Outcomes held back during a checkpoint, then replayed in order.
            let mut replay: std::collections::VecDeque<(usize, Outcome<R>)> = Default::default();
            loop {
                let (from, outcome) = match replay.pop_front() {
                    Some(x) => x,
                    None => match out_rx.recv().await {
                        Some(x) => x,
                        None => break,
                    },
                };
                // What a sender sends after its barrier belongs to the next checkpoint:
                // hold it until this one is written.
                if let Some(g) = gathering.as_mut() {
                    if g.passed[from] {
                        g.held.push((from, outcome));
                        continue;
                    }
                }
                match outcome {
                    Outcome::Rows(mut rows) => {
                        deliver_rows(&sinks, &error_handler, &mut rows, &mut summary, &metrics)
                            .await?;
                    }
                    Outcome::Accepted => summary.events_aggregated += 1,
                    Outcome::Filtered => summary.events_filtered += 1,
                    Outcome::Late(rec) => {
                        summary.events_late += 1;
                        metrics.record_late_event();
                        if !drop_late {
                            send_late(late_sink.as_ref(), &mut error_handler, rec).await?;
                        }
                    }
                    Outcome::Bad(rec) => {
                        handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?
                    }
                    Outcome::Fatal(e) => return Err(e),
                    Outcome::Begin(meta) => {
                        let mut passed = vec![false; n + 1];
                        passed[n] = true;
                        gathering = Some(Gathering {
                            meta: *meta,
                            states: vec![None; n],
                            passed,
                            held: Vec::new(),
                        });
                    }
                    Outcome::State(worker, state) => {
                        let g = gathering.as_mut().ok_or_else(|| {
                            ProcessorError::Internal("worker state outside a checkpoint".into())
                        })?;
                        g.states[worker] = Some(state?);
                        g.passed[worker] = true;
                        if g.states.iter().all(Option::is_some) {
                            let g = gathering.take().expect("checked above");
                            for held in g.held.into_iter().rev() {
                                replay.push_front(held);
                            }
                            let c = checkpointer.as_mut().ok_or_else(|| {
                                ProcessorError::Internal("barrier without checkpoints".into())
                            })?;
                            let mut meta = g.meta;
                            meta.summary = RunSummary {
                                events_in: meta.summary.events_in,
                                final_watermark: meta.summary.final_watermark,
                                ..summary
                            };
                            let states = g
                                .states
                                .into_iter()
                                .map(Option::unwrap_or_default)
                                .collect();
                            let set = SinkSet {
                                results: &sinks,
                                late: late_sink.as_ref(),
                                handler: &mut error_handler,
                            };
                            take_checkpoint(c, set, meta, states, &metrics).await?;
                        }
                    }
                }
            }
            if let Some(c) = checkpointer.as_mut() {
                if let Some(g) = gathering.take() {
                    // The input ended: every worker fired its windows; publish.
                    let mut meta = g.meta;
                    meta.finished = true;
                    meta.summary = RunSummary {
                        events_in: meta.summary.events_in,
                        final_watermark: meta.summary.final_watermark,
                        ..summary
                    };
                    let set = SinkSet {
                        results: &sinks,
                        late: late_sink.as_ref(),
                        handler: &mut error_handler,
                    };
                    take_checkpoint(c, set, meta, vec![Vec::new(); n], &metrics).await?;
                }
            }
            for sink in &sinks {
                error_handler.retry(|| sink.flush()).await?;
            }
            if let Some(s) = &late_sink {
                s.flush().await?;
            }
            error_handler.dead_letter_sink().flush().await?;
            Ok(summary)
        });
        Ok(Workers {
            senders,
            tasks,
            outcomes: out_tx,
            collector,
        })
    }

    /// Sends an event to the worker that owns its key.
    pub async fn route(&self, hash: u64, msg: ToWorker<T>) -> ProcessorResult<()> {
        let i = (hash % self.senders.len() as u64) as usize;
        self.senders[i]
            .send(msg)
            .await
            .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))
    }

    /// Reports an outcome of the run loop itself (a record bad before routing).
    pub fn report(&self, outcome: Outcome<R>) {
        let _ = self.outcomes.send((self.senders.len(), outcome));
    }

    /// Moves every worker's watermark.
    pub async fn advance(&self, wm: i64) -> ProcessorResult<()> {
        self.broadcast(|| ToWorker::Advance(wm)).await
    }

    async fn broadcast(&self, msg: impl Fn() -> ToWorker<T>) -> ProcessorResult<()> {
        for s in &self.senders {
            s.send(msg())
                .await
                .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))?;
        }
        Ok(())
    }

    /// Starts checkpoint `meta.id`: its record to the collector, a barrier to every
    /// worker (`stop`: the workers end after it without firing their windows).
    pub async fn barrier(&self, meta: Meta, stop: bool) -> ProcessorResult<()> {
        self.outcomes
            .send((self.senders.len(), Outcome::Begin(Box::new(meta))))
            .map_err(|_| ProcessorError::Internal("the collector stopped early".into()))?;
        self.broadcast(|| ToWorker::Barrier { stop }).await
    }

    /// Flushes every worker and the collector; returns the collector's counts. With
    /// `last`, the collector then takes the final checkpoint of a finished input.
    pub async fn finish(self, last: Option<Meta>) -> ProcessorResult<RunSummary> {
        let Workers {
            senders,
            tasks,
            outcomes,
            collector,
        } = self;
        let senders_len = senders.len();
        drop(senders);
        for t in tasks {
            t.await
                .map_err(|e| ProcessorError::Internal(format!("a worker failed: {e}")))?;
        }
        if let Some(meta) = last {
            let _ = outcomes.send((senders_len, Outcome::Begin(Box::new(meta))));
        }
        drop(outcomes);
        collector
            .await
            .map_err(|e| ProcessorError::Internal(format!("the collector failed: {e}")))?
    }
}

/// Used by the run loop for bad records found before routing.
pub(super) fn bad<R>(
    err: &ProcessorError,
    source: &str,
    position: String,
    payload: String,
) -> Outcome<R> {
    Outcome::Bad(dead_letter(err, source, position, payload))
}
