use async_trait::async_trait;
use rocksdb::{checkpoint::Checkpoint, Direction, IteratorMode, Options, DB};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::StateBackend;
use crate::error::{ProcessorError, ProcessorResult};

/// Name of the file that seals a checkpoint directory: every file of the checkpoint with
/// its size and CRC-32. A directory without it is a checkpoint cut short and is ignored.
const SEAL: &str = "CHECKPOINT-SEAL";

/// State in RocksDB (crate `rocksdb`, RocksDB vendored), for production.
///
/// The pipeline keeps accumulators in memory and writes them here at checkpoints (not
/// per event). [`checkpoint`](StateBackend::checkpoint) makes a RocksDB checkpoint (hard
/// links to the immutable table files) in `checkpoint_path/checkpoint-<id>`, sealed by a
/// file listing every file's size and CRC-32, so a checkpoint cut short by a crash is never
/// listed and a damaged one is refused with the file named.
/// [`restore`](StateBackend::restore) verifies the seal, then replaces the state directory
/// by the checkpoint. The last 3 checkpoints are kept (see
/// [`with_retention`](Self::with_retention)).
///
/// ```
/// use llm_optimizer_processor::state::*;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let state_backend = RocksDBStateBackend::new(dir.path().join("state"), dir.path().join("checkpoints"))?;
/// state_backend.put(b"k", b"v1").await?;
/// state_backend.checkpoint(1).await?;
/// state_backend.put(b"k", b"v2").await?;
/// state_backend.restore(1).await?;
/// assert_eq!(state_backend.get(b"k").await?, Some(b"v1".to_vec()));
/// # Ok::<(), llm_optimizer_processor::ProcessorError>(()) }).unwrap();
/// ```
pub struct RocksDBStateBackend {
    state_path: PathBuf,
    checkpoint_path: PathBuf,
    retention: usize,
    db: Arc<RwLock<Option<DB>>>,
}

impl std::fmt::Debug for RocksDBStateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDBStateBackend")
            .field("state_path", &self.state_path)
            .field("checkpoint_path", &self.checkpoint_path)
            .field("retention", &self.retention)
            .finish()
    }
}

fn db_err(path: &Path, e: rocksdb::Error) -> ProcessorError {
    ProcessorError::State(format!("RocksDB at {}: {e}", path.display()))
}

fn io_err(path: &Path, e: std::io::Error) -> ProcessorError {
    ProcessorError::io(path.display().to_string(), e)
}

fn options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o
}

fn dir_name(id: u64) -> String {
    format!("checkpoint-{id:020}")
}

fn sync_dir(dir: &Path) -> ProcessorResult<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// `(file name, size, crc32)` of every file in `dir` but the seal, sorted by name.
fn inventory(dir: &Path) -> ProcessorResult<Vec<(String, u64, u32)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == SEAL {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        files.push((name, bytes.len() as u64, crc32fast::hash(&bytes)));
    }
    files.sort();
    Ok(files)
}

impl RocksDBStateBackend {
    /// Opens (or creates) the state at `state_path`; checkpoints go to `checkpoint_path`.
    pub fn new(
        state_path: impl AsRef<Path>,
        checkpoint_path: impl AsRef<Path>,
    ) -> ProcessorResult<Self> {
        let state_path = state_path.as_ref().to_path_buf();
        let checkpoint_path = checkpoint_path.as_ref().to_path_buf();
        std::fs::create_dir_all(&checkpoint_path).map_err(|e| io_err(&checkpoint_path, e))?;
        let db = DB::open(&options(), &state_path).map_err(|e| db_err(&state_path, e))?;
        Ok(RocksDBStateBackend {
            state_path,
            checkpoint_path,
            retention: 3,
            db: Arc::new(RwLock::new(Some(db))),
        })
    }

    /// Keeps the last `n` checkpoints (at least 1).
    pub fn with_retention(mut self, n: usize) -> Self {
        self.retention = n.max(1);
        self
    }

