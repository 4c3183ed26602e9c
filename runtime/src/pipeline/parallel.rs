//! `parallelism` > 1: the reader task reads and decodes batches (see [`super::batch`]);
//! the run loop judges each record against its partition's watermark and routes it by key
//! hash to one of N worker tasks, each with its own operator, one message per worker per
//! batch; watermark advances go to every worker in order with the events. Each worker
//! answers a batch with one message of rows, late events, failures and counts, to one
//! collector, which owns the sinks and the error handler. Each key lives in one worker,
//! so the rows are those of a single worker; only their interleaving across keys differs.
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

use super::batch::{Batch, BATCH};
use super::checkpoint::{Checkpointer, Meta};
use super::plan::{Envelope, Fed, Plan};
use super::run::{
    checkpoint_meta, collect_rows, dead_letter, deliver_rows, encode_state, handle_bad,
    late_record, payload_text, send_late, take_checkpoint, Positions, RunSummary, Shutdown,
    SinkSet, SkewGuard,
};
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::operator::{Admission, OperatorSnapshot, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::watermark::WatermarkGenerator;
use crate::window::{WindowSpec, WindowTrigger};

pub(super) enum ToWorker<T> {
    Event {
        event: T,
        envelope: Envelope,
        partition_watermark: i64,
        raw: Option<Vec<u8>>,
        /// Partition, line and byte offset, for the dead-letter position.
        at: (u32, u64, u64),
    },
    Advance(i64),
    /// A checkpoint barrier: send the state; with `stop`, end without firing windows.
    Barrier {
        stop: bool,
    },
}

/// What one batch came to, in one message.
pub(super) struct Done<R> {
    pub rows: Vec<(R, bool)>,
    pub accepted: u64,
    pub filtered: u64,
    pub late: Vec<DeadLetterRecord>,
    pub bad: Vec<DeadLetterRecord>,
}

impl<R> Default for Done<R> {
    fn default() -> Self {
        Done {
            rows: Vec::new(),
            accepted: 0,
            filtered: 0,
            late: Vec::new(),
            bad: Vec::new(),
        }
    }
}

impl<R> Done<R> {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.accepted == 0
            && self.filtered == 0
            && self.late.is_empty()
            && self.bad.is_empty()
    }
}

fn position((partition, sequence, offset): (u32, u64, u64)) -> String {
    format!("partition {partition} line {sequence} (offset {offset})")
}

pub(super) enum Outcome<R> {
    Batch(Done<R>),
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
    /// The clock-skew guard (ms ahead of the wall clock), if on.
    pub skew: Option<i64>,
    /// The source is live: when it has nothing to read, the held watermark is pushed.
    pub live: bool,
    /// Paced replay, if asked for.
    pub pacer: Option<super::replay::Pacer>,
}

