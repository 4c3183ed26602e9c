//! Source → decode, in batches: the reader task takes records from the source in batches
//! and decodes them there, off the operator's task, so that reading and decoding run on
//! one core while the operator runs on another. One channel operation carries a batch.
//!
//! Batch boundaries change nothing downstream: the operator takes the records of a batch
//! one by one, in order, and the watermark moves per record (see the README's
//! "Semantics"), so the rows are a function of the input, not of how it was cut.

use serde::de::DeserializeOwned;
use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;

use super::record::Envelope;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::{EventTimestamp, FeedbackDecoder, FeedbackEvent, FeedbackFields};
use crate::source::{EventSource, Payload, SourceRecord};
use crate::time::to_millis;

/// Records per batch between the reader and the operator.
pub(super) const BATCH: usize = 1024;

/// A decoded record: the event, its raw bytes when it came as bytes, what its envelope gave.
pub(super) type Decoded<T> = (T, Option<Vec<u8>>, Envelope);

/// One record of a batch, decoded (or the decoding error with the payload as text).
pub(super) struct Item<T> {
    pub partition: u32,
    pub offset: u64,
    pub sequence: u64,
    pub decoded: Result<Decoded<T>, (ProcessorError, String)>,
}

/// How a pipeline decodes JSON records into its events, chosen by its [`Plan`]
/// ([`Plan::json_decoder`]): the built-in [`FeedbackEvent`] with its specialized
/// [`FeedbackDecoder`] (only the fields the plan reads, and which fields were present); an
/// event with `#[derive(Event)]` with its derived decoder (only the fields the plan reads,
/// the others skipped unread); any other type with serde_json. It runs on the reader task,
/// off the operator's.
///
/// [`Plan`]: super::Plan
/// [`Plan::json_decoder`]: super::Plan::json_decoder
pub struct JsonDecoder<E> {
    feedback: Option<FeedbackDecoder>,
    read: u64,
    decode: fn(&[u8], u64) -> serde_json::Result<E>,
}

impl<E> Clone for JsonDecoder<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for JsonDecoder<E> {}

impl<E> std::fmt::Debug for JsonDecoder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDecoder")
            .field("feedback", &self.feedback)
            .field("read", &format_args!("{:#x}", self.read))
            .finish()
    }
}

fn serde_decode<E: DeserializeOwned>(json: &[u8], _: u64) -> serde_json::Result<E> {
    serde_json::from_slice(json)
}

fn derived_decode<E: crate::dsl::Event>(json: &[u8], read: u64) -> serde_json::Result<E> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let e = E::deserialize_fields(&mut de, read)?;
    de.end()?;
    Ok(e)
}

impl<E: DeserializeOwned + 'static> JsonDecoder<E> {
    /// serde_json for any type; [`FeedbackDecoder`] for the built-in [`FeedbackEvent`],
    /// reading `fields` (`None`: all).
    pub fn serde(fields: Option<Vec<&'static str>>) -> Self {
        let is_feedback = std::any::TypeId::of::<E>() == std::any::TypeId::of::<FeedbackEvent>();
        let fields = fields
            .and_then(|f| FeedbackFields::of(f).ok())
            .unwrap_or(FeedbackFields::ALL);
        JsonDecoder {
            feedback: is_feedback.then(|| FeedbackDecoder::new(fields)),
            read: u64::MAX,
            decode: serde_decode::<E>,
        }
    }

    /// The decoder `#[derive(Event)]` generated for `E`, reading `fields` (`None`: all);
    /// [`FeedbackDecoder`] for the built-in [`FeedbackEvent`].
    pub fn derived(fields: Option<Vec<&'static str>>) -> Self
    where
        E: crate::dsl::Event,
    {
        let read = match &fields {
            None => u64::MAX,
            Some(names) => E::FIELD_NAMES
                .iter()
                .enumerate()
                .filter(|(_, n)| names.contains(n))
                .fold(0, |m, (i, _)| m | 1 << i),
        };
        JsonDecoder {
            read,
            decode: derived_decode::<E>,
            ..JsonDecoder::serde(fields)
        }
    }

    /// Whether it decodes into an event it is given ([`decode`](Self::decode)'s
    /// `spare`), keeping that event's string buffers: the built-in event's decoder does.
    pub(super) fn reuses_events(&self) -> bool {
        self.feedback.is_some()
    }

    /// Decodes one payload; a JSON payload of the built-in event is decoded into `spare`
    /// when given (an event already processed, whose strings keep their buffers).
    pub(super) fn decode(
        &self,
        payload: Payload<E>,
        spare: Option<E>,
    ) -> Result<Decoded<E>, (ProcessorError, String)> {
        match payload {
            Payload::Bytes(bytes) => {
                let failed = |e: serde_json::Error, bytes: &[u8]| {
                    (
                        ProcessorError::Deserialization(e.to_string()),
                        String::from_utf8_lossy(bytes).into_owned(),
                    )
                };
                if let Some(d) = &self.feedback {
                    let mut event = spare
                        .and_then(|e| {
                            let mut slot = Some(e);
                            (&mut slot as &mut dyn Any)
                                .downcast_mut::<Option<FeedbackEvent>>()
                                .and_then(Option::take)
                        })
                        .unwrap_or_default();
                    let present = d
                        .decode_present(&bytes, &mut event)
                        .map_err(|e| failed(e, &bytes))?;
                    let mut slot = Some(event);
                    let event = (&mut slot as &mut dyn Any)
                        .downcast_mut::<Option<E>>()
                        .and_then(Option::take)
                        .ok_or_else(|| {
                            (
                                ProcessorError::Internal(
                                    "feedback decoder for another type".into(),
                                ),
                                String::new(),
                            )
                        })?;
                    let envelope = Envelope {
                        present: Some(present),
                        ..Envelope::default()
                    };
                    return Ok((event, Some(bytes), envelope));
                }
                match (self.decode)(&bytes, self.read) {
                    Ok(e) => Ok((e, Some(bytes), Envelope::default())),
                    Err(e) => Err(failed(e, &bytes)),
                }
            }
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
                        ..Envelope::default()
                    },
                ))
            }
        }
    }
}

