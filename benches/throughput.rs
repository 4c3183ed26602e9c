//! Throughput of the four benchmark queries, side by side in one run: the `pipeline!`
//! generated operator, the dynamic `create_pipeline` plan, and a hand-written Rust loop
//! doing the same keyed windowed work with the same parser, hash map and sketch.
//!
//! ```text
//! cargo bench --bench throughput              # full: 1M events, 5 interleaved rounds
//! cargo bench --bench throughput -- --quick   # 20k events, 1 round (what `cargo test` runs)
//! cargo bench --bench throughput -- --only "Q1 generated"   # one variant, for a profiler
//! ```
//!
//! Every variant's result rows are checked against the generated operator's before any
//! time counts. Results go to stdout as a Markdown table (copied into BENCHMARKS.md).

use llm_optimizer_processor::aggregation::{
    AggregationKind, AggregationSpec, PercentileAccumulator, StdDevAccumulator,
};
use llm_optimizer_processor::event::{FeedbackDecoder, FeedbackFields};
use llm_optimizer_processor::operator::{Fired, WindowOperator};
use llm_optimizer_processor::pipeline::{DynamicPlan, Envelope, Fed};
use llm_optimizer_processor::prelude::*;
use llm_optimizer_processor::watermark::WatermarkGenerator;
use llm_optimizer_processor::window::WindowSpec;
use llm_optimizer_processor::workload::{generate, to_json_lines, WorkloadSpec};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

const BOUND_MS: i64 = 30_000;
const LATENESS_MS: i64 = 60_000;

pipeline! {
    /// Q1: every latency statistic per model and region, tumbling 1 minute.
    pipeline Q1 for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        key_by: (model, region),
        aggregate {
            count: count(), sum: sum(latency_ms), avg: avg(latency_ms), min: min(latency_ms),
            max: max(latency_ms), sd: stddev(latency_ms), p50: percentile(latency_ms, 50),
            p95: percentile(latency_ms, 95), p99: percentile(latency_ms, 99),
        }
    }
}

pipeline! {
    /// Q2: Q1 on sliding 5 minute windows every minute.
    pipeline Q2 for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: sliding(5m, 1m, allowed_lateness = 1m),
        key_by: (model, region),
        aggregate {
            count: count(), sum: sum(latency_ms), avg: avg(latency_ms), min: min(latency_ms),
            max: max(latency_ms), sd: stddev(latency_ms), p50: percentile(latency_ms, 50),
            p95: percentile(latency_ms, 95), p99: percentile(latency_ms, 99),
        }
    }
}

pipeline! {
    /// Q3: sessions of 30 s gap per tenant and model.
    pipeline Q3 for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: session(gap = 30s, allowed_lateness = 1m),
        key_by: (tenant, model),
        aggregate { count: count(), cost: sum(cost_usd), rating: avg(rating) }
    }
}

pipeline! {
    /// Q4: high cardinality, per model and tenant, tumbling 1 minute.
    pipeline Q4 for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        key_by: (model, tenant),
        aggregate { count: count(), cost: sum(cost_usd), p99: percentile(latency_ms, 99) }
    }
}

pipeline! {
    /// Q5 plain: requests, cost and p95 latency per model, tumbling 1 minute.
    pipeline Q5Plain for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        key_by: model,
        aggregate { count: count(), cost: sum(cost_usd), p95: percentile(latency_ms, 95) }
    }
}

pipeline! {
    /// Q5 conditional: the same with failures counted, cost and p95 of successful calls
    /// only, and the error rate derived.
    pipeline Q5Conditional for FeedbackEvent {
        watermark: bounded_out_of_orderness(30s),
        window: tumbling(1m, allowed_lateness = 1m),
        key_by: model,
        aggregate {
            count: count(),
            failures: count_if(|e| !e.success),
            cost: sum_if(cost_usd, |e| e.success),
            p95: percentile(latency_ms, 95) where |e| e.success,
        }
        derive { error_rate: failures as f64 / count as f64 }
    }
}

/// What a run produced: rows and a checksum of their counts and sums, to compare variants.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Output {
    rows: u64,
    count_sum: u64,
    value_sum: f64,
}

impl Output {
    fn matches(&self, o: &Output) -> bool {
        self.rows == o.rows
            && self.count_sum == o.count_sum
            && (self.value_sum - o.value_sum).abs() <= 1e-6 * self.value_sum.abs().max(1.0)
    }
}

/// Where a driver's events come from: an iterator (pre-parsed events or serde_json's), or
/// JSON lines decoded by a [`FeedbackDecoder`] into one reused event.
trait Events {
    fn each(self, f: impl FnMut(&FeedbackEvent));
}

impl<I: Iterator<Item = B>, B: std::borrow::Borrow<FeedbackEvent>> Events for I {
    fn each(self, mut f: impl FnMut(&FeedbackEvent)) {
        for e in self {
            f(e.borrow());
        }
    }
}

/// JSON lines through the specialized decoder.
struct Decoded<L> {
    lines: L,
    decoder: FeedbackDecoder,
}

impl<'a, L: Iterator<Item = &'a [u8]>> Events for Decoded<L> {
    fn each(self, mut f: impl FnMut(&FeedbackEvent)) {
        let mut e = FeedbackEvent::default();
        for l in self.lines {
            self.decoder
                .decode_into(l, &mut e)
                .expect("generated lines decode");
            f(&e);
        }
    }
}

/// Watermark-to-emit latency: for each row fired by a watermark advance, the time from
/// the advance (the watermark generator returning a new watermark) to the row being
/// emitted. Log buckets, 16 per power of two (≤ 6 % error), no allocation while recording.
struct Latency {
    buckets: Vec<u64>,
}

