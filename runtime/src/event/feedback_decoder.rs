//! A JSON decoder for [`FeedbackEvent`] specialized to the fields a pipeline reads.
//!
//! `serde_json::from_slice::<FeedbackEvent>` allocates every string of every event and
//! parses every field. A pipeline reads a few: Q1 of the benchmarks reads `model`,
//! `region`, `timestamp` and `latency_ms`. [`FeedbackDecoder`] decodes into an event the
//! caller reuses (strings keep their buffers, so steady state allocates nothing), parses
//! only the fields in its [`FeedbackFields`] and skips the others with
//! [`serde::de::IgnoredAny`], and reads the usual `YYYY-MM-DDTHH:MM:SS.fffZ` timestamp
//! without chrono's general RFC 3339 parser (other forms fall back to it).
//!
//! Two paths: a byte scanner ([`scan`]) for the common shape (a flat object of ASCII
//! strings without escapes, numbers and literals), which skips unused values without
//! parsing them and hands the numbers it needs to serde_json's number parser; and, for
//! anything else, serde_json's deserializer driven by a visitor that writes into the
//! event. The scanner accepts only what it fully checks, so both paths give the same
//! event, and every error comes from the serde path with serde_json's message.

mod scan;

use super::FeedbackEvent;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// The JSON names of [`FeedbackEvent`]'s fields, in declaration order.
const NAMES: [&str; 12] = [
    "event_id",
    "timestamp",
    "model",
    "region",
    "tenant",
    "latency_ms",
    "ttft_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "rating",
    "success",
];
const TIMESTAMP: usize = 1;

/// A set of [`FeedbackEvent`] fields: those a [`FeedbackDecoder`] fills in. The timestamp
/// is always among them (every event needs its event time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackFields(u16);

impl FeedbackFields {
    /// Every field: decoding gives what `serde_json` gives.
    pub const ALL: FeedbackFields = FeedbackFields((1 << NAMES.len()) - 1);

    /// The named fields and the timestamp.
    ///
    /// ```
    /// use llm_optimizer_processor::event::FeedbackFields;
    /// let q1 = FeedbackFields::of(["model", "region", "latency_ms"]).unwrap();
    /// assert!(q1.contains("timestamp") && !q1.contains("tenant"));
    /// assert!(FeedbackFields::of(["latncy_ms"]).is_err());
    /// ```
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, UnknownField> {
        let mut bits = 1 << TIMESTAMP;
        for n in names {
            let i = index(n).ok_or_else(|| UnknownField(n.to_owned()))?;
            bits |= 1 << i;
        }
        Ok(FeedbackFields(bits))
    }

    /// Whether `name` is in the set.
    pub fn contains(self, name: &str) -> bool {
        index(name).is_some_and(|i| self.has(i))
    }

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// A field name that [`FeedbackEvent`] does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`FeedbackEvent` has no field `{0}` (its fields are {names})", names = NAMES.join(", "))]
pub struct UnknownField(pub String);

/// The `'static` name of a field of [`FeedbackEvent`], if it has one by that name.
pub(crate) fn static_name(name: &str) -> Option<&'static str> {
    index(name).map(|i| NAMES[i])
}

/// A field's index by name: the scanner's byte table (one table for both paths).
fn index(name: &str) -> Option<usize> {
    scan::field_of(name.as_bytes())
}

/// Decodes JSON objects into a reused [`FeedbackEvent`], filling in only its fields.
///
/// Fields outside the set keep their defaults (empty strings, zeros, no rating,
/// `success: true`) and are skipped unread, so a malformed value in a field the pipeline
/// does not read is not an error here (it is for `serde_json::from_slice`). Otherwise the
/// rules are `FeedbackEvent`'s: unknown fields ignored, a missing `timestamp` or a
/// duplicate field is an error, `timestamp` is RFC 3339 or epoch milliseconds.
///
/// ```
/// use llm_optimizer_processor::event::{FeedbackDecoder, FeedbackFields};
/// use llm_optimizer_processor::FeedbackEvent;
///
/// let decoder = FeedbackDecoder::new(FeedbackFields::of(["model", "latency_ms"]).unwrap());
/// let mut event = FeedbackEvent::default();
/// decoder
///     .decode_into(
///         br#"{"timestamp":"2026-01-01T00:00:00.720Z","model":"m1","tenant":"t9","latency_ms":812.5}"#,
///         &mut event,
///     )
///     .unwrap();
/// assert_eq!((event.model.as_str(), event.latency_ms), ("m1", 812.5));
/// assert_eq!(event.tenant, ""); // not asked for
/// assert_eq!(event.timestamp.timestamp_millis(), 1_767_225_600_720);
/// assert!(decoder.decode_into(br#"{"model":"m1"}"#, &mut event).is_err()); // no timestamp
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FeedbackDecoder {
    fields: FeedbackFields,
}

