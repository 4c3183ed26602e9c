use async_trait::async_trait;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::EventSink;
use crate::error::{ProcessorError, ProcessorResult};

/// Writes items as JSON lines to a file (created or truncated when the first item comes).
pub struct FileSink<T = crate::AggregationResult> {
    path: PathBuf,
    writer: Mutex<Option<BufWriter<File>>>,
    _items: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for FileSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .finish()
    }
}

impl<T> FileSink<T> {
    /// A sink writing to `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        FileSink {
            path: path.as_ref().to_path_buf(),
            writer: Mutex::new(None),
            _items: PhantomData,
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl<T: Serialize + Send + 'static> EventSink<T> for FileSink<T> {
    async fn send(&self, item: T) -> ProcessorResult<()> {
        let mut line =
            serde_json::to_vec(&item).map_err(|e| ProcessorError::Serialization(e.to_string()))?;
        line.push(b'\n');
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ProcessorError::io(dir.display().to_string(), e))?;
            }
            let f = File::create(&self.path)
                .map_err(|e| ProcessorError::io(self.path.display().to_string(), e))?;
            *guard = Some(BufWriter::new(f));
        }
        let w = guard.as_mut().expect("writer was just opened");
        w.write_all(&line)
            .map_err(|e| ProcessorError::io(self.path.display().to_string(), e))
    }

    async fn flush(&self) -> ProcessorResult<()> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_mut() {
            Some(w) => w
                .flush()
                .map_err(|e| ProcessorError::io(self.path.display().to_string(), e)),
            None => Ok(()),
        }
    }

    fn name(&self) -> &str {
        "file"
    }
}
