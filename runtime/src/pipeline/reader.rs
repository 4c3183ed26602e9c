//! The reader task: it takes the source's input in batches and has them decoded, off the
//! run loop. A JSON-lines source (file, stdin) is read as bytes, a few hundred KB at a
//! time, and cut into lines of one buffer (no allocation per line); other sources give
//! records ([`EventSource::next_batch`]). With several decoders, each batch is decoded by
//! whichever is free, and the run loop takes the batches back in the order they were read
//! (a slot per batch, queued in order), so the watermark still moves in input order.

use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::batch::{Batch, Recycler};
use super::decode::JsonDecoder;
use super::record::Envelope;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::EventTimestamp;
use crate::source::{EventSource, Payload, SourceRecord};
use crate::time::to_millis;

/// Bytes read per batch of lines, per record of the batch size.
const BYTES_PER_RECORD: usize = 256;

/// A batch on its way from the reader to the run loop: decoded, or being decoded.
pub(super) enum Pending<T> {
    Ready(ProcessorResult<Batch<T>>),
    Decoding(Slot<T>),
}

/// Starts the reader task: batches of up to `batch` records into a channel holding
/// `buffer` records' worth of batches (the backpressure bound), until the source ends or
/// fails (the error is the last message). Batches come back through `recycler`.
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
    let pool = (decoders > 1).then(|| DecodePool::start(decoders, decoder));
    let task = tokio::spawn(async move {
        let mut lines = source.reads_lines().then(|| Lines::new(&*source));
        let mut records: Vec<SourceRecord<T>> = Vec::with_capacity(batch);
        let mut spent: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = recycler.take();
            let read = match lines.as_mut() {
                Some(lines) => lines.read(&mut *source, &mut next, batch).await,
                None => fill(&mut *source, &mut records, &mut spent, &mut next, batch).await,
            };
            let more = match read {
                Ok(more) => more,
                Err(e) => {
                    let _ = tx.send(Pending::Ready(Err(e))).await;
                    break;
                }
            };
            if !next.is_empty() {
                let sent = match &pool {
                    Some(pool) => pool.decode(next, &tx).await,
                    None => {
                        decoder.decode_batch(&mut next);
                        tx.send(Pending::Ready(Ok(next))).await.is_ok()
                    }
                };
                if !sent {
                    break;
                }
            } else {
                recycler.give(next);
            }
            if !more {
                break;
            }
        }
    });
    (rx, task)
}

/// Fills `batch` with the source's next records (those that came as bytes are copied
/// into the batch's text, their buffers handed back to the source). Returns whether more
/// may come.
async fn fill<T: Send>(
    source: &mut dyn EventSource<T>,
    records: &mut Vec<SourceRecord<T>>,
    spent: &mut Vec<Vec<u8>>,
    batch: &mut Batch<T>,
    max: usize,
) -> ProcessorResult<bool> {
    let more = source.next_batch(max, records).await?;
    for r in records.drain(..) {
        let start = batch.text.len();
        if let Payload::Bytes(bytes) = &r.payload {
            batch.text.extend_from_slice(bytes);
        }
        let end = batch.text.len();
        let item = batch.push(r.partition, r.offset, r.sequence);
        match r.payload {
            Payload::Bytes(bytes) => {
                item.raw = Some((start, end));
                spent.push(bytes);
            }
            Payload::Event(e) => {
                item.event = Some(e);
                item.envelope = Envelope::default();
            }
            Payload::Envelope(pe) => {
                let timestamp = match pe.timestamp {
                    EventTimestamp::Event(t) | EventTimestamp::Ingestion(t) => Some(to_millis(t)),
                    EventTimestamp::Processing(_) => None,
                };
                item.event = Some(pe.data);
                item.envelope = Envelope {
                    timestamp,
                    key: pe.key,
                    ..Envelope::default()
                };
            }
        }
    }
    if !spent.is_empty() {
        source.recycle(spent);
        spent.clear();
    }
    Ok(more)
}

/// Where the reader is in a JSON-lines input: the bytes read but not yet cut into a
/// batch, and the offset and line number they start at.
struct Lines {
    /// Bytes after the last line handed on (a partial line, or lines past a full batch).
    carry: Vec<u8>,
    /// Byte offset of `carry`'s first byte.
    offset: u64,
    /// Lines before it.
    line: u64,
    ended: bool,
    /// A live stream (stdin, a socket: it cannot be read again).
    live: bool,
}

impl Lines {
    fn new<T>(source: &dyn EventSource<T>) -> Self {
        let (offset, line) = source.line_origin();
        Lines {
            carry: Vec::new(),
            offset,
            line,
            ended: false,
            live: !source.resumable(),
        }
    }

