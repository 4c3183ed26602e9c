//! A worker: the operators of the keys routed to it. It takes the run loop's messages in
//! order (records, watermark advances, checkpoint barriers, Kafka partitions coming and
//! going) and answers each message with one [`Outcome`] to the collector: the rows its
//! windows fired, its late records and failures, and its counts. At parallelism 1 the run
//! loop calls its one worker inline; above, each worker is a task with its own queue.

use hashbrown::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::batch::{Batch, Recycler};
use super::checkpoint::{encode_state, Meta};
use super::front::Positioner;
use super::persist::{Begin, Place, SlotState};
use super::plan::{Envelope, Fed, Plan};
use super::record::{dead_letter, late_record, payload_text};
use super::sinks::collect_rows;
use crate::error::{ProcessorError, ProcessorResult};
use crate::operator::{Admission, OperatorSnapshot, WindowFunction, WindowOperator};
use crate::sink::DeadLetterRecord;
use crate::window::{WindowSpec, WindowTrigger};

/// What the run loop tells a worker, in order.
pub(super) enum ToWorker<T> {
    /// This worker's records of a batch (the batch is shared by every worker that has
    /// some of its records), with the watermark advances among them, in order.
    Records {
        batch: Arc<Batch<T>>,
        steps: Vec<Step>,
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

/// One step of a worker through its part of a batch.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// The batch's record `index` goes to operator `slot` (a Kafka partition's id, 0 for
    /// a file), judged against its partition's watermark as it stood before it.
    Record {
        index: u32,
        slot: u32,
        partition_watermark: i64,
    },
    Advance(i64),
}

/// What one message came to, in one outcome.
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
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.accepted == 0
            && self.filtered == 0
            && self.late.is_empty()
            && self.bad.is_empty()
    }
}

/// What the collector hears, tagged with who sent it (a worker's index, or N for the run
/// loop).
pub(super) enum Outcome<R> {
    Batch(Done<R>),
    /// A checkpoint starts: its record, as the run loop knows it.
    Begin(Box<Begin>),
    /// A worker's operators at the barrier.
    State(usize, ProcessorResult<Vec<SlotState>>),
    /// A worker cannot go on (its spill store failed, a partition state is unreadable).
    Fatal(ProcessorError),
    /// The input ended and every worker fired its windows and ended: the run's finished
    /// checkpoint (from the run loop, last).
    Finished(Box<Meta>),
}

/// The outcomes' queue.
pub(super) type Outcomes<R> = mpsc::Sender<(usize, Outcome<R>)>;

/// Operator snapshots, one per worker.
pub(super) type Snapshots<P> =
    Vec<OperatorSnapshot<<P as Plan>::Key, <<P as Plan>::Func as WindowFunction>::Acc>>;

/// A worker's operator type.
type Op<P> = WindowOperator<<P as Plan>::Key, <P as Plan>::Func, Arc<dyn WindowTrigger>>;

/// One operator of a worker: a file pipeline's only one, or a Kafka partition's.
struct Slot<P: Plan> {
    op: Op<P>,
    place: Option<Place>,
    last_offset: Option<i64>,
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

/// One worker's operators and what it has found since its last outcome.
pub(super) struct Worker<P: Plan> {
    index: usize,
    plan: Arc<P>,
    func: P::Func,
    window: WindowSpec,
    lateness_ms: i64,
    trigger: Arc<dyn WindowTrigger>,
    source_name: String,
    positioner: Positioner,
    slots: HashMap<u32, Slot<P>>,
    out: Outcomes<P::Row>,
    done: Done<P::Row>,
    /// Where a batch goes back when this worker was its last holder.
    recycler: Option<Recycler<P::Event>>,
}

impl<P: Plan> Worker<P> {
    /// Worker `index` of `n`, restored from `restored` (its snapshot) if given.
    pub fn new(
        index: usize,
        n: usize,
        shared: &Shared<P>,
        restored: Option<OperatorSnapshot<P::Key, <P::Func as WindowFunction>::Acc>>,
        out: Outcomes<P::Row>,
        recycler: Option<Recycler<P::Event>>,
    ) -> ProcessorResult<Self> {
        let mut worker = Worker {
            index,
            plan: Arc::clone(&shared.plan),
            func: shared.plan.function(),
            window: shared.window,
            lateness_ms: shared.lateness_ms,
            trigger: Arc::clone(&shared.trigger),
            source_name: shared.source_name.clone(),
            positioner: shared.positioner.clone(),
            slots: HashMap::new(),
            out,
            done: Done::default(),
            recycler,
        };
        // A file pipeline's worker has one operator (slot 0); a Kafka worker in
        // `partitioned_by_key` mode gets one per partition as they are assigned to it.
        if shared.file_slot {
            let mut op = worker.make_op()?;
            if let Some((store, max_windows)) = &shared.spill {
                op = op.with_spill(Arc::clone(store), max_windows / n);
            }
            if let Some(snap) = restored {
                op.restore(snap);
            }
            worker.slots.insert(
                0,
                Slot {
                    op,
                    place: None,
                    last_offset: None,
                },
            );
        }
        Ok(worker)
    }

    fn make_op(&self) -> ProcessorResult<Op<P>> {
        WindowOperator::with_trigger(
            self.window,
            self.lateness_ms,
            self.func.clone(),
            Arc::clone(&self.trigger),
        )
    }

