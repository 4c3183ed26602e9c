//! Checkpoints of a whole pipeline: one consistent snapshot of the operators' state
//! (accumulators, timers, pending sessions), the watermarks, the source positions, the
//! run's counts and the sinks' staged output, written to the pipeline's
//! [`StateBackend`] and sealed by [`StateBackend::checkpoint`].
//!
//! The protocol, per checkpoint `n`:
//! 1. the run loop stops taking records (single worker), or sends a barrier through every
//!    worker's queue (parallel), so the snapshot covers exactly the records read so far;
//! 2. each sink — result sinks, the late side output and the dead-letter sink — stages
//!    its output since `n - 1` durably ([`EventSink::prepare_commit`]);
//! 3. operator state and a [`Meta`] record are written under `<pipeline>/__checkpoint/`,
//!    then the backend seals checkpoint `n` atomically: a checkpoint that was not sealed
//!    is never listed, so a crash half-way leaves `n - 1` as the latest;
//! 4. sinks publish what they staged ([`EventSink::commit`]).
//!
//! When a bounded input ends and every window fired, a last checkpoint is taken the same
//! way and marked `finished`; once its sinks published, checkpoint `n + 1` records that it
//! was published. A start whose latest checkpoint is finished and published starts over (a
//! new run of the input); one whose latest is finished but not published (killed between
//! the seal and the commits) finishes those commits and ends, instead of running the input
//! a second time into appended side outputs.
//!
//! On start the latest sealed checkpoint is restored; if it cannot be read (corrupted,
//! truncated) the previous one is tried, with a warning. Sinks then finish or undo the
//! commit of the restored checkpoint ([`EventSink::recover`]) and the source seeks past
//! the positions it records, so the output is what an uninterrupted run writes.
//!
//! [`EventSink::prepare_commit`]: crate::sink::EventSink::prepare_commit
//! [`EventSink::commit`]: crate::sink::EventSink::commit
//! [`EventSink::recover`]: crate::sink::EventSink::recover

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{key_hash, Positions};
use super::summary::RunSummary;
use crate::error::{ProcessorError, ProcessorResult};
use crate::operator::OperatorSnapshot;
use crate::operator::{WindowFunction, WindowOperator};
use crate::source::SourcePosition;
use crate::state::StateBackend;
use crate::window::WindowTrigger;

/// Version of the checkpoint layout (2: side outputs staged with the checkpoint, the
/// last watermark pushed downstream; 3: whether a finished run's outputs were published).
const FORMAT: u32 = 3;

/// Operator state is written in values of at most this size.
const CHUNK: usize = 4 << 20;

/// Everything a checkpoint records besides operator state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    format: u32,
    /// What wrote it: restoring into another pipeline is refused.
    pipeline: String,
    /// The checkpoint's id.
    pub id: u64,
    /// Taken after a bounded input ended and every window fired.
    pub finished: bool,
    /// Records that the sinks published the finished checkpoint before it.
    pub published: bool,
    /// Chunks of operator state, per worker.
    chunks: Vec<u32>,
    /// Last record processed per partition.
    pub positions: Vec<SourcePosition>,
    /// Highest event time per partition.
    pub watermarks: Vec<(u32, i64)>,
    /// Counts so far.
    pub summary: RunSummary,
    /// What each sink's `prepare_commit` returned, in the pipeline's sink order.
    pub sinks: Vec<Vec<u8>>,
    /// What the side outputs' `prepare_commit` returned: the late side output (empty
    /// without one), then the dead-letter sink.
    pub side: Vec<Vec<u8>>,
}

impl Meta {
    /// A record for checkpoint `id`; the operator chunks are filled in by
    /// [`Checkpointer::write`].
    pub fn new(id: u64, finished: bool) -> Self {
        Meta {
            format: FORMAT,
            pipeline: String::new(),
            id,
            finished,
            published: false,
            chunks: Vec::new(),
            positions: Vec::new(),
            watermarks: Vec::new(),
            summary: RunSummary::default(),
            sinks: Vec::new(),
            side: Vec::new(),
        }
    }
}

/// A checkpoint record of layout version 2 (before `published`), still read: a finished
/// one is taken as published, as that version did (it started over).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct MetaV2 {
    format: u32,
    pipeline: String,
    id: u64,
    finished: bool,
    chunks: Vec<u32>,
    positions: Vec<SourcePosition>,
    watermarks: Vec<(u32, i64)>,
    summary: RunSummary,
    sinks: Vec<Vec<u8>>,
    side: Vec<Vec<u8>>,
}

impl From<MetaV2> for Meta {
    fn from(m: MetaV2) -> Self {
        Meta {
            format: m.format,
            pipeline: m.pipeline,
            id: m.id,
            finished: m.finished,
            published: m.finished,
            chunks: m.chunks,
            positions: m.positions,
            watermarks: m.watermarks,
            summary: m.summary,
            sinks: m.sinks,
            side: m.side,
        }
    }
}