    /// Fills `batch` with up to `max` lines (blank lines are counted, not kept), reading
    /// as needed; returns whether more may come.
    async fn read<T: Send>(
        &mut self,
        source: &mut dyn EventSource<T>,
        batch: &mut Batch<T>,
        max: usize,
    ) -> ProcessorResult<bool> {
        let want = max.saturating_mul(BYTES_PER_RECORD).clamp(4 << 10, 4 << 20);
        batch.text.extend_from_slice(&self.carry);
        self.carry.clear();
        let mut cut = 0; // bytes of `text` cut into lines
        let mut searched = 0; // no newline in `text[cut..searched]` (a long line's start)
        let mut lines = 0;
        let mut read = false;
        loop {
            while lines < max {
                let from = searched.max(cut);
                let Some(n) = memchr::memchr(b'\n', &batch.text[from..]) else {
                    searched = batch.text.len();
                    break;
                };
                let end = from + n;
                self.line(batch, cut, end);
                cut = end + 1;
                lines += 1;
            }
            // A live stream hands on the lines it has (those left from the last read
            // included) instead of waiting for more input.
            if lines >= max || (lines > 0 && (read || self.live)) {
                break;
            }
            if self.ended {
                if cut < batch.text.len() {
                    // The last line, without its newline.
                    let end = batch.text.len();
                    self.line(batch, cut, end);
                    cut = end;
                }
                break;
            }
            if source.read_lines(&mut batch.text, want).await? == 0 {
                self.ended = true;
            }
            read = true;
        }
        self.carry.extend_from_slice(&batch.text[cut..]);
        batch.text.truncate(cut);
        self.offset += cut as u64;
        Ok(!(self.ended && self.carry.is_empty()))
    }

    /// Adds the line `text[start..end]` (without its newline) to `batch`, unless blank.
    fn line<T>(&mut self, batch: &mut Batch<T>, start: usize, mut end: usize) {
        self.line += 1;
        let text = &batch.text;
        while end > start && text[end - 1] == b'\r' {
            end -= 1;
        }
        if text[start..end].iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let item = batch.push(0, self.offset + start as u64, self.line);
        item.raw = Some((start, end));
    }
}

/// A batch to decode and where its decoded self goes.
type Work<T> = (Batch<T>, oneshot::Sender<ProcessorResult<Batch<T>>>);

/// A decoded batch, when it is ready.
pub(super) type Slot<T> = oneshot::Receiver<ProcessorResult<Batch<T>>>;

/// Decoder tasks taking batches from one queue (the reader's, and a Kafka run's decode
/// task's): whoever hands them batches keeps their slots in order.
pub(super) struct DecodePool<T> {
    work: mpsc::Sender<Work<T>>,
}

/// Decoder tasks for a run: one per core, at most 4.
pub(super) fn decoders() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl<T: DeserializeOwned + Send + 'static> DecodePool<T> {
    /// `n` decoder tasks.
    pub fn start(n: usize, decoder: JsonDecoder<T>) -> Self {
        let (work, rx) = mpsc::channel::<Work<T>>(n);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..n {
            let rx = Arc::clone(&rx);
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((mut batch, done)) = next else { break };
                    decoder.decode_batch(&mut batch);
                    let _ = done.send(Ok(batch));
                }
            });
        }
        DecodePool { work }
    }

    /// Queues `batch` for a decoder, its slot in order on `out`; false once the run loop
    /// stopped taking batches.
    async fn decode(&self, batch: Batch<T>, out: &mpsc::Sender<Pending<T>>) -> bool {
        match self.submit(batch).await {
            Some(slot) => out.send(Pending::Decoding(slot)).await.is_ok(),
            None => false,
        }
    }

    /// Queues `batch` for a decoder; its decoded self comes in the slot returned (`None`
    /// once the decoders are gone).
    pub async fn submit(&self, batch: Batch<T>) -> Option<Slot<T>> {
        let (done, slot) = oneshot::channel();
        self.work.send((batch, done)).await.ok()?;
        Some(slot)
    }
}

/// The decoded batch of the slot in `waiting`, which stays there while the wait lasts: a
/// wait dropped by the run loop's `select!` (a tick came first) loses nothing, the next
/// wait takes it up.
pub(super) async fn decoded<T>(waiting: &mut Option<Slot<T>>) -> ProcessorResult<Batch<T>> {
    let Some(slot) = waiting.as_mut() else {
        return Err(ProcessorError::Internal("no batch being decoded".into()));
    };
    let batch = slot
        .await
        .unwrap_or_else(|_| Err(ProcessorError::Internal("a decoder stopped early".into())));
    *waiting = None;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FeedbackEvent;
    use crate::source::FileSource;
    use tokio::io::AsyncWriteExt;

    /// A live stream that sends more lines than a batch holds in one write and then stays
    /// open: every line reaches the run loop without waiting for more input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_stream_hands_on_every_line_it_has() {
        let (mut writer, reader) = tokio::io::duplex(1 << 20);
        let lines: String = (0..1_500)
            .map(|i| format!("{{\"timestamp\":{i},\"latency_ms\":{i}}}\n"))
            .collect();
        writer.write_all(lines.as_bytes()).await.unwrap();
        let (mut rx, _task) = spawn_reader(
            Box::new(FileSource::from_reader("test", reader)),
            JsonDecoder::<FeedbackEvent>::serde(None),
            Recycler::default(),
            10_000,
            1_024,
            1,
        );
        let mut got = 0;
        while got < 1_500 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
                .await
                .expect("the lines already read, without more input")
                .expect("a batch");
            let Pending::Ready(Ok(batch)) = next else {
                panic!("a decoded batch")
            };
            for item in batch.items() {
                assert_eq!(item.sequence, got + 1);
                got += 1;
            }
        }
        drop(writer);
    }
}