impl Latency {
    fn new() -> Self {
        Latency {
            buckets: vec![0; 64 * 16],
        }
    }

    fn record(&mut self, ns: u64) {
        let ns = ns.max(1);
        let e = 63 - ns.leading_zeros() as usize;
        let sub = if e >= 4 { (ns >> (e - 4)) & 15 } else { 0 } as usize;
        self.buckets[e * 16 + sub] += 1;
    }

    /// The upper bound (ns) of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                let (e, sub) = (i / 16, (i % 16) as u64);
                return if e >= 4 {
                    (17 + sub) << (e - 4)
                } else {
                    1 << (e + 1)
                };
            }
        }
        0
    }
}

/// Drives a plan with the real watermark generator and operator, synchronously; sums what
/// every emitted row (updates included) reports.
fn drive<P, R>(plan: &P, spec: WindowSpec, events: impl Events, read: R) -> Output
where
    P: Plan<Event = FeedbackEvent>,
    R: Fn(&P::Row) -> (u64, f64),
{
    drive_with(plan, spec, events, read, |op| op, usize::MAX, |_| {}, None)
}

/// [`drive`], with the operator set up by `setup`, `every(op)` called after every `n`-th
/// event, and the watermark-to-emit latency of fired rows recorded into `latency`.
#[allow(clippy::too_many_arguments, reason = "a benchmark driver's knobs")]
fn drive_with<P, R>(
    plan: &P,
    spec: WindowSpec,
    events: impl Events,
    read: R,
    setup: impl FnOnce(WindowOperator<P::Key, P::Func>) -> WindowOperator<P::Key, P::Func>,
    n: usize,
    mut every: impl FnMut(&mut WindowOperator<P::Key, P::Func>),
    mut latency: Option<&mut Latency>,
) -> Output
where
    P: Plan<Event = FeedbackEvent>,
    R: Fn(&P::Row) -> (u64, f64),
{
    let mut op: WindowOperator<P::Key, P::Func> =
        setup(WindowOperator::new(spec, LATENESS_MS, plan.function()).expect("valid spec"));
    let mut wm = BoundedOutOfOrdernessWatermark::new(Duration::from_millis(BOUND_MS as u64));
    let now = Instant::now();
    wm.register_partition(0, now);
    let func = plan.function();
    let mut out = Output {
        rows: 0,
        count_sum: 0,
        value_sum: 0.0,
    };
    let advancing: Cell<Option<Instant>> = Cell::new(None);
    let latency_on = latency.is_some();
    let mut emit = |f: Fired<'_, P::Key, _>| {
        let row = plan.row(&func, f);
        if let (Some(l), Some(t)) = (latency.as_deref_mut(), advancing.get()) {
            l.record(t.elapsed().as_nanos() as u64);
        }
        let (c, v) = read(&row);
        out.rows += 1;
        out.count_sum += c;
        out.value_sum += v;
    };
    let mut i = 0;
    events.each(|e| {
        let pw = wm.partition_watermark(0);
        if let Ok(Fed::Offered(ts, _)) = plan.feed(&mut op, pw, e, Envelope::default(), &mut emit) {
            if let Some(w) = wm.on_event(0, ts, now) {
                if latency_on {
                    advancing.set(Some(Instant::now()));
                }
                op.advance_to(w, &mut emit);
                advancing.set(None);
            }
        }
        i += 1;
        if i % n == 0 {
            every(&mut op);
        }
    });
    op.flush(&mut emit);
    out
}

/// [`drive`] with durable state on RocksDB: the operator's state is checkpointed (encoded,
/// written, sealed by a RocksDB checkpoint) every `checkpoint_every` events, and, with
/// `spill`, accumulators past that many go to RocksDB until they are needed.
#[cfg(feature = "rocksdb")]
fn drive_rocksdb<P, R>(
    plan: &P,
    spec: WindowSpec,
    events: impl Events,
    read: R,
    checkpoint_every: usize,
    spill: Option<usize>,
) -> Output
where
    P: Plan<Event = FeedbackEvent>,
    R: Fn(&P::Row) -> (u64, f64),
{
    use llm_optimizer_processor::state::{RocksDBStateBackend, StateBackend};
    let dir = tempfile::tempdir().expect("scratch directory");
    let backend = RocksDBStateBackend::new(dir.path().join("state"), dir.path().join("cp"))
        .expect("RocksDB opens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut id = 0;
    drive_with(
        plan,
        spec,
        events,
        read,
        |op| match spill {
            Some(max) => op.with_spill(backend.spill_store().expect("RocksDB spills"), max),
            None => op,
        },
        checkpoint_every,
        |op| {
            assert!(op.take_spill_error().is_none());
            id += 1;
            let bytes = postcard::to_allocvec(&op.snapshot().expect("spilled state reads"))
                .expect("state encodes");
            rt.block_on(async {
                backend.put(b"q/op", &bytes).await?;
                backend.checkpoint(id).await
            })
            .expect("checkpoint");
        },
        None,
    )
}

// ---------- the hand-written loop (tumbling windows: Q1 and Q4) ----------

/// A key borrowed from an event, found in the interning map without allocating.
struct Pair<'a>(&'a str, &'a str);
impl Hash for Pair<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self.0, self.1).hash(h)
    }
}

