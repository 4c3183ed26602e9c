//! How the dynamic builder reads timestamp, key and measured value from any
//! `Serialize` event: closures when given, otherwise fields looked up by name.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_value::Value;
use std::collections::BTreeMap;

use super::record::Envelope;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::timestamp_format::parse_json_millis;
use crate::event::{FeedbackEvent, FeedbackFields, GroupingKey, KeyView};

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
    /// Key fields were named (`with_key_fields`, the config's `keys`): a record without
    /// one is a dead letter. The default key leaves out fields an event lacks.
    pub keys_required: bool,
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
            keys_required: false,
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

impl<T: Serialize + 'static> FieldExtractor<T> {
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

    /// The fields read by name, as [`FeedbackEvent`]'s names (`None` when a closure
    /// reads the event or a name is not one of them).
    pub fn fields_read(&self) -> Option<Vec<&'static str>> {
        if self.timestamp_fn.is_some() || self.key_fn.is_some() || self.value_fn.is_some() {
            return None;
        }
        let value = self.value_field.as_deref().unwrap_or("latency_ms");
        std::iter::once(self.timestamp_field.as_str())
            .chain(self.key_fields.iter().map(String::as_str))
            .chain(std::iter::once(value))
            .map(crate::event::static_name)
            .collect()
    }

    /// The event time only: the envelope's, the closure's, the field's, or the fallback.
    pub fn timestamp(&self, event: &T, envelope: &Envelope) -> ProcessorResult<i64> {
        if let Some(t) = envelope.timestamp {
            return Ok(t);
        }
        let own = match (&self.timestamp_fn, as_feedback(event)) {
            (None, Some(e)) if self.timestamp_field == "timestamp" => {
                Ok(e.timestamp.timestamp_millis())
            }
            _ if self.timestamp_fn.is_some() => self.own_timestamp(event, None),
            _ => {
                let json = serde_value::to_value(event)
                    .map_err(|e| ProcessorError::Serialization(e.to_string()))?;
                self.own_timestamp(event, Some(&json))
            }
        };
        match own {
            Err(e @ ProcessorError::WindowAssignment(_)) => envelope.fallback_timestamp.ok_or(e),
            other => other,
        }
    }

    /// Reads what the pipeline needs; the timestamp and key an envelope gives win (its
    /// key is taken), and its fallback stands in for an event timestamp that is missing
    /// or unreadable.
    pub fn extract(&self, event: &T, envelope: &mut Envelope) -> ProcessorResult<Extracted> {
        if let Some(e) = as_feedback(event) {
            if let Some(x) = self.extract_feedback(e, envelope) {
                return x;
            }
        }
        let json = if self.needs_reflection() {
            Some(
                serde_value::to_value(event)
                    .map_err(|e| ProcessorError::Serialization(e.to_string()))?,
            )
        } else {
            None
        };
        let timestamp = match envelope.timestamp {
            Some(t) => t,
            None => match self.own_timestamp(event, json.as_ref()) {
                Err(e @ ProcessorError::WindowAssignment(_)) => {
                    envelope.fallback_timestamp.ok_or(e)?
                }
                other => other?,
            },
        };
        let key = match (envelope.key.take(), &self.key_fn, &json) {
            (Some(k), _, _) => k,
            (None, Some(f), _) => f(event),
            (None, None, Some(j)) => {
                let mut k = GroupingKey::global();
                for name in &self.key_fields {
                    match field(j, name) {
                        Some(Value::Unit | Value::Option(None)) | None if self.keys_required => {
                            return Err(ProcessorError::MissingKeyField(name.clone()))
                        }
                        Some(v) => k.push(name.clone(), key_value(v)),
                        None => {}
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
        finite(value)?;
        Ok(Extracted {
            timestamp,
            key,
            value,
        })
    }

    /// The built-in event read through typed accessors (no reflection); `None` when a
    /// closure, an envelope's key or a field name it does not have asks for the general
    /// path.
    fn extract_feedback(
        &self,
        e: &FeedbackEvent,
        envelope: &mut Envelope,
    ) -> Option<ProcessorResult<Extracted>> {
        let mut buf = [("", ""); MAX_VIEW];
        Some(
            self.feedback_view(e, envelope, &mut buf)?
                .map(|(timestamp, n, value)| Extracted {
                    timestamp,
                    key: crate::operator::KeyRef::to_key(&KeyView(&buf[..n])),
                    value,
                }),
        )
    }

    /// The built-in event read through typed accessors into a borrowed key: its key
    /// fields go to `buf`; returns the event time, how many key fields and the measured
    /// value. `None` asks for the general path (closures, an envelope's key, more than
    /// [`MAX_VIEW`] key fields, a field name the event does not have).
    pub fn feedback_view<'a>(
        &'a self,
        e: &'a FeedbackEvent,
        envelope: &Envelope,
        buf: &mut [(&'a str, &'a str); MAX_VIEW],
    ) -> Option<ProcessorResult<(i64, usize, Option<f64>)>> {
        if self.timestamp_fn.is_some()
            || self.key_fn.is_some()
            || self.value_fn.is_some()
            || envelope.key.is_some()
            || self.timestamp_field != "timestamp"
            || self.key_fields.len() > MAX_VIEW
        {
            return None;
        }
        let present = envelope.present.unwrap_or(FeedbackFields::ALL);
        let timestamp = envelope
            .timestamp
            .unwrap_or_else(|| e.timestamp.timestamp_millis());
        let mut n = 0;
        for name in &self.key_fields {
            let v: &str = match name.as_str() {
                "model" => &e.model,
                "region" => &e.region,
                "tenant" => &e.tenant,
                "event_id" => &e.event_id,
                "success" if e.success => "true",
                "success" => "false",
                _ => return None,
            };
            if !present.contains(name) {
                if self.keys_required {
                    return Some(Err(ProcessorError::MissingKeyField(name.clone())));
                }
                continue;
            }
            buf[n] = (name.as_str(), v);
            n += 1;
        }
        let name = self.value_field.as_deref().unwrap_or("latency_ms");
        let v = match name {
            "latency_ms" => Some(e.latency_ms),
            "ttft_ms" => Some(e.ttft_ms),
            "cost_usd" => Some(e.cost_usd),
            "input_tokens" => Some(f64::from(e.input_tokens)),
            "output_tokens" => Some(f64::from(e.output_tokens)),
            "rating" => e.rating,
            _ => return None,
        };
        let value = v.filter(|_| present.contains(name));
        Some(finite(value).map(|()| (timestamp, n, value)))
    }
}

/// Key fields a borrowed key holds (more take the general path).
pub(crate) const MAX_VIEW: usize = 8;

/// The event as the built-in [`FeedbackEvent`], when it is one.
pub(crate) fn as_feedback<T: 'static>(event: &T) -> Option<&FeedbackEvent> {
    (event as &dyn std::any::Any).downcast_ref::<FeedbackEvent>()
}

fn finite(value: Option<f64>) -> ProcessorResult<()> {
    match value {
        Some(v) if !v.is_finite() => Err(ProcessorError::Aggregation(format!(
            "measured value {v} is not finite"
        ))),
        _ => Ok(()),
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
            .extract(&e, &mut Envelope::default())
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
        assert_eq!(
            ex.extract(&v, &mut Envelope::default()).unwrap().value,
            None
        );
        let v = serde_json::json!({"timestamp": 5, "rating": "good"});
        assert!(ex.extract(&v, &mut Envelope::default()).is_err());
        let v = serde_json::json!({"rating": 1});
        let e = ex
            .extract(&v, &mut Envelope::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing timestamp field `timestamp`"), "{e}");
    }
}
