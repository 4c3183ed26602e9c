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
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::batch::{Recycler, Spent, BATCH};
use super::builder::Shutdown;
use super::checkpoint::{checkpoint_meta, encode_state, Meta};
#[cfg(feature = "kafka")]
use super::front::PartitionHomes;
use super::front::{Front, Input, Positioner};
use super::persist::{Begin, Commit, Committer, Persist, Place, SlotState};
use super::plan::{Envelope, Fed, Plan};
use super::record::{dead_letter, idle_tick, late_record, payload_text, Positions, SkewGuard};
use super::sinks::{collect_rows, deliver_rows, handle_bad, send_late, take_checkpoint, SinkSet};
use super::summary::RunSummary;
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::operator::{Admission, OperatorSnapshot, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::watermark::WatermarkGenerator;
use crate::window::{WindowSpec, WindowTrigger};

pub(super) enum ToWorker<T> {
    Event {
        /// The operator it goes to: a Kafka partition's id, 0 for a file.
        slot: u32,
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
    /// A Kafka partition joins this worker: a new operator, restored from its checkpoint
    /// (its encoded state and the last offset in it) when it has one.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Open {
        slot: u32,
        place: Place,
        restored: Option<(Vec<u8>, i64)>,
    },
    /// Kafka partitions leave this worker (revoked, after their checkpoint).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    Close(Vec<u32>),
    /// The input ended (or the run stopped without checkpoints): fire every open window,
    /// then end. A worker whose queue closes without it was aborted by a failure and ends
    /// without firing anything: unfinished windows are never published as final.
    Finish,
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

pub(super) enum Outcome<R> {
    Batch(Done<R>),
    /// A checkpoint starts: its record, as the run loop knows it.
    Begin(Box<Begin>),
    /// A worker's operators at the barrier.
    State(usize, ProcessorResult<Vec<SlotState>>),
    /// A worker cannot go on (its spill store failed).
    Fatal(ProcessorError),
}

type Snapshots<P> =
    Vec<OperatorSnapshot<<P as Plan>::Key, <<P as Plan>::Func as WindowFunction>::Acc>>;

/// A worker's operator type.
type Op<P> = WindowOperator<<P as Plan>::Key, <P as Plan>::Func, Arc<dyn WindowTrigger>>;

/// One operator of a worker: a file pipeline's only one, or a Kafka partition's.
struct Slot<P: Plan> {
    op: Op<P>,
    place: Option<Place>,
    last_offset: Option<i64>,
}

/// Every operator's state, in slot order.
fn slot_states<P: Plan>(slots: &HashMap<u32, Slot<P>>) -> ProcessorResult<Vec<SlotState>> {
    let mut states = slots
        .iter()
        .map(|(&slot, s)| {
            Ok(SlotState {
                slot,
                place: s.place.clone(),
                last_offset: s.last_offset,
                state: encode_state(&s.op)?,
            })
        })
        .collect::<ProcessorResult<Vec<_>>>()?;
    states.sort_unstable_by_key(|s| s.slot);
    Ok(states)
}

/// A Kafka partition's operator state as its checkpoint holds it.
fn decode_snapshot<P: Plan>(
    bytes: &[u8],
    place: &Place,
) -> ProcessorResult<OperatorSnapshot<P::Key, <P::Func as WindowFunction>::Acc>> {
    postcard::from_bytes(bytes).map_err(|e| {
        ProcessorError::State(format!(
            "partition checkpoint of {}-{} cannot be read ({e}); remove it to re-read the partition",
            place.topic, place.partition
        ))
    })
}

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
pub(super) async fn run_parallel<T, P>(
    run: Parallel<P>,
    mut front: Front<T>,
    mut watermark: Box<dyn WatermarkGenerator>,
    mut shutdown: Shutdown,
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
    let positioner = front.position();
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
    let mut parts: Vec<Vec<ToWorker<T>>> = (0..parallelism).map(|_| Vec::new()).collect();
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
                                let (w, place, restored) = homes.assigned(a, &mut *watermark);
                                workers.open(w, id, place, restored).await?;
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
            for item in batch.drain(..) {
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
                let (event, raw, mut envelope) = match item.decoded {
                    Ok(d) => d,
                    Err((err, text)) => {
                        found
                            .bad
                            .push(dead_letter(&err, &source_name, positioner.text(at), text));
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
                            .push(dead_letter(&err, &source_name, positioner.text(at), text));
                    }
                    Ok((ts, hash)) => {
                        if let Some(p) = pacer.as_mut() {
                            p.pace(ts).await;
                        }
                        newest = newest.max(ts);
                        let (worker, slot) = match home {
                            None => (workers.owner(hash), 0),
                            Some(w) => {
                                #[cfg(feature = "kafka")]
                                if let Routing::Partitions(homes) = &mut routing {
                                    homes.check_key(hash, partition, &positioner, &metrics);
                                }
                                (w, partition)
                            }
                        };
                        let routed = Routed {
                            slot,
                            partition,
                            ts,
                            event,
                            envelope,
                            raw,
                            at,
                        };
                        route(&mut parts, worker, routed, &mut *watermark, t0, &metrics);
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
            recycler.give_batch(batch);
            metrics.record_newest_event(newest);
            workers.send(&mut parts).await?;
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
    let last = match schedule {
        Some((id, _, _)) if stopped || !keyed => {
            // Stop with a checkpoint: the workers end without firing their windows.
            let begin = begin(&routing, id, &positions, &*watermark, events_in, None);
            workers.barrier(begin, true).await?;
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

/// One record on its way to a worker.
pub(super) struct Routed<T> {
    /// The operator it goes to ([`ToWorker::Event`]).
    pub slot: u32,
    /// The source partition whose watermark judges it.
    pub partition: u32,
    /// Its event time.
    pub ts: i64,
    pub event: T,
    pub envelope: Envelope,
    pub raw: Option<Vec<u8>>,
    pub at: (u32, u64, u64),
}

/// Adds a record to `worker`'s part of the batch, with its partition's watermark as of
/// before it, then moves the watermark: an advance goes to every worker, in order with
/// the records.
pub(super) fn route<T>(
    parts: &mut [Vec<ToWorker<T>>],
    worker: usize,
    r: Routed<T>,
    watermark: &mut dyn WatermarkGenerator,
    t0: Instant,
    metrics: &ProcessorMetrics,
) {
    parts[worker].push(ToWorker::Event {
        slot: r.slot,
        partition_watermark: watermark.partition_watermark(r.partition),
        event: r.event,
        envelope: r.envelope,
        raw: r.raw,
        at: r.at,
    });
    if let Some(wm) = watermark.on_event(r.partition, r.ts, t0) {
        for part in parts.iter_mut() {
            part.push(ToWorker::Advance(wm));
        }
        metrics.record_watermark(wm);
    }
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
    /// Each worker starts with one operator (keys routed by hash), not with none (Kafka
    /// with `partitioned_by_key`: operators come with partitions, [`ToWorker::Open`]).
    pub file_slot: bool,
    /// Where a record is, as text.
    pub positioner: Positioner,
}

pub(super) struct Collector<R: Clone + Send + Sync + 'static> {
    pub sinks: Vec<Arc<dyn EventSink<R>>>,
    pub error_handler: ErrorHandler,
    pub late_sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub metrics: Arc<ProcessorMetrics>,
    pub persist: Option<Persist>,
    /// Counts restored from a checkpoint.
    pub summary: RunSummary,
    /// Kafka: the offsets of each durable checkpoint go to the consumer to commit.
    pub committer: Option<Committer>,
}

/// A checkpoint the collector is gathering worker states for.
struct Gathering<R> {
    begin: Begin,
    states: Vec<Option<Vec<SlotState>>>,
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
        recycler: Option<Recycler<T>>,
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
            let make_op = {
                let (window, lateness_ms, func) = (shared.window, shared.lateness_ms, func.clone());
                move || -> ProcessorResult<Op<P>> {
                    WindowOperator::with_trigger(
                        window,
                        lateness_ms,
                        func.clone(),
                        Arc::clone(&trigger),
                    )
                }
            };
            // A file pipeline's worker has one operator (slot 0); a Kafka worker gets one
            // per partition as partitions are assigned to it.
            let mut slots: HashMap<u32, Slot<P>> = HashMap::new();
            if shared.file_slot {
                let mut op = make_op()?;
                if let Some((store, max_windows)) = &shared.spill {
                    op = op.with_spill(Arc::clone(store), max_windows / n);
                }
                if let Some(snap) = restored.as_mut().and_then(Iterator::next) {
                    op.restore(snap);
                }
                slots.insert(
                    0,
                    Slot {
                        op,
                        place: None,
                        last_offset: None,
                    },
                );
            }
            let lateness_ms = shared.lateness_ms;
            let source_name = shared.source_name.clone();
            let positioner = shared.positioner.clone();
            senders.push(tx);
            let recycler = recycler.clone();
            tasks.push(tokio::spawn(async move {
                let mut done: Done<R> = Done::default();
                let mut spent: Spent<T> = Spent::default();
                while let Some(msgs) = rx.recv().await {
                    for msg in msgs {
                        match msg {
                            ToWorker::Advance(wm) => {
                                for slot in slots.values_mut() {
                                    slot.op.advance_to(
                                        wm,
                                        &mut collect_rows(&*plan, &func, &mut done.rows),
                                    );
                                }
                            }
                            ToWorker::Barrier { stop } => {
                                // What came before the barrier belongs to this checkpoint.
                                flush(&out, worker, &mut done).await;
                                let state = Outcome::State(worker, slot_states(&slots));
                                let _ = out.send((worker, state)).await;
                                if stop {
                                    return;
                                }
                            }
                            ToWorker::Finish => {
                                if let Some(r) = &recycler {
                                    r.give(&mut spent);
                                }
                                let mut ids: Vec<u32> = slots.keys().copied().collect();
                                ids.sort_unstable();
                                for id in ids {
                                    if let Some(slot) = slots.get_mut(&id) {
                                        slot.op.flush(&mut collect_rows(
                                            &*plan,
                                            &func,
                                            &mut done.rows,
                                        ));
                                    }
                                }
                                flush(&out, worker, &mut done).await;
                                return;
                            }
                            ToWorker::Open {
                                slot,
                                place,
                                restored,
                            } => {
                                let opened = make_op().and_then(|mut op| {
                                    let mut last_offset = None;
                                    if let Some((bytes, offset)) = restored {
                                        op.restore(decode_snapshot::<P>(&bytes, &place)?);
                                        last_offset = Some(offset);
                                    }
                                    Ok(Slot {
                                        op,
                                        place: Some(place),
                                        last_offset,
                                    })
                                });
                                match opened {
                                    Ok(s) => {
                                        slots.insert(slot, s);
                                    }
                                    Err(e) => {
                                        flush(&out, worker, &mut done).await;
                                        let _ = out.send((worker, Outcome::Fatal(e))).await;
                                        return;
                                    }
                                }
                            }
                            ToWorker::Close(ids) => {
                                for id in ids {
                                    slots.remove(&id);
                                }
                            }
                            ToWorker::Event {
                                slot,
                                event,
                                envelope,
                                partition_watermark,
                                raw,
                                at,
                            } => {
                                let Some(Slot {
                                    op,
                                    place,
                                    last_offset,
                                }) = slots.get_mut(&slot)
                                else {
                                    continue;
                                };
                                let at_text = || positioner.text(at);
                                if place.is_some() {
                                    *last_offset = i64::try_from(at.2).ok();
                                }
                                let fed = plan.feed(
                                    op,
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
                                            at_text(),
                                            payload_text(&event, raw.as_deref()),
                                        ))
                                    }
                                    Err(err) => done.bad.push(dead_letter(
                                        &err,
                                        &source_name,
                                        at_text(),
                                        payload_text(&event, raw.as_deref()),
                                    )),
                                }
                                if recycler.is_some() {
                                    spent.push(event, raw);
                                }
                                if let Some(e) = op.take_spill_error() {
                                    flush(&out, worker, &mut done).await;
                                    let _ = out.send((worker, Outcome::Fatal(e))).await;
                                    return;
                                }
                            }
                        }
                    }
                    if let Some(r) = &recycler {
                        r.give(&mut spent);
                    }
                    flush(&out, worker, &mut done).await;
                }
                // The queue closed without `Finish`: the run failed. Open windows stay
                // unfired (the last checkpoint holds them for the next start).
            }));
        }
        let Collector {
            sinks,
            mut error_handler,
            late_sink,
            drop_late,
            metrics,
            mut persist,
            summary: restored_summary,
            committer,
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
                    Outcome::Begin(begin) => {
                        let mut passed = vec![false; n + 1];
                        passed[n] = true;
                        gathering = Some(Gathering {
                            begin: *begin,
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
                            let states: Vec<Vec<SlotState>> = g
                                .states
                                .into_iter()
                                .map(Option::unwrap_or_default)
                                .collect();
                            let set = SinkSet {
                                results: &sinks,
                                late: late_sink.as_ref(),
                                handler: &mut error_handler,
                            };
                            let commit = match (persist.as_mut(), g.begin) {
                                (Some(Persist::Files(c)), Begin::Files { mut meta, reply }) => {
                                    meta.summary = RunSummary {
                                        events_in: meta.summary.events_in,
                                        final_watermark: meta.summary.final_watermark,
                                        ..summary
                                    };
                                    // The next offset of each partition, for Kafka.
                                    let commit = Commit {
                                        id: meta.id,
                                        offsets: match (&committer, &reply) {
                                            (None, None) => Vec::new(),
                                            _ => meta
                                                .positions
                                                .iter()
                                                .map(|p| (p.partition, p.offset as i64 + 1))
                                                .collect(),
                                        },
                                    };
                                    // One operator per worker, in worker order.
                                    let states = states
                                        .into_iter()
                                        .map(|w| {
                                            w.into_iter()
                                                .next()
                                                .map(|s| s.state)
                                                .unwrap_or_default()
                                        })
                                        .collect();
                                    take_checkpoint(c, set, meta, states, &metrics).await?;
                                    (commit, reply)
                                }
                                #[cfg(feature = "kafka")]
                                (Some(Persist::Kafka(k)), Begin::Kafka { id, marks, reply }) => {
                                    let states = states.into_iter().flatten().collect();
                                    let offsets =
                                        k.checkpoint(id, &marks, states, set, &metrics).await?;
                                    (Commit { id, offsets }, reply)
                                }
                                _ => {
                                    return Err(ProcessorError::Internal(
                                        "a checkpoint barrier the run cannot write".into(),
                                    ))
                                }
                            };
                            // Offsets reach the group only once the checkpoint holding them is durable.
                            let (commit, reply) = commit;
                            if let Some(c) = &committer {
                                c.commit(commit.clone());
                            }
                            if let Some(reply) = reply {
                                let _ = reply.send(commit);
                            }
                        }
                    }
                }
            }
            if let Some(Persist::Files(c)) = persist.as_mut() {
                if let Some(Gathering {
                    begin: Begin::Files { meta, .. },
                    ..
                }) = gathering.take()
                {
                    // The input ended: every worker fired its windows; publish.
                    let mut meta = meta;
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

    /// Hands `worker` a new operator (a Kafka partition assigned).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn open(
        &self,
        worker: usize,
        slot: u32,
        place: Place,
        restored: Option<(Vec<u8>, i64)>,
    ) -> ProcessorResult<()> {
        self.to(
            worker,
            ToWorker::Open {
                slot,
                place,
                restored,
            },
        )
        .await
    }

    /// Drops operators of `worker` (Kafka partitions revoked, after their checkpoint).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub async fn close(&self, worker: usize, slots: Vec<u32>) -> ProcessorResult<()> {
        self.to(worker, ToWorker::Close(slots)).await
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    async fn to(&self, worker: usize, msg: ToWorker<T>) -> ProcessorResult<()> {
        self.senders[worker]
            .send(vec![msg])
            .await
            .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))
    }

    /// Starts a checkpoint: its record to the collector, a barrier to every worker
    /// (`stop`: the workers end after it without firing their windows).
    pub async fn barrier(&self, begin: Begin, stop: bool) -> ProcessorResult<()> {
        self.outcomes
            .send((self.senders.len(), Outcome::Begin(Box::new(begin))))
            .await
            .map_err(|_| ProcessorError::Internal("the collector stopped early".into()))?;
        self.broadcast(|| ToWorker::Barrier { stop }).await
    }

    /// Ends the run: every worker fires its open windows (a worker that already ended at
    /// a stop barrier has none to fire), then the collector delivers and flushes; returns
    /// its counts. With `last`, the collector then takes the final checkpoint of a
    /// finished input.
    pub async fn finish(self, last: Option<Meta>) -> ProcessorResult<RunSummary> {
        for tx in &self.senders {
            // A worker that ended at a stop barrier no longer listens: nothing to fire.
            let _ = tx.send(vec![ToWorker::Finish]).await;
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
                .send((
                    senders_len,
                    Outcome::Begin(Box::new(Begin::Files { meta, reply: None })),
                ))
                .await;
        }
        drop(outcomes);
        collector
            .await
            .map_err(|e| ProcessorError::Internal(format!("the collector failed: {e}")))?
    }
}