/// Keys interned once: ids in a `hashbrown::HashTable`, the strings in a `Vec` (read back
/// for rows), looked up by borrowed strings without allocating; what the generated
/// operator's slot table does.
#[derive(Default)]
struct Interner {
    table: hashbrown::HashTable<u32>,
    names: Vec<(String, String)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Interner {
    fn id(&mut self, k: Pair<'_>) -> u32 {
        let h = self.hasher.hash_one(&k);
        let names = &self.names;
        if let Some(&id) = self
            .table
            .find(h, |&id| names[id as usize].equivalent_to(&k))
        {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push((k.0.to_owned(), k.1.to_owned()));
        let (names, hasher) = (&self.names, &self.hasher);
        self.table.insert_unique(h, id, |&id| {
            let n = &names[id as usize];
            hasher.hash_one(Pair(&n.0, &n.1))
        });
        id
    }

    fn name(&self, id: u32) -> &(String, String) {
        &self.names[id as usize]
    }
}

trait EquivalentTo {
    fn equivalent_to(&self, k: &Pair<'_>) -> bool;
}

impl EquivalentTo for (String, String) {
    fn equivalent_to(&self, k: &Pair<'_>) -> bool {
        self.0 == k.0 && self.1 == k.1
    }
}

#[derive(Default)]
struct HandAcc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    sd: StdDevAccumulator,
    pct: PercentileAccumulator,
}

/// The row a hand-written loop hands on: what the generated pipeline's row holds (the key's
/// strings, the window's bounds, the statistics), built the same way, so that both do the
/// same work per row.
#[allow(dead_code, reason = "built for its cost, read by `black_box`")]
struct HandRow {
    k0: String,
    k1: String,
    window_start: chrono::DateTime<chrono::Utc>,
    window_end: chrono::DateTime<chrono::Utc>,
    count: u64,
    sum: f64,
    stats: [Option<f64>; 7],
}

fn hand_row(
    out: &mut Output,
    key: &(String, String),
    (start, end): (i64, i64),
    count: u64,
    sum: f64,
    stats: [Option<f64>; 7],
) {
    std::hint::black_box(HandRow {
        k0: key.0.clone(),
        k1: key.1.clone(),
        window_start: llm_optimizer_processor::time::from_millis(start),
        window_end: llm_optimizer_processor::time::from_millis(end),
        count,
        sum,
        stats,
    });
    out.rows += 1;
    out.count_sum += count;
    out.value_sum += sum;
}

/// Tumbling windows by hand: keys interned once, accumulators per (key, window start),
/// windows fired in end order as the watermark passes, late events dropped, events within
/// the lateness re-emitting their window at once. `full`: Q1's statistics of latency;
/// otherwise Q4's count, sum of cost and p99 of latency.
fn hand_tumbling<B: std::borrow::Borrow<FeedbackEvent>>(
    events: impl Iterator<Item = B>,
    size: i64,
    key: for<'a> fn(&'a FeedbackEvent) -> Pair<'a>,
    full: bool,
) -> Output {
    let mut keys = Interner::default();
    let mut accs: hashbrown::HashMap<(u32, i64), HandAcc> = hashbrown::HashMap::new();
    let mut open: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    let mut fired_upto = i64::MIN;
    let mut max_ts = i64::MIN;
    let mut out = Output {
        rows: 0,
        count_sum: 0,
        value_sum: 0.0,
    };
    let emit = |out: &mut Output, keys: &Interner, id: u32, start: i64, acc: &HandAcc| {
        let stats = if full {
            let p = acc.pct.percentiles(&[50.0, 95.0, 99.0]);
            [
                Some(acc.sum / acc.count as f64),
                Some(acc.min),
                Some(acc.max),
                Some(acc.sd.population()),
                p[0],
                p[1],
                p[2],
            ]
        } else {
            [acc.pct.percentile(99.0), None, None, None, None, None, None]
        };
        hand_row(
            out,
            keys.name(id),
            (start, start + size),
            acc.count,
            acc.sum,
            stats,
        );
    };
    for e in events {
        let e = e.borrow();
        let ts = e.timestamp.timestamp_millis();
        let wm = max_ts.saturating_sub(BOUND_MS);
        let start = ts.div_euclid(size) * size;
        if start + size + LATENESS_MS > wm {
            let k = key(e);
            let id = keys.id(k);
            let acc = accs.entry((id, start)).or_insert_with(|| {
                open.entry(start).or_default().push(id);
                HandAcc {
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    ..Default::default()
                }
            });
            acc.count += 1;
            if full {
                let v = e.latency_ms;
                acc.sum += v;
                acc.min = acc.min.min(v);
                acc.max = acc.max.max(v);
                acc.sd.add(v);
                acc.pct.add(v);
            } else {
                acc.sum += e.cost_usd;
                acc.pct.add(e.latency_ms);
            }
            if start + size <= fired_upto {
                emit(&mut out, &keys, id, start, acc); // an update within the allowed lateness
            }
        }
        max_ts = max_ts.max(ts);
        let wm = max_ts.saturating_sub(BOUND_MS);
        if wm > fired_upto {
            for (&s, ids) in open.range(..) {
                if s + size > wm {
                    break;
                }
                if s + size > fired_upto {
                    for id in ids {
                        emit(&mut out, &keys, *id, s, &accs[&(*id, s)]);
                    }
                }
            }
            fired_upto = wm;
            while let Some((&s, _)) = open.first_key_value() {
                if s + size + LATENESS_MS > wm {
                    break;
                }
                for id in open.remove(&s).unwrap_or_default() {
                    accs.remove(&(id, s));
                }
            }
        }
    }
    for (s, ids) in std::mem::take(&mut open) {
        if s + size > fired_upto {
            for id in ids {
                emit(&mut out, &keys, id, s, &accs[&(id, s)]);
            }
        }
    }
    out
}

// ---------- the hand-written loop (sliding windows by panes: Q2) ----------

impl HandAcc {
    fn fresh() -> Self {
        HandAcc {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            ..Default::default()
        }
    }

    fn add_latency(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sd.add(v);
        self.pct.add(v);
    }

    fn merge(&mut self, o: &HandAcc) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sd.merge(&o.sd);
        self.pct.merge(&o.pct);
    }

