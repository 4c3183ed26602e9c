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

/// A timestamp serialized as chrono serializes it (RFC 3339, `Z`, as many fraction digits
/// as it needs: none, 3, 6 or 9), written without a formatter for the common case of a
/// year 0–9999 and whole milliseconds (window bounds): rows carry two per row.
pub(crate) struct Rfc3339<'a>(pub &'a DateTime<Utc>);

impl serde::Serialize for Rfc3339<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use chrono::{Datelike, Timelike};
        let t = self.0;
        let nanos = t.nanosecond();
        let year = t.year();
        if !(0..=9999).contains(&year) || !nanos.is_multiple_of(1_000_000) || nanos >= 1_000_000_000
        {
            return t.serialize(s);
        }
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, digits: usize, mut v: u32| {
            for k in (0..digits).rev() {
                b[at + k] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        let len = if nanos == 0 {
            b[19] = b'Z';
            20
        } else {
            put(20, 3, nanos / 1_000_000);
            24
        };
        s.serialize_str(std::str::from_utf8(&b[..len]).map_err(serde::ser::Error::custom)?)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn rfc3339_writes_what_chrono_writes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let check = |t: DateTime<Utc>| {
            assert_eq!(
                serde_json::to_string(&super::Rfc3339(&t)).unwrap(),
                serde_json::to_string(&t).unwrap(),
            );
        };
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Milliseconds from before 0000 to after 9999, whole seconds and minutes too.
            let ms = (x % 700_000_000_000_000) as i64 - 350_000_000_000_000;
            check(from_millis(ms));
            check(from_millis(ms - ms.rem_euclid(1000)));
            check(from_millis(ms - ms.rem_euclid(60_000)));
            // Micro- and nanosecond fractions take chrono's path.
            check(Utc.timestamp_nanos(ms.wrapping_mul(7_919) % 4_000_000_000_000_000_000));
        }
        check(DateTime::<Utc>::MIN_UTC);
        check(DateTime::<Utc>::MAX_UTC);
        check(from_millis(0));
    }
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
