use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{EventSource, Payload, SourcePosition, SourceRecord};
use crate::error::ProcessorResult;
use crate::event::ProcessorEvent;

/// Events from memory: plain events, or envelopes carrying their own timestamp, key and
/// partition.
pub struct MemorySource<T> {
    items: std::vec::IntoIter<Payload<T>>,
    partitions: Vec<u32>,
    index: u64,
}

impl<T> std::fmt::Debug for MemorySource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("remaining", &self.items.len())
            .finish()
    }
}

impl<T> MemorySource<T> {
    /// These events, in order, on partition 0.
    pub fn new(events: impl IntoIterator<Item = T>) -> Self {
        MemorySource {
            items: events
                .into_iter()
                .map(Payload::Event)
                .collect::<Vec<_>>()
                .into_iter(),
            partitions: vec![0],
            index: 0,
        }
    }

    /// These envelopes, in order; each on the partition its metadata names.
    pub fn from_envelopes(events: impl IntoIterator<Item = ProcessorEvent<T>>) -> Self {
        let items: Vec<_> = events.into_iter().map(Payload::Envelope).collect();
        let mut partitions: Vec<u32> = items
            .iter()
            .map(|p| match p {
                Payload::Envelope(e) => e.metadata.partition,
                _ => 0,
            })
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        if partitions.is_empty() {
            partitions.push(0);
        }
        MemorySource {
            items: items.into_iter(),
            partitions,
            index: 0,
        }
    }

    /// JSON lines given as bytes, to be decoded by the pipeline.
    pub fn from_json_lines(lines: impl IntoIterator<Item = Vec<u8>>) -> Self {
        MemorySource {
            items: lines
                .into_iter()
                .map(Payload::Bytes)
                .collect::<Vec<_>>()
                .into_iter(),
            partitions: vec![0],
            index: 0,
        }
    }
}

#[async_trait]
impl<T: Send> EventSource<T> for MemorySource<T> {
    async fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<SourceRecord<T>>,
    ) -> ProcessorResult<bool> {
        for _ in 0..max.max(1) {
            match self.next().await? {
                Some(r) => out.push(r),
                None => return Ok(false),
            }
        }
        Ok(true)
    }
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<T>>> {
        Ok(self.items.next().map(|payload| {
            let partition = match &payload {
                Payload::Envelope(e) => e.metadata.partition,
                _ => 0,
            };
            let i = self.index;
            self.index += 1;
            SourceRecord {
                payload,
                partition,
                offset: i,
                sequence: i + 1,
            }
        }))
    }
    fn describe(&self) -> String {
        "memory".into()
    }
    fn partitions(&self) -> Vec<u32> {
        self.partitions.clone()
    }
    fn resumable(&self) -> bool {
        true
    }
    async fn seek(&mut self, positions: &[SourcePosition]) -> ProcessorResult<()> {
        // Offsets are indexes into the whole sequence, so the largest one is the last
        // record processed.
        if let Some(last) = positions.iter().map(|p| p.offset).max() {
            while self.index <= last && self.items.next().is_some() {
                self.index += 1;
            }
        }
        Ok(())
    }
}

/// Events sent through a tokio channel; the source ends when every sender is dropped.
#[derive(Debug)]
pub struct ChannelSource<T> {
    rx: mpsc::Receiver<T>,
    index: u64,
}

impl<T> ChannelSource<T> {
    fn record(&mut self, e: T) -> SourceRecord<T> {
        let i = self.index;
        self.index += 1;
        SourceRecord {
            payload: Payload::Event(e),
            partition: 0,
            offset: i,
            sequence: i + 1,
        }
    }

    /// Reads from this receiver.
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        ChannelSource { rx, index: 0 }
    }
}

#[async_trait]
impl<T: Send> EventSource<T> for ChannelSource<T> {
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<T>>> {
        Ok(self.rx.recv().await.map(|e| self.record(e)))
    }
    async fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<SourceRecord<T>>,
    ) -> ProcessorResult<bool> {
        // Wait for one, then take what is already there.
        let Some(first) = self.rx.recv().await else {
            return Ok(false);
        };
        out.push(self.record(first));
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(e) => out.push(self.record(e)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Ok(false),
            }
        }
        Ok(true)
    }
    fn describe(&self) -> String {
        "channel".into()
    }
}
