//! Windows: the [`Window`] interval, the tumbling / sliding / session assigners and the
//! triggers that decide when a window emits.
//!
//! Windows are half-open, `[start, end)`, as in Flink.

mod assigner;
mod trigger;

pub use assigner::{
    SessionWindowAssigner, SlidingWindowAssigner, TumblingWindowAssigner, WindowAssigner,
    WindowSpec,
};
pub use trigger::{CountTrigger, EventTimeTrigger, WindowTrigger};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time::{from_millis, to_millis};

/// A half-open interval of event time, `[start, end)`.
///
/// ```
/// use llm_optimizer_processor::Window;
/// use chrono::{TimeZone, Utc};
/// let w = Window::new(Utc.timestamp_opt(0, 0).unwrap(), Utc.timestamp_opt(300, 0).unwrap());
/// assert!(w.contains(Utc.timestamp_opt(299, 0).unwrap()));
/// assert!(!w.contains(Utc.timestamp_opt(300, 0).unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    /// First instant inside the window.
    pub start: DateTime<Utc>,
    /// First instant after the window.
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window `[start, end)`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Window { start, end }
    }

    /// The window `[start, end)` from epoch milliseconds.
    pub fn from_millis(start: i64, end: i64) -> Self {
        Window::new(from_millis(start), from_millis(end))
    }

    /// Start in epoch milliseconds.
    pub fn start_millis(&self) -> i64 {
        to_millis(self.start)
    }

    /// End in epoch milliseconds.
    pub fn end_millis(&self) -> i64 {
        to_millis(self.end)
    }

    /// Whether `t` lies inside.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// Whether the two windows overlap or touch (what makes session windows merge).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &Window) -> Window {
        Window::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::SecondsFormat::Millis;
        write!(
            f,
            "[{}, {})",
            self.start.to_rfc3339_opts(Millis, true),
            self.end.to_rfc3339_opts(Millis, true)
        )
    }
}
