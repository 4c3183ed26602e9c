//! The YAML configuration of the `processor` command: the API reference's "Complete
//! Configuration Example" loads as is, with a few sections the reference leaves out
//! (`source`, `output`, `keys`, `measure`). `PROCESSOR_…` environment variables override the
//! file (`__` nests: `PROCESSOR_STATE__BACKEND=memory`). Unknown keys are rejected with a
//! "did you mean", and every value is checked with its key path in the message.

mod build;
mod env;
mod model;
mod validate;

pub use build::{pipeline_from_config, state_backend};
pub use model::*;
pub use validate::check_runnable;

use std::path::Path;

use crate::error::{ProcessorError, ProcessorResult};

/// Loads a config file, applies `PROCESSOR_…` environment overrides and validates it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("processor-config.yaml");
/// std::fs::write(&path, "processor:\n  buffer_size: 500\n  windows:\n    tumbling:\n      size_secs: 60\n").unwrap();
/// let config = llm_optimizer_processor::config::load_config(&path).await.unwrap();
/// assert_eq!(config.processor.buffer_size, 500);
/// assert_eq!(config.processor.windows.tumbling.size_secs, 60);
/// # })
/// ```
pub async fn load_config(path: impl AsRef<Path>) -> ProcessorResult<Config> {
    let path = path.as_ref();
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ProcessorError::io(format!("config file {}", path.display()), e))?;
    parse_config(&text, std::env::vars())
}

/// The built-in defaults (no file), with environment overrides applied.
pub fn default_config() -> ProcessorResult<Config> {
    parse_config("processor: {}\n", std::env::vars())
}

/// Parses YAML text, applies the `PROCESSOR_…` variables among `vars`, and validates.
pub fn parse_config(
    text: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> ProcessorResult<Config> {
    let mut tree: serde_norway::Value = serde_norway::from_str(text)
        .map_err(|e| ProcessorError::Config(format!("the file is not valid YAML: {e}")))?;
    if tree.is_null() {
        tree = serde_norway::from_str("processor: {}").expect("literal YAML");
    }
    env::apply_overrides(&mut tree, vars)?;
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        ProcessorError::Config(validate::explain(&path, &inner))
    })?;
    validate::validate(&config)?;
    Ok(config)
}