/// A restored checkpoint.
pub(crate) struct Restored<K, A> {
    pub meta: Meta,
    /// Operator state per worker of the current run (keys redistributed when the
    /// parallelism changed).
    pub operators: Vec<OperatorSnapshot<K, A>>,
}

/// Takes and restores the checkpoints of one pipeline.
pub(crate) struct Checkpointer {
    backend: Arc<dyn StateBackend>,
    interval: Duration,
    prefix: String,
    pipeline: String,
    next_id: u64,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("prefix", &self.prefix)
            .field("next_id", &self.next_id)
            .finish()
    }
}

fn corrupt(id: u64, what: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::State(format!(
        "checkpoint {id} is incomplete or corrupted: {what}"
    ))
}

impl Checkpointer {
    /// Checkpoints of the pipeline `name` (described by `pipeline`, which a restored
    /// checkpoint must match) every `interval`.
    pub fn new(
        backend: Arc<dyn StateBackend>,
        name: &str,
        pipeline: String,
        interval: Duration,
    ) -> Self {
        Checkpointer {
            backend,
            interval,
            prefix: format!("{name}/__checkpoint/"),
            pipeline,
            next_id: 1,
        }
    }

    /// Time between checkpoints.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The id the next checkpoint takes.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.as_bytes().to_vec();
        k.extend_from_slice(suffix);
        k
    }

    fn chunk_key(&self, worker: u32, chunk: u32) -> Vec<u8> {
        let mut k = self.key(b"op/");
        k.extend_from_slice(&worker.to_be_bytes());
        k.extend_from_slice(&chunk.to_be_bytes());
        k
    }

    /// Writes checkpoint `meta.id` with the encoded operator state of each worker, and
    /// seals it. Sinks must have prepared before and commit after.
    pub async fn write(&mut self, mut meta: Meta, operators: Vec<Vec<u8>>) -> ProcessorResult<()> {
        let started = Instant::now();
        let mut keep = std::collections::HashSet::new();
        meta.chunks.clear();
        for (w, bytes) in operators.iter().enumerate() {
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![&[][..]]
            } else {
                bytes.chunks(CHUNK).collect()
            };
            meta.chunks.push(chunks.len() as u32);
            for (c, chunk) in chunks.into_iter().enumerate() {
                let k = self.chunk_key(w as u32, c as u32);
                self.backend.put(&k, chunk).await?;
                keep.insert(k);
            }
        }
        for (k, _) in self.backend.scan_prefix(&self.key(b"op/")).await? {
            if !keep.contains(&k) {
                self.backend.delete(&k).await?;
            }
        }
        meta.format = FORMAT;
        meta.pipeline = self.pipeline.clone();
        let encoded = postcard::to_allocvec(&meta)
            .map_err(|e| ProcessorError::Serialization(e.to_string()))?;
        self.backend.put(&self.key(b"meta"), &encoded).await?;
        self.backend.checkpoint(meta.id).await?;
        self.next_id = meta.id + 1;
        tracing::info!(
            checkpoint = meta.id,
            bytes = operators.iter().map(Vec::len).sum::<usize>(),
            millis = started.elapsed().as_millis() as u64,
            finished = meta.finished,
            "checkpoint complete"
        );
        Ok(())
    }

    /// Restores the latest checkpoint that can be read, for `workers` workers. `None`:
    /// there is none, or the latest is of a run that finished its input and published it
    /// (start over). A finished checkpoint not yet published is returned (its sinks are to
    /// finish their commits, then [`publish`](Self::publish) records it).
    pub async fn restore<K, A>(&mut self, workers: usize) -> ProcessorResult<Option<Restored<K, A>>>
    where
        K: DeserializeOwned + Hash,
        A: DeserializeOwned,
    {
        let ids = self.backend.list_checkpoints().await?;
        let Some(&latest) = ids.last() else {
            return Ok(None);
        };
        self.next_id = latest + 1;
        let mut last_error = None;
        for &id in ids.iter().rev() {
            match self.read::<K, A>(id, workers).await {
                Ok(r) if r.meta.published => {
                    tracing::info!(
                        checkpoint = id,
                        "the previous run finished its input: starting over"
                    );
                    return Ok(None);
                }
                Ok(r) => {
                    tracing::info!(checkpoint = id, "restored checkpoint");
                    return Ok(Some(r));
                }
                Err(e @ ProcessorError::Config(_)) => return Err(e),
                Err(e) => {
                    tracing::warn!(checkpoint = id, error = %e, "cannot restore this checkpoint; trying the previous one");
                    last_error = Some(e);
                }
            }
        }
        Err(ProcessorError::State(format!(
            "none of the checkpoints {ids:?} can be restored (the last error: {}); remove the checkpoint directory to start over",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Records that the sinks published the finished checkpoint `finished`: the next
    /// start starts over.
    pub async fn publish(&mut self, finished: &Meta) -> ProcessorResult<()> {
        let mut meta = Meta::new(self.next_id, true);
        meta.published = true;
        meta.positions = finished.positions.clone();
        meta.watermarks = finished.watermarks.clone();
        meta.summary = finished.summary;
        self.write(meta, Vec::new()).await
    }

    async fn read<K, A>(&self, id: u64, workers: usize) -> ProcessorResult<Restored<K, A>>
    where
        K: DeserializeOwned + Hash,
        A: DeserializeOwned,
    {
        self.backend.restore(id).await?;
        let bytes = self
            .backend
            .get(&self.key(b"meta"))
            .await?
            .ok_or_else(|| corrupt(id, "it holds no checkpoint record for this pipeline"))?;
        // The layout version comes first, so that another version's record is named as
        // such, not as a damaged one.
        let (format, _) = postcard::take_from_bytes::<u32>(&bytes).map_err(|e| corrupt(id, e))?;
        let meta: Meta = match format {
            FORMAT => postcard::from_bytes(&bytes).map_err(|e| corrupt(id, e))?,
            2 => postcard::from_bytes::<MetaV2>(&bytes)
                .map_err(|e| corrupt(id, e))?
                .into(),
            _ => {
                return Err(ProcessorError::Config(format!(
                    "checkpoint {id} has layout version {format}, this version reads {FORMAT} and 2: use the version that wrote it or remove the checkpoint directory",
                )))
            }
        };
        if meta.id != id {
            return Err(corrupt(
                id,
                format!("its record names checkpoint {}", meta.id),
            ));
        }
        if meta.finished {
            // Nothing of it is restored: a new run starts over, whatever its pipeline.
            return Ok(Restored {
                meta,
                operators: Vec::new(),
            });
        }
        if meta.pipeline != self.pipeline {
            return Err(ProcessorError::Config(format!(
                "checkpoint {id} was written by another pipeline ({}); restore it with the pipeline that wrote it, or remove the checkpoint directory to start this one ({}) over",
                meta.pipeline, self.pipeline
            )));
        }
        let mut snapshots = Vec::with_capacity(meta.chunks.len());
        for (w, &n) in meta.chunks.iter().enumerate() {
            let mut bytes = Vec::new();
            for c in 0..n {
                let chunk = self
                    .backend
                    .get(&self.chunk_key(w as u32, c))
                    .await?
                    .ok_or_else(|| corrupt(id, format!("chunk {c} of worker {w} is missing")))?;
                bytes.extend_from_slice(&chunk);
            }
            let snap: OperatorSnapshot<K, A> = if bytes.is_empty() {
                OperatorSnapshot::empty(i64::MIN)
            } else {
                postcard::from_bytes(&bytes)
                    .map_err(|e| corrupt(id, format!("state of worker {w}: {e}")))?
            };
            snapshots.push(snap);
        }
        let operators = redistribute(snapshots, workers.max(1));
        Ok(Restored { meta, operators })
    }
}

/// Spreads the keys of `snapshots` over `workers` operators the way the run loop routes
/// events (by [`key_hash`]); unchanged when the count is the same.
fn redistribute<K: Hash, A>(
    mut snapshots: Vec<OperatorSnapshot<K, A>>,
    workers: usize,
) -> Vec<OperatorSnapshot<K, A>> {
    if snapshots.len() == workers {
        return snapshots;
    }
    let watermark = snapshots
        .iter()
        .map(|s| s.watermark)
        .max()
        .unwrap_or(i64::MIN);
    let mut out: Vec<_> = (0..workers)
        .map(|_| OperatorSnapshot::empty(watermark))
        .collect();
    for snap in snapshots.drain(..) {
        for k in snap.keys {
            let i = if workers == 1 {
                0
            } else {
                (key_hash(&k.key) % workers as u64) as usize
            };
            out[i].keys.push(k);
        }
    }
    out
}

/// A crash on purpose, for the tests of what a kill at this point leaves: when the
/// environment variable `LOP_FAILPOINT` names `point`, the process aborts here (as a
/// SIGKILL would end it: no destructor runs, nothing is flushed).
pub(super) fn failpoint(point: &str) {
    if std::env::var_os("LOP_FAILPOINT").is_some_and(|v| v == point) {
        eprintln!("LOP_FAILPOINT: aborting at {point}");
        std::process::abort();
    }
}

/// An operator's state for a checkpoint.
pub(super) fn encode_state<K, F, Tr>(op: &WindowOperator<K, F, Tr>) -> ProcessorResult<Vec<u8>>
where
    K: std::hash::Hash + Eq + Serialize,
    F: WindowFunction<Acc: Serialize>,
    Tr: WindowTrigger,
{
    postcard::to_allocvec(&op.snapshot()?)
        .map_err(|e| ProcessorError::Serialization(format!("operator state for a checkpoint: {e}")))
}

/// The record of checkpoint `id` as the run loop knows it.
pub(super) fn checkpoint_meta(
    id: u64,
    finished: bool,
    positions: &Positions,
    watermark: &dyn crate::watermark::WatermarkGenerator,
    summary: RunSummary,
) -> Meta {
    let mut meta = Meta::new(id, finished);
    meta.positions = positions.list();
    meta.watermarks = watermark.snapshot();
    meta.summary = summary;
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStateBackend;

    fn checkpointer(dir: &std::path::Path) -> Checkpointer {
        Checkpointer::new(
            Arc::new(MemoryStateBackend::persistent(dir)),
            "p",
            "the pipeline".into(),
            Duration::ZERO,
        )
    }

    /// A damaged "finished" checkpoint is not taken as a finished run (which would start
    /// over): its checksum fails and the checkpoint before it is restored.
    #[tokio::test]
    async fn a_damaged_finished_checkpoint_is_detected_and_the_previous_one_restored() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = checkpointer(dir.path());
        c.write(Meta::new(1, false), vec![Vec::new()])
            .await
            .unwrap();
        let mut published = Meta::new(2, true);
        published.published = true;
        c.write(published, vec![Vec::new()]).await.unwrap();

        let r = checkpointer(dir.path())
            .restore::<String, u64>(1)
            .await
            .unwrap();
        assert!(r.is_none(), "an intact published checkpoint starts over");

        let file = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".bin"))
            .max()
            .unwrap();
        for at in [0.25, 0.5, 0.99] {
            let mut bytes = std::fs::read(&file).unwrap();
            let i = ((bytes.len() as f64 * at) as usize).max(28);
            bytes[i] ^= 0x01;
            let damaged = tempfile::tempdir().unwrap();
            for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
                std::fs::copy(e.path(), damaged.path().join(e.file_name())).unwrap();
            }
            std::fs::write(damaged.path().join(file.file_name().unwrap()), &bytes).unwrap();
            let r = checkpointer(damaged.path())
                .restore::<String, u64>(1)
                .await
                .unwrap()
                .expect("the checkpoint before the damaged one");
            assert_eq!((r.meta.id, r.meta.finished), (1, false), "byte {i}");
        }
    }

    /// A run killed between its finished checkpoint's seal and its sinks' commits: the
    /// next start gets that checkpoint (to finish the commits), and once it is published,
    /// a start after that starts over.
    #[tokio::test]
    async fn a_finished_checkpoint_is_restored_until_it_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = checkpointer(dir.path());
        c.write(Meta::new(1, false), vec![Vec::new()])
            .await
            .unwrap();
        let mut finished = Meta::new(2, true);
        finished.summary.events_in = 7;
        c.write(finished, vec![Vec::new()]).await.unwrap();

        let mut again = checkpointer(dir.path());
        let r = again
            .restore::<String, u64>(1)
            .await
            .unwrap()
            .expect("the finished checkpoint, not yet published");
        assert_eq!(
            (r.meta.id, r.meta.finished, r.meta.published),
            (2, true, false)
        );
        again.publish(&r.meta).await.unwrap();

        let r = checkpointer(dir.path())
            .restore::<String, u64>(1)
            .await
            .unwrap();
        assert!(r.is_none(), "published: the next start starts over");
    }

    /// A checkpoint written by the previous layout (2) is restored (an upgrade keeps the
    /// state); a finished one starts over, as that version did.
    #[tokio::test]
    async fn a_layout_2_checkpoint_is_still_restored() {
        for finished in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let backend = Arc::new(MemoryStateBackend::persistent(dir.path()));
            let old = MetaV2 {
                format: 2,
                pipeline: "the pipeline".into(),
                id: 4,
                finished,
                chunks: vec![0],
                positions: vec![],
                watermarks: vec![(0, 1_000)],
                summary: RunSummary {
                    events_in: 9,
                    ..RunSummary::default()
                },
                sinks: vec![],
                side: vec![vec![], vec![]],
            };
            backend
                .put(
                    b"p/__checkpoint/meta",
                    &postcard::to_allocvec(&old).unwrap(),
                )
                .await
                .unwrap();
            backend.checkpoint(4).await.unwrap();
            let r = checkpointer(dir.path())
                .restore::<String, u64>(1)
                .await
                .unwrap();
            match r {
                Some(r) => {
                    assert!(!finished);
                    assert_eq!((r.meta.id, r.meta.summary.events_in), (4, 9));
                    assert_eq!(r.meta.watermarks, vec![(0, 1_000)]);
                }
                None => assert!(finished, "an unfinished layout-2 checkpoint is restored"),
            }
        }
    }
}
