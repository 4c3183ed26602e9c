//! Conversions between `chrono` timestamps, `std::time::Duration` and the epoch
//! milliseconds the operators compute with.

use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

/// Epoch milliseconds of a timestamp.
pub fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The timestamp of epoch milliseconds, clamped to chrono's range (so `i64::MIN` and
/// `i64::MAX`, used as "minus/plus infinity", map to the earliest/latest timestamps).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t,
        None if ms < 0 => DateTime::<Utc>::MIN_UTC,
        None => DateTime::<Utc>::MAX_UTC,
    }
}

/// Milliseconds of a duration, saturating at `i64::MAX`.
pub fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Floor of `t` onto the grid `offset + k * step` (`step > 0`).
#[inline]
pub(crate) fn align_down(t: i64, step: i64, offset: i64) -> i64 {
    let rel = t.saturating_sub(offset);
    offset.saturating_add(rel - rel.rem_euclid(step))
}

/// Ceiling of `t` onto the grid `offset + k * step` (`step > 0`).
#[inline]
pub(crate) fn align_up(t: i64, step: i64, offset: i64) -> i64 {
    let down = align_down(t, step, offset);
    if down == t {
        t
    } else {
        down.saturating_add(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment() {
        assert_eq!(align_down(7, 5, 0), 5);
        assert_eq!(align_down(-1, 5, 0), -5);
        assert_eq!(align_down(7, 5, 1), 6);
        assert_eq!(align_up(7, 5, 0), 10);
        assert_eq!(align_up(10, 5, 0), 10);
        assert_eq!(align_up(-4, 5, 0), 0);
    }

    #[test]
    fn millis_round_trip_and_clamp() {
        let t = from_millis(1_767_225_600_720);
        assert_eq!(to_millis(t), 1_767_225_600_720);
        assert_eq!(from_millis(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(from_millis(i64::MIN), DateTime::<Utc>::MIN_UTC);
        assert_eq!(duration_millis(Duration::from_secs(2)), 2000);
    }
}
