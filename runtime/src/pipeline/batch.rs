//! The unit the front hands to the run loop: a [`Batch`] of records, decoded in place,
//! with the bytes of their lines in one buffer. Batches are recycled whole
//! ([`Recycler`]): each slot keeps its event (whose strings keep their buffers), the
//! buffer its capacity, so that a run in steady state allocates nothing per record.
//!
//! Batch boundaries change nothing downstream: the run loop takes the records of a batch
//! one by one, in order, and the watermark moves per record (see the README's
//! "Semantics"), so the rows are a function of the input, not of how it was cut.

use std::sync::{Arc, Mutex, PoisonError};

use super::record::Envelope;
use crate::error::ProcessorError;

/// Records per batch between the reader and the run loop.
pub(super) const BATCH: usize = 1024;

/// One record of a batch.
pub(super) struct Item<T> {
    pub partition: u32,
    pub offset: u64,
    pub sequence: u64,
    /// The record's JSON bytes in the batch's [`text`](Batch::text) (start, end), when it
    /// came as bytes.
    pub raw: Option<(usize, usize)>,
    /// The event: decoded from `raw`, or as the source gave it. A slot keeps its event
    /// from one use of the batch to the next, to be decoded into again.
    pub event: Option<T>,
    /// What the record's envelope gave, or the decoder found.
    pub envelope: Envelope,
    /// Why `raw` could not be decoded (`event` is then meaningless).
    pub failed: Option<ProcessorError>,
}

/// Records in input order, decoded in place.
pub(super) struct Batch<T> {
    /// The first [`len`](Self::len) are the batch's records; the others are spare slots.
    items: Vec<Item<T>>,
    len: usize,
    /// The bytes of the records that came as bytes (lines of a file, Kafka payloads).
    pub text: Vec<u8>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            items: Vec::new(),
            len: 0,
            text: Vec::new(),
        }
    }
}

impl<T> Batch<T> {
    /// The batch's records.
    pub fn items(&self) -> &[Item<T>] {
        &self.items[..self.len]
    }

    /// The batch's records, to change, and the bytes their `raw` ranges point into.
    pub fn items_mut(&mut self) -> (&mut [Item<T>], &[u8]) {
        (&mut self.items[..self.len], &self.text)
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A record's bytes.
    pub fn raw(&self, item: &Item<T>) -> Option<&[u8]> {
        item.raw.map(|(a, b)| &self.text[a..b])
    }

    /// A new record at the end, in a spare slot if there is one (its event kept).
    pub fn push(&mut self, partition: u32, offset: u64, sequence: u64) -> &mut Item<T> {
        if self.len == self.items.len() {
            self.items.push(Item {
                partition,
                offset,
                sequence,
                raw: None,
                event: None,
                envelope: Envelope::default(),
                failed: None,
            });
        }
        let item = &mut self.items[self.len];
        self.len += 1;
        item.partition = partition;
        item.offset = offset;
        item.sequence = sequence;
        item.raw = None;
        item.failed = None;
        item.envelope.fallback_timestamp = None;
        item
    }

    /// Empties it for the next use: slots and the buffer keep what they hold.
    fn clear(&mut self) {
        self.len = 0;
        self.text.clear();
    }
}

/// Batches kept for reuse at most.
const SPARE_BATCHES: usize = 32;

/// Batches already processed, on their way back to the reader to be read and decoded
/// into again (each slot's event keeps its strings, the text buffer its capacity).
/// Shared by the reader and whoever ends a batch (the run loop, or the last worker that
/// held it); locked once per batch.
pub(super) struct Recycler<T> {
    pool: Arc<Mutex<Vec<Batch<T>>>>,
}

impl<T> Clone for Recycler<T> {
    fn clone(&self) -> Self {
        Recycler {
            pool: Arc::clone(&self.pool),
        }
    }
}

impl<T> Default for Recycler<T> {
    fn default() -> Self {
        Recycler {
            pool: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> Recycler<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Batch<T>>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives back a processed batch.
    pub fn give(&self, mut batch: Batch<T>) {
        batch.clear();
        let mut pool = self.lock();
        if pool.len() < SPARE_BATCHES {
            pool.push(batch);
        }
    }

    /// Gives back a batch shared with workers, if this was its last holder.
    pub fn give_shared(&self, batch: Arc<Batch<T>>) {
        if let Some(batch) = Arc::into_inner(batch) {
            self.give(batch);
        }
    }

    /// An empty batch: a used one if there is one.
    pub fn take(&self) -> Batch<T> {
        self.lock().pop().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_batch_keeps_its_slots_events_and_buffer() {
        let recycler = Recycler::<String>::default();
        let mut b = recycler.take();
        b.text.extend_from_slice(b"abc");
        let item = b.push(0, 7, 1);
        item.raw = Some((0, 3));
        item.event = Some(String::with_capacity(100));
        assert_eq!(b.raw(&b.items()[0]), Some(&b"abc"[..]));
        recycler.give(b);
        let mut b = recycler.take();
        assert!(b.is_empty() && b.text.is_empty() && b.text.capacity() >= 3);
        let item = b.push(0, 9, 2);
        assert_eq!((item.offset, item.raw), (9, None));
        assert!(item.event.as_ref().is_some_and(|e| e.capacity() >= 100));
    }
}
