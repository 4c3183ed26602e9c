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

/// A [`GroupingKey`] borrowed from an event: its `(field, value)` pairs as string slices.
/// It hashes and compares like the owned key, so the operator finds a key's state without
/// building the key; the owned key is made only when the key is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyView<'a>(pub &'a [(&'a str, &'a str)]);

impl std::hash::Hash for KeyView<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // A slice of `(&str, &str)` hashes as a `Vec<(String, String)>` does.
        self.0.hash(state)
    }
}

impl hashbrown::Equivalent<GroupingKey> for KeyView<'_> {
    fn equivalent(&self, key: &GroupingKey) -> bool {
        self.0.len() == key.fields.len()
            && self
                .0
                .iter()
                .zip(&key.fields)
                .all(|((n, v), (kn, kv))| n == kn && v == kv)
    }
}

impl crate::operator::KeyRef<GroupingKey> for KeyView<'_> {
    fn to_key(&self) -> GroupingKey {
        GroupingKey::from_fields(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hashbrown::Equivalent;
    use std::hash::BuildHasher;

    #[test]
    fn a_view_hashes_and_compares_like_the_owned_key() {
        let s = hashbrown::DefaultHashBuilder::default();
        let owned = GroupingKey::from_fields(&[("model", "m"), ("region", "eu")]);
        let view = KeyView(&[("model", "m"), ("region", "eu")]);
        assert_eq!(s.hash_one(&owned), s.hash_one(view));
        assert!(view.equivalent(&owned));
        assert!(!KeyView(&[("model", "m")]).equivalent(&owned));
        assert_eq!(
            <KeyView as crate::operator::KeyRef<GroupingKey>>::to_key(&view),
            owned
        );
    }
}
