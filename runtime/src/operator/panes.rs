//! Tumbling and sliding windows: one accumulator per key and pane of `gcd(size, slide)`.

use std::hash::Hash;

use super::slots::{KeyRef, Segment, Slot};
use super::{Admission, Fired, Grid, WindowFunction, WindowOperator};
use crate::time::{align_down, align_up};
use crate::watermark::Watermark;
use crate::window::{Window, WindowTrigger};

// Small and on every event: `#[inline]` so they inline into the operator's generic code,
// which is instantiated in the user's crate.
impl Grid {
    #[inline]
    fn pane_of(&self, t: i64) -> i64 {
        align_down(t, self.pane, self.offset)
    }
    /// End of the first window containing the pane starting at `p`.
    #[inline]
    fn first_end(&self, p: i64) -> i64 {
        if self.slide == self.size {
            return p.saturating_add(self.size); // tumbling: the pane is the window
        }
        align_up(
            p.saturating_add(self.pane).saturating_sub(self.size),
            self.slide,
            self.offset,
        )
        .saturating_add(self.size)
    }
    /// End of the last window containing the pane starting at `p`.
    #[inline]
    fn last_end(&self, p: i64) -> i64 {
        if self.slide == self.size {
            return p.saturating_add(self.size);
        }
        align_down(p, self.slide, self.offset).saturating_add(self.size)
    }
    /// The smallest window end strictly greater than `t`.
    #[inline]
    fn end_after(&self, t: i64) -> i64 {
        let end_offset = (self.offset + self.size).rem_euclid(self.slide);
        align_down(t, self.slide, end_offset).saturating_add(self.slide)
    }
    #[inline]
    fn first_valid_end<A>(&self, s: &Segment<A>) -> i64 {
        self.first_end(s.start).max(s.min_end)
    }
}

/// Whether segment `s` counts in the window ending at `e`.
#[inline]
fn in_window<A>(g: &Grid, s: &Segment<A>, e: i64) -> bool {
    s.start >= e.saturating_sub(g.size) && s.start < e && s.min_end <= e
}

/// Emits the window ending at `e` of one slot, merging its panes into `scratch` when
/// there are several. Returns false when the slot has no data in the window.
fn fire_window<K, F: WindowFunction, E: FnMut(Fired<'_, K, F::Acc>)>(
    g: &Grid,
    func: &F,
    scratch: &mut Option<F::Acc>,
    slot: &Slot<K, F::Acc>,
    e: i64,
    is_update: bool,
    emit: &mut E,
) -> bool {
    let mut matching = slot.segs.iter().filter(|s| in_window(g, s, e));
    let Some(first) = matching.next() else {
        return false;
    };
    let key = slot.key.as_ref().expect("live slot has a key");
    let start = e.saturating_sub(g.size);
    let acc = match matching.next() {
        None => &first.acc,
        Some(second) => {
            let acc = scratch.get_or_insert_with(|| func.create());
            func.reset(acc);
            func.merge(acc, &first.acc);
            func.merge(acc, &second.acc);
            for s in matching {
                func.merge(acc, &s.acc);
            }
            &*acc
        }
    };
    emit(Fired {
        key,
        start,
        end: e,
        acc,
        is_update,
        replaces: &[],
    });
    true
}

fn window_count<K, F: WindowFunction>(g: &Grid, func: &F, slot: &Slot<K, F::Acc>, e: i64) -> u64 {
    slot.segs
        .iter()
        .filter(|s| in_window(g, s, e))
        .map(|s| func.count(&s.acc))
        .sum()
}

