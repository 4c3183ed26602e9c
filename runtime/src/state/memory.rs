use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::StateBackend;
use crate::error::{ProcessorError, ProcessorResult};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// State in memory: for development, tests and the embedded default. Checkpoints are
/// copies kept in memory (the last 3 by default, see [`with_retention`](Self::with_retention)).
#[derive(Debug)]
pub struct MemoryStateBackend {
    data: Mutex<Map>,
    checkpoints: Mutex<BTreeMap<u64, Map>>,
    retention: usize,
}

impl Default for MemoryStateBackend {
    fn default() -> Self {
        MemoryStateBackend {
            data: Mutex::new(Map::new()),
            checkpoints: Mutex::new(BTreeMap::new()),
            retention: 3,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStateBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the last `n` checkpoints (at least 1).
    pub fn with_retention(mut self, n: usize) -> Self {
        self.retention = n.max(1);
        self
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        lock(&self.data).len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values held.
    pub fn size_bytes(&self) -> usize {
        lock(&self.data)
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

#[async_trait]
impl StateBackend for MemoryStateBackend {
    async fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        Ok(lock(&self.data).get(key).cloned())
    }
    async fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        lock(&self.data).insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    async fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        lock(&self.data).remove(key);
        Ok(())
    }
    async fn scan_prefix(&self, prefix: &[u8]) -> ProcessorResult<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(lock(&self.data)
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn checkpoint(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let snapshot = lock(&self.data).clone();
        let mut cps = lock(&self.checkpoints);
        cps.insert(checkpoint_id, snapshot);
        while cps.len() > self.retention {
            cps.pop_first();
        }
        Ok(())
    }
    async fn restore(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let cps = lock(&self.checkpoints);
        let snapshot = cps.get(&checkpoint_id).ok_or_else(|| {
            ProcessorError::State(format!(
                "no checkpoint {checkpoint_id}; the checkpoints kept are {:?}",
                cps.keys().collect::<Vec<_>>()
            ))
        })?;
        *lock(&self.data) = snapshot.clone();
        Ok(())
    }
    async fn list_checkpoints(&self) -> ProcessorResult<Vec<u64>> {
        Ok(lock(&self.checkpoints).keys().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retention_and_restore_errors() {
        let b = MemoryStateBackend::new().with_retention(2);
        for id in 1..=3 {
            b.put(b"k", &[id as u8]).await.unwrap();
            b.checkpoint(id).await.unwrap();
        }
        assert_eq!(b.list_checkpoints().await.unwrap(), vec![2, 3]);
        let e = b.restore(1).await.unwrap_err().to_string();
        assert!(e.contains("no checkpoint 1"), "{e}");
        b.restore(2).await.unwrap();
        assert_eq!(b.get(b"k").await.unwrap(), Some(vec![2]));
    }

    #[tokio::test]
    async fn prefix_scan_is_bounded() {
        let b = MemoryStateBackend::new();
        b.put(b"a/1", b"x").await.unwrap();
        b.put(b"a/2", b"y").await.unwrap();
        b.put(b"b/1", b"z").await.unwrap();
        assert_eq!(b.scan_prefix(b"a/").await.unwrap().len(), 2);
    }
}
