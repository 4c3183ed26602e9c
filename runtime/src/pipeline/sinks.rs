//! The sinks' side of a run, shared by the run loops: rows delivered to every result sink
//! (retried as the error policy allows), dead letters and late records to their sinks,
//! and one checkpoint's prepare / seal / commit over all of them.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use std::hash::Hash;

use super::checkpoint::{failpoint, Checkpointer, Meta, Restored};
use super::plan::Plan;
use super::record::Positions;
use super::summary::RunSummary;
use crate::error::{ErrorDisposition, ErrorPolicy, ProcessorError, ProcessorResult};
use crate::operator::{Fired, OperatorSnapshot, WindowFunction};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::source::SourcePosition;
use crate::watermark::WatermarkGenerator;

/// The sinks a checkpoint involves: result sinks, the late side output and the
/// dead-letter sink all stage with it and publish once it is sealed.
pub(super) struct SinkSet<'a, R: Send + 'static> {
    pub results: &'a [Arc<dyn EventSink<R>>],
    pub late: Option<&'a Arc<dyn EventSink<DeadLetterRecord>>>,
    pub handler: &'a mut crate::error::ErrorHandler,
}

impl<R: Send + 'static> SinkSet<'_, R> {
    /// Before the first record of a run that takes checkpoints: every sink finishes or
    /// undoes the commit of the checkpoint the run resumes from (`None`: a fresh start).
    pub async fn recover(&mut self, from: Option<&Meta>) -> ProcessorResult<()> {
        if let Some(m) = from {
            if m.sinks.len() != self.results.len() {
                return Err(ProcessorError::Config(format!(
                    "checkpoint {} was taken with {} result sinks and this pipeline has {}: restore with the same sinks or remove the checkpoint directory",
                    m.id,
                    m.sinks.len(),
                    self.results.len()
                )));
            }
        }
        for (i, sink) in self.results.iter().enumerate() {
            let state = from.map(|m| (m.id, m.sinks[i].as_slice()));
            sink.recover(state).await?;
        }
        let side = |i: usize| from.and_then(|m| m.side.get(i).map(|s| (m.id, s.as_slice())));
        if let Some(late) = self.late {
            late.recover(side(0)).await?;
        }
        self.handler.dead_letter_sink().recover(side(1)).await
    }
}

/// Where a run starts: its counts, source positions and operator state from the latest
/// checkpoint, or a fresh start.
pub(super) struct Resumed<K, A> {
    pub summary: RunSummary,
    pub positions: Positions,
    /// The restored checkpoint's source positions, to read on after (empty: from the start).
    pub at: Vec<SourcePosition>,
    /// Operator state per worker (`None`: a fresh start).
    pub operators: Option<Vec<OperatorSnapshot<K, A>>>,
    /// The previous run had finished its input; its last outputs are now published and
    /// there is nothing left to do.
    pub finished: bool,
}

/// What a run resumes from: the latest checkpoint that can be read, its operator state
/// spread over `workers` workers, with every sink recovered (a cut-short commit finished
/// or undone) and the watermarks where they were. Without checkpoints (`c` is `None`) or
/// a checkpoint, a fresh start.
pub(super) async fn resume<K, A, R>(
    c: Option<&mut Checkpointer>,
    workers: usize,
    mut set: SinkSet<'_, R>,
    watermark: &mut dyn WatermarkGenerator,
) -> ProcessorResult<Resumed<K, A>>
where
    K: DeserializeOwned + Hash,
    A: DeserializeOwned,
    R: Send + 'static,
{
    let mut resumed = Resumed {
        summary: RunSummary::default(),
        positions: Positions::default(),
        at: Vec::new(),
        operators: None,
        finished: false,
    };
    let Some(c) = c else {
        return Ok(resumed);
    };
    let restored = c.restore::<K, A>(workers).await?;
    set.recover(restored.as_ref().map(|r| &r.meta)).await?;
    if let Some(meta) = restored.as_ref().map(|r| &r.meta).filter(|m| m.finished) {
        // Killed after its finished checkpoint was sealed: the sinks just finished its
        // commits; the run is over (running the input again would append its side outputs
        // a second time).
        c.publish(meta).await?;
        tracing::info!(
            checkpoint = meta.id,
            events_in = meta.summary.events_in,
            "the previous run had finished its input and was stopped before it published it: published now, nothing more to do"
        );
        resumed.summary = meta.summary;
        resumed.finished = true;
        return Ok(resumed);
    }
    if let Some(Restored { meta, operators }) = restored {
        watermark.restore(&meta.watermarks, Instant::now());
        watermark.restore_emitted(meta.summary.final_watermark);
        tracing::info!(
            checkpoint = meta.id,
            events_in = meta.summary.events_in,
            "resuming from checkpoint"
        );
        resumed = Resumed {
            summary: meta.summary,
            positions: Positions::from_list(&meta.positions),
            at: meta.positions,
            operators: Some(operators),
            finished: false,
        };
    }
    Ok(resumed)
}

