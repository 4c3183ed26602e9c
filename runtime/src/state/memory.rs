use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::sealed_file::{read_sealed, write_sealed};
use super::StateBackend;
use crate::error::{ProcessorError, ProcessorResult};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// State in memory: for development, tests and the embedded default. Checkpoints are
/// copies kept in memory (the last 3 by default, see [`with_retention`](Self::with_retention)),
/// and also written to files when the backend is [`persistent`](Self::persistent), so that
/// a restarted process finds them.
#[derive(Debug)]
pub struct MemoryStateBackend {
    data: Mutex<Map>,
    checkpoints: Mutex<BTreeMap<u64, Map>>,
    retention: usize,
    dir: Option<PathBuf>,
}

impl Default for MemoryStateBackend {
    fn default() -> Self {
        MemoryStateBackend {
            data: Mutex::new(Map::new()),
            checkpoints: Mutex::new(BTreeMap::new()),
            retention: 3,
            dir: None,
        }
    }
}

/// First bytes of a checkpoint file.
const MAGIC: &[u8; 8] = b"LOPMEMC1";

fn file_name(id: u64) -> String {
    format!("checkpoint-{id:020}.bin")
}

fn io_err(path: &Path, e: std::io::Error) -> ProcessorError {
    ProcessorError::io(path.display().to_string(), e)
}

/// Ids of the complete checkpoint files in `dir`.
fn list_files(dir: &Path) -> ProcessorResult<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name
            .strip_prefix("checkpoint-")
            .and_then(|r| r.strip_suffix(".bin"))
            .and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

fn write_file(dir: &Path, id: u64, map: &Map) -> ProcessorResult<()> {
    let body =
        postcard::to_allocvec(map).map_err(|e| ProcessorError::Serialization(e.to_string()))?;
    write_sealed(&dir.join(file_name(id)), MAGIC, id, &body)
}

fn read_file(dir: &Path, id: u64) -> ProcessorResult<Map> {
    let path = dir.join(file_name(id));
    let body = read_sealed(&path, MAGIC, Some(id))?
        .ok_or_else(|| io_err(&path, std::io::ErrorKind::NotFound.into()))?;
    postcard::from_bytes(&body).map_err(|e| {
        ProcessorError::State(format!(
            "checkpoint file {} is corrupted ({e}); remove it to fall back to an earlier checkpoint",
            path.display()
        ))
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryStateBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend whose checkpoints are also written to files in `dir` (created when
    /// needed): a restarted process lists and restores them.
    pub fn persistent(dir: impl AsRef<Path>) -> Self {
        MemoryStateBackend {
            dir: Some(dir.as_ref().to_path_buf()),
            ..Self::default()
        }
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
        if let Some(dir) = &self.dir {
            write_file(dir, checkpoint_id, &snapshot)?;
            let ids = list_files(dir)?;
            for id in &ids[..ids.len().saturating_sub(self.retention)] {
                let old = dir.join(file_name(*id));
                std::fs::remove_file(&old).map_err(|e| io_err(&old, e))?;
            }
        }
        let mut cps = lock(&self.checkpoints);
        cps.insert(checkpoint_id, snapshot);
        while cps.len() > self.retention {
            cps.pop_first();
        }
        Ok(())
    }
    async fn restore(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let kept = lock(&self.checkpoints).get(&checkpoint_id).cloned();
        let snapshot = match (kept, &self.dir) {
            (Some(s), _) => s,
            (None, Some(dir)) if list_files(dir)?.contains(&checkpoint_id) => {
                read_file(dir, checkpoint_id)?
            }
            (None, _) => {
                return Err(ProcessorError::State(format!(
                    "no checkpoint {checkpoint_id}; the checkpoints kept are {:?}",
                    self.list_checkpoints().await?
                )))
            }
        };
        *lock(&self.data) = snapshot;
        Ok(())
    }
    fn checkpoint_root(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
    async fn list_checkpoints(&self) -> ProcessorResult<Vec<u64>> {
        let mut ids: Vec<u64> = lock(&self.checkpoints).keys().copied().collect();
        if let Some(dir) = &self.dir {
            ids.extend(list_files(dir)?);
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
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
    async fn persistent_checkpoints_survive_the_process_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let b = MemoryStateBackend::persistent(dir.path()).with_retention(2);
        for id in 1..=3 {
            b.put(b"k", &[id as u8]).await.unwrap();
            b.checkpoint(id).await.unwrap();
        }
        drop(b);
        let again = MemoryStateBackend::persistent(dir.path());
        assert_eq!(again.list_checkpoints().await.unwrap(), vec![2, 3]);
        again.restore(3).await.unwrap();
        assert_eq!(again.get(b"k").await.unwrap(), Some(vec![3]));

        let file = dir.path().join(file_name(3));
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let e = MemoryStateBackend::persistent(dir.path())
            .restore(3)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupted (checksum mismatch)"), "{e}");
        std::fs::write(&file, &bytes[..10]).unwrap();
        let e = MemoryStateBackend::persistent(dir.path())
            .restore(3)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupted"), "{e}");
        // A half-written checkpoint (no final name) is not listed.
        std::fs::write(
            dir.path().join("checkpoint-00000000000000000009.bin.tmp"),
            b"x",
        )
        .unwrap();
        assert_eq!(
            MemoryStateBackend::persistent(dir.path())
                .list_checkpoints()
                .await
                .unwrap(),
            vec![2, 3]
        );
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