    fn clear(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
        self.sd = StdDevAccumulator::default();
        self.pct.clear();
    }

    /// Q1's statistics.
    fn stats(&self) -> [Option<f64>; 7] {
        let p = self.pct.percentiles(&[50.0, 95.0, 99.0]);
        [
            Some(self.sum / self.count as f64),
            Some(self.min),
            Some(self.max),
            Some(self.sd.population()),
            p[0],
            p[1],
            p[2],
        ]
    }
}

/// Sliding windows by hand, with pane sharing: one accumulator per (key, pane of `slide`),
/// a window's row merged from its `size / slide` panes when the watermark passes its end
/// (for the keys with data in it), events within the lateness re-emitting the fired windows
/// they fall in, panes dropped once their last window is past the lateness. Q1's
/// statistics of latency per (model, region).
fn hand_sliding<B: std::borrow::Borrow<FeedbackEvent>>(
    events: impl Iterator<Item = B>,
    size: i64,
    slide: i64,
) -> Output {
    let mut keys = Interner::default();
    let mut panes: hashbrown::HashMap<(u32, i64), HandAcc> = hashbrown::HashMap::new();
    let mut open: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    let mut fired_upto = i64::MIN;
    let mut max_ts = i64::MIN;
    let mut out = Output {
        rows: 0,
        count_sum: 0,
        value_sum: 0.0,
    };
    let mut window = HandAcc::fresh();
    let mut ids: Vec<u32> = Vec::new();
    let report = |panes: &hashbrown::HashMap<(u32, i64), HandAcc>,
                  keys: &Interner,
                  window: &mut HandAcc,
                  out: &mut Output,
                  id: u32,
                  start: i64| {
        window.clear();
        let mut p = start;
        while p < start + size {
            if let Some(a) = panes.get(&(id, p)) {
                window.merge(a);
            }
            p += slide;
        }
        hand_row(
            out,
            keys.name(id),
            (start, start + size),
            window.count,
            window.sum,
            window.stats(),
        );
    };
    // Fires the windows ending in (from, to] that hold data, for their keys.
    let fire = |panes: &hashbrown::HashMap<(u32, i64), HandAcc>,
                keys: &Interner,
                open: &BTreeMap<i64, Vec<u32>>,
                window: &mut HandAcc,
                ids: &mut Vec<u32>,
                out: &mut Output,
                from: i64,
                to: i64| {
        let Some((&first, _)) = open.first_key_value() else {
            return;
        };
        let mut end = if from < first {
            first + slide
        } else {
            (from.div_euclid(slide) + 1) * slide
        };
        while end <= to {
            ids.clear();
            for (_, v) in open.range(end - size..end) {
                ids.extend_from_slice(v);
            }
            ids.sort_unstable();
            ids.dedup();
            for &id in ids.iter() {
                report(panes, keys, window, out, id, end - size);
            }
            end += slide;
        }
    };
    for e in events {
        let e = e.borrow();
        let ts = e.timestamp.timestamp_millis();
        let wm = max_ts.saturating_sub(BOUND_MS);
        let pane = ts.div_euclid(slide) * slide;
        // The latest window holding this pane starts at it: late only if that one is.
        if pane + size + LATENESS_MS > wm {
            let k = Pair(&e.model, &e.region);
            let id = keys.id(k);
            panes
                .entry((id, pane))
                .or_insert_with(|| {
                    open.entry(pane).or_default().push(id);
                    HandAcc::fresh()
                })
                .add_latency(e.latency_ms);
            // Updates: fired windows holding this pane, still within their lateness.
            let mut start = pane - size + slide;
            while start <= pane {
                let end = start + size;
                if end <= fired_upto && end + LATENESS_MS > wm {
                    report(&panes, &keys, &mut window, &mut out, id, start);
                }
                start += slide;
            }
        }
        max_ts = max_ts.max(ts);
        let wm = max_ts.saturating_sub(BOUND_MS);
        if wm > fired_upto {
            fire(
                &panes,
                &keys,
                &open,
                &mut window,
                &mut ids,
                &mut out,
                fired_upto,
                wm,
            );
            fired_upto = wm;
            while let Some((&p, _)) = open.first_key_value() {
                if p + size + LATENESS_MS > wm {
                    break;
                }
                for id in open.remove(&p).unwrap_or_default() {
                    panes.remove(&(id, p));
                }
            }
        }
    }
    let last = open.last_key_value().map_or(fired_upto, |(p, _)| p + size);
    fire(
        &panes,
        &keys,
        &open,
        &mut window,
        &mut ids,
        &mut out,
        fired_upto,
        last,
    );
    out
}

// ---------- the hand-written loop (session windows: Q3) ----------

/// One session of a key, by hand.
struct HandSession {
    start: i64,
    end: i64,
    count: u64,
    cost: f64,
    rating_sum: f64,
    rating_n: u64,
    /// A row was emitted for it (a later one is an update).
    emitted: bool,
    /// Changed since its last row.
    dirty: bool,
}