/// The run loop with N workers.
pub(super) async fn run_parallel<T, P>(
    run: Parallel<P>,
    mut rx: mpsc::Receiver<Batch<T>>,
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
        skew,
        live,
        mut pacer,
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
    let mut fed_since_tick = false;
    let mut newest = i64::MIN;
    let mut parts: Vec<Vec<ToWorker<T>>> = (0..parallelism).map(|_| Vec::new()).collect();
    loop {
        let batch = tokio::select! {
            r = rx.recv() => r,
            _ = &mut shutdown => {
                stopped = true;
                None
            }
            _ = ticker.tick() => {
                let mut pushed = watermark.on_tick(Instant::now());
                if live && !fed_since_tick {
                    pushed = watermark.on_source_idle().or(pushed);
                }
                fed_since_tick = false;
                if let Some(wm) = pushed {
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
        let Some(batch) = batch else { break };
        let batch = batch?;
        fed_since_tick = true;
        let t0 = Instant::now();
        let guard = skew.map(SkewGuard::now);
        events_in += batch.len() as u64;
        metrics.record_events_processed(batch.len() as u64);
        if let Some(last) = batch.last() {
            metrics.record_source_offset(last.partition, last.offset);
        }
        let mut found: Done<P::Row> = Done::default();
        for item in batch {
            let partition = item.partition;
            positions.record(partition, item.offset, item.sequence);
            let at = (partition, item.sequence, item.offset);
            let (event, raw, mut envelope) = match item.decoded {
                Ok(d) => d,
                Err((err, text)) => {
                    found
                        .bad
                        .push(dead_letter(&err, &source_name, position(at), text));
                    continue;
                }
            };
            let routed = plan.route(&event, &mut envelope).and_then(|(ts, hash)| {
                match guard.and_then(|g| g.check(ts)) {
                    Some(e) => Err(e),
                    None => Ok((ts, hash)),
                }
            });
            match routed {
                Err(err) => {
                    let text = payload_text(&event, raw.as_deref());
                    found
                        .bad
                        .push(dead_letter(&err, &source_name, position(at), text));
                }
                Ok((ts, hash)) => {
                    if let Some(p) = pacer.as_mut() {
                        p.pace(ts).await;
                    }
                    newest = newest.max(ts);
                    let partition_watermark = watermark.partition_watermark(partition);
                    parts[workers.owner(hash)].push(ToWorker::Event {
                        event,
                        envelope,
                        partition_watermark,
                        raw,
                        at,
                    });
                    if let Some(wm) = watermark.on_event(partition, ts, t0) {
                        for part in parts.iter_mut() {
                            part.push(ToWorker::Advance(wm));
                        }
                        metrics.record_watermark(wm);
                    }
                }
            }
        }
        metrics.record_newest_event(newest);
        workers.send(&mut parts).await?;
        workers.report(found).await;
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

/// Sends what a worker found since its last message to the collector.
async fn flush<R>(out: &mpsc::Sender<(usize, Outcome<R>)>, worker: usize, done: &mut Done<R>) {
    if !done.is_empty() {
        // The collector only stops early on an error, which the run reports.
        let _ = out
            .send((worker, Outcome::Batch(std::mem::take(done))))
            .await;
    }
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
    senders: Vec<mpsc::Sender<Vec<ToWorker<T>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Outcomes tagged with who sent them: a worker's index, or N for the run loop.
    outcomes: mpsc::Sender<(usize, Outcome<R>)>,
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
        // Bounded: a slow sink holds the workers back, and they the run loop and the source.
        let (out_tx, mut out_rx) =
            mpsc::channel::<(usize, Outcome<R>)>(buffer.div_ceil(BATCH).max(2) * n);
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        let mut restored = restored.map(Vec::into_iter);
        for worker in 0..n {
            let (tx, mut rx) = mpsc::channel::<Vec<ToWorker<T>>>(buffer.div_ceil(BATCH).max(1));
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
                let mut done: Done<R> = Done::default();
                while let Some(msgs) = rx.recv().await {
                    for msg in msgs {
                        match msg {
                            ToWorker::Advance(wm) => {
                                op.advance_to(wm, &mut collect_rows(&*plan, &func, &mut done.rows))
                            }
                            ToWorker::Barrier { stop } => {
                                // What came before the barrier belongs to this checkpoint.
                                flush(&out, worker, &mut done).await;
                                let state = Outcome::State(worker, encode_state(&op));
                                let _ = out.send((worker, state)).await;
                                if stop {
                                    return;
                                }
                            }
                            ToWorker::Event {
                                event,
                                envelope,
                                partition_watermark,
                                raw,
                                at,
                            } => {
                                let fed = plan.feed(
                                    &mut op,
                                    partition_watermark,
                                    &event,
                                    envelope,
                                    &mut collect_rows(&*plan, &func, &mut done.rows),
                                );
                                match fed {
                                    Ok(Fed::Offered(_, Admission::Accepted)) => done.accepted += 1,
                                    Ok(Fed::Filtered(_)) => done.filtered += 1,
                                    Ok(Fed::Offered(ts, Admission::Late)) => {
                                        done.late.push(late_record(
                                            ts,
                                            partition_watermark.max(op.watermark()),
                                            lateness_ms,
                                            &source_name,
                                            position(at),
                                            payload_text(&event, raw.as_deref()),
                                        ))
                                    }
                                    Err(err) => done.bad.push(dead_letter(
                                        &err,
                                        &source_name,
                                        position(at),
                                        payload_text(&event, raw.as_deref()),
                                    )),
                                }
                            }
                        }
                        if let Some(e) = op.take_spill_error() {
                            flush(&out, worker, &mut done).await;
                            let _ = out.send((worker, Outcome::Fatal(e))).await;
                            return;
                        }
                    }
                    flush(&out, worker, &mut done).await;
                }
                op.flush(&mut collect_rows(&*plan, &func, &mut done.rows));
                flush(&out, worker, &mut done).await;
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
                    Outcome::Batch(mut done) => {
                        summary.events_aggregated += done.accepted;
                        summary.events_filtered += done.filtered;
                        for rec in done.bad {
                            handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?;
                        }
                        for rec in done.late {
                            summary.events_late += 1;
                            metrics.record_late_event();
                            if !drop_late {
                                send_late(late_sink.as_ref(), &mut error_handler, rec).await?;
                            }
                        }
                        deliver_rows(
                            &sinks,
                            &error_handler,
                            &mut done.rows,
                            &mut summary,
                            &metrics,
                        )
                        .await?;
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

    /// The worker that owns a key of this hash.
    pub fn owner(&self, hash: u64) -> usize {
        (hash % self.senders.len() as u64) as usize
    }

    /// Sends each worker its part of a batch (one message per worker), leaving `parts`
    /// empty for the next batch.
    pub async fn send(&self, parts: &mut [Vec<ToWorker<T>>]) -> ProcessorResult<()> {
        for (s, part) in self.senders.iter().zip(parts.iter_mut()) {
            if part.is_empty() {
                continue;
            }
            let batch = std::mem::replace(part, Vec::with_capacity(BATCH));
            s.send(batch)
                .await
                .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))?;
        }
        Ok(())
    }

    /// Reports what the run loop itself found (records bad before routing).
    pub async fn report(&self, done: Done<R>) {
        if !done.is_empty() {
            let _ = self
                .outcomes
                .send((self.senders.len(), Outcome::Batch(done)))
                .await;
        }
    }

    /// Moves every worker's watermark.
    pub async fn advance(&self, wm: i64) -> ProcessorResult<()> {
        self.broadcast(|| ToWorker::Advance(wm)).await
    }

    async fn broadcast(&self, msg: impl Fn() -> ToWorker<T>) -> ProcessorResult<()> {
        for s in &self.senders {
            s.send(vec![msg()])
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
            .await
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
            let _ = outcomes
                .send((senders_len, Outcome::Begin(Box::new(meta))))
                .await;
        }
        drop(outcomes);
        collector
            .await
            .map_err(|e| ProcessorError::Internal(format!("the collector failed: {e}")))?
    }
}