impl<K: Hash + Eq, F: WindowFunction, T: WindowTrigger> WindowOperator<K, F, T> {
    pub(super) fn pane_event<Q, E>(
        &mut self,
        g: Grid,
        floor: i64,
        ts: i64,
        key: &Q,
        input: &F::Input,
        emit: &mut E,
    ) -> Admission
    where
        Q: KeyRef<K> + ?Sized,
        E: FnMut(Fired<'_, K, F::Acc>),
    {
        let pane = g.pane_of(ts);
        let last_end = g.last_end(pane);
        if last_end.saturating_add(self.lateness) <= floor {
            return Admission::Late;
        }
        let first_end = g.first_end(pane);
        // Windows ending after `floor - lateness` may still take this event.
        let threshold = floor.saturating_sub(self.lateness);
        let min_valid = if first_end > threshold {
            first_end
        } else {
            g.end_after(threshold)
        };
        let marker = if min_valid == first_end {
            i64::MIN
        } else {
            min_valid
        };

        let id = self.slots.find_or_insert(key);
        self.ensure_loaded(id);
        let found = self
            .slots
            .get(id)
            .segs
            .iter()
            .position(|s| s.start == pane && s.min_end == marker);
        let fresh = if found.is_none() {
            Some(self.fresh_acc())
        } else {
            None
        };
        let slot = self.slots.get_mut(id);
        let (idx, created) = match (found, fresh) {
            (Some(i), _) => (i, false),
            (None, fresh) => {
                slot.segs.push(Segment {
                    start: pane,
                    end: pane.saturating_add(g.pane),
                    min_end: marker,
                    acc: fresh.expect("made when not found"),
                    emitted: false,
                    dirty: false,
                    replaced: Vec::new(),
                });
                (slot.segs.len() - 1, true)
            }
        };
        self.func.add(&mut slot.segs[idx].acc, input);
        if created {
            self.slots.segment_added();
        }

        // Windows already passed by the watermark (or that a custom trigger fires early).
        let wm = self.watermark;
        let event_time = self.trigger.is_event_time();
        let mut e = min_valid;
        while e <= last_end {
            if event_time && e > wm {
                break;
            }
            let slot = self.slots.get(id);
            let fire = event_time || {
                let count = if self.trigger.uses_element_count() {
                    window_count(&g, &self.func, slot, e)
                } else {
                    0
                };
                let window = Window::from_millis(e.saturating_sub(g.size), e);
                self.trigger
                    .should_fire(&window, &Watermark::from_millis(wm), count)
            };
            if fire {
                let is_update = !created
                    || slot
                        .segs
                        .iter()
                        .enumerate()
                        .any(|(i, s)| i != idx && in_window(&g, s, e));
                fire_window(&g, &self.func, &mut self.scratch, slot, e, is_update, emit);
            }
            e = e.saturating_add(g.slide);
            if e == i64::MAX {
                break;
            }
        }

        // Wake up at the next window end this pane is in, or when it can be dropped.
        let next_end = if min_valid > wm {
            min_valid
        } else {
            g.end_after(wm)
        };
        let slot = self.slots.get_mut(id);
        if next_end <= last_end && next_end < slot.next_fire {
            slot.next_fire = next_end;
        }
        let wake = slot.next_fire.min(last_end.saturating_add(self.lateness));
        self.schedule(id, wake);
        Admission::Accepted
    }

    pub(super) fn pane_timer<E>(&mut self, g: Grid, id: u32, emit: &mut E)
    where
        E: FnMut(Fired<'_, K, F::Acc>),
    {
        let wm = self.watermark;
        let lateness = self.lateness;
        let event_time = self.trigger.is_event_time();
        loop {
            let slot = self.slots.get(id);
            let e = slot.next_fire;
            if e > wm || e == i64::MAX {
                break;
            }
            let fire = event_time || {
                let count = if self.trigger.uses_element_count() {
                    window_count(&g, &self.func, slot, e)
                } else {
                    0
                };
                let window = Window::from_millis(e.saturating_sub(g.size), e);
                self.trigger
                    .should_fire(&window, &Watermark::from_millis(wm), count)
            };
            if fire {
                fire_window(&g, &self.func, &mut self.scratch, slot, e, false, emit);
            }
            // The next window end after `e` holding any pane of this key.
            let next = slot
                .segs
                .iter()
                .filter(|s| g.last_end(s.start) > e)
                .map(|s| g.first_valid_end(s).max(e.saturating_add(g.slide)))
                .min()
                .unwrap_or(i64::MAX);
            self.slots.get_mut(id).next_fire = next;
        }

        // Drop panes whose last window is past its allowed lateness (or that the trigger purges).
        let slot = self.slots.get_mut(id);
        let trigger = &self.trigger;
        let removed = super::purge(&mut slot.segs, &mut self.pool, |s| {
            let last = g.last_end(s.start);
            if last.saturating_add(lateness) <= wm {
                return false;
            }
            event_time || {
                let window = Window::from_millis(last.saturating_sub(g.size), last);
                !(last <= wm && trigger.should_purge(&window, &Watermark::from_millis(wm)))
            }
        });
        let empty = slot.segs.is_empty();
        let wake = slot
            .segs
            .iter()
            .map(|s| g.last_end(s.start).saturating_add(lateness))
            .min()
            .unwrap_or(i64::MAX)
            .min(slot.next_fire);
        self.slots.segments_removed(removed);
        if empty {
            self.slots.release(id);
        } else {
            self.schedule(id, wake);
        }
    }
}
