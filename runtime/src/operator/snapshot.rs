//! Checkpoints of the operator: every key with its accumulators, wake-up times and the
//! watermark, encoded with serde (the run loop uses postcard), and restored into a fresh
//! operator. Segments keep their order, so panes merge in the same order after a restore
//! and the rows come out bit for bit the same.

use serde::{Deserialize, Serialize};
use std::hash::Hash;

use super::slots::Segment;
use super::{WindowFunction, WindowOperator};
use crate::error::ProcessorResult;
use crate::window::WindowTrigger;

/// The state of one key, as written (borrowing the operator's state).
#[derive(Serialize)]
struct KeyStateRef<'a, K, A> {
    key: &'a K,
    next_fire: i64,
    timer_at: i64,
    segs: Segs<'a, A>,
}

/// Segments in memory, or read from the spill store for the checkpoint.
enum Segs<'a, A> {
    Borrowed(&'a [Segment<A>]),
    Owned(Vec<Segment<A>>),
}

impl<A: Serialize> Serialize for Segs<'_, A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Segs::Borrowed(b) => b.serialize(s),
            Segs::Owned(o) => o.serialize(s),
        }
    }
}

/// The state of one key, as read back.
#[derive(Debug, Deserialize)]
pub struct KeyState<K, A> {
    /// The key.
    pub key: K,
    next_fire: i64,
    timer_at: i64,
    segs: Vec<Segment<A>>,
}

/// The operator's state as written by [`WindowOperator::snapshot`].
#[derive(Serialize)]
pub struct OperatorSnapshotRef<'a, K, A> {
    watermark: i64,
    keys: Vec<KeyStateRef<'a, K, A>>,
}

/// The operator's state as read back from a checkpoint; [`WindowOperator::restore`]
/// takes it. Keys can be redistributed (a restore with another parallelism).
#[derive(Debug, Deserialize)]
pub struct OperatorSnapshot<K, A> {
    /// The operator's watermark when the snapshot was taken.
    pub watermark: i64,
    /// Every key with state.
    pub keys: Vec<KeyState<K, A>>,
}

impl<K, A> OperatorSnapshot<K, A> {
    /// An empty snapshot at `watermark`.
    pub fn empty(watermark: i64) -> Self {
        OperatorSnapshot {
            watermark,
            keys: Vec::new(),
        }
    }
}

impl<K: Hash + Eq, F: WindowFunction, T: WindowTrigger> WindowOperator<K, F, T> {
    /// The operator's state, to serialize into a checkpoint (spilled state included).
    pub fn snapshot(&self) -> ProcessorResult<OperatorSnapshotRef<'_, K, F::Acc>> {
        let keys = self
            .slots
            .live_ids()
            .into_iter()
            .map(|id| {
                let slot = self.slots.get(id);
                let segs = match (&self.spill, slot.spilled) {
                    (Some(sp), true) => Segs::Owned(sp.peek(id)?),
                    _ => Segs::Borrowed(&slot.segs),
                };
                Ok(KeyStateRef {
                    key: slot.key.as_ref().expect("live slot has a key"),
                    next_fire: slot.next_fire,
                    timer_at: self.slots.timer_at(id).unwrap_or(i64::MAX),
                    segs,
                })
            })
            .collect::<ProcessorResult<_>>()?;
        Ok(OperatorSnapshotRef {
            watermark: self.watermark,
            keys,
        })
    }

    /// Replaces the operator's state by a snapshot (an operator just built for the same
    /// declaration). Keys missing from the snapshot have no state afterwards.
    pub fn restore(&mut self, snapshot: OperatorSnapshot<K, F::Acc>) {
        self.slots = Default::default();
        if let Some(sp) = self.spill.as_mut() {
            sp.spilled = 0;
        }
        self.timers.clear();
        self.watermark = snapshot.watermark;
        for k in snapshot.keys {
            let id = self.slots.insert_owned(k.key);
            let n = k.segs.len();
            let slot = self.slots.get_mut(id);
            slot.segs = k.segs;
            slot.next_fire = k.next_fire;
            for _ in 0..n {
                self.slots.segment_added();
            }
            if k.timer_at != i64::MAX {
                self.slots.schedule(id, k.timer_at);
                self.timers.push(k.timer_at, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Sum;
    use super::*;
    use crate::window::WindowSpec;

    type Row = (String, i64, i64, u64, bool, Vec<(i64, i64)>);

    fn run(spec: WindowSpec, events: &[(i64, &str)], cut: Option<usize>) -> Vec<Row> {
        run_with(spec, events, cut, None)
    }

    fn run_with(
        spec: WindowSpec,
        events: &[(i64, &str)],
        cut: Option<usize>,
        spill: Option<std::sync::Arc<crate::operator::MemorySpillStore>>,
    ) -> Vec<Row> {
        let make = || {
            let op = WindowOperator::<String, _>::new(spec, 20, Sum).unwrap();
            match &spill {
                Some(store) => op.with_spill(store.clone(), 1),
                None => op,
            }
        };
        let mut rows = Vec::new();
        let mut emit = |f: super::super::Fired<'_, String, (u64, f64)>| {
            rows.push((
                f.key.clone(),
                f.start,
                f.end,
                f.acc.0,
                f.is_update,
                f.replaces.to_vec(),
            ))
        };
        let mut op = make();
        let mut max = i64::MIN;
        for (i, &(ts, key)) in events.iter().enumerate() {
            if Some(i) == cut {
                let bytes = postcard::to_allocvec(&op.snapshot().unwrap()).unwrap();
                let snap: OperatorSnapshot<String, (u64, f64)> =
                    postcard::from_bytes(&bytes).unwrap();
                op = make();
                op.restore(snap);
            }
            let wm = max.saturating_sub(5);
            op.on_event(wm, ts, &key.to_string(), &1.0, &mut emit);
            max = max.max(ts);
            op.advance_to(max - 5, &mut emit);
            assert!(op.take_spill_error().is_none());
        }
        op.flush(&mut emit);
        assert_eq!(op.spilled_len(), 0);
        rows
    }

    #[test]
    fn a_restored_operator_emits_what_the_original_would() {
        let events: Vec<(i64, &str)> = vec![
            (1, "a"),
            (12, "b"),
            (3, "a"),
            (25, "a"),
            (8, "b"),
            (40, "a"),
            (21, "b"),
            (33, "b"),
            (70, "a"),
            (44, "b"),
            (90, "b"),
        ];
        for spec in [
            WindowSpec::Tumbling {
                size: 10,
                offset: 0,
            },
            WindowSpec::Sliding {
                size: 30,
                slide: 10,
                offset: 0,
            },
            WindowSpec::Session { gap: 8 },
        ] {
            let whole = run(spec, &events, None);
            assert!(!whole.is_empty());
            // Spilling all but one accumulator changes nothing either, restored or not.
            let store = std::sync::Arc::new(crate::operator::MemorySpillStore::default());
            let mut spilled = run_with(spec, &events, None, Some(store.clone()));
            let mut expected = whole.clone();
            spilled.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            expected.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            assert_eq!(spilled, expected, "{spec:?} with spilling");
            let mut resumed = run_with(spec, &events, Some(5), Some(store.clone()));
            resumed.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            assert_eq!(resumed, expected, "{spec:?} with spilling, restored");
            for cut in 0..events.len() {
                let mut resumed = run(spec, &events, Some(cut));
                let mut expected = whole.clone();
                resumed.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                expected.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                assert_eq!(resumed, expected, "{spec:?} cut at {cut}");
            }
        }
    }
}
