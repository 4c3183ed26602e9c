//! Serde helpers for timestamps that arrive as RFC 3339 strings or epoch milliseconds.
//!
//! Use with `#[serde(with = "llm_optimizer_processor::event::timestamp_format")]` on a
//! `DateTime<Utc>` field: it reads `"2026-01-01T00:00:00.720Z"` or `1767225600720`, and
//! writes RFC 3339 with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Writes RFC 3339 with millisecond precision and a `Z` suffix.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Reads an RFC 3339 string or an integer of epoch milliseconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_any(TimestampVisitor)
}

struct TimestampVisitor;

impl<'de> Visitor<'de> for TimestampVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string or epoch milliseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| E::custom(format!("invalid timestamp `{v}`: {e}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        DateTime::<Utc>::from_timestamp_millis(v)
            .ok_or_else(|| E::custom(format!("epoch milliseconds {v} out of range")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        let v = i64::try_from(v)
            .map_err(|_| E::custom(format!("epoch milliseconds {v} out of range")))?;
        self.visit_i64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            self.visit_i64(v as i64)
        } else {
            Err(E::custom(format!(
                "epoch milliseconds {v} is not a whole number"
            )))
        }
    }
}

/// Parses a JSON value holding a timestamp (RFC 3339 string or epoch milliseconds) into
/// epoch milliseconds.
pub fn parse_json_millis(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        _ => None,
    }
}
