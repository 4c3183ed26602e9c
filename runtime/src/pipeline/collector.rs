//! The collector: one task that owns every sink. It takes the workers' outcomes (rows,
//! late records, failures, counts) and the run loop's (records bad before routing), and
//! runs the one prepare/commit protocol of checkpoints for results, dead letters and late
//! records: when a checkpoint starts it gathers every worker's state at its barrier,
//! holding back what a worker sends after its barrier, then writes the checkpoint and
//! (Kafka) hands the offsets it made durable to the consumer to commit.

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::checkpoint::Meta;
use super::persist::{Begin, Commit, Committer, Persist, SlotState};
use super::sinks::{deliver_rows, handle_bad, send_late, take_checkpoint, SinkSet};
use super::summary::RunSummary;
use super::worker::Outcome;
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::metrics::ProcessorMetrics;
use crate::sink::{DeadLetterRecord, EventSink};

/// A checkpoint's counts: what the collector counted, with the records read and the
/// watermark as the run loop knew them when it started the checkpoint.
fn count_into(meta: &mut Meta, summary: &RunSummary) {
    meta.summary = RunSummary {
        events_in: meta.summary.events_in,
        final_watermark: meta.summary.final_watermark,
        ..*summary
    };
}

/// What the collector owns.
pub(super) struct Collector<R: Clone + Send + Sync + 'static> {
    pub sinks: Vec<Arc<dyn EventSink<R>>>,
    pub error_handler: ErrorHandler,
    pub late_sink: Option<Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub metrics: Arc<ProcessorMetrics>,
    pub persist: Option<Persist>,
    /// Counts restored from a checkpoint.
    pub summary: RunSummary,
    /// Kafka: the offsets of each durable checkpoint go to the consumer to commit.
    pub committer: Option<Committer>,
}

/// A checkpoint the collector is gathering worker states for.
struct Gathering<R> {
    begin: Begin,
    states: Vec<Option<Vec<SlotState>>>,
    /// Who has passed the barrier: workers by index, the run loop at N.
    passed: Vec<bool>,
    held: Vec<(usize, Outcome<R>)>,
}

