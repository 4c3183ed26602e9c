use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{ProcessorError, ProcessorResult};
use crate::state::sealed_file::{read_sealed, write_sealed};

/// First bytes of a partition checkpoint file.
const MAGIC: &[u8; 8] = b"LOPKPC01";

/// First bytes of a partition's epoch file (the epoch is its id; no body).
const EPOCH_MAGIC: &[u8; 8] = b"LOPKPE01";

/// What one partition's checkpoint holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PartitionCheckpoint {
    /// The pipeline's description: another pipeline's checkpoint is refused.
    pub pipeline: String,
    /// The last offset whose record is in `operator`.
    pub offset: i64,
    /// The partition's largest event time seen (its watermark state).
    pub max_event_time: i64,
    /// The partition's window operator, encoded.
    pub operator: Vec<u8>,
}

/// Where the partition checkpoints of one pipeline of one consumer group live.
///
/// Fencing: each partition has an epoch (`<topic>-<p>.epoch`), which an instance bumps
/// when the partition is assigned to it ([`load`](Self::load)); a save checks, under the
/// partition's lock file, that the epoch is still the one this instance claimed, so that a
/// member the group has moved on from (evicted while blocked, a zombie after a long pause)
/// cannot write its state over the new owner's.
#[derive(Debug, Clone)]
pub(crate) struct PartitionStore {
    dir: PathBuf,
    /// The epoch this instance claimed each partition with, by checkpoint path.
    claims: Arc<Mutex<HashMap<PathBuf, u64>>>,
}

/// What became of a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    Written,
    /// Another instance claimed the partition after this one (`current` > `mine`, or this
    /// one never claimed it): nothing was written.
    Fenced {
        current: u64,
        mine: Option<u64>,
    },
}

impl PartitionStore {
    /// `<root>/<group>/<pipeline>`.
    pub fn new(root: &Path, group: &str, pipeline: &str) -> Self {
        PartitionStore {
            dir: root.join(group).join(pipeline),
            claims: Arc::default(),
        }
    }

    fn path(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.ckpt"))
    }

