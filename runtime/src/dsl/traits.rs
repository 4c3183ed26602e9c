use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::SystemTime;

use crate::event::GroupingKey;
use crate::operator::KeyRef;

/// An event type with a key and an event time, implemented by `#[derive(Event)]`.
///
/// It works in `create_pipeline::<E>()` (the builder can read its fields by name: see
/// [`PipelineBuilder::with_event_fields`](crate::PipelineBuilder::with_event_fields)) and
/// in `pipeline!`, which uses the typed key directly.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The key: a tuple of the `#[event(key)]` fields, in field order.
    type Key: Hash + Eq + Clone + Debug + Send + 'static;
    /// The key borrowed from the event, to find its state without building a key.
    type KeyRef<'a>: KeyRef<Self::Key>
    where
        Self: 'a;
    /// Names of the key fields.
    const KEY_FIELDS: &'static [&'static str];
    /// Name of the timestamp field.
    const TIMESTAMP_FIELD: &'static str;
    /// Name of the default measured field (`#[event(value)]`), if any.
    const VALUE_FIELD: Option<&'static str>;
    /// Event time in epoch milliseconds.
    fn event_time_millis(&self) -> i64;
    /// The key.
    fn key(&self) -> Self::Key;
    /// The key, borrowed.
    fn key_ref(&self) -> Self::KeyRef<'_>;
    /// The key as `(field, value)` pairs, for the dynamic builder and logs.
    fn grouping_key(&self) -> GroupingKey;

    /// The Rust names of the fields, in declaration order: bit `i` of
    /// [`deserialize_fields`](Self::deserialize_fields)' `read` stands for field `i`.
    /// Empty when the event has no decoder of its own.
    const FIELD_NAMES: &'static [&'static str] = &[];

    /// Deserializes the event from a map (a JSON object), parsing only the fields whose
    /// bit is set in `read` and skipping the others unread (they take their defaults).
    /// `#[derive(Event)]` generates it for structs whose serde attributes it follows; the
    /// default reads every field with serde's `Deserialize`.
    fn deserialize_fields<'de, D>(d: D, read: u64) -> Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
        Self: Sized,
    {
        let _ = read;
        <Self as serde::Deserialize>::deserialize(d)
    }
}

/// A field type that can be an event time: `DateTime<Utc>` or `SystemTime` (integers take
/// `#[event(timestamp, unit = "ms")]` and go through [`IntegerTime`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an event timestamp",
    label = "this field is marked `#[event(timestamp)]`",
    note = "use `DateTime<Utc>`, `SystemTime`, or an integer (`i64`, `u64`, …) with `unit = \"s\" | \"ms\" | \"us\" | \"ns\"`"
)]
pub trait EventTime {
    /// Epoch milliseconds.
    fn event_time_millis(&self) -> i64;
}

impl EventTime for DateTime<Utc> {
    #[inline]
    fn event_time_millis(&self) -> i64 {
        self.timestamp_millis()
    }
}

impl EventTime for SystemTime {
    #[inline]
    fn event_time_millis(&self) -> i64 {
        match self.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// An integer timestamp in some unit since the epoch.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an integer event timestamp",
    label = "this field has `unit = …`",
    note = "integer timestamps are `i64`, `u64`, `i32` or `u32`; use `DateTime<Utc>` or `SystemTime` without a unit"
)]
pub trait IntegerTime {
    /// Epoch milliseconds, given how many units make a millisecond (`per_ms`, e.g. 1000 for µs)
    /// or how many milliseconds make a unit (`ms_per`, e.g. 1000 for seconds).
    fn to_millis(&self, ms_per: i64, per_ms: i64) -> i64;
}

macro_rules! integer_time {
    ($($t:ty),*) => {$(
        impl IntegerTime for $t {
            fn to_millis(&self, ms_per: i64, per_ms: i64) -> i64 {
                let v = i64::try_from(*self).unwrap_or(i64::MAX);
                v.saturating_mul(ms_per).div_euclid(per_ms)
            }
        }
    )*};
}
integer_time!(i64, u64, i32, u32);

/// A field type an aggregation can measure: numbers, and `Option`s of numbers (`None` is
/// not measured).
#[diagnostic::on_unimplemented(
    message = "cannot aggregate over `{Self}`: it is not a number",
    label = "this field is not numeric",
    note = "count, sum, avg, min, max, stddev and percentile take numeric fields (`f64`, `u32`, `Option<f64>`, …); `count()` counts events of any type"
)]
pub trait Numeric {
    /// The value, or `None` when there is nothing to measure.
    fn to_f64(&self) -> Option<f64>;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss, reason = "a measure is an f64")]
            fn to_f64(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}
numeric!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl<T: Numeric> Numeric for Option<T> {
    fn to_f64(&self) -> Option<f64> {
        self.as_ref().and_then(Numeric::to_f64)
    }
}

/// A field type that can be part of a key: `Hash + Eq + Clone`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a key field: keys must be `Hash + Eq + Clone`",
    label = "this key field",
    note = "floating-point numbers are not `Eq`; key by a string, an integer or an enum instead"
)]
pub trait GroupKey: Hash + Eq + Clone + Debug + Send + 'static {
    /// The value as text, for [`GroupingKey`].
    fn key_text(&self) -> String {
        let s = format!("{self:?}");
        s.trim_matches('"').to_owned()
    }
}

impl<T: Hash + Eq + Clone + Debug + Send + 'static> GroupKey for T {}

/// Field `N` of an event type (`N` is a hash of the field's name), implemented by
/// `#[derive(Event)]` for every named field, so that `pipeline!` can name field types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no field of this name",
    label = "no such field in `{Self}`",
    note = "the fields of an event are those of its `#[derive(Event)]` struct"
)]
pub trait Field<const N: u64> {
    /// The field's type.
    type Type;
    /// The field.
    fn get(&self) -> &Self::Type;
}

/// The hash that names a field in [`Field`]: FNV-1a of its name.
pub const fn field_id(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// Compile-time check that `T` can be an event time (the call is spanned on the field type).
pub fn assert_event_time<T: EventTime + ?Sized>() {}
/// Compile-time check that `T` can be an integer timestamp.
pub fn assert_integer_time<T: IntegerTime + ?Sized>() {}
/// Compile-time check that `T` can be a key field.
pub fn assert_group_key<T: GroupKey>() {}
/// Compile-time check that a field can be measured.
pub fn assert_numeric<T: Numeric + ?Sized>(_: &T) {}

/// Gives a `filter:` closure its parameter type (`&E`).
pub fn filter_fn<E>(f: impl Fn(&E) -> bool) -> impl Fn(&E) -> bool {
    f
}
