//! What a pipeline computes, separated from how it runs: the dynamic builder and every
//! `pipeline!` declaration are a [`Plan`], and one run loop drives them all.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::hash::Hash;

use super::decode::JsonDecoder;
use super::extract::{as_feedback, FieldExtractor, MAX_VIEW};
pub use super::record::{key_hash, Envelope, Fed};
use crate::aggregation::AggregationResult;
use crate::aggregation::{AggregationSpec, AggregationState};
use crate::error::ProcessorResult;
use crate::event::{GroupingKey, KeyView};
use crate::operator::{Fired, WindowFunction, WindowOperator};
use crate::window::Window;
use crate::window::WindowTrigger;

/// The compiled part of a pipeline: how an event becomes a key, an event time and an
/// aggregation input, and how a fired window becomes a row.
pub trait Plan: Send + Sync + 'static {
    /// The event type.
    type Event: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The key type (serialized into checkpoints).
    type Key: Hash + Eq + Send + Serialize + DeserializeOwned + 'static;
    /// The aggregation (its accumulators are serialized into checkpoints).
    type Func: WindowFunction<Acc: Send + Serialize + DeserializeOwned>
        + Clone
        + Send
        + Sync
        + 'static;
    /// The result row.
    type Row: Clone + Send + Sync + 'static;

    /// The aggregation the operator maintains.
    fn function(&self) -> Self::Func;

    /// Offers one event to the operator.
    fn feed<T, E>(
        &self,
        op: &mut WindowOperator<Self::Key, Self::Func, T>,
        partition_watermark: i64,
        event: &Self::Event,
        envelope: Envelope,
        emit: &mut E,
    ) -> ProcessorResult<Fed>
    where
        T: WindowTrigger,
        E: FnMut(Fired<'_, Self::Key, <Self::Func as WindowFunction>::Acc>);

    /// The event's time (ms), read before it is offered (the clock-skew guard checks it).
    /// May fill `envelope` so that [`feed`](Self::feed) does not read it again. The
    /// default asks [`route`](Self::route).
    fn event_time(&self, event: &Self::Event, envelope: &mut Envelope) -> ProcessorResult<i64> {
        self.route(event, envelope).map(|(ts, _)| ts)
    }

    /// Event time (ms) and a hash of the key, to route the event to a worker when the
    /// pipeline runs with `parallelism` > 1. May fill `envelope` with what it extracted, so
    /// that [`feed`](Self::feed) does not extract it again.
    fn route(&self, event: &Self::Event, envelope: &mut Envelope) -> ProcessorResult<(i64, u64)>;

    /// What a checkpoint records about the plan: restoring a checkpoint written by a
    /// plan with another description is refused.
    fn describe(&self) -> String {
        std::any::type_name::<Self>().to_owned()
    }

    /// The event fields the plan reads (timestamp, key and measured fields), or `None`
    /// when it cannot say (a `filter` closure may read anything). A decoder may skip the
    /// others, as [`FeedbackDecoder`](crate::event::FeedbackDecoder) does.
    fn fields_read(&self) -> Option<Vec<&'static str>> {
        None
    }

    /// How JSON records become events (on the reader task): by default serde_json, or
    /// the built-in event's specialized decoder, reading [`fields_read`](Self::fields_read);
    /// `pipeline!` plans use the decoder `#[derive(Event)]` generated.
    fn json_decoder(&self) -> JsonDecoder<Self::Event> {
        JsonDecoder::serde(self.fields_read())
    }

    /// The row of a fired window.
    fn row(
        &self,
        func: &Self::Func,
        fired: Fired<'_, Self::Key, <Self::Func as WindowFunction>::Acc>,
    ) -> Self::Row;

    /// Whether a row goes to the sinks (`pipeline!`'s `emit_when`); by default every row.
    fn emits(&self, row: &Self::Row) -> bool {
        let _ = row;
        true
    }
}

/// The plan of [`create_pipeline`](super::create_pipeline): fields found by name (or
/// closures), [`GroupingKey`] keys, [`AggregationResult`] rows.
pub struct DynamicPlan<T> {
    pub(crate) extractor: FieldExtractor<T>,
    pub(crate) func: DynamicAggregation,
}

impl<T> DynamicPlan<T> {
    /// A plan keyed by `key_fields`, measuring `value_field`, computing what `spec` enables
    /// (what `create_pipeline().with_key_fields(…).with_value_field(…).with_aggregations(…)`
    /// builds).
    pub fn new(
        key_fields: &[&str],
        value_field: &str,
        spec: crate::aggregation::AggregationSpec,
    ) -> Self {
        DynamicPlan {
            extractor: FieldExtractor {
                key_fields: key_fields.iter().map(|f| (*f).to_owned()).collect(),
                value_field: Some(value_field.to_owned()),
                ..FieldExtractor::default()
            },
            func: DynamicAggregation::new(spec),
        }
    }
}