/// Sessions by hand: per key, disjoint sessions of `[ts, ts + gap)` merged when they overlap
/// or touch; the merged session decides lateness; a session fires when the watermark passes
/// its end (or at once when a late event changes one that already fired); sessions are
/// dropped once the watermark passes their end plus the lateness. Timers are a binary heap
/// of (time, key id), as in the operator. count, sum(cost_usd) and avg(rating) per (tenant, model).
fn hand_sessions<B: std::borrow::Borrow<FeedbackEvent>>(
    events: impl Iterator<Item = B>,
    gap: i64,
) -> Output {
    let mut keys = Interner::default();
    let mut sessions: Vec<Vec<HandSession>> = Vec::new();
    let mut timers: BinaryHeap<Reverse<(i64, u32)>> = BinaryHeap::new();
    // Per key, the time of its one pending timer (an earlier wake replaces it).
    let mut next: Vec<i64> = Vec::new();
    let mut fired_upto = i64::MIN;
    let mut max_ts = i64::MIN;
    let mut out = Output {
        rows: 0,
        count_sum: 0,
        value_sum: 0.0,
    };
    let row = |out: &mut Output, key: &(String, String), s: &HandSession| {
        let rating = (s.rating_n > 0).then(|| s.rating_sum / s.rating_n as f64);
        let stats = [rating, None, None, None, None, None, None];
        hand_row(out, key, (s.start, s.end), s.count, s.cost, stats);
    };
    for e in events {
        let e = e.borrow();
        let ts = e.timestamp.timestamp_millis();
        let wm = max_ts.saturating_sub(BOUND_MS);
        let k = Pair(&e.tenant, &e.model);
        let id = keys.id(k) as usize;
        if id == sessions.len() {
            sessions.push(Vec::new());
            next.push(i64::MAX);
        }
        let list = &mut sessions[id];
        let (mut lo, mut hi) = (ts, ts + gap);
        for s in list.iter() {
            if s.start <= hi && lo <= s.end {
                lo = lo.min(s.start);
                hi = hi.max(s.end);
            }
        }
        if hi + LATENESS_MS > wm {
            let mut merged = HandSession {
                start: lo,
                end: hi,
                count: 0,
                cost: 0.0,
                rating_sum: 0.0,
                rating_n: 0,
                emitted: false,
                dirty: true,
            };
            list.retain(|s| {
                let overlaps = s.start <= hi && lo <= s.end;
                if overlaps {
                    merged.count += s.count;
                    merged.cost += s.cost;
                    merged.rating_sum += s.rating_sum;
                    merged.rating_n += s.rating_n;
                    merged.emitted |= s.emitted;
                }
                !overlaps
            });
            merged.count += 1;
            merged.cost += e.cost_usd;
            if let Some(r) = e.rating {
                merged.rating_sum += r;
                merged.rating_n += 1;
            }
            if hi <= fired_upto {
                row(&mut out, keys.name(id as u32), &merged);
                merged.emitted = true;
                merged.dirty = false;
            }
            let wake = if merged.dirty { hi } else { hi + LATENESS_MS };
            if wake < next[id] {
                next[id] = wake;
                timers.push(Reverse((wake, id as u32)));
            }
            list.push(merged);
        }
        max_ts = max_ts.max(ts);
        let wm = max_ts.saturating_sub(BOUND_MS);
        if wm > fired_upto {
            fired_upto = wm;
            while let Some(&Reverse((at, id))) = timers.peek() {
                if at > wm {
                    break;
                }
                timers.pop();
                if next[id as usize] != at {
                    continue; // replaced by an earlier wake, already handled
                }
                let list = &mut sessions[id as usize];
                for s in list.iter_mut() {
                    if s.dirty && s.end <= wm {
                        row(&mut out, keys.name(id), s);
                        s.emitted = true;
                        s.dirty = false;
                    }
                }
                list.retain(|s| s.end + LATENESS_MS > wm);
                let wake = list
                    .iter()
                    .map(|s| if s.dirty { s.end } else { s.end + LATENESS_MS })
                    .min()
                    .unwrap_or(i64::MAX);
                next[id as usize] = wake;
                if wake != i64::MAX {
                    timers.push(Reverse((wake, id)));
                }
            }
        }
    }
    for (id, list) in sessions.iter().enumerate() {
        for s in list.iter().filter(|s| s.dirty) {
            row(&mut out, keys.name(id as u32), s);
        }
    }
    out
}

// ---------- the harness ----------

struct Measured {
    name: String,
    rates: Vec<f64>,
    allocations_per_event: f64,
    /// Highest heap above what was live when the run started (the input is not counted).
    peak_bytes: u64,
    output: Output,
}

/// One run: events/s, allocations per event, peak heap growth, output.
fn measure(n: usize, f: &mut dyn FnMut() -> Output) -> (f64, f64, u64, Output) {
    let a0 = counting_alloc::allocations();
    let live0 = counting_alloc::live_bytes();
    counting_alloc::reset_peak();
    let t0 = Instant::now();
    let out = f();
    let secs = t0.elapsed().as_secs_f64();
    let allocs = (counting_alloc::allocations() - a0) as f64 / n as f64;
    let peak = counting_alloc::peak_bytes().saturating_sub(live0);
    (n as f64 / secs, allocs, peak, out)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn dynamic_spec(kinds: &[AggregationKind]) -> AggregationSpec {
    AggregationSpec::new(kinds, &[50.0, 95.0, 99.0]).expect("valid spec")
}

/// The one test this harness offers to a test runner: the quick mode as a smoke check.
const SMOKE_TEST: &str = "quick_smoke_check";

/// Answers a test runner's listing as libtest does (`--list --format terse`, which
/// cargo-nextest asks of every test binary): the smoke check, never ignored. Returns
/// whether this run was such a listing.
fn listed() -> bool {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--list") {
        return false;
    }
    if !args.iter().any(|a| a == "--ignored") {
        println!("{SMOKE_TEST}: test");
    }
    true
}

