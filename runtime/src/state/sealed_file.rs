//! Files written whole or not at all, and checked when read: a magic word, an id, the
//! body's length and CRC-32, then the body; written to a temporary name, synced, renamed
//! and the directory synced. The memory backend's checkpoint files and the Kafka
//! pipeline's partition checkpoints are such files.

use std::io::Write;
use std::path::Path;

use crate::error::{ProcessorError, ProcessorResult};

const HEADER: usize = 28;

fn io_err(path: &Path, e: std::io::Error) -> ProcessorError {
    ProcessorError::io(path.display().to_string(), e)
}

/// Writes `body` to `path` atomically and durably, sealed with `magic` and `id`.
pub(crate) fn write_sealed(
    path: &Path,
    magic: &[u8; 8],
    id: u64,
    body: &[u8],
) -> ProcessorResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut bytes = Vec::with_capacity(body.len() + HEADER);
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    f.sync_all().map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Reads what [`write_sealed`] wrote, checking magic, id (when given), length and CRC;
/// `Ok(None)` when the file does not exist.
pub(crate) fn read_sealed(
    path: &Path,
    magic: &[u8; 8],
    id: Option<u64>,
) -> ProcessorResult<Option<Vec<u8>>> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let corrupt = |what: &str| {
        ProcessorError::State(format!(
            "checkpoint file {} is corrupted ({what}); remove it to fall back to an earlier checkpoint",
            path.display()
        ))
    };
    if bytes.len() < HEADER || &bytes[..8] != magic {
        return Err(corrupt("not a checkpoint file"));
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    if id.is_some_and(|id| word(8) != id) {
        return Err(corrupt("it names another checkpoint"));
    }
    let len = word(16) as usize;
    let crc = u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if bytes.len() - HEADER != len {
        return Err(corrupt("truncated"));
    }
    if crc32fast::hash(&bytes[HEADER..]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    bytes.drain(..HEADER);
    Ok(Some(bytes))
}