    /// Takes one message of the run loop, then sends what it found to the collector.
    /// Returns false once the worker has ended (finished, stopped at a barrier, failed).
    pub async fn handle(&mut self, msgs: &mut Vec<ToWorker<P::Event>>) -> bool {
        for msg in msgs.drain(..) {
            match msg {
                ToWorker::Records { batch, steps } => {
                    let took = self.take(&batch, &steps);
                    if let Some(r) = &self.recycler {
                        r.give_shared(batch);
                    }
                    if let Err(e) = took {
                        return self.fail(e).await;
                    }
                }
                ToWorker::Advance(wm) => self.advance(wm),
                ToWorker::Barrier { stop } => {
                    // What came before the barrier belongs to this checkpoint.
                    self.flush().await;
                    let state = Outcome::State(self.index, self.slot_states());
                    let _ = self.out.send((self.index, state)).await;
                    if stop {
                        return false;
                    }
                }
                ToWorker::Finish => {
                    let mut ids: Vec<u32> = self.slots.keys().copied().collect();
                    ids.sort_unstable();
                    for id in ids {
                        if let Some(slot) = self.slots.get_mut(&id) {
                            slot.op.flush(&mut collect_rows(
                                &*self.plan,
                                &self.func,
                                &mut self.done.rows,
                            ));
                        }
                    }
                    self.flush().await;
                    return false;
                }
                ToWorker::Open {
                    slot,
                    place,
                    restored,
                } => match self.open(place, restored) {
                    Ok(s) => {
                        self.slots.insert(slot, s);
                    }
                    Err(e) => return self.fail(e).await,
                },
                ToWorker::Close(ids) => {
                    for id in ids {
                        self.slots.remove(&id);
                    }
                }
            }
        }
        self.settle().await;
        true
    }

    /// Ends a message: what was found goes to the collector.
    pub async fn settle(&mut self) {
        self.flush().await;
    }

    /// Takes this worker's records of a shared batch.
    fn take(&mut self, batch: &Batch<P::Event>, steps: &[Step]) -> ProcessorResult<()> {
        for step in steps {
            match *step {
                Step::Record {
                    index,
                    slot,
                    partition_watermark,
                } => {
                    let item = &batch.items()[index as usize];
                    let Some(event) = item.event.as_ref() else {
                        continue;
                    };
                    let at = (item.partition, item.sequence, item.offset);
                    let raw = batch.raw(item);
                    let envelope = item.envelope.clone();
                    self.offer(slot, event, envelope, partition_watermark, raw, at)?;
                }
                Step::Advance(wm) => self.advance(wm),
            }
        }
        Ok(())
    }

    /// Moves every operator's watermark; the rows of the windows it fires are kept.
    #[inline]
    pub fn advance(&mut self, wm: i64) {
        for slot in self.slots.values_mut() {
            slot.op.advance_to(
                wm,
                &mut collect_rows(&*self.plan, &self.func, &mut self.done.rows),
            );
        }
    }

    /// Offers one record to its operator: rows fired, late records and failures go into
    /// what the worker found. Returns whether the record was
    /// taken (offered or filtered out; false: it failed and is a dead letter, or its
    /// partition is not this worker's). Only a failed spill store is an error.
    #[inline]
    pub fn offer(
        &mut self,
        slot: u32,
        event: &P::Event,
        envelope: Envelope,
        partition_watermark: i64,
        raw: Option<&[u8]>,
        at: (u32, u64, u64),
    ) -> ProcessorResult<bool> {
        let Some(Slot {
            op,
            place,
            last_offset,
        }) = self.slots.get_mut(&slot)
        else {
            return Ok(false);
        };
        if place.is_some() {
            *last_offset = i64::try_from(at.2).ok();
        }
        let done = &mut self.done;
        let fed = self.plan.feed(
            op,
            partition_watermark,
            event,
            envelope,
            &mut collect_rows(&*self.plan, &self.func, &mut done.rows),
        );
        let taken = fed.is_ok();
        match fed {
            Ok(Fed::Offered(_, Admission::Accepted)) => done.accepted += 1,
            Ok(Fed::Filtered(_)) => done.filtered += 1,
            Ok(Fed::Offered(ts, Admission::Late)) => done.late.push(late_record(
                ts,
                partition_watermark.max(op.watermark()),
                self.lateness_ms,
                &self.source_name,
                self.positioner.text(at),
                payload_text(event, raw),
            )),
            Err(err) => done.bad.push(dead_letter(
                &err,
                &self.source_name,
                self.positioner.text(at),
                payload_text(event, raw),
            )),
        }
        match op.take_spill_error() {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Windows open in this worker's operators (the `processor_open_windows` gauge).
    pub fn open_windows(&self) -> usize {
        self.slots.values().map(|s| s.op.state_len()).sum()
    }

    /// A Kafka partition's operator, restored from its checkpoint if it has one.
    fn open(&self, place: Place, restored: Option<(Vec<u8>, i64)>) -> ProcessorResult<Slot<P>> {
        let mut op = self.make_op()?;
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
    }

    /// Sends what was found, then the error that ends the worker.
    async fn fail(&mut self, e: ProcessorError) -> bool {
        self.flush().await;
        let _ = self.out.send((self.index, Outcome::Fatal(e))).await;
        false
    }

    /// Sends what the worker found since its last outcome to the collector.
    async fn flush(&mut self) {
        if !self.done.is_empty() {
            // The collector only stops early on an error, which the run reports.
            let done = std::mem::take(&mut self.done);
            let _ = self.out.send((self.index, Outcome::Batch(done))).await;
        }
    }

    /// Every operator's state, in slot order.
    fn slot_states(&self) -> ProcessorResult<Vec<SlotState>> {
        let mut states = self
            .slots
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
