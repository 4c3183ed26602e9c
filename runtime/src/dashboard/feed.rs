//! What the dashboard's page is told, as JSON text messages over its WebSocket: each row
//! as it is emitted, the run's figures twice a second, and on connecting a snapshot of
//! the rows so far.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::aggregation::AggregationResult;
use crate::metrics::ProcessorMetrics;
use crate::pipeline::RunSummary;
use crate::time::to_millis;

/// Messages a slow page may fall behind by before it is sent a fresh snapshot instead.
const CHANNEL: usize = 4096;

/// One message, serialized once and shared by every page.
pub(super) type Message = Arc<str>;

/// The rows kept for pages that connect later (the oldest are forgotten first).
pub(super) const HISTORY: usize = 20_000;

/// A row as the page charts it: the key's fields by name, window bounds in epoch
/// milliseconds, each statistic by name.
struct RowMessage<'a>(&'a AggregationResult);

impl Serialize for RowMessage<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Key<'a>(&'a [(String, String)]);
        impl Serialize for Key<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        let r = self.0;
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("kind", "row")?;
        m.serialize_entry("key", &Key(r.key.fields()))?;
        m.serialize_entry("window_start", &to_millis(r.window.start))?;
        m.serialize_entry("window_end", &to_millis(r.window.end))?;
        m.serialize_entry("values", &r.results)?;
        m.serialize_entry("is_update", &r.is_update)?;
        let replaces: Vec<i64> = r.replaces.iter().map(|w| to_millis(w.start)).collect();
        m.serialize_entry("replaces", &replaces)?;
        m.end()
    }
}

/// The run's figures.
#[derive(Debug, Clone, Serialize)]
struct Stats {
    kind: &'static str,
    events: u64,
    events_per_sec: f64,
    /// Epoch milliseconds; `None` before the first.
    watermark: Option<i64>,
    newest_event: Option<i64>,
    /// How far the watermark is behind the newest event, in milliseconds.
    watermark_lag_ms: Option<i64>,
    late: u64,
    dead_lettered: u64,
    rows: u64,
    updates: u64,
    /// The input has ended and every window has fired: these are the run's totals.
    finished: bool,
}

#[derive(Debug, Default)]
struct History {
    rows: VecDeque<Message>,
    rows_seen: u64,
    updates_seen: u64,
    stats: Option<Message>,
    finished: bool,
    /// Events read and when, at the last figures (for the rate).
    last: Option<(Instant, u64)>,
}

/// The dashboard's feed: a broadcast of messages plus what a new page needs first.
#[derive(Debug)]
pub(super) struct Feed {
    tx: broadcast::Sender<Message>,
    history: Mutex<History>,
    /// What runs, in a line (the page's subtitle).
    description: String,
}

