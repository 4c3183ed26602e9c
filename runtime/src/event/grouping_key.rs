use serde::{Deserialize, Serialize};
use std::fmt;

/// The key of the dynamic builder: ordered `(field, value)` pairs.
///
/// Generated pipelines use typed tuple keys instead; this is the run-time, any-fields form.
///
/// ```
/// use llm_optimizer_processor::GroupingKey;
/// let key = GroupingKey::from_fields(&[("model", "claude-3-opus"), ("region", "us-west-2")]);
/// assert_eq!(key.to_string(), "model=claude-3-opus,region=us-west-2");
/// assert_eq!(key.get("model"), Some("claude-3-opus"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupingKey {
    fields: Vec<(String, String)>,
}

impl GroupingKey {
    /// A key made of these fields, in this order.
    pub fn from_fields<N: AsRef<str>, V: AsRef<str>>(fields: &[(N, V)]) -> Self {
        GroupingKey {
            fields: fields
                .iter()
                .map(|(n, v)| (n.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
        }
    }

    /// The key with no fields: everything in one group.
    pub fn global() -> Self {
        GroupingKey::default()
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The fields in order.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// Whether the key has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Display for GroupingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fields.is_empty() {
            return f.write_str("*");
        }
        for (i, (n, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}
