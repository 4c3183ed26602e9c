//! The run loop, the one of every run (file, stdin, memory or Kafka; any parallelism): it
//! takes the front's batches in order (see [`super::front`]), judges each record against
//! its partition's watermark (decode failures, the clock-skew guard, key extraction) and
//! routes it by key hash to one of N workers ([`super::worker`]), one message per worker
//! per batch; watermark advances go to every worker in order with the events. At
//! parallelism 1 the loop feeds its one worker itself (no queue, no hash). Each worker
//! answers with one message of rows, late events, failures and counts, to the collector
//! ([`super::collector`]), which owns the sinks and the error handler. Each key lives in
//! one worker, so the rows are those of a single worker; only their interleaving across
//! keys differs.
//!
//! Checkpoints use barriers: the run loop sends the checkpoint's record (positions,
//! watermarks) to the collector, then a barrier down every worker's queue, behind the
//! events routed so far. Each worker answers with its state after the rows those events
//! produced; once the collector holds every worker's state it writes the checkpoint.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::batch::{Recycler, BATCH};
use super::builder::Shutdown;
use super::checkpoint::{checkpoint_meta, Meta};
use super::collector::Collector;
#[cfg(feature = "kafka")]
use super::front::PartitionHomes;
use super::front::{Front, Input};
use super::persist::{Begin, Commit, Committer, Persist, Place};
use super::plan::Plan;
use super::record::{dead_letter, idle_tick, payload_text, Positions, SkewGuard};
use super::summary::RunSummary;
use super::worker::{Done, Outcome, Outcomes, Shared, Snapshots, Step, ToWorker, Worker};
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::sink::{DeadLetterRecord, EventSink};
use crate::watermark::WatermarkGenerator;
use crate::window::{WindowSpec, WindowTrigger};

/// How records find their operator.
pub(super) enum Routing {
    /// By key hash to one of the N workers, each with one operator: every key lives in
    /// one worker whatever partition or topic it came from (files; Kafka by default).
    Keyed,
    /// Kafka with `partitioned_by_key`: each partition has its own operator, in the
    /// worker holding the fewest, and moves with the partition when the group rebalances.
    #[cfg(feature = "kafka")]
    Partitions(PartitionHomes),
}

/// What the run loop takes over from [`Pipeline::run`](super::Pipeline::run).
pub(super) struct Run<P: Plan> {
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
    /// Where checkpoints go, and how often (`None`: no checkpoints).
    pub persist: Option<(Persist, Duration)>,
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
    /// Where processed records go back to the reader.
    pub recycler: Recycler<P::Event>,
    pub routing: Routing,
    /// Kafka: where the collector sends the offsets a checkpoint made durable.
    pub committer: Option<Committer>,
}

