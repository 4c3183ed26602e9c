//! How the dynamic builder reads timestamp, key and measured value from any
//! `Serialize` event: closures when given, otherwise fields looked up by name.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_value::Value;
use std::collections::BTreeMap;

use crate::error::{ProcessorError, ProcessorResult};
use crate::event::timestamp_format::parse_json_millis;
use crate::event::GroupingKey;

type TimestampFn<T> = Box<dyn Fn(&T) -> Option<DateTime<Utc>> + Send + Sync>;
type KeyFn<T> = Box<dyn Fn(&T) -> GroupingKey + Send + Sync>;
type ValueFn<T> = Box<dyn Fn(&T) -> Option<f64> + Send + Sync>;

/// What one event contributes: event time (ms), key and measured value (None = null).
pub(crate) struct Extracted {
    pub timestamp: i64,
    pub key: GroupingKey,
    pub value: Option<f64>,
}

pub(crate) struct FieldExtractor<T> {
    pub timestamp_field: String,
    pub key_fields: Vec<String>,
    /// `None`: the first of `latency_ms`, `value` that the event has.
    pub value_field: Option<String>,
    pub timestamp_fn: Option<TimestampFn<T>>,
    pub key_fn: Option<KeyFn<T>>,
    pub value_fn: Option<ValueFn<T>>,
}

impl<T> Default for FieldExtractor<T> {
    fn default() -> Self {
        FieldExtractor {
            timestamp_field: "timestamp".into(),
            key_fields: vec!["model".into(), "region".into()],
            value_field: None,
            timestamp_fn: None,
            key_fn: None,
            value_fn: None,
        }
    }
}

fn field<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    match obj {
        Value::Map(m) => lookup(m, name),
        Value::Newtype(inner) => field(inner, name),
        _ => None,
    }
}

fn lookup<'a>(m: &'a BTreeMap<Value, Value>, name: &str) -> Option<&'a Value> {
    m.get(&Value::String(name.to_owned())).map(|v| match v {
        Value::Option(Some(inner)) => inner.as_ref(),
        other => other,
    })
}

/// A numeric field as `f64`, `None` for null or absent, `Err` for anything else.
fn number(v: &Value) -> Result<Option<f64>, ()> {
    Ok(Some(match v {
        Value::F64(x) => *x,
        Value::F32(x) => f64::from(*x),
        Value::I8(x) => f64::from(*x),
        Value::I16(x) => f64::from(*x),
        Value::I32(x) => f64::from(*x),
        Value::I64(x) => *x as f64,
        Value::U8(x) => f64::from(*x),
        Value::U16(x) => f64::from(*x),
        Value::U32(x) => f64::from(*x),
        Value::U64(x) => *x as f64,
        Value::Unit | Value::Option(None) => return Ok(None),
        _ => return Err(()),
    }))
}

fn timestamp_millis(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_json_millis(&serde_json::Value::String(s.clone())),
        other => match number(other) {
            Ok(Some(x)) if x.fract() == 0.0 && x.abs() < 9.0e15 => Some(x as i64),
            _ => None,
        },
    }
}

fn key_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Char(c) => c.to_string(),
        Value::Bool(b) => b.to_string(),
        other => match number(other) {
            Ok(Some(x)) => x.to_string(),
            _ => format!("{other:?}"),
        },
    }
}

impl<T: Serialize> FieldExtractor<T> {
    fn needs_reflection(&self) -> bool {
        self.timestamp_fn.is_none() || self.key_fn.is_none() || self.value_fn.is_none()
    }

    /// The event's own timestamp (closure or field), epoch milliseconds.
    fn own_timestamp(&self, event: &T, json: Option<&serde_value::Value>) -> ProcessorResult<i64> {
        Ok(match (&self.timestamp_fn, json) {
            (Some(f), _) => f(event).map(|t| t.timestamp_millis()).ok_or_else(|| {
                ProcessorError::WindowAssignment("the event has no timestamp".into())
            })?,
            (None, Some(j)) => {
                let v = field(j, &self.timestamp_field).ok_or_else(|| {
                    ProcessorError::WindowAssignment(format!(
                        "missing timestamp field `{}`",
                        self.timestamp_field
                    ))
                })?;
                timestamp_millis(v).ok_or_else(|| {
                    ProcessorError::WindowAssignment(format!(
                        "field `{}` is not an RFC 3339 timestamp or epoch milliseconds: {v:?}",
                        self.timestamp_field
                    ))
                })?
            }
            (None, None) => {
                return Err(ProcessorError::Internal(
                    "no timestamp extractor configured".into(),
                ))
            }
        })
    }

