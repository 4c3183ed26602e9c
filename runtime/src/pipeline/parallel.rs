//! `parallelism` > 1: the run loop reads, decodes and judges each record against its
//! partition's watermark, then routes it by key hash to one of N worker tasks, each with
//! its own operator; watermark advances go to every worker in order with the events. Rows,
//! late events and failures come back to one collector, which owns the sinks and the error
//! handler. Each key lives in one worker, so the rows are those of a single worker; only
//! their interleaving across keys differs.

use chrono::Utc;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::plan::{Envelope, Fed, Plan};
use super::run::{collect_rows, dead_letter, deliver, handle_bad, payload_text, RunSummary};
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::operator::{Admission, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::time::from_millis;
use crate::window::{WindowSpec, WindowTrigger};

pub(super) enum ToWorker<T> {
    Event {
        event: T,
        envelope: Envelope,
        partition_watermark: i64,
        raw: Option<Vec<u8>>,
        position: String,
    },
    Advance(i64),
}

pub(super) enum Outcome<R> {
    Rows(Vec<(R, bool)>),
    Accepted,
    Filtered,
    Late(DeadLetterRecord),
    Bad(DeadLetterRecord),
}

pub(super) struct Workers<T, R> {
    senders: Vec<mpsc::Sender<ToWorker<T>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub outcomes: mpsc::UnboundedSender<Outcome<R>>,
    collector: tokio::task::JoinHandle<ProcessorResult<RunSummary>>,
}

/// What the workers share.
pub(super) struct Shared<P> {
    pub plan: Arc<P>,
    pub window: WindowSpec,
    pub lateness_ms: i64,
    pub trigger: Arc<dyn WindowTrigger>,
    pub source_name: String,
}

pub(super) struct Collector<R: Clone + Send + Sync + 'static> {
    pub sinks: Vec<Arc<dyn EventSink<R>>>,
    pub error_handler: ErrorHandler,
    pub late_sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub metrics: Arc<ProcessorMetrics>,
}

impl<T, R> Workers<T, R>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    pub fn start<P>(
        n: usize,
        buffer: usize,
        shared: Shared<P>,
        collector: Collector<R>,
    ) -> ProcessorResult<Self>
    where
        P: Plan<Event = T, Row = R> + Sync,
    {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outcome<R>>();
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, mut rx) = mpsc::channel::<ToWorker<T>>(buffer.max(1));
            let plan = Arc::clone(&shared.plan);
            let trigger = Arc::clone(&shared.trigger);
            let out = out_tx.clone();
            let func = plan.function();
            let mut op: WindowOperator<P::Key, P::Func, Arc<dyn WindowTrigger>> =
                WindowOperator::with_trigger(
                    shared.window,
                    shared.lateness_ms,
                    func.clone(),
                    trigger,
                )?;
            let lateness_ms = shared.lateness_ms;
            let source_name = shared.source_name.clone();
            senders.push(tx);
            tasks.push(tokio::spawn(async move {
                let mut rows: Vec<(R, bool)> = Vec::new();
                while let Some(msg) = rx.recv().await {
                    match msg {
                        ToWorker::Advance(wm) => op.advance_to(wm, &mut collect_rows(&*plan, &func, &mut rows)),
                        ToWorker::Event { event, envelope, partition_watermark, raw, position } => {
                            let fed = plan.feed(&mut op, partition_watermark, &event, envelope, &mut collect_rows(&*plan, &func, &mut rows));
                            let outcome = match fed {
                                Ok(Fed::Offered(_, Admission::Accepted)) => Outcome::Accepted,
                                Ok(Fed::Filtered(_)) => Outcome::Filtered,
                                Ok(Fed::Offered(ts, Admission::Late)) => Outcome::Late(DeadLetterRecord {
                                    kind: "late".into(),
                                    reason: format!(
                                        "late: event time {} is more than the allowed lateness ({lateness_ms} ms) behind the watermark {} for every window it belongs to",
                                        from_millis(ts).to_rfc3339(),
                                        from_millis(partition_watermark.max(op.watermark())).to_rfc3339(),
                                    ),
                                    source: source_name.clone(),
                                    position,
                                    payload: payload_text(&event, raw.as_deref()),
                                    timestamp: Utc::now(),
                                }),
                                Err(err) => Outcome::Bad(dead_letter(&err, &source_name, position, payload_text(&event, raw.as_deref()))),
                            };
                            let _ = out.send(outcome);
                        }
                    }
                    if !rows.is_empty() {
                        let _ = out.send(Outcome::Rows(std::mem::take(&mut rows)));
                    }
                }
                op.flush(&mut collect_rows(&*plan, &func, &mut rows));
                if !rows.is_empty() {
                    let _ = out.send(Outcome::Rows(rows));
                }
            }));
        }
        let Collector {
            sinks,
            mut error_handler,
            late_sink,
            drop_late,
            metrics,
        } = collector;
        let collector = tokio::spawn(async move {
            let mut summary = RunSummary::default();
            while let Some(outcome) = out_rx.recv().await {
                match outcome {
                    Outcome::Rows(mut rows) => {
                        let before = summary.rows_emitted;
                        deliver(&sinks, &error_handler, &mut rows, &mut summary).await?;
                        metrics.record_rows_emitted(summary.rows_emitted - before);
                    }
                    Outcome::Accepted => summary.events_aggregated += 1,
                    Outcome::Filtered => summary.events_filtered += 1,
                    Outcome::Late(rec) => {
                        summary.events_late += 1;
                        metrics.record_late_event();
                        if !drop_late {
                            let sink = match &late_sink {
                                Some(s) => Arc::clone(s),
                                None => error_handler.dead_letter_sink(),
                            };
                            error_handler.retry(|| sink.send(rec.clone())).await?;
                        }
                    }
                    Outcome::Bad(rec) => {
                        handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?
                    }
                }
            }
            for sink in &sinks {
                error_handler.retry(|| sink.flush()).await?;
            }
            if let Some(s) = &late_sink {
                s.flush().await?;
            }
            error_handler.dead_letter_sink().flush().await?;
            Ok(summary)
        });
        Ok(Workers {
            senders,
            tasks,
            outcomes: out_tx,
            collector,
        })
    }

    /// Sends an event to the worker that owns its key.
    pub async fn route(&self, hash: u64, msg: ToWorker<T>) -> ProcessorResult<()> {
        let i = (hash % self.senders.len() as u64) as usize;
        self.senders[i]
            .send(msg)
            .await
            .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))
    }

    /// Moves every worker's watermark.
    pub async fn advance(&self, wm: i64) -> ProcessorResult<()> {
        for s in &self.senders {
            s.send(ToWorker::Advance(wm))
                .await
                .map_err(|_| ProcessorError::Internal("a worker stopped early".into()))?;
        }
        Ok(())
    }

    /// Flushes every worker and the collector; returns the collector's counts.
    pub async fn finish(self) -> ProcessorResult<RunSummary> {
        let Workers {
            senders,
            tasks,
            outcomes,
            collector,
        } = self;
        drop(senders);
        for t in tasks {
            t.await
                .map_err(|e| ProcessorError::Internal(format!("a worker failed: {e}")))?;
        }
        drop(outcomes);
        collector
            .await
            .map_err(|e| ProcessorError::Internal(format!("the collector failed: {e}")))?
    }
}

/// Used by the run loop for bad records found before routing.
pub(super) fn bad<R>(
    err: &ProcessorError,
    source: &str,
    position: String,
    payload: String,
) -> Outcome<R> {
    Outcome::Bad(dead_letter(err, source, position, payload))
}
