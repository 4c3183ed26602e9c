use std::time::{Duration, Instant};

use super::WatermarkGenerator;
use crate::time::duration_millis;

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    max_event_time: i64,
    last_seen: Instant,
    idle: bool,
    seen: bool,
}

/// Watermark = max event time seen − bound, per partition; combined by minimum over the
/// partitions that are not idle.
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::{Duration, Instant};
///
/// let mut wm = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
/// let now = Instant::now();
/// assert_eq!(wm.on_event(0, 100_000, now), Some(70_000));
/// assert_eq!(wm.on_event(0, 90_000, now), None); // older event: no progress
/// assert_eq!(wm.partition_watermark(0), 70_000);
/// ```
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrdernessWatermark {
    bound: i64,
    idle_timeout: Option<Duration>,
    partitions: Vec<Option<PartitionClock>>,
    emitted: i64,
}

impl BoundedOutOfOrdernessWatermark {
    /// Tolerates events up to `max_out_of_orderness` older than the newest one seen.
    pub fn new(max_out_of_orderness: Duration) -> Self {
        BoundedOutOfOrdernessWatermark {
            bound: duration_millis(max_out_of_orderness),
            idle_timeout: None,
            partitions: Vec::new(),
            emitted: i64::MIN,
        }
    }

    /// A partition that sends nothing for this long (processing time) stops holding the
    /// combined watermark back, until it sends again.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The out-of-orderness bound in milliseconds.
    pub fn bound_millis(&self) -> i64 {
        self.bound
    }

    #[inline]
    fn slot(&mut self, partition: u32, now: Instant) -> &mut PartitionClock {
        let i = partition as usize;
        if self.partitions.len() <= i {
            self.partitions.resize(i + 1, None);
        }
        self.partitions[i].get_or_insert(PartitionClock {
            max_event_time: i64::MIN,
            last_seen: now,
            idle: false,
            seen: false,
        })
    }

    fn combined(&self) -> Option<i64> {
        self.partitions
            .iter()
            .flatten()
            .filter(|p| !p.idle)
            .map(|p| p.max_event_time.saturating_sub(self.bound))
            .min()
    }

    /// A partition joined (a Kafka partition assigned to this instance): the combined
    /// watermark is again the minimum over the partitions now held, even if that is
    /// behind what was emitted before, so that the joining partition's windows fire
    /// when it catches up.
    fn rebase(&mut self) {
        if let Some(c) = self.combined() {
            self.emitted = self.emitted.min(c);
        }
    }

    #[inline]
    fn advance(&mut self) -> Option<i64> {
        match self.combined() {
            Some(c) if c > self.emitted => {
                self.emitted = c;
                Some(c)
            }
            _ => None,
        }
    }
}

impl WatermarkGenerator for BoundedOutOfOrdernessWatermark {
    #[inline]
    fn on_event(&mut self, partition: u32, event_time_ms: i64, now: Instant) -> Option<i64> {
        let p = self.slot(partition, now);
        p.seen = true;
        p.last_seen = now;
        p.idle = false;
        if event_time_ms > p.max_event_time {
            p.max_event_time = event_time_ms;
        }
        self.advance()
    }

    fn on_tick(&mut self, now: Instant) -> Option<i64> {
        if let Some(timeout) = self.idle_timeout {
            for p in self.partitions.iter_mut().flatten() {
                if !p.idle && now.saturating_duration_since(p.last_seen) >= timeout {
                    tracing::debug!("partition went idle; leaving it out of the watermark");
                    p.idle = true;
                }
            }
        }
        self.advance()
    }

    #[inline]
    fn partition_watermark(&self, partition: u32) -> i64 {
        match self.partitions.get(partition as usize) {
            Some(Some(p)) => p.max_event_time.saturating_sub(self.bound),
            _ => i64::MIN,
        }
    }

    fn emitted_millis(&self) -> i64 {
        self.emitted
    }

    fn register_partition(&mut self, partition: u32, now: Instant) {
        self.slot(partition, now);
        self.rebase();
    }

    fn unregister_partition(&mut self, partition: u32) {
        if let Some(p) = self.partitions.get_mut(partition as usize) {
            *p = None;
        }
    }

    fn snapshot(&self) -> Vec<(u32, i64)> {
        self.partitions
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| (i as u32, p.max_event_time)))
            .collect()
    }

    fn restore(&mut self, partitions: &[(u32, i64)], now: Instant) {
        for &(partition, max) in partitions {
            let p = self.slot(partition, now);
            p.max_event_time = max;
            p.seen = max != i64::MIN;
        }
        self.rebase();
        self.advance();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_is_minimum_of_partitions() {
        let now = Instant::now();
        let mut g = BoundedOutOfOrdernessWatermark::new(Duration::from_millis(10));
        assert_eq!(g.on_event(0, 100, now), Some(90));
        // partition 1 appears behind: the combined watermark cannot go back, so nothing is emitted
        assert_eq!(g.on_event(1, 50, now), None);
        assert_eq!(g.emitted_millis(), 90);
        assert_eq!(g.on_event(0, 200, now), None);
        assert_eq!(g.on_event(1, 150, now), Some(140));
        assert_eq!(g.partition_watermark(0), 190);
    }

    #[test]
    fn a_partition_joining_behind_holds_the_watermark_back_until_it_catches_up() {
        let mut wm = BoundedOutOfOrdernessWatermark::new(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(wm.on_event(0, 100_000, now), Some(100_000));
        // A Kafka partition assigned with its checkpoint, behind partition 0.
        wm.restore(&[(1, 40_000)], now);
        assert_eq!(wm.on_event(0, 110_000, now), None);
        // Its windows fire as it catches up, though 100 s was emitted before it joined.
        assert_eq!(wm.on_event(1, 90_000, now), Some(90_000));
        wm.unregister_partition(1);
        assert_eq!(wm.on_tick(now), Some(110_000));
    }

    #[test]
    fn registered_partition_holds_watermark_until_idle() {
        let t0 = Instant::now();
        let mut g = BoundedOutOfOrdernessWatermark::new(Duration::from_millis(0))
            .with_idle_timeout(Duration::from_secs(5));
        g.register_partition(1, t0);
        assert_eq!(g.on_event(0, 100, t0), None);
        assert_eq!(g.on_tick(t0 + Duration::from_secs(1)), None);
        assert_eq!(
            g.on_tick(t0 + Duration::from_secs(6)),
            None,
            "partition 0 idles too"
        );
        assert_eq!(g.on_event(0, 120, t0 + Duration::from_secs(6)), Some(120));
        // partition 1 wakes up: it is counted again, the emitted watermark stays monotonic
        assert_eq!(g.on_event(1, 10, t0 + Duration::from_secs(7)), None);
        assert_eq!(g.emitted_millis(), 120);
    }
}
