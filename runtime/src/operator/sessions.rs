//! Session windows: per key, disjoint sessions that merge when an event bridges them.

use std::hash::Hash;

use super::slots::{KeyRef, Segment};
use super::{Admission, Fired, WindowFunction, WindowOperator};
use crate::watermark::Watermark;
use crate::window::{Window, WindowTrigger};

impl<K: Hash + Eq, F: WindowFunction, T: WindowTrigger> WindowOperator<K, F, T> {
    pub(super) fn session_event<Q, E>(
        &mut self,
        gap: i64,
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
        let mut start = ts;
        let mut end = ts.saturating_add(gap);
        if let Some(id) = self.slots.find(key) {
            self.ensure_loaded(id);
            for s in &self.slots.get(id).segs {
                if s.start <= end && start <= s.end {
                    start = start.min(s.start);
                    end = end.max(s.end);
                }
            }
        }
        // The merged session decides lateness (as in Flink's merging window operator).
        if end.saturating_add(self.lateness) <= floor {
            return Admission::Late;
        }

        let id = self.slots.find_or_insert(key);
        let (lo, hi) = (start, end);
        let needs_new = !self
            .slots
            .get(id)
            .segs
            .iter()
            .any(|s| s.start <= hi && lo <= s.end);
        let mut fresh = if needs_new {
            Some(self.fresh_acc())
        } else {
            None
        };
        let slot = self.slots.get_mut(id);
        let mut overlapping = slot
            .segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.start <= hi && lo <= s.end)
            .map(|(i, _)| i);
        let target = match overlapping.next() {
            Some(first) => {
                // Merge the others (highest index first, so swap_remove keeps lower indices).
                let others: Vec<usize> = overlapping.collect();
                for &i in others.iter().rev() {
                    let other = slot.segs.swap_remove(i);
                    let t = &mut slot.segs[first];
                    self.func.merge(&mut t.acc, &other.acc);
                    if other.emitted {
                        t.replaced.push((other.start, other.end));
                        t.emitted = true;
                    }
                    t.replaced.extend_from_slice(&other.replaced);
                }
                self.slots.segments_removed(others.len());
                first
            }
            None => {
                slot.segs.push(Segment {
                    start: lo,
                    end: hi,
                    min_end: i64::MIN,
                    acc: fresh.take().expect("made when no session overlaps"),
                    emitted: false,
                    dirty: false,
                    replaced: Vec::new(),
                });
                self.slots.segment_added();
                self.slots.get(id).segs.len() - 1
            }
        };
        let slot = self.slots.get_mut(id);
        let seg = &mut slot.segs[target];
        if seg.emitted
            && (seg.start, seg.end) != (lo, hi)
            && !seg.replaced.contains(&(seg.start, seg.end))
        {
            seg.replaced.push((seg.start, seg.end));
        }
        seg.start = lo;
        seg.end = hi;
        seg.dirty = true;
        seg.replaced.retain(|w| *w != (lo, hi));
        self.func.add(&mut seg.acc, input);

        let wm = self.watermark;
        let fire = if self.trigger.is_event_time() {
            hi <= wm
        } else {
            let count = if self.trigger.uses_element_count() {
                self.func.count(&seg.acc)
            } else {
                0
            };
            self.trigger.should_fire(
                &Window::from_millis(lo, hi),
                &Watermark::from_millis(wm),
                count,
            )
        };
        let key_ref = slot.key.as_ref().expect("live slot has a key");
        if fire {
            emit(Fired {
                key: key_ref,
                start: lo,
                end: hi,
                acc: &seg.acc,
                is_update: seg.emitted,
                replaces: &seg.replaced,
            });
            seg.emitted = true;
            seg.dirty = false;
            seg.replaced.clear();
        }
        let wake = if seg.dirty {
            hi
        } else {
            hi.saturating_add(self.lateness)
        };
        self.schedule(id, wake);
        Admission::Accepted
    }

    pub(super) fn session_timer<E>(&mut self, id: u32, emit: &mut E)
    where
        E: FnMut(Fired<'_, K, F::Acc>),
    {
        let wm = self.watermark;
        let lateness = self.lateness;
        let event_time = self.trigger.is_event_time();
        let slot = self.slots.get_mut(id);
        let key = slot.key.as_ref().expect("live slot has a key");
        for seg in slot.segs.iter_mut() {
            if seg.dirty && seg.end <= wm {
                let fire = event_time || {
                    let count = if self.trigger.uses_element_count() {
                        self.func.count(&seg.acc)
                    } else {
                        0
                    };
                    self.trigger.should_fire(
                        &Window::from_millis(seg.start, seg.end),
                        &Watermark::from_millis(wm),
                        count,
                    )
                };
                if fire {
                    emit(Fired {
                        key,
                        start: seg.start,
                        end: seg.end,
                        acc: &seg.acc,
                        is_update: seg.emitted,
                        replaces: &seg.replaced,
                    });
                    seg.emitted = true;
                    seg.replaced.clear();
                }
                seg.dirty = false;
            }
        }
        let trigger = &self.trigger;
        let removed = super::purge(&mut slot.segs, &mut self.pool, |s| {
            if s.end.saturating_add(lateness) <= wm {
                return false;
            }
            event_time
                || !(s.end <= wm
                    && trigger.should_purge(
                        &Window::from_millis(s.start, s.end),
                        &Watermark::from_millis(wm),
                    ))
        });
        let wake = slot
            .segs
            .iter()
            .map(|s| {
                if s.dirty {
                    s.end
                } else {
                    s.end.saturating_add(lateness)
                }
            })
            .min();
        self.slots.segments_removed(removed);
        match wake {
            Some(at) => self.schedule(id, at),
            None => self.slots.release(id),
        }
    }
}
