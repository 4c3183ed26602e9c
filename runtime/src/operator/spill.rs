//! Spilling: when the operator holds more accumulators than a bound, it moves the state
//! of some keys to a [`SpillStore`] (RocksDB) and reads it back when an event or a timer
//! of that key comes. Keys and timers stay in memory; only accumulators move.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::slots::Segment;
use super::{WindowFunction, WindowOperator};
use crate::error::{ProcessorError, ProcessorResult};
use crate::window::WindowTrigger;

/// A synchronous key-value store for spilled accumulators.
pub trait SpillStore: Send + Sync {
    /// Stores a value.
    fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()>;
    /// Reads a value.
    fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>>;
    /// Removes a value.
    fn delete(&self, key: &[u8]) -> ProcessorResult<()>;
}

pub(super) struct Spill<A> {
    store: Arc<dyn SpillStore>,
    prefix: Vec<u8>,
    /// Accumulators kept in memory at most.
    bound: usize,
    /// Accumulators currently spilled.
    pub spilled: usize,
    hand: u32,
    encode: fn(&[Segment<A>]) -> ProcessorResult<Vec<u8>>,
    pub decode: fn(&[u8]) -> ProcessorResult<Vec<Segment<A>>>,
    /// The first failure of the store: the run loop stops on it (state would be lost).
    pub error: Option<ProcessorError>,
}

fn encode<A: Serialize>(segs: &[Segment<A>]) -> ProcessorResult<Vec<u8>> {
    postcard::to_allocvec(segs).map_err(|e| ProcessorError::Serialization(e.to_string()))
}

fn decode<A: DeserializeOwned>(bytes: &[u8]) -> ProcessorResult<Vec<Segment<A>>> {
    postcard::from_bytes(bytes)
        .map_err(|e| ProcessorError::State(format!("a spilled accumulator cannot be read: {e}")))
}

impl<A> Spill<A> {
    pub fn key(&self, id: u32) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// Reads a spilled slot's segments without removing them (checkpoints).
    pub fn peek(&self, id: u32) -> ProcessorResult<Vec<Segment<A>>> {
        match self.store.get(&self.key(id))? {
            Some(bytes) => (self.decode)(&bytes),
            None => Err(ProcessorError::State(format!(
                "spilled state of slot {id} is missing from the spill store"
            ))),
        }
    }
}

impl<K: Hash + Eq, F: WindowFunction, T: WindowTrigger> WindowOperator<K, F, T> {
    /// Keeps at most `max_windows` accumulators in memory; past it, the state of other
    /// keys moves to `store` until they are needed again.
    pub fn with_spill(mut self, store: Arc<dyn SpillStore>, max_windows: usize) -> Self
    where
        F::Acc: Serialize + DeserializeOwned,
    {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let instance = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut prefix = b"\xffspill/".to_vec();
        prefix.extend_from_slice(&std::process::id().to_be_bytes());
        prefix.extend_from_slice(&instance.to_be_bytes());
        self.spill = Some(Spill {
            store,
            prefix,
            bound: max_windows.max(1),
            spilled: 0,
            hand: 0,
            encode: encode::<F::Acc>,
            decode: decode::<F::Acc>,
            error: None,
        });
        self
    }

    /// Accumulators spilled to the store now.
    pub fn spilled_len(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.spilled)
    }

    /// A failure of the spill store, if one happened: the caller must stop (the state of
    /// the key concerned could not be read or written).
    pub fn take_spill_error(&mut self) -> Option<ProcessorError> {
        self.spill.as_mut().and_then(|s| s.error.take())
    }

    /// Brings a spilled slot's accumulators back into memory.
    #[inline]
    pub(super) fn ensure_loaded(&mut self, id: u32) {
        if self.slots.get(id).spilled {
            self.load_spilled(id);
        }
    }

    /// The slow part of [`ensure_loaded`](Self::ensure_loaded): read, decode, delete.
    #[cold]
    fn load_spilled(&mut self, id: u32) {
        let Some(sp) = self.spill.as_mut() else {
            return;
        };
        let key = sp.key(id);
        let loaded = sp
            .store
            .get(&key)
            .and_then(|bytes| match bytes {
                Some(b) => (sp.decode)(&b),
                None => Err(ProcessorError::State(format!(
                    "spilled state of slot {id} is missing from the spill store"
                ))),
            })
            .and_then(|segs| sp.store.delete(&key).map(|()| segs));
        match loaded {
            Ok(segs) => {
                sp.spilled -= segs.len();
                let slot = self.slots.get_mut(id);
                slot.segs = segs;
                slot.spilled = false;
            }
            Err(e) => {
                sp.error.get_or_insert(e);
            }
        }
    }

    /// Spills keys (clock order) until at most three quarters of the bound stay in memory.
    pub(super) fn maybe_spill(&mut self) {
        let Some(sp) = self.spill.as_mut() else {
            return;
        };
        let mut in_memory = self.slots.segment_count() - sp.spilled;
        if in_memory <= sp.bound || sp.error.is_some() {
            return;
        }
        let target = sp.bound * 3 / 4;
        let n = self.slots.capacity() as u32;
        for _ in 0..n {
            if in_memory <= target {
                break;
            }
            let id = sp.hand % n;
            sp.hand = (id + 1) % n;
            let slot = self.slots.get_mut(id);
            if slot.key.is_none() || slot.spilled || slot.segs.is_empty() {
                continue;
            }
            let stored = (sp.encode)(&slot.segs).and_then(|b| sp.store.put(&sp.key(id), &b));
            if let Err(e) = stored {
                sp.error.get_or_insert(e);
                return;
            }
            let count = slot.segs.len();
            slot.segs.clear();
            slot.spilled = true;
            sp.spilled += count;
            in_memory -= count;
        }
    }
}

/// A [`SpillStore`] in memory, for tests.
#[derive(Debug, Default)]
pub struct MemorySpillStore(std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>);

impl MemorySpillStore {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpillStore for MemorySpillStore {
    fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        self.map().insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }
    fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        self.map().remove(key);
        Ok(())
    }
}
