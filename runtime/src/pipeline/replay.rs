//! Paced replay: a recorded input fed at a multiple of its event time's own pace, so that
//! a dashboard shows windows firing one after another instead of all at once.
//!
//! The pace follows the newest event time read: an out-of-order record is never waited
//! for, and a record stamped ahead waits until the wall clock catches up with it.

use std::time::{Duration, Instant};

/// Smaller waits are not worth a timer (the next record usually comes within them).
const MIN_WAIT: Duration = Duration::from_millis(5);

/// Paces records by event time at `rate` × real time.
#[derive(Debug, Clone)]
pub(super) struct Pacer {
    rate: f64,
    /// The wall clock and event time of the first record.
    origin: Option<(Instant, i64)>,
    newest: i64,
}

impl Pacer {
    /// A pacer at `rate` (a positive multiple of real time).
    pub fn new(rate: f64) -> Self {
        Pacer {
            rate,
            origin: None,
            newest: i64::MIN,
        }
    }

    /// How long to wait, at `now`, before taking a record stamped `event_time` (`None`:
    /// take it now).
    pub fn wait(&mut self, event_time: i64, now: Instant) -> Option<Duration> {
        let (start, first) = *self.origin.get_or_insert((now, event_time));
        if event_time <= self.newest {
            return None;
        }
        self.newest = event_time;
        let ahead_ms = event_time.saturating_sub(first).max(0) as f64 / self.rate;
        let due = start + Duration::from_secs_f64(ahead_ms / 1000.0);
        due.checked_duration_since(now).filter(|d| *d >= MIN_WAIT)
    }

    /// Waits as [`wait`](Self::wait) says.
    pub async fn pace(&mut self, event_time: i64) {
        if let Some(d) = self.wait(event_time, Instant::now()) {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_event_time_at_the_rate_and_never_for_older_records() {
        let t0 = Instant::now();
        let mut p = Pacer::new(60.0);
        assert_eq!(
            p.wait(1_000_000, t0),
            None,
            "the first record sets the origin"
        );
        // A minute of event time later is a second later at 60x.
        assert_eq!(p.wait(1_060_000, t0), Some(Duration::from_secs(1)));
        // Out of order: taken at once, and it does not move the pace back.
        assert_eq!(p.wait(1_030_000, t0), None);
        // Half a second in, the record two minutes in waits 1.5 s.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(p.wait(1_120_000, later), Some(Duration::from_millis(1500)));
        // Behind schedule: no wait.
        assert_eq!(p.wait(1_180_000, t0 + Duration::from_secs(10)), None);
    }
}
