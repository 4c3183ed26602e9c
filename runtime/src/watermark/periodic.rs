use std::time::{Duration, Instant};

use super::WatermarkGenerator;
use crate::time::duration_millis;

/// Wraps a generator and pushes its combined watermark downstream each time it has
/// advanced by at least `interval` of **event time** since the last push.
///
/// Emission is a function of the input alone, never of a clock: the same events give the
/// same pushes, so windows fire at the same records and the same rows (and `is_update`
/// flags) come out on every run, at any batch size, after any restore. Lateness is still
/// judged on each partition's watermark as it stands after that partition's previous
/// record. Processing time only matters for a live source that has gone quiet: then the
/// run loop pushes what the generator holds ([`on_source_idle`]).
///
/// [`on_source_idle`]: WatermarkGenerator::on_source_idle
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
/// assert_eq!(periodic_gen.on_event(0, 100_000, t0), Some(70_000)); // the first push
/// assert_eq!(periodic_gen.on_event(0, 105_000, t0), None);         // 5 s of event time
/// assert_eq!(periodic_gen.on_tick(t0 + Duration::from_secs(60)), None); // clocks push nothing
/// assert_eq!(periodic_gen.on_event(0, 110_000, t0), Some(80_000)); // 10 s: pushed
/// ```
pub struct PeriodicWatermarkGenerator {
    interval: Duration,
    interval_ms: i64,
    inner: Box<dyn WatermarkGenerator>,
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
    /// Pushes `inner`'s watermark every `interval` of event time.
    pub fn new(interval: Duration, inner: Box<dyn WatermarkGenerator>) -> Self {
        PeriodicWatermarkGenerator {
            interval,
            interval_ms: duration_millis(interval),
            inner,
            emitted: i64::MIN,
        }
    }

    /// The emission interval (event time).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    #[inline]
    fn maybe_emit(&mut self) -> Option<i64> {
        let candidate = self.inner.emitted_millis();
        let due = self.emitted == i64::MIN
            || candidate >= self.emitted.saturating_add(self.interval_ms)
            // The inner watermark went back (a partition joined behind): follow it.
            || candidate < self.emitted;
        if due && candidate != self.emitted && candidate != i64::MIN {
            let forward = candidate > self.emitted;
            self.emitted = candidate;
            return forward.then_some(candidate);
        }
        None
    }
}

impl WatermarkGenerator for PeriodicWatermarkGenerator {
    #[inline]
    fn on_event(&mut self, partition: u32, event_time_ms: i64, now: Instant) -> Option<i64> {
        self.inner.on_event(partition, event_time_ms, now);
        self.maybe_emit()
    }
    fn on_tick(&mut self, now: Instant) -> Option<i64> {
        // Idleness may move the inner watermark; it is pushed on the same event-time rule.
        self.inner.on_tick(now);
        self.maybe_emit()
    }
    fn on_source_idle(&mut self) -> Option<i64> {
        self.inner.on_source_idle();
        let candidate = self.inner.emitted_millis();
        (candidate > self.emitted).then(|| {
            self.emitted = candidate;
            candidate
        })
    }
    fn restore_emitted(&mut self, emitted_ms: i64) {
        self.inner.restore_emitted(emitted_ms);
        self.emitted = emitted_ms.min(self.inner.emitted_millis());
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

    #[test]
    fn pushes_follow_event_time_and_resume_from_the_last_push() {
        let every = |g: &mut PeriodicWatermarkGenerator, times: &[i64]| -> Vec<i64> {
            let t = Instant::now();
            times
                .iter()
                .filter_map(|&ms| g.on_event(0, ms, t))
                .collect()
        };
        let new = || {
            PeriodicWatermarkGenerator::new(
                Duration::from_secs(10),
                Box::new(BoundedOutOfOrdernessWatermark::new(Duration::ZERO)),
            )
        };
        let times: Vec<i64> = (0..40).map(|i| i * 3_000).collect();
        let mut whole = new();
        let all = every(&mut whole, &times);
        assert_eq!(
            all,
            [0, 12_000, 24_000, 36_000, 48_000, 60_000, 72_000, 84_000, 96_000, 108_000]
        );
        // Cut anywhere and restored from (max event time, last push): the same pushes.
        for cut in 1..times.len() {
            let mut first = new();
            let mut got = every(&mut first, &times[..cut]);
            let mut second = new();
            second.restore(&first.snapshot(), Instant::now());
            second.restore_emitted(first.emitted_millis());
            got.extend(every(&mut second, &times[cut..]));
            assert_eq!(got, all, "cut at {cut}");
        }
        // A quiet live source pushes what is held.
        let mut g = new();
        every(&mut g, &[0, 5_000]);
        assert_eq!(g.on_source_idle(), Some(5_000));
        assert_eq!(g.on_source_idle(), None);
    }
}
