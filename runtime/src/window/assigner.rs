use chrono::{DateTime, Utc};
use std::time::Duration;

use super::Window;
use crate::error::{ProcessorError, ProcessorResult};
use crate::time::{align_down, duration_millis, to_millis};

/// The shape of a window, in epoch milliseconds: what the operators compute with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows `[offset + k·size, offset + (k+1)·size)`.
    Tumbling {
        /// Window length.
        size: i64,
        /// Shift of the window grid from the epoch.
        offset: i64,
    },
    /// Fixed windows of `size` starting every `slide`.
    Sliding {
        /// Window length.
        size: i64,
        /// Distance between window starts.
        slide: i64,
        /// Shift of the window grid from the epoch.
        offset: i64,
    },
    /// Per-key windows that grow while events arrive less than `gap` apart.
    Session {
        /// Inactivity gap that closes a session.
        gap: i64,
    },
}

impl WindowSpec {
    /// Checks the durations: non-zero, slide ≤ size, offset < size; the error says what to change.
    pub fn validate(&self) -> ProcessorResult<()> {
        let bad = |m: String| Err(ProcessorError::InvalidPipeline(m));
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                if size <= 0 {
                    return bad("tumbling window size must be at least 1 ms; use e.g. Duration::from_secs(300)".into());
                }
                if offset < 0 || offset >= size {
                    return bad(format!("tumbling window offset ({offset} ms) must be smaller than the size ({size} ms)"));
                }
            }
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => {
                if size <= 0 || slide <= 0 {
                    return bad("sliding window size and slide must be at least 1 ms".into());
                }
                if slide > size {
                    return bad(format!("sliding window slide ({slide} ms) is larger than its size ({size} ms): events between windows would be lost; use a slide ≤ size, or a tumbling window"));
                }
                if offset < 0 || offset >= slide {
                    return bad(format!("sliding window offset ({offset} ms) must be smaller than the slide ({slide} ms)"));
                }
            }
            WindowSpec::Session { gap } => {
                if gap <= 0 {
                    return bad(
                        "session gap must be at least 1 ms; use e.g. Duration::from_secs(300)"
                            .into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The windows containing `t` (empty for sessions, which depend on other events).
    pub fn windows_of(&self, t: i64) -> Vec<Window> {
        match *self {
            WindowSpec::Tumbling { size, offset } => {
                let s = align_down(t, size, offset);
                vec![Window::from_millis(s, s.saturating_add(size))]
            }
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => {
                let last = align_down(t, slide, offset);
                let mut out = Vec::with_capacity((size / slide) as usize + 1);
                let mut s = last;
                while s > t.saturating_sub(size) {
                    out.push(Window::from_millis(s, s.saturating_add(size)));
                    s = s.saturating_sub(slide);
                }
                out.reverse();
                out
            }
            WindowSpec::Session { gap } => vec![Window::from_millis(t, t.saturating_add(gap))],
        }
    }
}

/// Something that assigns events to windows.
pub trait WindowAssigner: Send + Sync {
    /// The windows an event at `timestamp` belongs to (for sessions: its own proto-session
    /// `[t, t + gap)`, before merging).
    fn assign_windows(&self, timestamp: DateTime<Utc>) -> Vec<Window>;
    /// The window shape in milliseconds.
    fn spec(&self) -> WindowSpec;
    /// Allowed lateness, if set on the assigner.
    fn allowed_lateness(&self) -> Option<Duration>;
    /// Whether windows of one key merge (sessions).
    fn is_merging(&self) -> bool {
        matches!(self.spec(), WindowSpec::Session { .. })
    }
}

macro_rules! impl_assigner {
    ($t:ty) => {
        impl WindowAssigner for $t {
            fn assign_windows(&self, timestamp: DateTime<Utc>) -> Vec<Window> {
                self.spec().windows_of(to_millis(timestamp))
            }
            fn spec(&self) -> WindowSpec {
                self.spec_ms()
            }
            fn allowed_lateness(&self) -> Option<Duration> {
                self.allowed_lateness
            }
        }
    };
}

/// Fixed-size, non-overlapping windows.
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
///
/// let assigner = TumblingWindowAssigner::new(Duration::from_secs(300))
///     .with_offset(Duration::from_secs(0))
///     .with_allowed_lateness(Duration::from_secs(60));
/// let w = assigner.assign_windows(Utc.timestamp_opt(301, 0).unwrap());
/// assert_eq!(w, vec![Window::from_millis(300_000, 600_000)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TumblingWindowAssigner {
    size: Duration,
    offset: Duration,
    allowed_lateness: Option<Duration>,
}

impl TumblingWindowAssigner {
    /// Windows of this size, aligned to the epoch.
    pub fn new(size: Duration) -> Self {
        TumblingWindowAssigner {
            size,
            offset: Duration::ZERO,
            allowed_lateness: None,
        }
    }
    /// Shifts the window grid (e.g. a 1 h window from :30 to :30).
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }
    /// Keeps each window open this long after the watermark passes its end.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = Some(lateness);
        self
    }
    fn spec_ms(&self) -> WindowSpec {
        WindowSpec::Tumbling {
            size: duration_millis(self.size),
            offset: duration_millis(self.offset),
        }
    }
}
impl_assigner!(TumblingWindowAssigner);

