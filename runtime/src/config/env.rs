//! `PROCESSOR_…` environment overrides: `PROCESSOR_PARALLELISM=8` sets `processor.parallelism`,
//! `__` nests (`PROCESSOR_KAFKA__CONSUMER__BOOTSTRAP_SERVERS=kafka:9092`). Values are read as
//! YAML scalars, so numbers, booleans and `[a, b]` lists keep their types.

use serde_norway::{Mapping, Value};

use crate::error::{ProcessorError, ProcessorResult};

const PREFIX: &str = "PROCESSOR_";

/// Variables of the form `PROCESSOR_…` that are not the processor's own knobs.
const NOT_CONFIG: &[&str] = &["PROCESSOR_DEAD_LETTER_DIR"];

pub fn apply_overrides(
    tree: &mut Value,
    vars: impl IntoIterator<Item = (String, String)>,
) -> ProcessorResult<()> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && !NOT_CONFIG.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[PREFIX.len()..]
            .split("__")
            .map(|p| p.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(ProcessorError::Config(format!(
                "environment variable `{name}` has an empty key part; write e.g. `PROCESSOR_STATE__BACKEND`"
            )));
        }
        let value: Value = serde_norway::from_str(&raw).unwrap_or(Value::String(raw));
        let mut node = match tree {
            Value::Mapping(m) => m
                .entry(Value::String("processor".into()))
                .or_insert_with(|| Value::Mapping(Mapping::new())),
            _ => {
                return Err(ProcessorError::Config(
                    "the config file must be a mapping with a `processor:` key".into(),
                ))
            }
        };
        for (i, part) in path.iter().enumerate() {
            if node.is_null() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(m) = node else {
                return Err(ProcessorError::Config(format!(
                    "environment variable `{name}` goes below `{}`, which is not a section",
                    path[..i].join(".")
                )));
            };
            let key = Value::String(part.clone());
            if i + 1 == path.len() {
                m.insert(key, value.clone());
                break;
            }
            node = m
                .entry(key)
                .or_insert_with(|| Value::Mapping(Mapping::new()));
        }
    }
    Ok(())
}