impl FeedbackDecoder {
    /// A decoder filling in `fields`.
    pub fn new(fields: FeedbackFields) -> Self {
        FeedbackDecoder { fields }
    }

    /// The fields this decoder fills in.
    pub fn fields(&self) -> FeedbackFields {
        self.fields
    }

    /// Decodes one JSON object into `event`, overwriting all of it (its string buffers
    /// are reused). On error `event` holds a partly decoded record: do not use it.
    pub fn decode_into(&self, json: &[u8], event: &mut FeedbackEvent) -> serde_json::Result<()> {
        self.decode_present(json, event).map(drop)
    }

    /// [`decode_into`](Self::decode_into), returning which fields the record had (with a
    /// value other than `null`): a field missing from the record is not the same as a
    /// field that is zero.
    ///
    /// ```
    /// use llm_optimizer_processor::event::{FeedbackDecoder, FeedbackFields};
    /// use llm_optimizer_processor::FeedbackEvent;
    ///
    /// let decoder = FeedbackDecoder::new(FeedbackFields::ALL);
    /// let mut event = FeedbackEvent::default();
    /// let present = decoder
    ///     .decode_present(br#"{"timestamp":0,"model":"m","latency_ms":null}"#, &mut event)
    ///     .unwrap();
    /// assert!(present.contains("model") && !present.contains("region"));
    /// assert!(!present.contains("latency_ms")); // null: not measured
    /// ```
    pub fn decode_present(
        &self,
        json: &[u8],
        event: &mut FeedbackEvent,
    ) -> serde_json::Result<FeedbackFields> {
        reset(event);
        if let Some(seen) = scan::scan(json, self.fields, event) {
            return Ok(FeedbackFields(seen));
        }
        // Not the common shape (or not valid): serde decides, and words any error.
        reset(event);
        let mut de = serde_json::Deserializer::from_slice(json);
        let seen = de.deserialize_map(EventVisitor {
            fields: self.fields,
            event,
        })?;
        de.end()?;
        Ok(FeedbackFields(seen))
    }

    /// Decodes one JSON object into a new event.
    pub fn decode(&self, json: &[u8]) -> serde_json::Result<FeedbackEvent> {
        let mut event = FeedbackEvent::default();
        self.decode_into(json, &mut event)?;
        Ok(event)
    }
}

/// Every field to its default, keeping string capacity.
fn reset(e: &mut FeedbackEvent) {
    e.event_id.clear();
    e.timestamp = DateTime::<Utc>::UNIX_EPOCH;
    e.model.clear();
    e.region.clear();
    e.tenant.clear();
    e.latency_ms = 0.0;
    e.ttft_ms = 0.0;
    e.input_tokens = 0;
    e.output_tokens = 0;
    e.cost_usd = 0.0;
    e.rating = None;
    e.success = true;
}

struct EventVisitor<'a> {
    fields: FeedbackFields,
    event: &'a mut FeedbackEvent,
}

impl<'de> Visitor<'de> for EventVisitor<'_> {
    type Value = u16;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FeedbackEvent object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u16, A::Error> {
        let e = self.event;
        let mut seen: u16 = 0;
        while let Some(key) = map.next_key_seed(FieldKey)? {
            let Some(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if seen & (1 << i) != 0 {
                return Err(de::Error::duplicate_field(NAMES[i]));
            }
            seen |= 1 << i;
            if !self.fields.has(i) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match i {
                // A null string is a missing one (a null key field is a missing key field).
                0 | 2 | 3 | 4 => {
                    let into = match i {
                        0 => &mut e.event_id,
                        2 => &mut e.model,
                        3 => &mut e.region,
                        _ => &mut e.tenant,
                    };
                    if !map.next_value_seed(StrInto(into))? {
                        seen &= !(1 << i);
                    }
                }
                1 => e.timestamp = map.next_value_seed(Timestamp)?,
                // A null measure is a missing one (not measured), not a type error.
                5..=10 => {
                    let present = match i {
                        5 => map.next_value::<Option<f64>>()?.map(|x| e.latency_ms = x),
                        6 => map.next_value::<Option<f64>>()?.map(|x| e.ttft_ms = x),
                        7 => map.next_value::<Option<u32>>()?.map(|x| e.input_tokens = x),
                        8 => map
                            .next_value::<Option<u32>>()?
                            .map(|x| e.output_tokens = x),
                        9 => map.next_value::<Option<f64>>()?.map(|x| e.cost_usd = x),
                        _ => map.next_value::<Option<f64>>()?.map(|x| e.rating = Some(x)),
                    };
                    if present.is_none() {
                        seen &= !(1 << i);
                    }
                }
                _ => e.success = map.next_value()?,
            }
        }
        if seen & (1 << TIMESTAMP) == 0 {
            return Err(de::Error::missing_field("timestamp"));
        }
        Ok(seen)
    }
}

/// A key: the field's index, or `None` for a field `FeedbackEvent` does not have.
struct FieldKey;