/// Fixed-size windows that overlap: one starts every `slide`.
///
/// Each event is aggregated once, into a pane of `gcd(size, slide)`; panes are merged when
/// a window fires, so the cost per event does not grow with `size / slide`.
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
///
/// let assigner = SlidingWindowAssigner::new(Duration::from_secs(600), Duration::from_secs(60));
/// assert_eq!(assigner.assign_windows(Utc.timestamp_opt(1000, 0).unwrap()).len(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindowAssigner {
    size: Duration,
    slide: Duration,
    offset: Duration,
    allowed_lateness: Option<Duration>,
}

impl SlidingWindowAssigner {
    /// Windows of `size`, one starting every `slide`.
    pub fn new(size: Duration, slide: Duration) -> Self {
        SlidingWindowAssigner {
            size,
            slide,
            offset: Duration::ZERO,
            allowed_lateness: None,
        }
    }
    /// Shifts the window grid.
    pub fn with_offset(mut self, offset: Duration) -> Self {
        self.offset = offset;
        self
    }
    /// Keeps each window open this long after the watermark passes its end.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = Some(lateness);
        self
    }
    fn spec_ms(&self) -> WindowSpec {
        WindowSpec::Sliding {
            size: duration_millis(self.size),
            slide: duration_millis(self.slide),
            offset: duration_millis(self.offset),
        }
    }
}
impl_assigner!(SlidingWindowAssigner);

/// Windows per key that last while events keep coming less than `gap` apart.
///
/// ```
/// use llm_optimizer_processor::*;
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
///
/// let assigner = SessionWindowAssigner::new(Duration::from_secs(300));
/// let a = assigner.assign_windows(Utc.timestamp_opt(0, 0).unwrap())[0];
/// let b = assigner.assign_windows(Utc.timestamp_opt(200, 0).unwrap())[0];
/// let merged = SessionWindowAssigner::merge_windows(&[a, b]);
/// assert_eq!(merged, vec![Window::from_millis(0, 500_000)]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindowAssigner {
    gap: Duration,
    allowed_lateness: Option<Duration>,
}

impl SessionWindowAssigner {
    /// Sessions closed by this much inactivity.
    pub fn new(gap: Duration) -> Self {
        SessionWindowAssigner {
            gap,
            allowed_lateness: None,
        }
    }
    /// Keeps each session open this long after the watermark passes its end.
    pub fn with_allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = Some(lateness);
        self
    }
    /// Merges windows that overlap or touch into sessions, sorted by start.
    pub fn merge_windows(windows: &[Window]) -> Vec<Window> {
        let mut sorted = windows.to_vec();
        sorted.sort();
        let mut out: Vec<Window> = Vec::with_capacity(sorted.len());
        for w in sorted {
            match out.last_mut() {
                Some(last) if last.intersects(&w) => *last = last.cover(&w),
                _ => out.push(w),
            }
        }
        out
    }
    fn spec_ms(&self) -> WindowSpec {
        WindowSpec::Session {
            gap: duration_millis(self.gap),
        }
    }
}
impl_assigner!(SessionWindowAssigner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_fix() {
        let e = WindowSpec::Sliding {
            size: 60,
            slide: 120,
            offset: 0,
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("larger than its size"), "{e}");
        assert!(WindowSpec::Tumbling { size: 0, offset: 0 }
            .validate()
            .is_err());
        assert!(WindowSpec::Session { gap: 0 }.validate().is_err());
        assert!(WindowSpec::Tumbling {
            size: 10,
            offset: 10
        }
        .validate()
        .is_err());
        assert!(WindowSpec::Sliding {
            size: 10,
            slide: 3,
            offset: 0
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn sliding_windows_of_a_timestamp() {
        let spec = WindowSpec::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        assert_eq!(
            spec.windows_of(7),
            vec![Window::from_millis(0, 10), Window::from_millis(5, 15)]
        );
        let spec = WindowSpec::Sliding {
            size: 10,
            slide: 4,
            offset: 0,
        };
        assert_eq!(
            spec.windows_of(9),
            vec![
                Window::from_millis(0, 10),
                Window::from_millis(4, 14),
                Window::from_millis(8, 18)
            ]
        );
    }
}