/// A batch as it travels from the reader to the operator.
pub(super) type Batch<T> = ProcessorResult<Vec<Item<T>>>;

/// Most spare events, and most spare byte buffers, a [`Recycler`] keeps; past that they
/// are dropped (a source that does not take buffers back, or a decoder that does not
/// decode into events, would otherwise grow the pool).
const SPARES: usize = 16 * BATCH;

/// Batches most kept for reuse.
const SPARE_BATCHES: usize = 16;

/// Records already processed, on their way back to the reader to be read and decoded into
/// again: each event keeps its string buffers, each line's byte buffer its capacity, each
/// batch its vector. With a source that takes buffers back ([`EventSource::recycle`]: a
/// file, stdin) and the built-in event's decoder, a run in steady state allocates nothing
/// per record. Shared by the reader and whoever takes its batches (the run loop, the
/// workers); locked once per batch.
pub(super) struct Recycler<T> {
    pool: Arc<Mutex<Spares<T>>>,
    /// Whether events are worth keeping (the decoder decodes into them).
    events: bool,
}

impl<T> Clone for Recycler<T> {
    fn clone(&self) -> Self {
        Recycler {
            pool: Arc::clone(&self.pool),
            events: self.events,
        }
    }
}

struct Spares<T> {
    events: Vec<T>,
    raws: Vec<Vec<u8>>,
    batches: Vec<Vec<Item<T>>>,
}

impl<T> Spares<T> {
    fn keep(&mut self, event: T, raw: Option<Vec<u8>>, events: bool) {
        if events && self.events.len() < SPARES {
            self.events.push(event);
        }
        if let Some(raw) = raw.filter(|_| self.raws.len() < SPARES) {
            self.raws.push(raw);
        }
    }
}

/// Records a worker processed, given back to the [`Recycler`] after each message.
pub(super) struct Spent<T> {
    events: Vec<T>,
    raws: Vec<Vec<u8>>,
}

impl<T> Default for Spent<T> {
    fn default() -> Self {
        Spent {
            events: Vec::new(),
            raws: Vec::new(),
        }
    }
}

impl<T> Spent<T> {
    /// Keeps a processed record's event and bytes.
    pub fn push(&mut self, event: T, raw: Option<Vec<u8>>) {
        self.events.push(event);
        self.raws.extend(raw);
    }
}

