use std::time::{Duration, Instant};

use super::WatermarkGenerator;

/// Wraps a generator and emits its combined watermark at most once per interval
/// (processing time).
///
/// Only emission is periodic: lateness is still judged on each partition's watermark as
/// it stands after that partition's previous record, so the interval changes when windows
/// fire (latency), never which records are late or what the final rows contain.
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::{Duration, Instant};
///
/// let base_gen = BoundedOutOfOrdernessWatermark::new(Duration::from_secs(30));
/// let mut periodic_gen = PeriodicWatermarkGenerator::new(
///     Duration::from_secs(10),
///     Box::new(base_gen),
/// );
/// let t0 = Instant::now();
/// assert_eq!(periodic_gen.on_event(0, 100_000, t0), Some(70_000)); // first one is due
/// assert_eq!(periodic_gen.on_event(0, 200_000, t0), None);         // not yet
/// assert_eq!(periodic_gen.on_tick(t0 + Duration::from_secs(10)), Some(170_000));
/// ```
pub struct PeriodicWatermarkGenerator {
    interval: Duration,
    inner: Box<dyn WatermarkGenerator>,
    last_emit: Option<Instant>,
    emitted: i64,
}

impl std::fmt::Debug for PeriodicWatermarkGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicWatermarkGenerator")
            .field("interval", &self.interval)
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl PeriodicWatermarkGenerator {
    /// Emits `inner`'s watermark every `interval`.
    pub fn new(interval: Duration, inner: Box<dyn WatermarkGenerator>) -> Self {
        PeriodicWatermarkGenerator {
            interval,
            inner,
            last_emit: None,
            emitted: i64::MIN,
        }
    }

    /// The emission interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn maybe_emit(&mut self, now: Instant) -> Option<i64> {
        let due = self
            .last_emit
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        let candidate = self.inner.emitted_millis();
        if due && candidate > self.emitted {
            self.emitted = candidate;
            self.last_emit = Some(now);
            Some(candidate)
        } else {
            None
        }
    }
}

impl WatermarkGenerator for PeriodicWatermarkGenerator {
    fn on_event(&mut self, partition: u32, event_time_ms: i64, now: Instant) -> Option<i64> {
        self.inner.on_event(partition, event_time_ms, now);
        self.maybe_emit(now)
    }
    fn on_tick(&mut self, now: Instant) -> Option<i64> {
        self.inner.on_tick(now);
        self.maybe_emit(now)
    }
    fn partition_watermark(&self, partition: u32) -> i64 {
        self.inner.partition_watermark(partition)
    }
    fn emitted_millis(&self) -> i64 {
        self.emitted
    }
    fn register_partition(&mut self, partition: u32, now: Instant) {
        self.inner.register_partition(partition, now);
        // A partition joining behind holds the watermark back (see the bounded generator).
        self.emitted = self.emitted.min(self.inner.emitted_millis());
    }
    fn unregister_partition(&mut self, partition: u32) {
        self.inner.unregister_partition(partition)
    }
    fn snapshot(&self) -> Vec<(u32, i64)> {
        self.inner.snapshot()
    }
    fn restore(&mut self, partitions: &[(u32, i64)], now: Instant) {
        self.inner.restore(partitions, now);
        self.emitted = self.inner.emitted_millis();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::BoundedOutOfOrdernessWatermark;

    #[test]
    fn a_partition_joining_behind_is_waited_for() {
        let inner = BoundedOutOfOrdernessWatermark::new(Duration::ZERO);
        let mut g = PeriodicWatermarkGenerator::new(Duration::ZERO, Box::new(inner));
        let t = Instant::now();
        assert_eq!(g.on_event(0, 100_000, t), Some(100_000));
        g.register_partition(1, t);
        assert_eq!(g.on_event(1, 50_000, t), Some(50_000));
        assert_eq!(g.on_event(1, 120_000, t), Some(100_000));
    }
}