impl<T> Default for DynamicPlan<T> {
    fn default() -> Self {
        DynamicPlan {
            extractor: FieldExtractor::default(),
            func: DynamicAggregation::default(),
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Plan for DynamicPlan<T> {
    type Event = T;
    type Key = GroupingKey;
    type Func = DynamicAggregation;
    type Row = AggregationResult;

    fn function(&self) -> DynamicAggregation {
        self.func.clone()
    }

    fn feed<Tr, E>(
        &self,
        op: &mut WindowOperator<GroupingKey, DynamicAggregation, Tr>,
        partition_watermark: i64,
        event: &T,
        envelope: Envelope,
        emit: &mut E,
    ) -> ProcessorResult<Fed>
    where
        Tr: WindowTrigger,
        E: FnMut(Fired<'_, GroupingKey, <DynamicAggregation as WindowFunction>::Acc>),
    {
        let mut envelope = envelope;
        if let Some(e) = as_feedback(event) {
            let mut buf = [("", ""); MAX_VIEW];
            if let Some(x) = self.extractor.feedback_view(e, &envelope, &mut buf) {
                let (ts, n, value) = x?;
                let key = KeyView(&buf[..n]);
                let admission = op.on_event(partition_watermark, ts, &key, &value, emit);
                return Ok(Fed::Offered(ts, admission));
            }
        }
        let x = self.extractor.extract(event, &mut envelope)?;
        let admission = op.on_event(partition_watermark, x.timestamp, &x.key, &x.value, emit);
        Ok(Fed::Offered(x.timestamp, admission))
    }

    fn describe(&self) -> String {
        let x = &self.extractor;
        format!(
            "dynamic: key {:?}{}, value {:?}{}, timestamp {:?}{}, {:?}",
            x.key_fields,
            if x.key_fn.is_some() { " (closure)" } else { "" },
            x.value_field,
            if x.value_fn.is_some() {
                " (closure)"
            } else {
                ""
            },
            x.timestamp_field,
            if x.timestamp_fn.is_some() {
                " (closure)"
            } else {
                ""
            },
            self.func.spec()
        )
    }

    fn event_time(&self, event: &T, envelope: &mut Envelope) -> ProcessorResult<i64> {
        let ts = self.extractor.timestamp(event, envelope)?;
        envelope.timestamp = Some(ts);
        Ok(ts)
    }

    fn route(&self, event: &T, envelope: &mut Envelope) -> ProcessorResult<(i64, u64)> {
        if let Some(e) = as_feedback(event) {
            let mut buf = [("", ""); MAX_VIEW];
            if let Some(x) = self.extractor.feedback_view(e, envelope, &mut buf) {
                let (ts, n, _) = x?;
                envelope.timestamp = Some(ts);
                return Ok((ts, key_hash(&KeyView(&buf[..n]))));
            }
        }
        let x = self.extractor.extract(event, envelope)?;
        let hash = key_hash(&x.key);
        envelope.timestamp = Some(x.timestamp);
        envelope.key = Some(x.key);
        Ok((x.timestamp, hash))
    }

    fn fields_read(&self) -> Option<Vec<&'static str>> {
        self.extractor.fields_read()
    }

    fn row(
        &self,
        func: &DynamicAggregation,
        fired: Fired<'_, GroupingKey, <DynamicAggregation as WindowFunction>::Acc>,
    ) -> AggregationResult {
        func.row(fired)
    }
}

/// The aggregation of the dynamic builder: an [`AggregationState`] per key and window,
/// computing what an [`AggregationSpec`] enables. Events whose value is null are counted
/// in no statistic but still open their window.
#[derive(Debug, Clone, Default)]
pub struct DynamicAggregation {
    spec: AggregationSpec,
}

impl DynamicAggregation {
    /// Computes what `spec` enables.
    pub fn new(spec: AggregationSpec) -> Self {
        DynamicAggregation { spec }
    }

    /// The spec.
    pub fn spec(&self) -> &AggregationSpec {
        &self.spec
    }

    /// The result row of a fired window.
    pub fn row(&self, f: Fired<'_, GroupingKey, AggregationState>) -> AggregationResult {
        let window = Window::from_millis(f.start, f.end);
        let mut r = self.spec.result(f.key.clone(), window, f.acc, f.is_update);
        r.replaces = f
            .replaces
            .iter()
            .map(|&(s, e)| Window::from_millis(s, e))
            .collect();
        r
    }
}

impl WindowFunction for DynamicAggregation {
    type Input = Option<f64>;
    type Acc = AggregationState;
    fn create(&self) -> AggregationState {
        AggregationState::for_spec(Window::from_millis(0, 0), &self.spec)
    }
    fn add(&self, acc: &mut AggregationState, input: &Option<f64>) {
        if let Some(v) = input {
            acc.add_value(*v);
        }
    }
    fn merge(&self, into: &mut AggregationState, from: &AggregationState) {
        into.merge(from);
    }
    fn count(&self, acc: &AggregationState) -> u64 {
        acc.count
    }
}