impl Feed {
    pub fn new(description: String) -> Self {
        Feed {
            tx: broadcast::channel(CHANNEL).0,
            history: Mutex::new(History::default()),
            description,
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A row was emitted: kept and sent to every page.
    pub fn push_row(&self, row: &AggregationResult) {
        let Ok(text) = serde_json::to_string(&RowMessage(row)) else {
            return;
        };
        let message: Message = text.into();
        let mut h = self.history();
        h.rows_seen += 1;
        h.updates_seen += u64::from(row.is_update);
        if h.rows.len() == HISTORY {
            h.rows.pop_front();
        }
        h.rows.push_back(Arc::clone(&message));
        // Sent under the lock, so a page's snapshot and its stream never miss a row.
        let _ = self.tx.send(message);
    }

    /// Publishes the run's figures as `metrics` has them now (nothing once finished).
    pub fn publish_stats(&self, metrics: &ProcessorMetrics) {
        let mut h = self.history();
        if h.finished {
            return;
        }
        let now = Instant::now();
        let events = metrics.events_processed();
        let events_per_sec = match h.last {
            Some((then, before)) if now > then => {
                events.saturating_sub(before) as f64 / (now - then).as_secs_f64()
            }
            _ => 0.0,
        };
        h.last = Some((now, events));
        let watermark = Some(metrics.watermark()).filter(|w| *w != 0);
        let newest_event = Some(metrics.newest_event()).filter(|n| *n != 0);
        let stats = Stats {
            kind: "stats",
            events,
            events_per_sec,
            watermark,
            newest_event,
            watermark_lag_ms: watermark.zip(newest_event).map(|(w, n)| (n - w).max(0)),
            late: metrics.events_late(),
            dead_lettered: metrics.events_dead_lettered(),
            rows: h.rows_seen,
            updates: h.updates_seen,
            finished: false,
        };
        self.set_stats(&mut h, &stats);
    }

    /// The run ended: its totals are the last figures.
    pub fn finish(&self, summary: &RunSummary, metrics: &ProcessorMetrics) {
        let mut h = self.history();
        let watermark = Some(summary.final_watermark).filter(|w| *w != 0 && *w != i64::MIN);
        let newest_event = Some(metrics.newest_event()).filter(|n| *n != 0);
        let stats = Stats {
            kind: "stats",
            events: summary.events_in,
            events_per_sec: 0.0,
            watermark,
            newest_event,
            watermark_lag_ms: watermark.zip(newest_event).map(|(w, n)| (n - w).max(0)),
            late: summary.events_late,
            dead_lettered: summary.events_dead_lettered,
            rows: summary.rows_emitted,
            updates: summary.update_rows,
            finished: true,
        };
        self.set_stats(&mut h, &stats);
        h.finished = true;
    }

    fn set_stats(&self, h: &mut History, stats: &Stats) {
        if let Ok(text) = serde_json::to_string(stats) {
            let message: Message = text.into();
            h.stats = Some(Arc::clone(&message));
            let _ = self.tx.send(message);
        }
    }

    /// What a page is sent first (the rows so far and the last figures), and the
    /// stream of what follows, taken together so that no message falls between them.
    pub fn subscribe(&self) -> (Vec<Message>, broadcast::Receiver<Message>) {
        let h = self.history();
        let rx = self.tx.subscribe();
        (self.snapshot_of(&h), rx)
    }

    /// The snapshot alone (for a page that fell behind: rows it has are replaced).
    pub fn snapshot(&self) -> Vec<Message> {
        self.snapshot_of(&self.history())
    }

    fn snapshot_of(&self, h: &History) -> Vec<Message> {
        let mut text =
            String::with_capacity(32 + h.rows.iter().map(|r| r.len() + 1).sum::<usize>());
        text.push_str("{\"kind\":\"snapshot\",\"description\":");
        text.push_str(&serde_json::to_string(&self.description).unwrap_or_else(|_| "\"\"".into()));
        text.push_str(",\"rows\":[");
        for (i, row) in h.rows.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(row);
        }
        text.push_str("]}");
        let mut messages = vec![Message::from(text)];
        messages.extend(h.stats.clone());
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::GroupingKey;
    use crate::window::Window;
    use chrono::{TimeZone, Utc};

    fn row(model: &str, minute: u32, update: bool) -> AggregationResult {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        AggregationResult {
            key: GroupingKey::from_fields(&[("model", model)]),
            window: Window::new(start, start + chrono::Duration::minutes(1)),
            results: [("count".to_owned(), 3.0), ("p95".to_owned(), 812.5)].into(),
            is_update: update,
            replaces: Vec::new(),
        }
    }

    #[test]
    fn rows_reach_a_snapshot_and_the_stream_and_figures_count_them() {
        let feed = Feed::new("tumbling 1 min".into());
        feed.push_row(&row("gpt-4o", 0, false));
        let (first, mut rx) = feed.subscribe();
        assert_eq!(first.len(), 1, "no figures yet");
        let snap: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(snap["kind"], "snapshot");
        assert_eq!(snap["description"], "tumbling 1 min");
        assert_eq!(snap["rows"][0]["key"]["model"], "gpt-4o");
        assert_eq!(snap["rows"][0]["window_start"], 1_767_225_600_000_i64);
        assert_eq!(snap["rows"][0]["values"]["p95"], 812.5);

        feed.push_row(&row("gpt-4o", 0, true));
        let next: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(next["is_update"], true);

        let metrics = ProcessorMetrics::new();
        metrics.record_events_processed(10);
        metrics.record_late_event();
        metrics.record_watermark(1_767_225_600_000);
        metrics.record_newest_event(1_767_225_630_000);
        feed.publish_stats(&metrics);
        let stats: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(stats["events"], 10);
        assert_eq!(stats["late"], 1);
        assert_eq!(stats["rows"], 2);
        assert_eq!(stats["updates"], 1);
        assert_eq!(stats["watermark_lag_ms"], 30_000);
        assert_eq!(stats["finished"], false);

        let summary = RunSummary {
            events_in: 12,
            rows_emitted: 2,
            update_rows: 1,
            ..RunSummary::default()
        };
        feed.finish(&summary, &metrics);
        feed.publish_stats(&metrics);
        let done: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(
            (done["events"].as_u64(), done["finished"].as_bool()),
            (Some(12), Some(true))
        );
        assert!(rx.try_recv().is_err(), "no figures after the totals");
        let again = feed.snapshot();
        assert_eq!(again.len(), 2, "rows and the totals");
    }

    #[test]
    fn history_forgets_the_oldest_rows_past_its_bound() {
        let feed = Feed::new("tumbling 1 min".into());
        for i in 0..HISTORY + 3 {
            feed.push_row(&row(&format!("m{i}"), 0, false));
        }
        let snap: serde_json::Value = serde_json::from_str(&feed.snapshot()[0]).unwrap();
        let rows = snap["rows"].as_array().unwrap();
        assert_eq!(rows.len(), HISTORY);
        assert_eq!(rows[0]["key"]["model"], "m3");
    }
}
