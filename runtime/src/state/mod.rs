//! State: the [`StateBackend`] trait (key-value store with checkpoints), the in-memory
//! backend (optionally persisting its checkpoints to files), the RocksDB backend (cargo
//! feature `rocksdb`, on by default), and [`WindowStateManager`], typed window
//! accumulators on top of a backend.

mod manager;
mod memory;
#[cfg(feature = "rocksdb")]
mod rocksdb;
pub(crate) mod sealed_file;

#[cfg(feature = "rocksdb")]
pub use self::rocksdb::RocksDBStateBackend;
pub use manager::WindowStateManager;
pub use memory::MemoryStateBackend;

use async_trait::async_trait;

use crate::error::ProcessorResult;

/// A key-value store for operator state, with numbered checkpoints.
///
/// ```
/// use llm_optimizer_processor::state::*;
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let state_backend = MemoryStateBackend::new();
/// state_backend.put(b"k", b"v1").await.unwrap();
/// let checkpoint_id = 1;
/// state_backend.checkpoint(checkpoint_id).await.unwrap();
/// state_backend.put(b"k", b"v2").await.unwrap();
/// state_backend.restore(checkpoint_id).await.unwrap();
/// assert_eq!(state_backend.get(b"k").await.unwrap(), Some(b"v1".to_vec()));
/// # }) }
/// ```
#[async_trait]
pub trait StateBackend: Send + Sync {
    /// The value of a key.
    async fn get(&self, key: &[u8]) -> ProcessorResult<Option<Vec<u8>>>;
    /// Sets a key.
    async fn put(&self, key: &[u8], value: &[u8]) -> ProcessorResult<()>;
    /// Removes a key.
    async fn delete(&self, key: &[u8]) -> ProcessorResult<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    async fn scan_prefix(&self, prefix: &[u8]) -> ProcessorResult<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Snapshots the whole state as checkpoint `checkpoint_id`.
    async fn checkpoint(&self, checkpoint_id: u64) -> ProcessorResult<()>;
    /// Replaces the state by checkpoint `checkpoint_id`.
    async fn restore(&self, checkpoint_id: u64) -> ProcessorResult<()>;
    /// The checkpoints kept, oldest first.
    async fn list_checkpoints(&self) -> ProcessorResult<Vec<u64>>;
    /// Where an operator may spill accumulators past its memory bound (RocksDB can; the
    /// memory backend cannot, since spilling there would not save memory).
    fn spill_store(&self) -> Option<std::sync::Arc<dyn crate::operator::SpillStore>> {
        None
    }
    /// The directory its checkpoints are written to, if it writes any to files. A Kafka
    /// pipeline keeps its per-partition checkpoints under `<dir>/kafka/`.
    fn checkpoint_root(&self) -> Option<&std::path::Path> {
        None
    }
}