    /// Reads what the pipeline needs; `timestamp`/`key` given by an envelope win, and
    /// `fallback` stands in for an event timestamp that is missing or unreadable.
    pub fn extract(
        &self,
        event: &T,
        timestamp: Option<i64>,
        fallback: Option<i64>,
        key: Option<GroupingKey>,
    ) -> ProcessorResult<Extracted> {
        let json = if self.needs_reflection() {
            Some(
                serde_value::to_value(event)
                    .map_err(|e| ProcessorError::Serialization(e.to_string()))?,
            )
        } else {
            None
        };
        let timestamp = match timestamp {
            Some(t) => t,
            None => match self.own_timestamp(event, json.as_ref()) {
                Err(e @ ProcessorError::WindowAssignment(_)) => fallback.ok_or(e)?,
                other => other?,
            },
        };
        let key = match (key, &self.key_fn, &json) {
            (Some(k), _, _) => k,
            (None, Some(f), _) => f(event),
            (None, None, Some(j)) => {
                let mut k = GroupingKey::global();
                for name in &self.key_fields {
                    if let Some(v) = field(j, name) {
                        k.push(name.clone(), key_value(v));
                    }
                }
                k
            }
            (None, None, None) => GroupingKey::global(),
        };
        let value = match (&self.value_fn, &json) {
            (Some(f), _) => f(event),
            (None, Some(j)) => {
                let (name, v) = match &self.value_field {
                    Some(n) => (n.as_str(), field(j, n)),
                    None => ["latency_ms", "value"]
                        .into_iter()
                        .find_map(|n| field(j, n).map(|v| (n, Some(v))))
                        .unwrap_or(("value", None)),
                };
                match v.map(number) {
                    None => None,
                    Some(Ok(x)) => x,
                    Some(Err(())) => {
                        return Err(ProcessorError::Aggregation(format!(
                            "field `{name}` is not a number: {:?}",
                            v.expect("matched Some")
                        )))
                    }
                }
            }
            (None, None) => None,
        };
        if let Some(v) = value {
            if !v.is_finite() {
                return Err(ProcessorError::Aggregation(format!(
                    "measured value {v} is not finite"
                )));
            }
        }
        Ok(Extracted {
            timestamp,
            key,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FeedbackEvent;

    #[test]
    fn feedback_defaults_key_model_region_and_latency() {
        let e: FeedbackEvent = serde_json::from_str(
            r#"{"timestamp":1000,"model":"m","region":"r","latency_ms":12.5}"#,
        )
        .unwrap();
        let x = FieldExtractor::<FeedbackEvent>::default()
            .extract(&e, None, None, None)
            .unwrap();
        assert_eq!(x.timestamp, 1000);
        assert_eq!(x.key.to_string(), "model=m,region=r");
        assert_eq!(x.value, Some(12.5));
    }

    #[test]
    fn null_value_is_unmeasured_and_string_value_is_an_error() {
        let ex = FieldExtractor::<serde_json::Value> {
            value_field: Some("rating".into()),
            ..Default::default()
        };
        let v = serde_json::json!({"timestamp": 5, "rating": null});
        assert_eq!(ex.extract(&v, None, None, None).unwrap().value, None);
        let v = serde_json::json!({"timestamp": 5, "rating": "good"});
        assert!(ex.extract(&v, None, None, None).is_err());
        let v = serde_json::json!({"rating": 1});
        let e = ex.extract(&v, None, None, None).err().unwrap().to_string();
        assert!(e.contains("missing timestamp field `timestamp`"), "{e}");
    }
}