impl<R: Clone + Send + Sync + 'static> Collector<R> {
    /// Starts the collector of `n` workers' outcomes (the run loop's are tagged `n`);
    /// it ends when every sender is gone, returning the run's counts.
    pub fn spawn(
        self,
        n: usize,
        mut out_rx: mpsc::Receiver<(usize, Outcome<R>)>,
    ) -> JoinHandle<ProcessorResult<RunSummary>> {
        let Collector {
            sinks,
            mut error_handler,
            late_sink,
            drop_late,
            metrics,
            mut persist,
            summary: restored_summary,
            committer,
        } = self;
        tokio::spawn(async move {
            let mut summary = restored_summary;
            let mut gathering: Option<Gathering<R>> = None;
            // Outcomes held back during a checkpoint, then replayed in order.
            let mut replay: std::collections::VecDeque<(usize, Outcome<R>)> = Default::default();
            loop {
                let (from, outcome) = match replay.pop_front() {
                    Some(x) => x,
                    None => match out_rx.recv().await {
                        Some(x) => x,
                        None => break,
                    },
                };
                // What a sender sends after its barrier belongs to the next checkpoint:
                // hold it until this one is written.
                if let Some(g) = gathering.as_mut() {
                    if g.passed[from] {
                        g.held.push((from, outcome));
                        continue;
                    }
                }
                match outcome {
                    Outcome::Batch(mut done) => {
                        summary.events_aggregated += done.accepted;
                        summary.events_filtered += done.filtered;
                        for rec in done.bad {
                            handle_bad(&mut error_handler, rec, &mut summary, &metrics).await?;
                        }
                        for rec in done.late {
                            summary.events_late += 1;
                            metrics.record_late_event();
                            if !drop_late {
                                send_late(late_sink.as_ref(), &mut error_handler, rec).await?;
                            }
                        }
                        deliver_rows(
                            &sinks,
                            &error_handler,
                            &mut done.rows,
                            &mut summary,
                            &metrics,
                        )
                        .await?;
                    }
                    Outcome::Fatal(e) => return Err(e),
                    Outcome::Finished(meta) => {
                        if let Some(Persist::Files(c)) = persist.as_mut() {
                            // The input ended: every worker fired its windows; publish.
                            let mut meta = *meta;
                            meta.finished = true;
                            count_into(&mut meta, &summary);
                            let set = SinkSet {
                                results: &sinks,
                                late: late_sink.as_ref(),
                                handler: &mut error_handler,
                            };
                            let finished = meta.clone();
                            take_checkpoint(c, set, meta, vec![Vec::new(); n], &metrics).await?;
                            // Published: the next start starts over.
                            c.publish(&finished).await?;
                        }
                    }
                    Outcome::Begin(begin) => {
                        let mut passed = vec![false; n + 1];
                        passed[n] = true;
                        gathering = Some(Gathering {
                            begin: *begin,
                            states: vec![None; n],
                            passed,
                            held: Vec::new(),
                        });
                    }
                    Outcome::State(worker, state) => {
                        let g = gathering.as_mut().ok_or_else(|| {
                            ProcessorError::Internal("worker state outside a checkpoint".into())
                        })?;
                        g.states[worker] = Some(state?);
                        g.passed[worker] = true;
                        if g.states.iter().all(Option::is_some) {
                            let g = gathering.take().expect("checked above");
                            for held in g.held.into_iter().rev() {
                                replay.push_front(held);
                            }
                            let states: Vec<Vec<SlotState>> = g
                                .states
                                .into_iter()
                                .map(Option::unwrap_or_default)
                                .collect();
                            let set = SinkSet {
                                results: &sinks,
                                late: late_sink.as_ref(),
                                handler: &mut error_handler,
                            };
                            let commit = match (persist.as_mut(), g.begin) {
                                (Some(Persist::Files(c)), Begin::Files { mut meta, reply }) => {
                                    count_into(&mut meta, &summary);
                                    // The next offset of each partition, for Kafka.
                                    let commit = Commit {
                                        id: meta.id,
                                        offsets: match (&committer, &reply) {
                                            (None, None) => Vec::new(),
                                            _ => meta
                                                .positions
                                                .iter()
                                                .map(|p| (p.partition, p.offset as i64 + 1))
                                                .collect(),
                                        },
                                    };
                                    // One operator per worker, in worker order.
                                    let states = states
                                        .into_iter()
                                        .map(|w| {
                                            w.into_iter()
                                                .next()
                                                .map(|s| s.state)
                                                .unwrap_or_default()
                                        })
                                        .collect();
                                    take_checkpoint(c, set, meta, states, &metrics).await?;
                                    (commit, reply)
                                }
                                #[cfg(feature = "kafka")]
                                (Some(Persist::Kafka(k)), Begin::Kafka { id, marks, reply }) => {
                                    let states = states.into_iter().flatten().collect();
                                    let offsets =
                                        k.checkpoint(id, &marks, states, set, &metrics).await?;
                                    (Commit { id, offsets }, reply)
                                }
                                _ => {
                                    return Err(ProcessorError::Internal(
                                        "a checkpoint barrier the run cannot write".into(),
                                    ))
                                }
                            };
                            // Offsets reach the group only once the checkpoint holding them is durable.
                            let (commit, reply) = commit;
                            if let Some(c) = &committer {
                                c.commit(commit.clone());
                            }
                            if let Some(reply) = reply {
                                let _ = reply.send(commit);
                            }
                        }
                    }
                }
            }
            if gathering.is_some() {
                // A worker ended before its barrier (it panicked): the checkpoint is not
                // written; the last one written stays the one to resume from.
                tracing::warn!("a checkpoint was cut short by a worker that ended; not written");
            }
            for sink in &sinks {
                error_handler.retry(|| sink.flush()).await?;
            }
            if let Some(s) = &late_sink {
                s.flush().await?;
            }
            error_handler.dead_letter_sink().flush().await?;
            Ok(summary)
        })
    }
}