impl<'de> DeserializeSeed<'de> for FieldKey {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldKey {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(index(v))
    }
}

/// A string value written into an existing buffer; `false` for `null` (left empty).
struct StrInto<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for StrInto<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrInto<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        self.0.push_str(v);
        Ok(true)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// The timestamp: RFC 3339 (the common `…T…Z` shape read directly) or epoch milliseconds.
struct Timestamp;

impl<'de> DeserializeSeed<'de> for Timestamp {
    type Value = DateTime<Utc>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Timestamp {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp string or epoch milliseconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match utc_fast(v.as_bytes()) {
            Some(t) => Ok(t),
            None => super::timestamp_format::deserialize(de::value::StrDeserializer::new(v)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        super::timestamp_format::deserialize(de::value::I64Deserializer::new(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        super::timestamp_format::deserialize(de::value::U64Deserializer::new(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        super::timestamp_format::deserialize(de::value::F64Deserializer::new(v))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f…]Z` (1–9 fraction digits), or `None` for anything else (the
/// general parser decides; it also rejects what this rejects).
fn utc_fast(b: &[u8]) -> Option<DateTime<Utc>> {
    fn num(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(digits)? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    let (h, m, s) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    // Leap seconds (`:60`) and the like go to the general parser.
    Some(date.and_hms_nano_opt(h, m, s, nanos)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(json: &str) -> serde_json::Result<FeedbackEvent> {
        serde_json::from_str(json)
    }

    fn ours(json: &str) -> serde_json::Result<FeedbackEvent> {
        FeedbackDecoder::new(FeedbackFields::ALL).decode(json.as_bytes())
    }

    #[test]
    fn all_fields_decode_as_serde_does() {
        for json in [
            r#"{"event_id":"e1","timestamp":"2026-01-01T00:00:00.720Z","model":"m","region":"r","tenant":"t","latency_ms":1.5,"ttft_ms":2,"input_tokens":3,"output_tokens":4,"cost_usd":0.25,"rating":null,"success":false}"#,
            r#"{"timestamp":1767225600720,"rating":4,"extra":{"nested":[1,2,{"x":null}]}}"#,
            r#"{"timestamp":"2026-01-01T02:00:00+02:00","model":"caf\u00e9 \"quoted\""}"#,
            r#"{"timestamp":"2026-01-01T00:00:00Z"}"#,
            r#"{"timestamp":"2026-01-01T00:00:00.123456789Z"}"#,
            r#"{"timestamp":"2016-12-31T23:59:60Z"}"#,
            r#" { "timestamp" : 5 , "success" : true } "#,
        ] {
            assert_eq!(ours(json).unwrap(), serde(json).unwrap(), "{json}");
        }
    }

    #[test]
    fn rejects_what_serde_rejects() {
        for json in [
            r#"{"model":"m"}"#,
            r#"{"timestamp":"yesterday"}"#,
            r#"{"timestamp":"2026-02-30T00:00:00Z"}"#,
            r#"{"timestamp":"2026-01-01T24:00:00Z"}"#,
            r#"{"timestamp":1,"timestamp":2}"#,
            r#"{"timestamp":1,"model":7}"#,
            r#"{"timestamp":1,"latency_ms":"fast"}"#,
            r#"{"timestamp":1} trailing"#,
            r#"{"timestamp":1,"#,
            r#"[1]"#,
            "",
        ] {
            assert!(ours(json).is_err(), "accepted {json}");
            assert!(
                serde(json).is_err() || json.starts_with('['),
                "serde accepts {json}"
            );
        }
    }

    #[test]
    fn fields_outside_the_set_are_skipped_unread() {
        let d = FeedbackDecoder::new(FeedbackFields::of(["model"]).unwrap());
        let e = d
            .decode(br#"{"timestamp":1,"model":"m","tenant":"t","latency_ms":"not a number"}"#)
            .unwrap();
        assert_eq!(
            (e.model.as_str(), e.tenant.as_str(), e.latency_ms),
            ("m", "", 0.0)
        );
        // Still checked for duplicates, as serde does.
        assert!(d
            .decode(br#"{"timestamp":1,"tenant":"a","tenant":"b"}"#)
            .is_err());
    }

    #[test]
    fn a_reused_event_is_fully_overwritten() {
        let d = FeedbackDecoder::new(FeedbackFields::ALL);
        let mut e = d
            .decode(br#"{"timestamp":1,"model":"long model name","rating":5,"success":false}"#)
            .unwrap();
        d.decode_into(br#"{"timestamp":2,"region":"eu"}"#, &mut e)
            .unwrap();
        assert_eq!(e, serde(r#"{"timestamp":2,"region":"eu"}"#).unwrap());
    }

    #[test]
    fn unknown_field_names_are_refused() {
        let err = FeedbackFields::of(["model", "latncy_ms"]).unwrap_err();
        assert!(err.to_string().contains("no field `latncy_ms`"), "{err}");
    }
}