/// The run loop: takes the front's input, judges each record against its partition's
/// watermark and routes it to a worker; ticks move idle watermarks and start checkpoints.
pub(super) async fn run_loop<T, P>(
    run: Run<P>,
    mut front: Front<T>,
    mut watermark: Box<dyn WatermarkGenerator>,
    mut shutdown: Shutdown,
) -> ProcessorResult<RunSummary>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    P: Plan<Event = T>,
{
    let Run {
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
        persist,
        restored,
        summary,
        mut positions,
        spill,
        skew,
        live,
        mut pacer,
        recycler,
        mut routing,
        committer,
    } = run;
    let plan = Arc::new(plan);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (persist, mut schedule) = match persist {
        Some((p, interval)) => {
            let next = match &p {
                Persist::Files(c) => c.next_id(),
                #[cfg(feature = "kafka")]
                Persist::Kafka(_) => 1,
            };
            (Some(p), Some((next, interval, Instant::now())))
        }
        None => (None, None),
    };
    let keyed = matches!(routing, Routing::Keyed);
    let single = keyed && parallelism == 1;
    let positioner = front.position();
    let mut workers = Workers::start(
        parallelism,
        buffer_size,
        Shared {
            plan: Arc::clone(&plan),
            window,
            lateness_ms,
            trigger: Arc::from(trigger),
            source_name: source_name.clone(),
            spill,
            file_slot: keyed,
            positioner: positioner.clone(),
        },
        Collector {
            sinks,
            error_handler,
            late_sink,
            drop_late,
            metrics: Arc::clone(&metrics),
            persist,
            summary,
            committer,
        },
        restored,
        Some(recycler.clone()),
    )?;
    let mut events_in = summary.events_in;
    let mut stopped = false;
    let mut fed_since_tick = false;
    let mut newest = i64::MIN;
    let mut parts: Vec<Vec<Step>> = (0..parallelism).map(|_| Vec::new()).collect();
    // The partitions of a batch.
    let mut touched: Vec<u32> = Vec::new();
    let ran: ProcessorResult<()> = async {
        loop {
            let input = tokio::select! {
                r = front.recv() => r,
                _ = &mut shutdown => {
                    stopped = true;
                    None
                }
                _ = ticker.tick() => {
                    workers.check()?;
                    let fed = std::mem::take(&mut fed_since_tick);
                    if let Some(wm) = idle_tick(&mut *watermark, live, fed, &metrics) {
                        workers.advance(wm).await?;
                    }
                    if let Some((id, interval, last)) = schedule.as_mut() {
                        if last.elapsed() >= *interval {
                            let begin = begin(&routing, *id, &positions, &*watermark, events_in, None);
                            workers.barrier(begin, false).await?;
                            *id += 1;
                            *last = Instant::now();
                        }
                    }
                    continue;
                }
            };
            let Some(input) = input else { break };
            let mut batch = match input? {
                Input::Batch(batch) => batch,
                #[cfg(feature = "kafka")]
                Input::Assigned(list) => {
                    for a in list {
                        match &mut routing {
                            Routing::Keyed => {
                                // A partition met before keeps its clock (keys own state: a
                                // revoke and assign of the same partitions changes nothing).
                                if !watermark.snapshot().iter().any(|(p, _)| *p == a.id) {
                                    watermark.register_partition(a.id, Instant::now());
                                }
                            }
                            Routing::Partitions(homes) => {
                                let id = a.id;
                                let before = watermark.emitted_millis();
                                let (w, place, restored) = homes.assigned(a, &mut *watermark);
                                workers.open(w, id, place, restored).await?;
                                // A partition restored with its watermark can move the
                                // combined one (no record may come to move it later): the
                                // operators, the restored one included, get it now.
                                let after = watermark.emitted_millis();
                                if after > before {
                                    workers.advance(after).await?;
                                    metrics.record_watermark(after);
                                }
                            }
                        }
                    }
                    continue;
                }
                #[cfg(feature = "kafka")]
                Input::Revoked(ids, ack) => {
                    // Checkpoint before the partitions go (the only checkpoint the run
                    // loop waits for): their offsets are committed by the revocation.
                    let mut commit = Commit::default();
                    if let Some((id, _, last)) = schedule.as_mut() {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let begin = begin(&routing, *id, &positions, &*watermark, events_in, Some(tx));
                        workers.barrier(begin, false).await?;
                        *id += 1;
                        *last = Instant::now();
                        commit = rx.await.map_err(|_| {
                            ProcessorError::Internal("the revocation's checkpoint was not written".into())
                        })?;
                        commit.offsets.retain(|(p, _)| ids.contains(p));
                    }
                    if let Routing::Partitions(homes) = &mut routing {
                        for id in &ids {
                            if let Some(w) = homes.revoked(*id, &mut *watermark) {
                                workers.close(w, vec![*id]).await?;
                            }
                        }
                    }
                    let _ = ack.send(commit);
                    continue;
                }
            };
            fed_since_tick = true;
            let t0 = Instant::now();
            let guard = skew.map(SkewGuard::now);
            let mut offered = 0u64;
            let mut found: Done<P::Row> = Done::default();
            let mut inline = workers.inline();
            let (items, text) = batch.items_mut();
            for (index, item) in items.iter_mut().enumerate() {
                let partition = item.partition;
                // The worker and operator of this partition's records (Kafka with
                // `partitioned_by_key`; the records of a revoked partition are dropped).
                let home = match &routing {
                    Routing::Keyed => None,
                    #[cfg(feature = "kafka")]
                    Routing::Partitions(homes) => match homes.owner(partition) {
                        Some(w) => Some(w),
                        None => continue,
                    },
                };
                offered += 1;
                positions.record(partition, item.offset, item.sequence);
                if touched.last() != Some(&partition) && !touched.contains(&partition) {
                    touched.push(partition);
                }
                let at = (partition, item.sequence, item.offset);
                let raw = item.raw.map(|(a, b)| &text[a..b]);
                if let Some(err) = item.failed.take() {
                    let text = String::from_utf8_lossy(raw.unwrap_or_default()).into_owned();
                    found
                        .bad
                        .push(dead_letter(&err, &source_name, positioner.text(at), text));
                    continue;
                }
                let Some(event) = item.event.as_ref() else {
                    continue;
                };
                let envelope = &mut item.envelope;
                // One worker needs no key hash (a record without its key fails in the worker).
                let routed = if single {
                    plan.event_time(event, envelope).map(|ts| (ts, 0))
                } else {
                    plan.route(event, envelope)
                };
                let routed = routed.and_then(|(ts, hash)| {
                    match guard.and_then(|g| g.check(ts)) {
                        Some(e) => Err(e),
                        None => Ok((ts, hash)),
                    }
                });
                match routed {
                    Err(err) => {
                        let text = payload_text(event, raw);
                        found
                            .bad
                            .push(dead_letter(&err, &source_name, positioner.text(at), text));
                    }
                    Ok((ts, hash)) => {
                        if let Some(p) = pacer.as_mut() {
                            p.pace(ts).await;
                        }
                        let (worker, slot) = match home {
                            None => ((hash % parallelism as u64) as usize, 0),
                            Some(w) => {
                                #[cfg(feature = "kafka")]
                                if let Routing::Partitions(homes) = &mut routing {
                                    homes.check_key(hash, partition, &positioner, &metrics);
                                }
                                (w, partition)
                            }
                        };
                        if let Some(w) = inline.as_deref_mut() {
                            // Parallelism 1: the run loop feeds its one worker itself. A
                            // record that fails there (its key or value) moves nothing, as
                            // one refused here does.
                            let pwm = watermark.partition_watermark(partition);
                            let envelope = std::mem::take(envelope);
                            if !w.offer(slot, event, envelope, pwm, raw, at)? {
                                continue;
                            }
                            newest = newest.max(ts);
                            if let Some(wm) = watermark.on_event(partition, ts, t0) {
                                w.advance(wm);
                                metrics.record_watermark(wm);
                            }
                            continue;
                        }
                        newest = newest.max(ts);
                        parts[worker].push(Step::Record {
                            index: index as u32,
                            slot,
                            partition_watermark: watermark.partition_watermark(partition),
                        });
                        if let Some(wm) = watermark.on_event(partition, ts, t0) {
                            for part in parts.iter_mut() {
                                part.push(Step::Advance(wm));
                            }
                            metrics.record_watermark(wm);
                        }
                    }
                }
            }
            events_in += offered;
            metrics.record_events_processed(offered);
            // Where each partition of the batch is (a gauge update costs a label lookup).
            for &p in &touched {
                if let Some(offset) = positions.offset(p) {
                    metrics.record_source_offset(p, offset);
                }
            }
            touched.clear();
            metrics.record_newest_event(newest);
            if let Some(w) = workers.inline() {
                metrics.record_open_windows(w.open_windows() as u64);
            }
            workers.send(batch, &mut parts, &recycler).await?;
            workers.report(found).await;
            metrics.record_processing_latency(t0.elapsed());
        }
        Ok(())
    }
    .await;
    front.close_input();
    if let Err(e) = ran {
        // Failed: no open window is fired (they stay in the last checkpoint).
        tracing::error!(error = %e, "the run failed; open windows stay unpublished until the next start");
        let e = workers.abort().await.err().unwrap_or(e);
        front.end().await;
        return Err(e);
    }
    let final_watermark = watermark.emitted_millis();
    if stopped && schedule.is_none() {
        tracing::info!("shutdown requested: flushing open windows and sinks");
    }
    let last = match schedule {
        Some((id, _, _)) if stopped || !keyed => {
            // Stop with a checkpoint: the workers end without firing their windows.
            let begin = begin(&routing, id, &positions, &*watermark, events_in, None);
            if let Err(e) = workers.barrier(begin, true).await {
                // The collector had stopped: its error is the run's.
                let e = workers.abort().await.err().unwrap_or(e);
                front.end().await;
                return Err(e);
            }
            None
        }
        Some((id, _, _)) => Some(barrier_meta(id, &positions, &*watermark, events_in)),
        None => None,
    };
    let summary = workers.finish(last).await;
    front.end().await;
    let mut summary = summary?;
    summary.events_in = events_in;
    summary.final_watermark = final_watermark;
    if stopped && schedule.is_some() {
        tracing::info!(
            events_in,
            "stopped at a checkpoint: open windows resume on the next start"
        );
    }
    Ok(summary)
}

