//! The operator's timers: key ids by wake-up time.
//!
//! With tumbling and sliding windows many keys wake at the same time (every key with data
//! in a window wakes at its end), so the timers are a map from time to the ids waking then:
//! with thousands of keys per window a binary heap's `pop` was 13 % of a high-cardinality
//! query (BENCHMARKS.md). Sessions wake at times of their own, where a map would hold one
//! list per timer, so they keep the heap. Either way the ids due at one time are handed out
//! together and sorted, the order the heap gave, so rows come out in the same order (also
//! after a restore). Lists are reused, so steady state allocates nothing here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

#[derive(Debug)]
pub(super) struct Timers {
    store: Store,
    spare: Vec<Vec<u32>>,
}

#[derive(Debug)]
enum Store {
    /// Times shared by many keys (window ends).
    ByTime(BTreeMap<i64, Vec<u32>>),
    /// Times of their own (session ends).
    Heap(BinaryHeap<Reverse<(i64, u32)>>),
}

/// Id lists kept for reuse at most.
const SPARE_LISTS: usize = 64;

impl Timers {
    /// Timers for windows whose ends many keys share (`true`: tumbling, sliding) or not
    /// (`false`: sessions).
    pub(super) fn new(shared_times: bool) -> Self {
        Timers {
            store: if shared_times {
                Store::ByTime(BTreeMap::new())
            } else {
                Store::Heap(BinaryHeap::new())
            },
            spare: Vec::new(),
        }
    }

    /// Wakes `id` at `at` (a stale entry is skipped by the caller, which knows each key's
    /// current timer).
    pub(super) fn push(&mut self, at: i64, id: u32) {
        match &mut self.store {
            Store::ByTime(map) => {
                let spare = &mut self.spare;
                map.entry(at)
                    .or_insert_with(|| spare.pop().unwrap_or_default())
                    .push(id);
            }
            Store::Heap(heap) => heap.push(Reverse((at, id))),
        }
    }

    /// The earliest time at or before `watermark` and the ids waking then, ascending and
    /// without repeats; give the list back with [`give_back`](Self::give_back).
    pub(super) fn take_due(&mut self, watermark: i64) -> Option<(i64, Vec<u32>)> {
        let (at, mut ids) = match &mut self.store {
            Store::ByTime(map) => {
                let entry = map.first_entry()?;
                if *entry.key() > watermark {
                    return None;
                }
                (*entry.key(), entry.remove())
            }
            Store::Heap(heap) => {
                let &Reverse((at, _)) = heap.peek()?;
                if at > watermark {
                    return None;
                }
                let mut ids = self.spare.pop().unwrap_or_default();
                while let Some(&Reverse((t, id))) = heap.peek() {
                    if t != at {
                        break;
                    }
                    heap.pop();
                    ids.push(id);
                }
                (at, ids)
            }
        };
        ids.sort_unstable();
        ids.dedup();
        Some((at, ids))
    }

    /// Returns a list from [`take_due`](Self::take_due) for reuse.
    pub(super) fn give_back(&mut self, mut ids: Vec<u32>) {
        if self.spare.len() < SPARE_LISTS {
            ids.clear();
            self.spare.push(ids);
        }
    }

    /// Drops every timer.
    pub(super) fn clear(&mut self) {
        match &mut self.store {
            Store::ByTime(map) => map.clear(),
            Store::Heap(heap) => heap.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Timers;

    #[test]
    fn due_times_come_in_order_with_sorted_unique_ids() {
        for shared in [true, false] {
            due_in_order(Timers::new(shared));
        }
    }

    fn due_in_order(mut t: Timers) {
        for (at, id) in [(20, 3), (10, 7), (10, 2), (30, 1), (10, 7)] {
            t.push(at, id);
        }
        let (at, ids) = t.take_due(25).unwrap();
        assert_eq!((at, ids.as_slice()), (10, &[2, 7][..]));
        t.give_back(ids);
        let (at, ids) = t.take_due(25).unwrap();
        assert_eq!((at, ids.as_slice()), (20, &[3][..]));
        t.give_back(ids);
        assert!(t.take_due(25).is_none());
        t.push(25, 9); // a timer due now, added while draining, is found too
        assert_eq!(t.take_due(25), Some((25, vec![9])));
        assert_eq!(t.take_due(i64::MAX).map(|(a, _)| a), Some(30));
    }
}
