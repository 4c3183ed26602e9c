use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::EventSink;
use crate::error::{ProcessorError, ProcessorResult};

/// Writes items as JSON lines to a file.
///
/// Without checkpoints the file is created (or truncated) when the first item comes and
/// written as items arrive. In a pipeline that takes checkpoints it is exactly-once: items
/// go to `<file>.pending`, which is made durable when a checkpoint starts and appended to
/// the file once the checkpoint is complete; on restart, the file is cut back to what the
/// restored checkpoint published, so rows produced again after a crash appear once.
///
/// An [`appending`](Self::appending) sink never truncates: a new run adds to what earlier
/// runs wrote (dead letters and late records keep their history), and a restart still
/// cuts back only what came after the restored checkpoint.
///
/// A file has one writer: the sink takes an exclusive lock on it (`flock`) before it first
/// changes it and holds it until it is dropped, so a second sink on the same path (in this
/// process or another) fails with an error that names the file instead of interleaving or
/// cutting back the other's rows. Nothing is created or locked until there is something
/// to write: a dead-letter file appears with the first dead letter.
pub struct FileSink<T = crate::AggregationResult> {
    path: PathBuf,
    append: bool,
    inner: Mutex<Inner>,
    _items: PhantomData<fn(T)>,
}

#[derive(Default)]
struct Inner {
    /// The published file, opened and locked by the first change this sink makes.
    out: Option<File>,
    /// Where sent items go: the published file, or (checkpointed) the pending file.
    writer: Option<BufWriter<File>>,
    /// Checkpointed: items are staged in the pending file.
    staged: bool,
    /// Checkpoints prepared and not committed yet, with the length of their rows.
    prepared: BTreeMap<u64, u64>,
}

/// What a checkpoint stores for the file sink.
#[derive(Debug, Serialize, Deserialize)]
struct Staged {
    /// Length of the published file before this checkpoint's rows.
    len_before: u64,
    /// Length of this checkpoint's rows.
    pending_len: u64,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .finish()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> ProcessorError {
    ProcessorError::io(path.display().to_string(), e)
}

impl<T> FileSink<T> {
    /// A sink writing to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            append: false,
            inner: Mutex::new(Inner::default()),
            _items: PhantomData,
        }
    }

    /// A sink adding to `path`: a new run keeps what earlier runs wrote.
    ///
    /// ```
    /// use llm_optimizer_processor::*;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("late.jsonl");
    /// std::fs::write(&path, "1\n").unwrap();
    /// let sink = FileSink::<u32>::appending(&path);
    /// sink.send(2).await?;
    /// sink.flush().await?;
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n2\n");
    /// # Ok::<(), ProcessorError>(()) }).unwrap();
    /// ```
    pub fn appending(path: impl AsRef<Path>) -> Self {
        FileSink {
            append: true,
            ..FileSink::new(path)
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    /// Rows of the checkpoint being written.
    fn pending(&self) -> PathBuf {
        self.sibling(".pending")
    }

    /// Rows of checkpoint `id`, durable, waiting for the checkpoint to complete.
    fn prepared(&self, id: u64) -> PathBuf {
        self.sibling(&format!(".pending-{id}"))
    }

    fn dir(&self) -> Option<&Path> {
        self.path.parent().filter(|d| !d.as_os_str().is_empty())
    }

    fn create_dir(&self) -> ProcessorResult<()> {
        if let Some(dir) = self.dir() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(())
    }

    /// Makes renames in the file's directory durable.
    fn sync_dir(&self) -> ProcessorResult<()> {
        let dir = self.dir().unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, e))
    }

    /// Removes every pending file of this sink (claiming the file first: they are its).
    fn remove_pending(&self, inner: &mut Inner) -> ProcessorResult<()> {
        let dir = self.dir().unwrap_or(Path::new("."));
        let prefix = self.pending();
        let prefix = prefix.file_name().unwrap_or_default().to_string_lossy();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(dir, e)),
        };
        let stale: Vec<PathBuf> = entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&*prefix))
            .map(|entry| entry.path())
            .collect();
        if !stale.is_empty() {
            self.claim(inner)?;
        }
        for path in stale {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        Ok(())
    }

    /// The published file, opened for appending and locked against other writers.
    fn claim<'a>(&self, inner: &'a mut Inner) -> ProcessorResult<&'a mut File> {
        if inner.out.is_none() {
            self.create_dir()?;
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&self.path)
                .map_err(|e| io_err(&self.path, e))?;
            match f.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(ProcessorError::Config(format!(
                        "{} is being written by another sink (in this process or another): give each pipeline its own output file (dead letters and late records: DeadLetterSink::with_dir or PROCESSOR_DEAD_LETTER_DIR)",
                        self.path.display()
                    )))
                }
                Err(TryLockError::Error(e)) => return Err(io_err(&self.path, e)),
            }
            inner.out = Some(f);
        }
        Ok(inner.out.as_mut().expect("claimed above"))
    }

    /// Appends `from` to the published file and makes it durable.
    fn publish(&self, inner: &mut Inner, from: &Path) -> ProcessorResult<()> {
        let mut src = File::open(from).map_err(|e| io_err(from, e))?;
        let out = self.claim(inner)?;
        std::io::copy(&mut src, out).map_err(|e| io_err(&self.path, e))?;
        out.sync_all().map_err(|e| io_err(&self.path, e))
    }

    /// Length of the published file (0 when there is none).
    fn published_len(&self) -> ProcessorResult<u64> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err(&self.path, e)),
        }
    }
}

