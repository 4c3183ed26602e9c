//! The progress line of `processor run` on a terminal: a bar with bytes read, percent,
//! ETA and events/s for a file; counts, rate and the watermark for a live source.

use indicatif::{HumanCount, HumanDuration, ProgressBar, ProgressStyle};
use llm_optimizer_processor::time::from_millis;
use llm_optimizer_processor::ProcessorMetrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A progress line redrawn from the run's metrics.
pub struct Progress {
    bar: ProgressBar,
    task: tokio::task::JoinHandle<()>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Progress {
    /// Starts redrawing. `total`: the bytes of a file input (a bar with percent and ETA);
    /// `None`: a live source (stdin, Kafka).
    pub fn start(total: Option<u64>, metrics: Arc<ProcessorMetrics>) -> Self {
        let bar = match total {
            Some(len) => ProgressBar::new(len).with_style(style(
                "{bar:30} {bytes}/{total_bytes} ({percent}%), ETA {eta} · {msg}",
            )),
            None => ProgressBar::new_spinner().with_style(style("{spinner} {msg}")),
        };
        let shown = bar.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let watermark = match total {
                    Some(_) => {
                        // The offset of the last line read: its start, so short of the end
                        // by one line at most.
                        shown.set_position(metrics.source_offset(0));
                        None
                    }
                    None => Some(metrics.watermark()),
                };
                let now = chrono::Utc::now().timestamp_millis();
                shown.set_message(message(
                    metrics.events_processed(),
                    start.elapsed(),
                    watermark,
                    now,
                ));
            }
        });
        Progress { bar, task }
    }

    /// Stops and clears the line.
    pub fn finish(self) {
        self.task.abort();
        self.bar.finish_and_clear();
    }
}

/// `1,234,567 events, 140,967 events/s` and, for a live source, where the watermark is
/// and how far it is behind the clock (`now`, epoch milliseconds).
pub fn message(events: u64, elapsed: Duration, watermark: Option<i64>, now: i64) -> String {
    let rate = events as f64 / elapsed.as_secs_f64().max(1e-3);
    let mut m = format!(
        "{} events, {} events/s",
        HumanCount(events),
        HumanCount(rate.round() as u64)
    );
    if let Some(wm) = watermark.filter(|w| *w > 0) {
        let behind = Duration::from_millis(u64::try_from(now - wm).unwrap_or(0));
        m.push_str(&format!(
            ", watermark {} ({} behind now)",
            from_millis(wm).format("%Y-%m-%d %H:%M:%S"),
            HumanDuration(behind)
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers_with_separators() {
        let m = message(537_629, Duration::from_millis(3_813_900), None, 0);
        assert_eq!(m, "537,629 events, 141 events/s");
        let m = message(537_629, Duration::from_millis(3_814), None, 0);
        assert_eq!(m, "537,629 events, 140,962 events/s");
    }

    #[test]
    fn a_live_source_shows_the_watermark_and_its_lag() {
        let wm = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        let m = message(10, Duration::from_secs(1), Some(wm), wm + 90_000);
        assert_eq!(
            m,
            "10 events, 10 events/s, watermark 2026-01-01 00:00:00 (2 minutes behind now)"
        );
        assert_eq!(
            message(0, Duration::ZERO, Some(0), 5),
            "0 events, 0 events/s"
        );
    }
}