/// The checkpoint a barrier starts.
fn begin(
    routing: &Routing,
    id: u64,
    positions: &Positions,
    watermark: &dyn WatermarkGenerator,
    events_in: u64,
    reply: Option<tokio::sync::oneshot::Sender<Commit>>,
) -> Begin {
    match routing {
        Routing::Keyed => Begin::Files {
            meta: barrier_meta(id, positions, watermark, events_in),
            reply,
        },
        #[cfg(feature = "kafka")]
        Routing::Partitions(_) => Begin::Kafka {
            id,
            marks: watermark.snapshot(),
            reply,
        },
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

/// The workers of a run and the collector they answer to.
pub(super) struct Workers<P: Plan> {
    lanes: Lanes<P>,
    n: usize,
    /// Outcomes tagged with who sent them: a worker's index, or N for the run loop.
    outcomes: Outcomes<P::Row>,
    collector: tokio::task::JoinHandle<ProcessorResult<RunSummary>>,
}

/// How the run loop reaches its workers.
enum Lanes<P: Plan> {
    /// Parallelism 1: the run loop calls its one worker itself (`None` once it ended).
    Inline(Option<Box<Worker<P>>>),
    /// One task per worker, each with its bounded queue.
    Tasks {
        senders: Vec<mpsc::Sender<Vec<ToWorker<P::Event>>>>,
        tasks: Vec<tokio::task::JoinHandle<()>>,
    },
}

fn stopped_early() -> ProcessorError {
    ProcessorError::Internal("a worker stopped early".into())
}

impl<P> Workers<P>
where
    P: Plan + Sync,
    P::Event: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts `n` workers (inline at 1) and the collector.
    pub fn start(
        n: usize,
        buffer: usize,
        shared: Shared<P>,
        collector: Collector<P::Row>,
        restored: Option<Snapshots<P>>,
        recycler: Option<Recycler<P::Event>>,
    ) -> ProcessorResult<Self> {
        // Bounded: a slow sink holds the workers back, and they the run loop and the source.
        let (out_tx, out_rx) =
            mpsc::channel::<(usize, Outcome<P::Row>)>(buffer.div_ceil(BATCH).max(2) * n);
        let mut restored = restored.map(Vec::into_iter);
        let mut made = Vec::with_capacity(n);
        for index in 0..n {
            let snapshot = restored.as_mut().and_then(Iterator::next);
            made.push(Worker::new(
                index,
                n,
                &shared,
                snapshot,
                out_tx.clone(),
                recycler.clone(),
            )?);
        }
        let lanes = if n == 1 {
            Lanes::Inline(made.pop().map(Box::new))
        } else {
            let mut senders = Vec::with_capacity(n);
            let mut tasks = Vec::with_capacity(n);
            for mut worker in made {
                let (tx, mut rx) =
                    mpsc::channel::<Vec<ToWorker<P::Event>>>(buffer.div_ceil(BATCH).max(1));
                senders.push(tx);
                tasks.push(tokio::spawn(async move {
                    while let Some(mut msgs) = rx.recv().await {
                        if !worker.handle(&mut msgs).await {
                            return;
                        }
                    }
                    // The queue closed without `Finish`: the run failed. Open windows stay
                    // unfired (the last checkpoint holds them for the next start).
                }));
            }
            Lanes::Tasks { senders, tasks }
        };
        let collector = collector.spawn(n, out_rx);
        Ok(Workers {
            lanes,
            n,
            outcomes: out_tx,
            collector,
        })
    }

    /// Hands `worker` its messages, leaving `msgs` empty (an inline worker's allocation
    /// stays for the next batch).
    async fn deliver(
        &mut self,
        worker: usize,
        msgs: &mut Vec<ToWorker<P::Event>>,
    ) -> ProcessorResult<()> {
        match &mut self.lanes {
            Lanes::Inline(w) => {
                let Some(one) = w.as_mut() else {
                    msgs.clear();
                    return Err(stopped_early());
                };
                if msgs.is_empty() {
                    one.settle().await;
                } else if !one.handle(msgs).await {
                    *w = None;
                }
                Ok(())
            }
            Lanes::Tasks { senders, .. } => {
                let batch = std::mem::take(msgs);
                senders[worker]
                    .send(batch)
                    .await
                    .map_err(|_| stopped_early())
            }
        }
    }

    /// Fails once the collector has stopped (a sink gave up): the run stops reading and
    /// returns the collector's error.
    pub fn check(&self) -> ProcessorResult<()> {
        if self.outcomes.is_closed() {
            return Err(ProcessorError::Internal(
                "the collector stopped early".into(),
            ));
        }
        Ok(())
    }

    /// The one worker of parallelism 1, which the run loop feeds itself.
    pub fn inline(&mut self) -> Option<&mut Worker<P>> {
        match &mut self.lanes {
            Lanes::Inline(w) => w.as_deref_mut(),
            Lanes::Tasks { .. } => None,
        }
    }

    /// Ends a batch: each worker gets its part (one message per worker with records or
    /// advances of it; the batch itself is shared, not copied), leaving `parts` empty for
    /// the next batch; an inline worker, which took its records already, sends what the
    /// batch came to. The batch goes back to `recycler` once its last holder is done.
    pub async fn send(
        &mut self,
        batch: super::batch::Batch<P::Event>,
        parts: &mut [Vec<Step>],
        recycler: &Recycler<P::Event>,
    ) -> ProcessorResult<()> {
        self.check()?;
        if let Lanes::Inline(_) = self.lanes {
            recycler.give(batch);
            return self.deliver(0, &mut Vec::new()).await;
        }
        let batch = Arc::new(batch);
        for (worker, part) in parts.iter_mut().enumerate() {
            if !part.is_empty() {
                let steps = std::mem::replace(part, Vec::with_capacity(part.capacity()));
                let msg = ToWorker::Records {
                    batch: Arc::clone(&batch),
                    steps,
                };
                self.deliver(worker, &mut vec![msg]).await?;
            }
        }
        recycler.give_shared(batch);
        Ok(())
    }

    /// Reports what the run loop itself found (records bad before routing).
    pub async fn report(&self, done: Done<P::Row>) {
        if !done.is_empty() {
            let _ = self.outcomes.send((self.n, Outcome::Batch(done))).await;
        }
    }

    /// Moves every worker's watermark.
    pub async fn advance(&mut self, wm: i64) -> ProcessorResult<()> {
        self.broadcast(|| ToWorker::Advance(wm)).await
    }

    async fn broadcast(&mut self, msg: impl Fn() -> ToWorker<P::Event>) -> ProcessorResult<()> {
        for worker in 0..self.n {
            self.deliver(worker, &mut vec![msg()]).await?;
        }
        Ok(())
    }

    /// Hands `worker` a new operator (a Kafka partition assigned).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn open(
        &mut self,
        worker: usize,
        slot: u32,
        place: Place,
        restored: Option<(Vec<u8>, i64)>,
    ) -> ProcessorResult<()> {
        let msg = ToWorker::Open {
            slot,
            place,
            restored,
        };
        self.deliver(worker, &mut vec![msg]).await
    }

    /// Drops operators of `worker` (Kafka partitions revoked, after their checkpoint).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn close(&mut self, worker: usize, slots: Vec<u32>) -> ProcessorResult<()> {
        self.deliver(worker, &mut vec![ToWorker::Close(slots)])
            .await
    }

    /// Starts a checkpoint: its record to the collector, a barrier to every worker
    /// (`stop`: the workers end after it without firing their windows).
    pub async fn barrier(&mut self, begin: Begin, stop: bool) -> ProcessorResult<()> {
        self.outcomes
            .send((self.n, Outcome::Begin(Box::new(begin))))
            .await
            .map_err(|_| ProcessorError::Internal("the collector stopped early".into()))?;
        self.broadcast(|| ToWorker::Barrier { stop }).await
    }

    /// Ends the run: every worker fires its open windows (a worker that already ended at
    /// a stop barrier has none to fire), then the collector delivers and flushes; returns
    /// its counts. With `last`, the collector then takes the final checkpoint of a
    /// finished input.
    pub async fn finish(mut self, last: Option<Meta>) -> ProcessorResult<RunSummary> {
        for worker in 0..self.n {
            // A worker that ended at a stop barrier no longer listens: nothing to fire.
            let _ = self.deliver(worker, &mut vec![ToWorker::Finish]).await;
        }
        self.end(last).await
    }

    /// Ends a failed run: the workers end without firing their open windows (the last
    /// checkpoint holds them for the next start) and nothing more is checkpointed; the
    /// collector delivers the rows of windows that had fired. Returns the collector's
    /// error, if it failed.
    pub async fn abort(self) -> ProcessorResult<RunSummary> {
        self.end(None).await
    }

    async fn end(self, last: Option<Meta>) -> ProcessorResult<RunSummary> {
        let Workers {
            lanes,
            n,
            outcomes,
            collector,
        } = self;
        match lanes {
            Lanes::Inline(worker) => drop(worker),
            Lanes::Tasks { senders, tasks } => {
                drop(senders);
                for t in tasks {
                    t.await
                        .map_err(|e| ProcessorError::Internal(format!("a worker failed: {e}")))?;
                }
            }
        }
        if let Some(meta) = last {
            let _ = outcomes.send((n, Outcome::Finished(Box::new(meta)))).await;
        }
        drop(outcomes);
        collector
            .await
            .map_err(|e| ProcessorError::Internal(format!("the collector failed: {e}")))?
    }
}
