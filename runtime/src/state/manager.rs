use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;

use super::StateBackend;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::GroupingKey;
use crate::window::Window;

/// Format version written before every encoded accumulator.
const FORMAT_VERSION: u8 = 1;

/// FNV-1a of the accumulator's type name: stored beside every value, so that state
/// written for another accumulator type is refused instead of decoded into garbage.
fn fingerprint<A>() -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<A>().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.to_le_bytes()
}

/// Typed accumulators per window (and optionally per key) on a [`StateBackend`], encoded
/// with `postcard` under `<name>/…` keys.
///
/// ```
/// use llm_optimizer_processor::*;
/// use llm_optimizer_processor::state::*;
/// use llm_optimizer_processor::aggregation::AggregationState;
/// use std::sync::Arc;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let state_backend = Arc::new(MemoryStateBackend::new());
/// let state_manager = WindowStateManager::<AggregationState>::new(state_backend, "my-aggregation");
/// let window = Window::from_millis(0, 300_000);
///
/// let acc = state_manager.get_accumulator(&window).await?;
/// let mut acc = acc.unwrap_or_else(|| AggregationState::new(window.clone()));
/// acc.add_value(42.0);
/// state_manager.put_accumulator(&window, &acc).await?;
/// assert_eq!(state_manager.get_accumulator(&window).await?.unwrap().count, 1);
///
/// state_manager.delete_window(&window).await?;
/// assert!(state_manager.get_accumulator(&window).await?.is_none());
/// # Ok::<(), ProcessorError>(()) }).unwrap();
/// ```
pub struct WindowStateManager<A> {
    backend: Arc<dyn StateBackend>,
    name: String,
    _acc: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for WindowStateManager<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowStateManager")
            .field("name", &self.name)
            .finish()
    }
}

impl<A: Serialize + DeserializeOwned> WindowStateManager<A> {
    /// Accumulators of the operator `name` in `backend`.
    pub fn new(backend: Arc<dyn StateBackend>, name: impl Into<String>) -> Self {
        WindowStateManager {
            backend,
            name: name.into(),
            _acc: PhantomData,
        }
    }

    fn prefix(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.name.len() + 20);
        k.extend_from_slice(self.name.as_bytes());
        k.push(b'/');
        k
    }

    fn window_key(&self, key: Option<&GroupingKey>, window: &Window) -> ProcessorResult<Vec<u8>> {
        let mut k = self.prefix();
        // Order-preserving: flip the sign bit so negative times sort first.
        k.extend_from_slice(&((window.start_millis() as u64) ^ (1 << 63)).to_be_bytes());
        k.extend_from_slice(&((window.end_millis() as u64) ^ (1 << 63)).to_be_bytes());
        if let Some(key) = key {
            let encoded = postcard::to_allocvec(key)
                .map_err(|e| ProcessorError::Serialization(e.to_string()))?;
            k.extend_from_slice(&encoded);
        }
        Ok(k)
    }

    fn encode(acc: &A) -> ProcessorResult<Vec<u8>> {
        let mut out = vec![FORMAT_VERSION];
        out.extend_from_slice(&fingerprint::<A>());
        out.extend(
            postcard::to_allocvec(acc).map_err(|e| ProcessorError::Serialization(e.to_string()))?,
        );
        Ok(out)
    }

    fn decode(&self, bytes: &[u8]) -> ProcessorResult<A> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) if rest.len() >= 8 && rest[..8] != fingerprint::<A>() => {
                Err(ProcessorError::State(format!(
                    "state of `{}` cannot be read as `{}`: it was written for another accumulator type; restore a matching checkpoint or clear the state",
                    self.name,
                    std::any::type_name::<A>()
                )))
            }
            Some((&FORMAT_VERSION, rest)) if rest.len() >= 8 => postcard::from_bytes(&rest[8..]).map_err(|e| {
                ProcessorError::State(format!(
                    "state of `{}` cannot be read as this accumulator type ({e}); it was written by another pipeline version: restore a matching checkpoint or clear the state",
                    self.name
                ))
            }),
            _ => Err(ProcessorError::State(format!(
                "state of `{}` has an unknown format version; clear the state or use the version that wrote it",
                self.name
            ))),
        }
    }

    /// The accumulator of a window, if any.
    pub async fn get_accumulator(&self, window: &Window) -> ProcessorResult<Option<A>> {
        let k = self.window_key(None, window)?;
        match self.backend.get(&k).await? {
            Some(bytes) => self.decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores the accumulator of a window.
    pub async fn put_accumulator(&self, window: &Window, acc: &A) -> ProcessorResult<()> {
        let k = self.window_key(None, window)?;
        self.backend.put(&k, &Self::encode(acc)?).await
    }

    /// The accumulator of a key in a window, if any.
    pub async fn get_keyed_accumulator(
        &self,
        key: &GroupingKey,
        window: &Window,
    ) -> ProcessorResult<Option<A>> {
        let k = self.window_key(Some(key), window)?;
        match self.backend.get(&k).await? {
            Some(bytes) => self.decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Stores the accumulator of a key in a window.
    pub async fn put_keyed_accumulator(
        &self,
        key: &GroupingKey,
        window: &Window,
        acc: &A,
    ) -> ProcessorResult<()> {
        let k = self.window_key(Some(key), window)?;
        self.backend.put(&k, &Self::encode(acc)?).await
    }

    /// Removes a window's state, for every key.
    pub async fn delete_window(&self, window: &Window) -> ProcessorResult<()> {
        let k = self.window_key(None, window)?;
        for (key, _) in self.backend.scan_prefix(&k).await? {
            self.backend.delete(&key).await?;
        }
        Ok(())
    }
}
