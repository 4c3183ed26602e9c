//! Key slots: each key's state lives in a slot of a `Vec`, found through a hash table of
//! slot ids, so the key is stored once and a freed slot keeps its buffers for the next key.

use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use std::hash::{BuildHasher, Hash};

/// A borrowed form of a key `K` that can find it in the operator without building a `K`
/// (e.g. `(&str, &str)` for `(String, String)`), and build one when the key is new.
///
/// Its `Hash` must equal `K`'s for equivalent values.
pub trait KeyRef<K>: Hash + hashbrown::Equivalent<K> {
    /// The owned key.
    fn to_key(&self) -> K;
}

impl<K: Hash + Eq + Clone> KeyRef<K> for K {
    fn to_key(&self) -> K {
        self.clone()
    }
}

/// One accumulator of a key: a pane (tumbling, sliding) or a session.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Segment<A> {
    pub start: i64,
    pub end: i64,
    /// Panes: the earliest window end this accumulator counts for (`i64::MIN` for all);
    /// events partly late in a multi-partition stream land in such a sub-pane.
    pub min_end: i64,
    pub acc: A,
    /// Sessions: a row of this session (or of one merged into it) was emitted.
    pub emitted: bool,
    /// Sessions: changed since the last emitted row.
    pub dirty: bool,
    /// Sessions: emitted windows merged into this one, not yet reported.
    pub replaced: Vec<(i64, i64)>,
}

#[derive(Debug)]
pub(crate) struct Slot<K, A> {
    pub key: Option<K>,
    pub segs: Vec<Segment<A>>,
    /// Panes: the earliest window end not yet fired by the watermark.
    pub next_fire: i64,
    timer_at: i64,
    /// The segments are in the spill store (`segs` is empty meanwhile).
    pub spilled: bool,
}

#[derive(Debug)]
pub(crate) struct Slots<K, A> {
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
    slots: Vec<Slot<K, A>>,
    free: Vec<u32>,
    segments: usize,
}

impl<K, A> Default for Slots<K, A> {
    fn default() -> Self {
        Slots {
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            slots: Vec::new(),
            free: Vec::new(),
            segments: 0,
        }
    }
}

impl<K: Hash + Eq, A> Slots<K, A> {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn segment_count(&self) -> usize {
        self.segments
    }

    /// Slots allocated (live or free).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn find<Q: KeyRef<K> + ?Sized>(&self, key: &Q) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        self.table
            .find(hash, |&id| {
                slots[id as usize]
                    .key
                    .as_ref()
                    .is_some_and(|k| key.equivalent(k))
            })
            .copied()
    }

    pub fn find_or_insert<Q: KeyRef<K> + ?Sized>(&mut self, key: &Q) -> u32 {
        let hash = self.hasher.hash_one(key);
        let slots = &mut self.slots;
        let hasher = &self.hasher;
        let entry = self.table.entry(
            hash,
            |&id| {
                slots[id as usize]
                    .key
                    .as_ref()
                    .is_some_and(|k| key.equivalent(k))
            },
            |&id| {
                hasher.hash_one(
                    slots[id as usize]
                        .key
                        .as_ref()
                        .expect("live slot has a key"),
                )
            },
        );
        match entry {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(v) => {
                let id = match self.free.pop() {
                    Some(id) => {
                        let s = &mut slots[id as usize];
                        s.key = Some(key.to_key());
                        s.next_fire = i64::MAX;
                        s.timer_at = i64::MAX;
                        id
                    }
                    None => {
                        slots.push(Slot {
                            key: Some(key.to_key()),
                            segs: Vec::new(),
                            next_fire: i64::MAX,
                            timer_at: i64::MAX,
                            spilled: false,
                        });
                        (slots.len() - 1) as u32
                    }
                };
                v.insert(id);
                id
            }
        }
    }

    /// Inserts a key known to be absent (restoring a checkpoint); returns its slot.
    pub fn insert_owned(&mut self, key: K) -> u32 {
        let hash = self.hasher.hash_one(&key);
        let id = self.slots.len() as u32;
        self.slots.push(Slot {
            key: Some(key),
            segs: Vec::new(),
            next_fire: i64::MAX,
            timer_at: i64::MAX,
            spilled: false,
        });
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.table.insert_unique(hash, id, |&i| {
            hasher.hash_one(slots[i as usize].key.as_ref().expect("live slot has a key"))
        });
        id
    }

    /// Ids of the slots that hold a key.
    pub fn live_ids(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&id| self.slots[id as usize].key.is_some())
            .collect()
    }

    pub fn get(&self, id: u32) -> &Slot<K, A> {
        &self.slots[id as usize]
    }

    pub fn get_mut(&mut self, id: u32) -> &mut Slot<K, A> {
        &mut self.slots[id as usize]
    }

    pub fn segment_added(&mut self) {
        self.segments += 1;
    }

    pub fn segments_removed(&mut self, n: usize) {
        self.segments -= n;
    }

    /// Frees a slot whose segments are all gone; its buffers stay for the next key.
    pub fn release(&mut self, id: u32) {
        let slot = &mut self.slots[id as usize];
        debug_assert!(slot.segs.is_empty());
        if let Some(key) = slot.key.take() {
            let hash = self.hasher.hash_one(&key);
            if let Ok(e) = self.table.find_entry(hash, |&x| x == id) {
                e.remove();
            }
        }
        slot.timer_at = i64::MAX;
        self.free.push(id);
    }

    pub fn timer_at(&self, id: u32) -> Option<i64> {
        let s = &self.slots[id as usize];
        (s.key.is_some() && s.timer_at != i64::MAX).then_some(s.timer_at)
    }

    pub fn clear_timer(&mut self, id: u32) {
        self.slots[id as usize].timer_at = i64::MAX;
    }

    /// Records a wake-up at `at`; true when it is earlier than the pending one (push it).
    pub fn schedule(&mut self, id: u32, at: i64) -> bool {
        let s = &mut self.slots[id as usize];
        if at < s.timer_at {
            s.timer_at = at;
            true
        } else {
            false
        }
    }
}