fn main() {
    if listed() {
        return;
    }
    let full =
        std::env::args().any(|a| a == "--bench") && !std::env::args().any(|a| a == "--quick");
    let (n, rounds) = if full { (1_000_000, 5) } else { (20_000, 1) };
    let events = generate(&WorkloadSpec {
        events: n,
        ..Default::default()
    });
    let json = to_json_lines(&events);
    let lines = || json.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let parse =
        |l: &[u8]| serde_json::from_slice::<FeedbackEvent>(l).expect("generated lines parse");

    let tumbling = WindowSpec::Tumbling {
        size: 60_000,
        offset: 0,
    };
    let sliding = WindowSpec::Sliding {
        size: 300_000,
        slide: 60_000,
        offset: 0,
    };
    let session = WindowSpec::Session { gap: 30_000 };
    let all = [
        AggregationKind::Count,
        AggregationKind::Sum,
        AggregationKind::Average,
        AggregationKind::Min,
        AggregationKind::Max,
        AggregationKind::StdDev,
        AggregationKind::Percentile,
    ];
    let d1 =
        DynamicPlan::<FeedbackEvent>::new(&["model", "region"], "latency_ms", dynamic_spec(&all));
    let d3 = DynamicPlan::<FeedbackEvent>::new(
        &["tenant", "model"],
        "cost_usd",
        dynamic_spec(&[AggregationKind::Count, AggregationKind::Sum]),
    );
    let d4 = DynamicPlan::<FeedbackEvent>::new(
        &["model", "tenant"],
        "latency_ms",
        dynamic_spec(&[
            AggregationKind::Count,
            AggregationKind::Sum,
            AggregationKind::Percentile,
        ]),
    );
    let dyn_read = |r: &AggregationResult| {
        (
            r.results["count"] as u64,
            r.results.get("sum").copied().unwrap_or(0.0),
        )
    };
    // The specialized decoder, told by each generated pipeline which fields it reads.
    let decoder_for = |fields: Option<Vec<&'static str>>| {
        FeedbackDecoder::new(match fields {
            Some(f) => FeedbackFields::of(f).expect("the pipeline's fields are FeedbackEvent's"),
            None => FeedbackFields::ALL,
        })
    };
    let dec1 = decoder_for(Q1.fields_read());
    let dec2 = decoder_for(Q2.fields_read());
    let dec3 = decoder_for(Q3.fields_read());
    let dec4 = decoder_for(Q4.fields_read());
    let decoded = |decoder| Decoded {
        lines: lines(),
        decoder,
    };
    let model_region: for<'a> fn(&'a FeedbackEvent) -> Pair<'a> = |e| Pair(&e.model, &e.region);
    let model_tenant: for<'a> fn(&'a FeedbackEvent) -> Pair<'a> = |e| Pair(&e.model, &e.tenant);

    type Variant<'a> = (&'static str, Box<dyn FnMut() -> Output + 'a>);
    let mut variants: Vec<Variant> = vec![
        (
            "serde_json parse only",
            Box::new(|| {
                let c = lines().fold(0u64, |n, l| {
                    std::hint::black_box(parse(l));
                    n + 1
                });
                Output {
                    rows: 0,
                    count_sum: c,
                    value_sum: 0.0,
                }
            }),
        ),
        (
            "FeedbackDecoder parse only (Q1's fields)",
            Box::new(|| {
                let mut c = 0;
                decoded(dec1).each(|e| {
                    std::hint::black_box(e);
                    c += 1;
                });
                Output {
                    rows: 0,
                    count_sum: c,
                    value_sum: 0.0,
                }
            }),
        ),
        (
            "Q1 generated",
            Box::new(|| drive(&Q1, tumbling, events.iter(), |r: &Q1Row| (r.count, r.sum))),
        ),
        (
            "Q1 hand-written",
            Box::new(|| hand_tumbling(events.iter(), 60_000, model_region, true)),
        ),
        (
            "Q1 dynamic",
            Box::new(|| drive(&d1, tumbling, events.iter(), dyn_read)),
        ),
        (
            "Q1 generated, from JSON",
            Box::new(|| {
                drive(&Q1, tumbling, lines().map(parse), |r: &Q1Row| {
                    (r.count, r.sum)
                })
            }),
        ),
        (
            "Q1 hand-written, from JSON",
            Box::new(|| hand_tumbling(lines().map(parse), 60_000, model_region, true)),
        ),
        (
            "Q1 generated, from JSON, specialized decoder",
            Box::new(|| drive(&Q1, tumbling, decoded(dec1), |r: &Q1Row| (r.count, r.sum))),
        ),
        (
            "Q1 dynamic, from JSON",
            Box::new(|| drive(&d1, tumbling, lines().map(parse), dyn_read)),
        ),
        (
            "Q2 generated",
            Box::new(|| drive(&Q2, sliding, events.iter(), |r: &Q2Row| (r.count, r.sum))),
        ),
        (
            "Q2 hand-written",
            Box::new(|| hand_sliding(events.iter(), 300_000, 60_000)),
        ),
        (
            "Q2 dynamic",
            Box::new(|| drive(&d1, sliding, events.iter(), dyn_read)),
        ),
        (
            "Q3 generated",
            Box::new(|| drive(&Q3, session, events.iter(), |r: &Q3Row| (r.count, r.cost))),
        ),
        (
            "Q3 hand-written",
            Box::new(|| hand_sessions(events.iter(), 30_000)),
        ),
        (
            "Q3 dynamic",
            Box::new(|| drive(&d3, session, events.iter(), dyn_read)),
        ),
        (
            "Q4 generated",
            Box::new(|| drive(&Q4, tumbling, events.iter(), |r: &Q4Row| (r.count, r.cost))),
        ),
        (
            "Q4 hand-written",
            Box::new(|| hand_tumbling(events.iter(), 60_000, model_tenant, false)),
        ),
        (
            "Q4 generated, from JSON, specialized decoder",
            Box::new(|| drive(&Q4, tumbling, decoded(dec4), |r: &Q4Row| (r.count, r.cost))),
        ),
        (
            "Q4 hand-written, from JSON",
            Box::new(|| hand_tumbling(lines().map(parse), 60_000, model_tenant, false)),
        ),
        (
            "Q4 dynamic",
            Box::new(|| {
                drive(&d4, tumbling, events.iter(), |r: &AggregationResult| {
                    (r.results["count"] as u64, 0.0)
                })
            }),
        ),
        (
            "Q4 dynamic, from JSON",
            Box::new(|| {
                drive(
                    &d4,
                    tumbling,
                    lines().map(parse),
                    |r: &AggregationResult| (r.results["count"] as u64, 0.0),
                )
            }),
        ),
        (
            "Q5 plain generated",
            Box::new(|| {
                drive(&Q5Plain, tumbling, events.iter(), |r: &Q5PlainRow| {
                    (r.count, r.cost)
                })
            }),
        ),
        (
            "Q5 conditional generated",
            Box::new(|| {
                drive(
                    &Q5Conditional,
                    tumbling,
                    events.iter(),
                    |r: &Q5ConditionalRow| (r.count, r.error_rate.unwrap_or(0.0)),
                )
            }),
        ),
        (
            "Q2 generated, from JSON, specialized decoder",
            Box::new(|| drive(&Q2, sliding, decoded(dec2), |r: &Q2Row| (r.count, r.sum))),
        ),
        (
            "Q2 hand-written, from JSON",
            Box::new(|| hand_sliding(lines().map(parse), 300_000, 60_000)),
        ),
        (
            "Q2 dynamic, from JSON",
            Box::new(|| drive(&d1, sliding, lines().map(parse), dyn_read)),
        ),
        (
            "Q3 generated, from JSON, specialized decoder",
            Box::new(|| drive(&Q3, session, decoded(dec3), |r: &Q3Row| (r.count, r.cost))),
        ),
        (
            "Q3 hand-written, from JSON",
            Box::new(|| hand_sessions(lines().map(parse), 30_000)),
        ),
        (
            "Q3 dynamic, from JSON",
            Box::new(|| drive(&d3, session, lines().map(parse), dyn_read)),
        ),
    ];
    // Durable state: checkpoints every 200k events (about 0.2 s of input: a production
    // interval is 10–60 s, so this overstates their cost), and spilling past a bound.
    #[cfg(feature = "rocksdb")]
    {
        let every = (n / 5).max(1);
        let events = &events;
        variants.push((
            "Q1 generated, RocksDB checkpoints",
            Box::new(move || {
                drive_rocksdb(
                    &Q1,
                    tumbling,
                    events.iter(),
                    |r: &Q1Row| (r.count, r.sum),
                    every,
                    None,
                )
            }),
        ));
        variants.push((
            "Q4 generated, RocksDB checkpoints + spill past 20k windows",
            Box::new(move || {
                drive_rocksdb(
                    &Q4,
                    tumbling,
                    events.iter(),
                    |r: &Q4Row| (r.count, r.cost),
                    every,
                    Some(20_000),
                )
            }),
        ));
    }

    // `--only <name>`: run just that variant (for profiling;
    // the agreement checks and ratios need every variant, so they are skipped).
    let args: Vec<String> = std::env::args().collect();
    if let Some(prefix) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
    {
        for (name, f) in variants.iter_mut().filter(|(n, _)| *n == prefix.as_str()) {
            // Ten times the rounds, so that a profiler sees more of the run than the set-up.
            for _ in 0..rounds * 10 {
                let (rate, allocs, _, _) = measure(n, f.as_mut());
                println!(
                    "{name}: {:.2}M events/s, {allocs:.4} allocations/event",
                    rate / 1e6
                );
            }
        }
        return;
    }

    let mut results: Vec<Measured> = variants
        .iter()
        .map(|(name, _)| Measured {
            name: (*name).to_owned(),
            rates: Vec::new(),
            allocations_per_event: 0.0,
            peak_bytes: 0,
            output: Output {
                rows: 0,
                count_sum: 0,
                value_sum: 0.0,
            },
        })
        .collect();
    for round in 0..rounds {
        for (i, (name, f)) in variants.iter_mut().enumerate() {
            let _ = name;
            let (rate, allocs, peak, out) = measure(n, f.as_mut());
            results[i].rates.push(rate);
            results[i].allocations_per_event = allocs;
            results[i].peak_bytes = results[i].peak_bytes.max(peak);
            results[i].output = out;
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }

    // Check: the variants of a query agree before any number is reported.
    let out = |name: &str| {
        results
            .iter()
            .find(|m| m.name == name)
            .expect("variant exists")
            .output
    };
    for q in ["Q1", "Q2", "Q3", "Q4"] {
        let g = out(&format!("{q} generated"));
        let h = out(&format!("{q} hand-written"));
        assert!(
            g.matches(&h),
            "{q}: generated {g:?} differs from hand-written {h:?}"
        );
    }
    for q in ["Q1", "Q2", "Q3"] {
        let g = out(&format!("{q} generated"));
        let d = out(&format!("{q} dynamic"));
        assert!(
            g.matches(&d),
            "{q}: generated {g:?} differs from dynamic {d:?}"
        );
    }
    // The conditional query fires the same windows with the same counts.
    let (p5, c5) = (out("Q5 plain generated"), out("Q5 conditional generated"));
    assert_eq!(
        (p5.rows, p5.count_sum),
        (c5.rows, c5.count_sum),
        "Q5 rows differ"
    );
    let (g4, d4o) = (out("Q4 generated"), out("Q4 dynamic"));
    assert_eq!(
        (g4.rows, g4.count_sum),
        (d4o.rows, d4o.count_sum),
        "Q4 rows differ"
    );
    for v in [
        "Q1 generated, from JSON",
        "Q1 generated, from JSON, specialized decoder",
    ] {
        assert!(out("Q1 generated").matches(&out(v)), "{v} differs");
    }
    // From JSON, each variant gives its in-memory rows.
    for q in ["Q2", "Q3", "Q4"] {
        for (v, of) in [
            ("generated, from JSON, specialized decoder", "generated"),
            ("hand-written, from JSON", "hand-written"),
            ("dynamic, from JSON", "dynamic"),
        ] {
            let (a, b) = (out(&format!("{q} {v}")), out(&format!("{q} {of}")));
            assert!(a.matches(&b), "{q} {v}: {a:?} differs from {b:?}");
        }
    }
    #[cfg(feature = "rocksdb")]
    {
        assert!(out("Q1 generated").matches(&out("Q1 generated, RocksDB checkpoints")));
        let spilled = out("Q4 generated, RocksDB checkpoints + spill past 20k windows");
        assert!(
            out("Q4 generated").matches(&spilled),
            "Q4 with spill differs"
        );
    }

    let rate = |name: &str| {
        median(
            &results
                .iter()
                .find(|m| m.name == name)
                .expect("variant")
                .rates,
        )
    };
    println!(
        "{} events, {} round(s), medians (min–max) in events/s on one core\n",
        n, rounds
    );
    println!("| variant | events/s | min–max | allocations/event | peak heap | rows |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in &results {
        let (lo, hi) = m
            .rates
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), r| (l.min(*r), h.max(*r)));
        println!(
            "| {} | {:.2}M | {:.2}–{:.2}M | {:.4} | {:.1} MiB | {} |",
            m.name,
            median(&m.rates) / 1e6,
            lo / 1e6,
            hi / 1e6,
            m.allocations_per_event,
            m.peak_bytes as f64 / (1024.0 * 1024.0),
            m.output.rows
        );
    }
    println!("\n| ratio | value |\n|---|---:|");
    for (a, b) in [
        ("Q1 generated", "Q1 hand-written"),
        ("Q1 generated", "Q1 dynamic"),
        ("Q1 generated, from JSON", "Q1 hand-written, from JSON"),
        ("Q1 generated, from JSON", "Q1 dynamic, from JSON"),
        ("Q1 generated, from JSON", "serde_json parse only"),
        (
            "Q1 generated, from JSON, specialized decoder",
            "Q1 hand-written, from JSON",
        ),
        (
            "FeedbackDecoder parse only (Q1's fields)",
            "serde_json parse only",
        ),
        (
            "Q2 generated, from JSON, specialized decoder",
            "Q2 hand-written, from JSON",
        ),
        (
            "Q2 generated, from JSON, specialized decoder",
            "Q2 dynamic, from JSON",
        ),
        (
            "Q3 generated, from JSON, specialized decoder",
            "Q3 hand-written, from JSON",
        ),
        (
            "Q3 generated, from JSON, specialized decoder",
            "Q3 dynamic, from JSON",
        ),
        (
            "Q4 generated, from JSON, specialized decoder",
            "Q4 hand-written, from JSON",
        ),
        (
            "Q4 generated, from JSON, specialized decoder",
            "Q4 dynamic, from JSON",
        ),
        ("Q2 generated", "Q1 generated"),
        ("Q2 generated", "Q2 hand-written"),
        ("Q2 generated", "Q2 dynamic"),
        ("Q3 generated", "Q3 hand-written"),
        ("Q3 generated", "Q3 dynamic"),
        ("Q4 generated", "Q4 hand-written"),
        ("Q4 generated", "Q4 dynamic"),
        ("Q5 conditional generated", "Q5 plain generated"),
        #[cfg(feature = "rocksdb")]
        ("Q1 generated, RocksDB checkpoints", "Q1 generated"),
        #[cfg(feature = "rocksdb")]
        (
            "Q4 generated, RocksDB checkpoints + spill past 20k windows",
            "Q4 generated",
        ),
    ] {
        println!("| {a} / {b} | {:.2}× |", rate(a) / rate(b));
    }

    // Watermark-to-emit latency, in a separate untimed run per query (reading the clock
    // per row would slow the timed runs).
    println!("\n| watermark-to-emit latency | rows fired by the watermark | p50 | p99 | max bucket |\n|---|---:|---:|---:|---:|");
    let lat = |name: &str, run: &mut dyn FnMut(&mut Latency)| {
        let mut l = Latency::new();
        run(&mut l);
        let rows: u64 = l.buckets.iter().sum();
        println!(
            "| {name} | {rows} | {:.1} µs | {:.1} µs | {:.1} µs |",
            l.quantile(0.5) as f64 / 1e3,
            l.quantile(0.99) as f64 / 1e3,
            l.quantile(1.0) as f64 / 1e3
        );
    };

    lat("Q1 generated", &mut |l| {
        drive_with(
            &Q1,
            tumbling,
            events.iter(),
            |r: &Q1Row| (r.count, r.sum),
            |op| op,
            usize::MAX,
            |_| {},
            Some(l),
        );
    });
    lat("Q2 generated", &mut |l| {
        drive_with(
            &Q2,
            sliding,
            events.iter(),
            |r: &Q2Row| (r.count, r.sum),
            |op| op,
            usize::MAX,
            |_| {},
            Some(l),
        );
    });
    lat("Q3 generated", &mut |l| {
        drive_with(
            &Q3,
            session,
            events.iter(),
            |r: &Q3Row| (r.count, r.cost),
            |op| op,
            usize::MAX,
            |_| {},
            Some(l),
        );
    });
    lat("Q4 generated", &mut |l| {
        drive_with(
            &Q4,
            tumbling,
            events.iter(),
            |r: &Q4Row| (r.count, r.cost),
            |op| op,
            usize::MAX,
            |_| {},
            Some(l),
        );
    });
}