    /// Where the live state is.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.checkpoint_path.join(dir_name(id))
    }

    fn read(&self) -> ProcessorResult<RwLockReadGuard<'_, Option<DB>>> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            return Err(self.closed());
        }
        Ok(guard)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<DB>> {
        self.db.write().unwrap_or_else(|e| e.into_inner())
    }

    fn closed(&self) -> ProcessorError {
        ProcessorError::State(format!(
            "RocksDB at {} is closed after a failed restore; restore another checkpoint",
            self.state_path.display()
        ))
    }

    /// Checks a checkpoint's seal against its files.
    fn verify(&self, id: u64) -> ProcessorResult<()> {
        let dir = self.checkpoint_dir(id);
        let seal = dir.join(SEAL);
        let text = std::fs::read_to_string(&seal).map_err(|e| {
            ProcessorError::State(format!(
                "checkpoint {id} at {} is incomplete: {e}",
                dir.display()
            ))
        })?;
        let bad = |what: String| {
            ProcessorError::State(format!(
                "checkpoint {id} at {} is corrupted: {what}",
                dir.display()
            ))
        };
        let mut expected = Vec::new();
        for line in text.lines() {
            let mut parts = line.rsplitn(3, ' ');
            let (Some(crc), Some(len), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad(format!("unreadable seal line `{line}`")));
            };
            let (Ok(len), Ok(crc)) = (len.parse::<u64>(), u32::from_str_radix(crc, 16)) else {
                return Err(bad(format!("unreadable seal line `{line}`")));
            };
            expected.push((name.to_owned(), len, crc));
        }
        let found = inventory(&dir)?;
        for (name, len, crc) in &expected {
            match found.iter().find(|(n, _, _)| n == name) {
                None => return Err(bad(format!("file {name} is missing"))),
                Some((_, l, _)) if l != len => {
                    return Err(bad(format!("file {name} has {l} bytes, sealed with {len}")))
                }
                Some((_, _, c)) if c != crc => {
                    return Err(bad(format!("file {name} fails its checksum")))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StateBackend for RocksDBStateBackend {
    async fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        let guard = self.read()?;
        let db = guard.as_ref().expect("checked open");
        db.get(key).map_err(|e| db_err(&self.state_path, e))
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        let guard = self.read()?;
        let db = guard.as_ref().expect("checked open");
        db.put(key, value).map_err(|e| db_err(&self.state_path, e))
    }

    async fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        let guard = self.read()?;
        let db = guard.as_ref().expect("checked open");
        db.delete(key).map_err(|e| db_err(&self.state_path, e))
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> ProcessorResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let guard = self.read()?;
        let db = guard.as_ref().expect("checked open");
        let mut out = Vec::new();
        for item in db.iterator(IteratorMode::From(prefix, Direction::Forward)) {
            let (k, v) = item.map_err(|e| db_err(&self.state_path, e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    async fn checkpoint(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let done = self.checkpoint_dir(checkpoint_id);
        let tmp = self
            .checkpoint_path
            .join(format!(".tmp-{}", dir_name(checkpoint_id)));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        }
        {
            let guard = self.read()?;
            let db = guard.as_ref().expect("checked open");
            Checkpoint::new(db)
                .and_then(|c| c.create_checkpoint(&tmp))
                .map_err(|e| db_err(&tmp, e))?;
        }
        let mut seal = String::new();
        for (name, len, crc) in inventory(&tmp)? {
            seal.push_str(&format!("{name} {len} {crc:08x}\n"));
        }
        let seal_path = tmp.join(SEAL);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&seal_path).map_err(|e| io_err(&seal_path, e))?;
            f.write_all(seal.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(&seal_path, e))?;
        }
        sync_dir(&tmp)?;
        if done.exists() {
            std::fs::remove_dir_all(&done).map_err(|e| io_err(&done, e))?;
        }
        std::fs::rename(&tmp, &done).map_err(|e| io_err(&done, e))?;
        sync_dir(&self.checkpoint_path)?;
        let ids = self.list_checkpoints().await?;
        for id in &ids[..ids.len().saturating_sub(self.retention)] {
            let old = self.checkpoint_dir(*id);
            std::fs::remove_dir_all(&old).map_err(|e| io_err(&old, e))?;
        }
        Ok(())
    }

    async fn restore(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        self.verify(checkpoint_id)?;
        let dir = self.checkpoint_dir(checkpoint_id);
        let mut guard = self.write();
        // Close the live database before its directory is replaced.
        guard.take();
        if self.state_path.exists() {
            std::fs::remove_dir_all(&self.state_path).map_err(|e| io_err(&self.state_path, e))?;
        }
        std::fs::create_dir_all(&self.state_path).map_err(|e| io_err(&self.state_path, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            if name == SEAL {
                continue;
            }
            let to = self.state_path.join(&name);
            // Table files are immutable: share them; copy the rest, which RocksDB rewrites.
            let linked = name.to_string_lossy().ends_with(".sst")
                && std::fs::hard_link(entry.path(), &to).is_ok();
            if !linked {
                std::fs::copy(entry.path(), &to).map_err(|e| io_err(&to, e))?;
            }
        }
        sync_dir(&self.state_path)?;
        let db = DB::open(&options(), &self.state_path).map_err(|e| db_err(&self.state_path, e))?;
        *guard = Some(db);
        Ok(())
    }

    fn checkpoint_root(&self) -> Option<&std::path::Path> {
        Some(&self.checkpoint_path)
    }
    fn spill_store(&self) -> Option<Arc<dyn crate::operator::SpillStore>> {
        Some(Arc::new(RocksSpill {
            db: Arc::clone(&self.db),
            path: self.state_path.clone(),
        }))
    }

    async fn list_checkpoints(&self) -> ProcessorResult<Vec<u64>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.checkpoint_path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err(&self.checkpoint_path, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(id) = name
                .to_string_lossy()
                .strip_prefix("checkpoint-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                if entry.path().join(SEAL).exists() {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }
}

/// Spilled accumulators in the live database, written without the write-ahead log: after
/// a crash the state comes from a checkpoint, never from spilled values.
struct RocksSpill {
    db: Arc<RwLock<Option<DB>>>,
    path: PathBuf,
}

impl RocksSpill {
    fn with<R>(&self, f: impl FnOnce(&DB) -> Result<R, rocksdb::Error>) -> ProcessorResult<R> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let db = guard.as_ref().ok_or_else(|| {
            ProcessorError::State(format!("RocksDB at {} is closed", self.path.display()))
        })?;
        f(db).map_err(|e| db_err(&self.path, e))
    }
}

impl crate::operator::SpillStore for RocksSpill {
    fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()> {
        let mut o = rocksdb::WriteOptions::default();
        o.disable_wal(true);
        self.with(|db| db.put_opt(key, value, &o))
    }
    fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>> {
        self.with(|db| db.get(key))
    }
    fn delete(&self, key: &[u8]) -> ProcessorResult<()> {
        let mut o = rocksdb::WriteOptions::default();
        o.disable_wal(true);
        self.with(|db| db.delete_opt(key, &o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checkpoints_restore_and_retention() {
        let dir = tempfile::tempdir().unwrap();
        let b = RocksDBStateBackend::new(dir.path().join("s"), dir.path().join("c"))
            .unwrap()
            .with_retention(2);
        for id in 1..=3u64 {
            b.put(b"a/k", &[id as u8]).await.unwrap();
            b.put(format!("b/{id}").as_bytes(), b"x").await.unwrap();
            b.checkpoint(id).await.unwrap();
        }
        assert_eq!(b.list_checkpoints().await.unwrap(), vec![2, 3]);
        b.delete(b"a/k").await.unwrap();
        b.restore(2).await.unwrap();
        assert_eq!(b.get(b"a/k").await.unwrap(), Some(vec![2]));
        assert_eq!(b.scan_prefix(b"b/").await.unwrap().len(), 2);
        // The state survives the process: a new backend on the same paths.
        drop(b);
        let again = RocksDBStateBackend::new(dir.path().join("s"), dir.path().join("c")).unwrap();
        assert_eq!(again.get(b"a/k").await.unwrap(), Some(vec![2]));
        again.restore(3).await.unwrap();
        assert_eq!(again.get(b"a/k").await.unwrap(), Some(vec![3]));
    }

    #[tokio::test]
    async fn cut_short_and_damaged_checkpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let b = RocksDBStateBackend::new(dir.path().join("s"), dir.path().join("c")).unwrap();
        b.put(b"k", b"v").await.unwrap();
        b.checkpoint(1).await.unwrap();
        // A directory without its seal (a crash before the rename) is not a checkpoint.
        std::fs::create_dir_all(dir.path().join("c").join(dir_name(7))).unwrap();
        assert_eq!(b.list_checkpoints().await.unwrap(), vec![1]);

        let cp = b.checkpoint_dir(1);
        let victim = std::fs::read_dir(&cp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("MANIFEST")
            })
            .unwrap();
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&victim, &bytes).unwrap();
        let e = b.restore(1).await.unwrap_err().to_string();
        assert!(e.contains("corrupted") && e.contains("checksum"), "{e}");
        std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
        let e = b.restore(1).await.unwrap_err().to_string();
        assert!(e.contains("bytes, sealed with"), "{e}");
        // The live state is untouched by a refused restore.
        assert_eq!(b.get(b"k").await.unwrap(), Some(b"v".to_vec()));
    }
}