impl<T> Recycler<T> {
    /// A pool; `events`: keep events for the decoder to decode into.
    pub fn new(events: bool) -> Self {
        Recycler {
            pool: Arc::new(Mutex::new(Spares {
                events: Vec::new(),
                raws: Vec::new(),
                batches: Vec::new(),
            })),
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spares<T>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back a processed batch: its records (if any are left in it) and its vector.
    pub fn give_batch(&self, mut batch: Vec<Item<T>>) {
        let mut pool = self.lock();
        for item in batch.drain(..) {
            if let Ok((event, raw, _)) = item.decoded {
                pool.keep(event, raw, self.events);
            }
        }
        if pool.batches.len() < SPARE_BATCHES {
            pool.batches.push(batch);
        }
    }

    /// Gives back what a worker processed (`spent` is left empty, its capacity kept).
    pub fn give(&self, spent: &mut Spent<T>) {
        if spent.events.is_empty() && spent.raws.is_empty() {
            return;
        }
        let mut pool = self.lock();
        let room = SPARES.saturating_sub(pool.events.len());
        if self.events {
            let n = spent.events.len().min(room);
            pool.events.extend(spent.events.drain(..n));
        }
        spent.events.clear();
        let room = SPARES.saturating_sub(pool.raws.len());
        let n = spent.raws.len().min(room);
        pool.raws.extend(spent.raws.drain(..n));
        spent.raws.clear();
    }

    /// Takes an empty batch vector for `n` records, tops `events` up to `n` spare events,
    /// and moves the spare byte buffers (at most `n`) to `raws`.
    fn take(&self, n: usize, events: &mut Vec<T>, raws: &mut Vec<Vec<u8>>) -> Vec<Item<T>> {
        let mut pool = self.lock();
        let want = n.saturating_sub(events.len()).min(pool.events.len());
        let from = pool.events.len() - want;
        events.extend(pool.events.drain(from..));
        let want = n.saturating_sub(raws.len()).min(pool.raws.len());
        let from = pool.raws.len() - want;
        raws.extend(pool.raws.drain(from..));
        pool.batches.pop().unwrap_or_else(|| Vec::with_capacity(n))
    }
}

/// Starts the reader task: batches of up to `batch` decoded records into a channel
/// holding `buffer` records (the backpressure bound), until the source ends or fails
/// (the error is the last message). Events, byte buffers and batch vectors come back
/// through `recycler` to be used again.
pub(super) fn spawn_reader<T>(
    mut source: Box<dyn EventSource<T>>,
    decoder: JsonDecoder<T>,
    recycler: Recycler<T>,
    buffer: usize,
    batch: usize,
    decoders: usize,
) -> (mpsc::Receiver<Pending<T>>, tokio::task::JoinHandle<()>)
where
    T: DeserializeOwned + Send + 'static,
{
    let batch = batch.max(1);
    let (tx, rx) = mpsc::channel::<Pending<T>>(buffer.div_ceil(batch).max(1));
    // With several decoders, each batch is decoded by whichever is free, and the run loop
    // takes the batches in the order they were read (a slot per batch, in order).
    let pool = (decoders > 1).then(|| DecodePool::start(decoders, decoder));
    let task = tokio::spawn(async move {
        let mut records: Vec<SourceRecord<T>> = Vec::with_capacity(batch);
        let mut events: Vec<T> = Vec::new();
        let mut raws: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut items = recycler.take(batch, &mut events, &mut raws);
            if !raws.is_empty() {
                source.recycle(&mut raws);
                raws.clear();
            }
            let more = match source.next_batch(batch, &mut records).await {
                Ok(more) => more,
                Err(e) => {
                    let _ = tx.send(Pending::Ready(Err(e))).await;
                    break;
                }
            };
            if !records.is_empty() {
                let sent = match &pool {
                    Some(pool) => {
                        let spares = events.split_off(events.len().saturating_sub(records.len()));
                        let work = Work {
                            records: std::mem::replace(&mut records, Vec::with_capacity(batch)),
                            spares,
                            items,
                        };
                        pool.decode(work, &tx).await
                    }
                    None => {
                        decode_into(&decoder, &mut records, &mut events, &mut items);
                        tx.send(Pending::Ready(Ok(items))).await.is_ok()
                    }
                };
                if !sent {
                    break;
                }
            }
            if !more {
                break;
            }
        }
    });
    (rx, task)
}

/// Decodes `records` (left empty) onto the end of `items`, into spare events where the
/// decoder reuses them.
fn decode_into<T: DeserializeOwned + 'static>(
    decoder: &JsonDecoder<T>,
    records: &mut Vec<SourceRecord<T>>,
    spares: &mut Vec<T>,
    items: &mut Vec<Item<T>>,
) {
    items.extend(records.drain(..).map(|r| Item {
        partition: r.partition,
        offset: r.offset,
        sequence: r.sequence,
        decoded: decoder.decode(r.payload, spares.pop()),
    }));
}

/// A batch on its way from the reader to the run loop: decoded, or being decoded.
pub(super) enum Pending<T> {
    Ready(Batch<T>),
    Decoding(tokio::sync::oneshot::Receiver<Batch<T>>),
}

/// Records read, to decode into `items` (events decoded into `spares` where the decoder
/// can reuse them).
struct Work<T> {
    records: Vec<SourceRecord<T>>,
    spares: Vec<T>,
    items: Vec<Item<T>>,
}

/// Decoder tasks taking batches from one queue.
struct DecodePool<T> {
    work: mpsc::Sender<(Work<T>, tokio::sync::oneshot::Sender<Batch<T>>)>,
}

impl<T: DeserializeOwned + Send + 'static> DecodePool<T> {
    fn start(n: usize, decoder: JsonDecoder<T>) -> Self {
        let (work, rx) = mpsc::channel::<(Work<T>, tokio::sync::oneshot::Sender<Batch<T>>)>(n);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..n {
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((mut w, done)) = next else { break };
                    decode_into(&decoder, &mut w.records, &mut w.spares, &mut w.items);
                    let _ = done.send(Ok(w.items));
                }
            });
        }
        DecodePool { work }
    }

    /// Queues `work` for a decoder, its slot in order on `out`; false once the run loop
    /// stopped taking batches.
    async fn decode(&self, work: Work<T>, out: &mpsc::Sender<Pending<T>>) -> bool {
        let (done, slot) = tokio::sync::oneshot::channel();
        if out.send(Pending::Decoding(slot)).await.is_err() {
            return false;
        }
        self.work.send((work, done)).await.is_ok()
    }
}