/// Takes one checkpoint: sinks stage, state is written and sealed, sinks publish.
pub(super) async fn take_checkpoint<R: Send + 'static>(
    c: &mut Checkpointer,
    sinks: SinkSet<'_, R>,
    mut meta: Meta,
    operators: Vec<Vec<u8>>,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    let t0 = Instant::now();
    let id = meta.id;
    meta.sinks.clear();
    for sink in sinks.results {
        meta.sinks.push(sink.prepare_commit(id).await?);
    }
    let dead = sinks.handler.dead_letter_sink();
    meta.side = vec![
        match sinks.late {
            Some(s) => s.prepare_commit(id).await?,
            None => Vec::new(),
        },
        dead.prepare_commit(id).await?,
    ];
    let finished = meta.finished;
    c.write(meta, operators).await?;
    if finished {
        failpoint("final-checkpoint-sealed");
    }
    for sink in sinks.results {
        sink.commit(id).await?;
    }
    if let Some(s) = sinks.late {
        s.commit(id).await?;
    }
    dead.commit(id).await?;
    metrics.record_checkpoint(id, t0.elapsed());
    Ok(())
}

/// Sends a late event to the late side output, or to the dead-letter sink without one.
pub(super) async fn send_late(
    late_sink: Option<&Arc<dyn EventSink<DeadLetterRecord>>>,
    handler: &mut crate::error::ErrorHandler,
    rec: DeadLetterRecord,
) -> ProcessorResult<()> {
    let sink = match late_sink {
        Some(s) => Arc::clone(s),
        None => handler.dead_letter_sink(),
    };
    handler.retry(|| sink.send(rec.clone())).await
}

pub(super) async fn handle_bad(
    handler: &mut crate::error::ErrorHandler,
    record: DeadLetterRecord,
    summary: &mut RunSummary,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    metrics.record_error();
    match handler.handle_record(record).await? {
        ErrorDisposition::DeadLettered => {
            summary.events_dead_lettered += 1;
            metrics.record_dead_letter();
        }
        ErrorDisposition::Skipped => summary.events_skipped += 1,
    }
    Ok(())
}

/// [`deliver`], counting the rows in the metrics.
pub(super) async fn deliver_rows<R: Clone + Send + 'static>(
    sinks: &[Arc<dyn EventSink<R>>],
    handler: &crate::error::ErrorHandler,
    out: &mut Vec<(R, bool)>,
    summary: &mut RunSummary,
    metrics: &crate::metrics::ProcessorMetrics,
) -> ProcessorResult<()> {
    let before = summary.rows_emitted;
    deliver(sinks, handler, out, summary).await?;
    metrics.record_rows_emitted(summary.rows_emitted - before);
    Ok(())
}

/// Sends pending rows to every sink, retrying as the error policy allows.
async fn deliver<R: Clone + Send + 'static>(
    sinks: &[Arc<dyn EventSink<R>>],
    handler: &crate::error::ErrorHandler,
    out: &mut Vec<(R, bool)>,
    summary: &mut RunSummary,
) -> ProcessorResult<()> {
    if out.is_empty() {
        return Ok(());
    }
    for (row, is_update) in out.drain(..) {
        summary.rows_emitted += 1;
        summary.update_rows += u64::from(is_update);
        for sink in sinks {
            let result = handler.retry(|| sink.send(row.clone())).await;
            if let Err(e) = result {
                match handler.policy() {
                    ErrorPolicy::Skip => {
                        tracing::warn!(sink = sink.name(), error = %e, "row skipped after sink failure");
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// The operator's emit callback: builds each fired window's row and notes whether it is
/// an update, into `out` (unless the plan's [`emits`](Plan::emits) holds it back).
pub(super) fn collect_rows<'a, P: Plan>(
    plan: &'a P,
    func: &'a P::Func,
    out: &'a mut Vec<(P::Row, bool)>,
) -> impl FnMut(Fired<'_, P::Key, <P::Func as WindowFunction>::Acc>) + 'a {
    move |fired| {
        let is_update = fired.is_update;
        let row = plan.row(func, fired);
        if plan.emits(&row) {
            out.push((row, is_update));
        }
    }
}
