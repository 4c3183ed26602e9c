use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{EventSource, Payload, SourceRecord};
use crate::error::{ProcessorError, ProcessorResult};

/// JSON lines from a file or from standard input, one event per line; blank lines are
/// skipped. Records carry their byte offset and line number.
pub struct FileSource {
    name: String,
    path: Option<PathBuf>,
    reader: Option<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    offset: u64,
    line: u64,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish()
    }
}

impl FileSource {
    /// Reads `path` (`-` means standard input).
    pub fn new(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        if path == Path::new("-") {
            return FileSource::stdin();
        }
        FileSource {
            name: format!("file:{}", path.display()),
            path: Some(path.to_path_buf()),
            reader: None,
            offset: 0,
            line: 0,
        }
    }

    /// Reads standard input.
    pub fn stdin() -> Self {
        FileSource {
            name: "stdin".into(),
            path: None,
            reader: Some(BufReader::with_capacity(
                1 << 16,
                Box::new(tokio::io::stdin()),
            )),
            offset: 0,
            line: 0,
        }
    }

    /// Reads any byte stream of JSON lines.
    pub fn from_reader(
        name: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Self {
        FileSource {
            name: name.into(),
            path: None,
            reader: Some(BufReader::with_capacity(1 << 16, Box::new(reader))),
            offset: 0,
            line: 0,
        }
    }
}

#[async_trait]
impl<T: Send> EventSource<T> for FileSource {
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<T>>> {
        if self.reader.is_none() {
            let path = self
                .path
                .clone()
                .expect("a file source without reader has a path");
            let f = tokio::fs::File::open(&path).await.map_err(|e| {
                ProcessorError::io(format!("input file {} (check the path)", path.display()), e)
            })?;
            self.reader = Some(BufReader::with_capacity(1 << 18, Box::new(f)));
        }
        let reader = self.reader.as_mut().expect("reader opened above");
        loop {
            let mut buf = Vec::new();
            let start = self.offset;
            let n = reader
                .read_until(b'\n', &mut buf)
                .await
                .map_err(|e| ProcessorError::io(self.name.clone(), e))?;
            if n == 0 {
                return Ok(None);
            }
            self.offset += n as u64;
            self.line += 1;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(SourceRecord {
                payload: Payload::Bytes(buf),
                partition: 0,
                offset: start,
                sequence: self.line,
            }));
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
