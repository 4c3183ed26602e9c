use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{EventSource, Payload, SourcePosition, SourceRecord};
use crate::error::{ProcessorError, ProcessorResult};

/// JSON lines from a file or from standard input, one event per line; blank lines are
/// skipped. Records carry their byte offset and line number.
pub struct FileSource {
    name: String,
    origin: Origin,
    reader: Option<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    offset: u64,
    line: u64,
    /// Buffers of processed lines given back ([`EventSource::recycle`]), read into next.
    spare: Vec<Vec<u8>>,
}

/// Spare line buffers a source keeps.
const SPARE_LINES: usize = 4096;

/// A line buffer larger than this is not kept for reuse.
const SPARE_LINE_BYTES: usize = 64 << 10;

/// Where the lines come from, and whether they can be read again.
enum Origin {
    Path(PathBuf),
    Bytes(&'static [u8]),
    Stream,
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
            origin: Origin::Path(path.to_path_buf()),
            reader: None,
            offset: 0,
            line: 0,
            spare: Vec::new(),
        }
    }

    /// Reads standard input.
    pub fn stdin() -> Self {
        FileSource {
            name: "stdin".into(),
            origin: Origin::Stream,
            reader: Some(BufReader::with_capacity(
                1 << 16,
                Box::new(tokio::io::stdin()),
            )),
            offset: 0,
            line: 0,
            spare: Vec::new(),
        }
    }

    /// Reads JSON lines embedded in the program (can resume from a checkpoint).
    pub fn from_static(name: impl Into<String>, bytes: &'static [u8]) -> Self {
        FileSource {
            name: name.into(),
            origin: Origin::Bytes(bytes),
            reader: None,
            offset: 0,
            line: 0,
            spare: Vec::new(),
        }
    }

    /// Reads any byte stream of JSON lines.
    pub fn from_reader(
        name: impl Into<String>,
        reader: impl AsyncRead + Send + Unpin + 'static,
    ) -> Self {
        FileSource {
            name: name.into(),
            origin: Origin::Stream,
            reader: Some(BufReader::with_capacity(1 << 16, Box::new(reader))),
            offset: 0,
            line: 0,
            spare: Vec::new(),
        }
    }
}

impl Origin {
    /// Opens the input again at byte `at` (files and embedded bytes only); also returns
    /// its length. `name` is for errors.
    async fn open(
        &self,
        name: &str,
        at: u64,
    ) -> ProcessorResult<(Box<dyn AsyncRead + Send + Unpin>, u64)> {
        use tokio::io::AsyncSeekExt;
        match self {
            Origin::Path(path) => {
                let mut f = tokio::fs::File::open(path).await.map_err(|e| {
                    ProcessorError::io(format!("input file {} (check the path)", path.display()), e)
                })?;
                let len = f
                    .metadata()
                    .await
                    .map_err(|e| ProcessorError::io(name, e))?
                    .len();
                if at > 0 && at < len {
                    f.seek(std::io::SeekFrom::Start(at))
                        .await
                        .map_err(|e| ProcessorError::io(name, e))?;
                }
                Ok((Box::new(f), len))
            }
            Origin::Bytes(b) => {
                let mut c = std::io::Cursor::new(*b);
                c.set_position(at);
                Ok((Box::new(c), b.len() as u64))
            }
            Origin::Stream => Err(ProcessorError::State(format!(
                "source {name} cannot resume from a checkpoint: it cannot be read again; remove the checkpoint directory to start over"
            ))),
        }
    }
}

impl FileSource {
    /// The next non-blank line, read into a spare buffer when one was given back. Not the
    /// trait's `next`, whose future `async_trait` boxes: `next_batch` calls this one per
    /// line without an allocation.
    async fn next_line<T>(&mut self) -> ProcessorResult<Option<SourceRecord<T>>> {
        if self.reader.is_none() {
            let (r, _) = self.origin.open(&self.name, 0).await?;
            self.reader = Some(BufReader::with_capacity(1 << 18, r));
        }
        let reader = self.reader.as_mut().expect("reader opened above");
        loop {
            let mut buf = self.spare.pop().unwrap_or_default();
            buf.clear();
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
                self.spare.push(buf);
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
}

#[async_trait]
impl<T: Send> EventSource<T> for FileSource {
    async fn next(&mut self) -> ProcessorResult<Option<SourceRecord<T>>> {
        self.next_line().await
    }

    async fn next_batch(
        &mut self,
        max: usize,
        out: &mut Vec<SourceRecord<T>>,
    ) -> ProcessorResult<bool> {
        let live = matches!(self.origin, Origin::Stream);
        while out.len() < max.max(1) {
            // A live stream hands on what it has instead of waiting for more.
            if live
                && !out.is_empty()
                && self.reader.as_ref().is_some_and(|r| r.buffer().is_empty())
            {
                return Ok(true);
            }
            match self.next_line().await? {
                Some(r) => out.push(r),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    fn recycle(&mut self, buffers: &mut Vec<Vec<u8>>) {
        let room = SPARE_LINES.saturating_sub(self.spare.len());
        self.spare.extend(
            buffers
                .drain(..)
                .filter(|b| b.capacity() <= SPARE_LINE_BYTES)
                .take(room),
        );
    }

    fn reads_lines(&self) -> bool {
        true
    }

    async fn read_lines(&mut self, buf: &mut Vec<u8>, want: usize) -> ProcessorResult<usize> {
        use tokio::io::AsyncReadExt;
        if self.reader.is_none() {
            let (r, _) = self.origin.open(&self.name, 0).await?;
            self.reader = Some(BufReader::with_capacity(1 << 18, r));
        }
        let reader = self.reader.as_mut().expect("reader opened above");
        // A live stream hands on what one read gives instead of waiting for more.
        let live = matches!(self.origin, Origin::Stream);
        let want = want.max(1);
        let start = buf.len();
        buf.reserve(want);
        loop {
            // At most what is wanted: `read_buf` alone would fill all the spare capacity.
            let left = (want - (buf.len() - start)) as u64;
            let n = (&mut *reader)
                .take(left)
                .read_buf(buf)
                .await
                .map_err(|e| ProcessorError::io(self.name.clone(), e))?;
            if n == 0 || live || buf.len() - start >= want {
                break;
            }
        }
        let read = buf.len() - start;
        self.offset += read as u64;
        Ok(read)
    }

    fn line_origin(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn resumable(&self) -> bool {
        !matches!(self.origin, Origin::Stream)
    }

    async fn seek(&mut self, positions: &[SourcePosition]) -> ProcessorResult<()> {
        let Some(last) = positions.iter().find(|p| p.partition == 0) else {
            return Ok(());
        };
        let (r, len) = self.origin.open(&self.name, last.offset).await?;
        if last.offset >= len {
            return Err(ProcessorError::State(format!(
                "{} has {len} bytes but the checkpoint resumes after byte {}: the input was replaced or truncated; restore with the same input or remove the checkpoint directory",
                self.name, last.offset
            )));
        }
        let mut reader: BufReader<Box<dyn AsyncRead + Send + Unpin>> =
            BufReader::with_capacity(1 << 18, r);
        // Skip the last record processed.
        let mut buf = Vec::new();
        let n = reader
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| ProcessorError::io(self.name.clone(), e))?;
        self.offset = last.offset + n as u64;
        self.line = last.sequence;
        self.reader = Some(reader);
        Ok(())
    }
}