    fn sibling(&self, topic: &str, partition: i32, ext: &str) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.{ext}"))
    }

    /// Holds the partition's lock file (an exclusive advisory lock, released on drop).
    fn lock(&self, topic: &str, partition: i32) -> ProcessorResult<std::fs::File> {
        let path = self.sibling(topic, partition, "lock");
        let io = |e: std::io::Error| {
            ProcessorError::State(format!("partition lock {}: {e}", path.display()))
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let f = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        f.lock().map_err(io)?;
        Ok(f)
    }

    /// The partition's epoch as its file says (0: never claimed).
    fn epoch(&self, topic: &str, partition: i32) -> ProcessorResult<u64> {
        let path = self.sibling(topic, partition, "epoch");
        let Some(_) = read_sealed(&path, EPOCH_MAGIC, None)? else {
            return Ok(0);
        };
        let bytes = std::fs::read(&path).map_err(|e| {
            ProcessorError::State(format!("partition epoch {}: {e}", path.display()))
        })?;
        Ok(u64::from_le_bytes(
            bytes[8..16].try_into().expect("a sealed header"),
        ))
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, u64>> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a partition's checkpoint, replacing the previous one atomically, unless
    /// another instance claimed the partition after this one ([`Saved::Fenced`]).
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        c: &PartitionCheckpoint,
    ) -> ProcessorResult<Saved> {
        let body = postcard::to_allocvec(c)
            .map_err(|e| ProcessorError::Serialization(format!("partition checkpoint: {e}")))?;
        let path = self.path(topic, partition);
        let _lock = self.lock(topic, partition)?;
        let current = self.epoch(topic, partition)?;
        let mine = self.claims().get(&path).copied();
        if mine != Some(current) {
            return Ok(Saved::Fenced { current, mine });
        }
        write_sealed(&path, MAGIC, c.offset as u64, &body)?;
        Ok(Saved::Written)
    }

    /// Claims the partition for this instance (its epoch bumped: a previous owner's later
    /// save is refused), then reads its checkpoint, if it has one; refused if another
    /// pipeline wrote it.
    pub fn load(
        &self,
        topic: &str,
        partition: i32,
        pipeline: &str,
    ) -> ProcessorResult<Option<PartitionCheckpoint>> {
        let path = self.path(topic, partition);
        let lock = self.lock(topic, partition)?;
        let epoch = self.epoch(topic, partition)? + 1;
        write_sealed(
            &self.sibling(topic, partition, "epoch"),
            EPOCH_MAGIC,
            epoch,
            &[],
        )?;
        self.claims().insert(path.clone(), epoch);
        drop(lock);
        let Some(body) = read_sealed(&path, MAGIC, None)? else {
            return Ok(None);
        };
        let c: PartitionCheckpoint = postcard::from_bytes(&body).map_err(|e| {
            ProcessorError::State(format!(
                "partition checkpoint {} is corrupted ({e}); remove it to re-read the partition from its committed offset",
                path.display()
            ))
        })?;
        if c.pipeline != pipeline {
            return Err(ProcessorError::State(format!(
                "partition checkpoint {} was written by another pipeline ({}), not this one ({pipeline}); use another group_id or checkpoint directory, or remove it",
                path.display(),
                c.pipeline
            )));
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_checkpoints_load_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = PartitionStore::new(dir.path(), "g", "p");
        assert!(store.load("t", 0, "plan").unwrap().is_none());
        let c = PartitionCheckpoint {
            pipeline: "plan".into(),
            offset: 41,
            max_event_time: 1_000,
            operator: vec![1, 2, 3],
        };
        assert_eq!(store.save("t", 0, &c).unwrap(), Saved::Written);
        let back = store.load("t", 0, "plan").unwrap().unwrap();
        assert_eq!(
            (back.offset, back.max_event_time, back.operator),
            (41, 1_000, vec![1, 2, 3])
        );
        let e = store.load("t", 0, "other plan").unwrap_err().to_string();
        assert!(e.contains("another pipeline"), "{e}");
        let path = dir.path().join("g/p/t-0.ckpt");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let e = store.load("t", 0, "plan").unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    /// Two instances over one directory: the one a partition was assigned to last owns its
    /// file; the other's later saves (a member the group moved on from) write nothing.
    #[test]
    fn a_partition_s_previous_owner_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let a = PartitionStore::new(dir.path(), "g", "p");
        let b = PartitionStore::new(dir.path(), "g", "p");
        let at = |offset| PartitionCheckpoint {
            pipeline: "plan".into(),
            offset,
            max_event_time: 0,
            operator: vec![],
        };
        assert!(a.load("t", 0, "plan").unwrap().is_none());
        assert_eq!(a.save("t", 0, &at(10)).unwrap(), Saved::Written);
        assert_eq!(
            b.save("t", 0, &at(99)).unwrap(),
            Saved::Fenced {
                current: 1,
                mine: None
            },
            "never assigned to b"
        );
        // The group moves the partition to b.
        assert_eq!(b.load("t", 0, "plan").unwrap().unwrap().offset, 10);
        assert_eq!(
            a.save("t", 0, &at(20)).unwrap(),
            Saved::Fenced {
                current: 2,
                mine: Some(1)
            }
        );
        assert_eq!(b.save("t", 0, &at(30)).unwrap(), Saved::Written);
        // And back to a: b is fenced now.
        assert_eq!(a.load("t", 0, "plan").unwrap().unwrap().offset, 30);
        assert!(matches!(
            b.save("t", 0, &at(40)).unwrap(),
            Saved::Fenced { current: 3, .. }
        ));
        assert_eq!(a.load("t", 0, "plan").unwrap().unwrap().offset, 30);
    }
}
