use super::Window;
use crate::watermark::Watermark;

/// Decides when a window emits a result row and when its state may be dropped.
///
/// The operator asks [`should_fire`](Self::should_fire) when an element arrives in a window
/// and when the watermark reaches the window's end, and [`should_purge`](Self::should_purge)
/// at those moments too. State is dropped at the latest when the watermark passes
/// `end + allowed_lateness`, whatever the trigger says: after that no event can reach the
/// window any more.
pub trait WindowTrigger: Send + Sync {
    /// Whether the window should emit now.
    fn should_fire(&self, window: &Window, watermark: &Watermark, element_count: u64) -> bool;
    /// Whether the window's state may be dropped now.
    fn should_purge(&self, window: &Window, watermark: &Watermark) -> bool;
    /// Whether `should_fire` looks at `element_count`; when not, the operator does not count.
    fn uses_element_count(&self) -> bool {
        true
    }
    /// Whether this is exactly the event-time trigger (fire when the watermark reaches the
    /// end, never purge early), which the operator then runs on integer timers.
    fn is_event_time(&self) -> bool {
        false
    }
}

impl<T: WindowTrigger + ?Sized> WindowTrigger for Box<T> {
    fn should_fire(&self, window: &Window, watermark: &Watermark, element_count: u64) -> bool {
        (**self).should_fire(window, watermark, element_count)
    }
    fn should_purge(&self, window: &Window, watermark: &Watermark) -> bool {
        (**self).should_purge(window, watermark)
    }
    fn uses_element_count(&self) -> bool {
        (**self).uses_element_count()
    }
    fn is_event_time(&self) -> bool {
        (**self).is_event_time()
    }
}

impl<T: WindowTrigger + ?Sized> WindowTrigger for std::sync::Arc<T> {
    fn should_fire(&self, window: &Window, watermark: &Watermark, element_count: u64) -> bool {
        (**self).should_fire(window, watermark, element_count)
    }
    fn should_purge(&self, window: &Window, watermark: &Watermark) -> bool {
        (**self).should_purge(window, watermark)
    }
    fn uses_element_count(&self) -> bool {
        (**self).uses_element_count()
    }
    fn is_event_time(&self) -> bool {
        (**self).is_event_time()
    }
}

/// The default trigger: fire when the watermark reaches the window's end, and again for
/// each event that arrives within the allowed lateness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTimeTrigger;

impl WindowTrigger for EventTimeTrigger {
    fn should_fire(&self, window: &Window, watermark: &Watermark, _: u64) -> bool {
        watermark.timestamp >= window.end
    }
    fn should_purge(&self, _: &Window, _: &Watermark) -> bool {
        false
    }
    fn uses_element_count(&self) -> bool {
        false
    }
    fn is_event_time(&self) -> bool {
        true
    }
}

/// Fires early every time a window holds a multiple of `count` elements, and on time when
/// the watermark reaches its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountTrigger {
    /// Elements between early firings.
    pub count: u64,
}

impl CountTrigger {
    /// Fire every `count` elements (at least 1) and at the window's end.
    pub fn new(count: u64) -> Self {
        CountTrigger {
            count: count.max(1),
        }
    }
}

impl WindowTrigger for CountTrigger {
    fn should_fire(&self, window: &Window, watermark: &Watermark, element_count: u64) -> bool {
        watermark.timestamp >= window.end
            || (element_count > 0 && element_count.is_multiple_of(self.count))
    }
    fn should_purge(&self, _: &Window, _: &Watermark) -> bool {
        false
    }
}
