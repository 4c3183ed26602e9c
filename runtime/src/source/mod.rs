//! Sources: JSON-lines files and stdin, in-memory events and channels, and the Kafka
//! source configuration.

mod file;
mod kafka;
mod memory;

pub use file::FileSource;
pub use kafka::KafkaConfig;
pub use memory::{ChannelSource, MemorySource};

use async_trait::async_trait;

use crate::error::ProcessorResult;
use crate::event::ProcessorEvent;

/// What a source yields: an encoded record (to be decoded by the pipeline), an event,
/// or an event already in its envelope (timestamp, key, partition given).
#[derive(Debug, Clone)]
pub enum Payload<T> {
    /// JSON bytes of one event.
    Bytes(Vec<u8>),
    /// A decoded event.
    Event(T),
    /// An event in its envelope.
    Envelope(ProcessorEvent<T>),
}

/// One record of a source and where it was read.
#[derive(Debug, Clone)]
pub struct SourceRecord<T> {
    /// The record.
    pub payload: Payload<T>,
    /// Source partition (watermarks are per partition).
    pub partition: u32,
    /// Position inside the partition: byte offset of a line, index of an event.
    pub offset: u64,
    /// 1-based line or record number, for error messages.
    pub sequence: u64,
}

/// Something that yields records; `Ok(None)` means a bounded source has ended.
#[async_trait]
pub trait EventSource<T>: Send {
    /// The next record.
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<T>>>;
    /// Appends up to `max` records to `out` (at least one unless the source ended), and
    /// returns whether more may come (`false`: the source ended). The run loop takes
    /// records in these batches: one channel operation per batch, not per record. A live
    /// source should return what it has rather than wait for `max`. The default takes one
    /// record; sources that can do better override it.
    async fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<SourceRecord<T>>,
    ) -> ProcessorResult<bool>
    where
        T: Send,
    {
        let _ = max;
        match self.next().await? {
            Some(r) => {
                out.push(r);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    /// Takes back the byte buffers of records already processed (the vectors of
    /// [`Payload::Bytes`]), so that a source reading bytes can read into them instead of
    /// allocating one per record. The run loop hands them back in batches; the default
    /// lets them go. A source keeps at most what it needs and drops the rest.
    fn recycle(&mut self, buffers: &mut Vec<Vec<u8>>) {
        buffers.clear();
    }
    /// Whether the source is JSON lines read as bytes ([`read_lines`](Self::read_lines)):
    /// the pipeline then cuts the bytes into lines itself, a batch of whole lines in one
    /// buffer, and decodes them in place, with no buffer per line (files and stdin). By
    /// default no: records come from [`next_batch`](Self::next_batch).
    fn reads_lines(&self) -> bool {
        false
    }
    /// For a source that [`reads_lines`](Self::reads_lines): appends the next bytes of its
    /// input to `buf` (about `want` of them; a live stream what it has, at least one byte)
    /// and returns how many (0: the input ended). A line may span two reads; the caller
    /// cuts them. The first byte is at [`line_origin`](Self::line_origin).
    async fn read_lines(&mut self, buf: &mut Vec<u8>, want: usize) -> ProcessorResult<usize> {
        let _ = (buf, want);
        Err(crate::error::ProcessorError::Internal(format!(
            "source {} is not read as lines",
            self.describe()
        )))
    }
    /// For a source that [`reads_lines`](Self::reads_lines), before its first
    /// [`read_lines`](Self::read_lines): the byte offset of the next byte and the number of
    /// lines before it (both 0 at the start, those after the checkpoint's record after a
    /// [`seek`](Self::seek)).
    fn line_origin(&self) -> (u64, u64) {
        (0, 0)
    }
    /// A short description for logs and dead letters (`file:events.jsonl`, `stdin`).
    fn describe(&self) -> String;
    /// The partitions it reads, known before the first record.
    fn partitions(&self) -> Vec<u32> {
        vec![0]
    }
    /// Whether [`seek`](Self::seek) can bring it back to a checkpoint's positions (a file
    /// or Kafka can; standard input cannot be replayed). Pipelines over a source that
    /// cannot resume take no checkpoints.
    fn resumable(&self) -> bool {
        false
    }
    /// Resumes after a checkpoint: the next record is the one after `positions` (the last
    /// record processed in each partition).
    async fn seek(&mut self, positions: &[SourcePosition]) -> ProcessorResult<()> {
        let _ = positions;
        Err(crate::error::ProcessorError::State(format!(
            "source {} cannot resume from a checkpoint: its records cannot be read again; remove the checkpoint directory to start over",
            self.describe()
        )))
    }
}

/// The last record processed in one partition, as a checkpoint stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition {
    /// The partition.
    pub partition: u32,
    /// The record's [`SourceRecord::offset`].
    pub offset: u64,
    /// The record's [`SourceRecord::sequence`].
    pub sequence: u64,
}