#[async_trait]
impl<T: Serialize + Send + 'static> EventSink<T> for FileSink<T> {
    async fn send(&self, item: T) -> ProcessorResult<()> {
        let mut line =
            serde_json::to_vec(&item).map_err(|e| ProcessorError::Serialization(e.to_string()))?;
        line.push(b'\n');
        let mut inner = self.lock();
        if inner.writer.is_none() {
            let fresh = inner.out.is_none();
            let staged = inner.staged;
            let out = self.claim(&mut inner)?;
            let f = if staged {
                let pending = self.pending();
                File::create(&pending).map_err(|e| io_err(&pending, e))?
            } else {
                if fresh && !self.append {
                    out.set_len(0).map_err(|e| io_err(&self.path, e))?;
                }
                out.try_clone().map_err(|e| io_err(&self.path, e))?
            };
            inner.writer = Some(BufWriter::new(f));
        }
        let w = inner.writer.as_mut().expect("writer was just opened");
        w.write_all(&line).map_err(|e| io_err(&self.path, e))
    }

    async fn flush(&self) -> ProcessorResult<()> {
        match self.lock().writer.as_mut() {
            Some(w) => w.flush().map_err(|e| io_err(&self.path, e)),
            None => Ok(()),
        }
    }

    fn name(&self) -> &str {
        "file"
    }

    async fn prepare_commit(&self, checkpoint_id: u64) -> ProcessorResult<Vec<u8>> {
        let mut inner = self.lock();
        if !inner.staged {
            return Err(ProcessorError::Internal(
                "file sink: prepare_commit before recover".into(),
            ));
        }
        let pending = self.pending();
        // Nothing sent since the last checkpoint: no file to stage.
        let mut pending_len = 0;
        if let Some(w) = inner.writer.take() {
            let f = w
                .into_inner()
                .map_err(|e| io_err(&pending, e.into_error()))?;
            f.sync_all().map_err(|e| io_err(&pending, e))?;
            pending_len = f.metadata().map_err(|e| io_err(&pending, e))?.len();
            let prepared = self.prepared(checkpoint_id);
            std::fs::rename(&pending, &prepared).map_err(|e| io_err(&prepared, e))?;
            self.sync_dir()?;
        }
        // Checkpoints still waiting to be committed publish before this one.
        let waiting: u64 = inner.prepared.values().sum();
        let len_before = self.published_len()? + waiting;
        inner.prepared.insert(checkpoint_id, pending_len);
        postcard::to_allocvec(&Staged {
            len_before,
            pending_len,
        })
        .map_err(|e| ProcessorError::Serialization(e.to_string()))
    }

    async fn commit(&self, checkpoint_id: u64) -> ProcessorResult<()> {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner
            .prepared
            .range(..=checkpoint_id)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if inner.prepared.remove(&id).unwrap_or(0) > 0 {
                let prepared = self.prepared(id);
                self.publish(&mut inner, &prepared)?;
                std::fs::remove_file(&prepared).map_err(|e| io_err(&prepared, e))?;
            }
        }
        Ok(())
    }

    async fn recover(&self, checkpoint: Option<(u64, &[u8])>) -> ProcessorResult<()> {
        let mut inner = self.lock();
        inner.writer = None;
        inner.prepared.clear();
        let len = self.published_len()?;
        match checkpoint {
            None if self.append => {}
            None => {
                // A new run of a results file starts it empty.
                let out = self.claim(&mut inner)?;
                out.set_len(0).map_err(|e| io_err(&self.path, e))?;
                out.sync_all().map_err(|e| io_err(&self.path, e))?;
            }
            Some((id, state)) => {
                let s: Staged = postcard::from_bytes(state).map_err(|e| {
                    ProcessorError::State(format!(
                        "checkpoint {id} holds an unreadable file-sink record ({e})"
                    ))
                })?;
                let target = s.len_before + s.pending_len;
                if len == target {
                    // Exactly what the checkpoint published: nothing to change.
                } else if len > target {
                    // The commit of `id` had completed: drop what came after it.
                    let out = self.claim(&mut inner)?;
                    out.set_len(target).map_err(|e| io_err(&self.path, e))?;
                    out.sync_all().map_err(|e| io_err(&self.path, e))?;
                } else if len < s.len_before {
                    return Err(ProcessorError::State(format!(
                        "{} has {len} bytes but checkpoint {id} had published {}: the file was changed outside the processor; restore it or remove the checkpoint directory to start over",
                        self.path.display(),
                        s.len_before
                    )));
                } else {
                    // The commit of `id` was cut short: redo it.
                    let prepared = self.prepared(id);
                    let have = std::fs::metadata(&prepared).map(|m| m.len()).ok();
                    if have != Some(s.pending_len) {
                        return Err(ProcessorError::State(format!(
                            "the rows of checkpoint {id} ({}) are missing or truncated: restore that file or remove the checkpoint directory to start over",
                            prepared.display()
                        )));
                    }
                    let out = self.claim(&mut inner)?;
                    out.set_len(s.len_before)
                        .map_err(|e| io_err(&self.path, e))?;
                    self.publish(&mut inner, &prepared)?;
                }
            }
        }
        self.remove_pending(&mut inner)?;
        inner.staged = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[tokio::test]
    async fn rows_are_published_only_by_a_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = FileSink::<u32>::new(&path);
        sink.recover(None).await.unwrap();
        sink.send(1).await.unwrap();
        let s1 = sink.prepare_commit(1).await.unwrap();
        assert_eq!(
            read(&path),
            "",
            "not published before the checkpoint completes"
        );
        sink.commit(1).await.unwrap();
        assert_eq!(read(&path), "1\n");
        sink.send(2).await.unwrap();
        let s2 = sink.prepare_commit(2).await.unwrap();

        // Crash before checkpoint 2 completed: restart from 1 drops row 2.
        drop(sink);
        let again = FileSink::<u32>::new(&path);
        again.recover(Some((1, &s1))).await.unwrap();
        assert_eq!(read(&path), "1\n");

        // Crash during the commit of 2: restart from 2 finishes it, once.
        drop(again);
        let sink = FileSink::<u32>::new(&path);
        sink.recover(None).await.unwrap();
        sink.send(1).await.unwrap();
        let s1 = sink.prepare_commit(1).await.unwrap();
        sink.commit(1).await.unwrap();
        sink.send(2).await.unwrap();
        let s2b = sink.prepare_commit(2).await.unwrap();
        assert_eq!(s2, s2b);
        drop(sink);
        let again = FileSink::<u32>::new(&path);
        again.recover(Some((2, &s2b))).await.unwrap();
        assert_eq!(read(&path), "1\n2\n");
        // Recovering the same checkpoint twice changes nothing.
        again.recover(Some((2, &s2b))).await.unwrap();
        assert_eq!(read(&path), "1\n2\n");
        // An older checkpoint cuts the file back.
        again.recover(Some((1, &s1))).await.unwrap();
        assert_eq!(read(&path), "1\n");
    }

    #[tokio::test]
    async fn an_appending_sink_keeps_earlier_runs_and_cuts_back_to_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        std::fs::write(&path, "0\n").unwrap();
        let sink = FileSink::<u32>::appending(&path);
        sink.recover(None).await.unwrap();
        assert_eq!(read(&path), "0\n", "a new run keeps what was there");
        sink.send(1).await.unwrap();
        let s1 = sink.prepare_commit(1).await.unwrap();
        sink.commit(1).await.unwrap();
        sink.send(2).await.unwrap();
        sink.prepare_commit(2).await.unwrap();
        sink.commit(2).await.unwrap();
        assert_eq!(read(&path), "0\n1\n2\n");
        // A crash after checkpoint 2 was published, restored from 1: 2 is cut back.
        drop(sink);
        let again = FileSink::<u32>::appending(&path);
        again.recover(Some((1, &s1))).await.unwrap();
        assert_eq!(read(&path), "0\n1\n");
    }

    #[tokio::test]
    async fn a_shortened_output_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = FileSink::<u32>::new(&path);
        sink.recover(None).await.unwrap();
        sink.send(1).await.unwrap();
        let s1 = sink.prepare_commit(1).await.unwrap();
        sink.commit(1).await.unwrap();
        drop(sink);
        std::fs::write(&path, "").unwrap();
        let e = FileSink::<u32>::new(&path)
            .recover(Some((1, &s1)))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing or truncated"), "{e}");
    }

    #[tokio::test]
    async fn a_second_writer_of_the_same_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.jsonl");
        let first = FileSink::<u32>::appending(&path);
        let second = FileSink::<u32>::appending(&path);
        first.send(1).await.unwrap();
        let e = second.send(2).await.unwrap_err().to_string();
        assert!(
            e.contains("dead.jsonl") && e.contains("another sink"),
            "{e}"
        );
        first.flush().await.unwrap();
        drop(first);
        second.send(2).await.unwrap();
        second.flush().await.unwrap();
        assert_eq!(read(&path), "1\n2\n", "the lock goes with the sink");
    }

    #[tokio::test]
    async fn an_idle_appending_sink_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late").join("late.jsonl");
        let sink = FileSink::<u32>::appending(&path);
        sink.recover(None).await.unwrap();
        sink.prepare_commit(1).await.unwrap();
        sink.commit(1).await.unwrap();
        assert!(!path.parent().unwrap().exists(), "nothing created");
        // An idle sink takes no lock: another may write the file meanwhile.
        let other = FileSink::<u32>::appending(&path);
        other.send(7).await.unwrap();
        other.flush().await.unwrap();
        sink.prepare_commit(2).await.unwrap();
        sink.commit(2).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["late.jsonl"], "no pending files");
    }

    #[tokio::test]
    async fn checkpoints_without_rows_stage_nothing_and_later_rows_still_publish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = FileSink::<u32>::appending(&path);
        sink.recover(None).await.unwrap();
        sink.send(1).await.unwrap();
        sink.prepare_commit(1).await.unwrap();
        let s2 = sink.prepare_commit(2).await.unwrap();
        sink.commit(2).await.unwrap();
        assert_eq!(
            read(&path),
            "1\n",
            "checkpoint 2 publishes the rows of 1, which never committed"
        );
        sink.send(2).await.unwrap();
        sink.prepare_commit(3).await.unwrap();
        drop(sink);
        let again = FileSink::<u32>::appending(&path);
        again.recover(Some((2, &s2))).await.unwrap();
        assert_eq!(read(&path), "1\n");
        assert!(!dir.path().join("out.jsonl.pending-3").exists());
    }
}
