use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{ProcessorError, ProcessorResult};
use crate::state::sealed_file::{read_sealed, write_sealed};

/// First bytes of a partition checkpoint file.
const MAGIC: &[u8; 8] = b"LOPKPC01";

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
#[derive(Debug, Clone)]
pub(crate) struct PartitionStore {
    dir: PathBuf,
}

impl PartitionStore {
    /// `<root>/<group>/<pipeline>`.
    pub fn new(root: &Path, group: &str, pipeline: &str) -> Self {
        PartitionStore {
            dir: root.join(group).join(pipeline),
        }
    }

    fn path(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.ckpt"))
    }

    /// Writes a partition's checkpoint, replacing the previous one atomically.
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        c: &PartitionCheckpoint,
    ) -> ProcessorResult<()> {
        let body = postcard::to_allocvec(c)
            .map_err(|e| ProcessorError::Serialization(format!("partition checkpoint: {e}")))?;
        write_sealed(&self.path(topic, partition), MAGIC, c.offset as u64, &body)
    }

    /// The partition's checkpoint, if it has one; refused if another pipeline wrote it.
    pub fn load(
        &self,
        topic: &str,
        partition: i32,
        pipeline: &str,
    ) -> ProcessorResult<Option<PartitionCheckpoint>> {
        let path = self.path(topic, partition);
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
        store.save("t", 0, &c).unwrap();
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
}
