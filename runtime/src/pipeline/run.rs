use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::{spawn_reader, Decoded, Recycler, BATCH};
use super::builder::Shutdown;
use super::builder::{Pipeline, SourceChoice};
use super::checkpoint::{checkpoint_meta, encode_state, Checkpointer};
use super::front::Front;
use super::parallel::{run_parallel, Parallel, Routing};
use super::persist::Persist;
use super::plan::{Fed, Plan};
use super::record::{dead_letter, idle_tick, late_record, payload_text, SkewGuard};
use super::replay::Pacer;
use super::sinks::{
    collect_rows, deliver_rows, handle_bad, resume, send_late, take_checkpoint, Resumed, SinkSet,
};
use super::summary::RunSummary;
use crate::error::{ProcessorError, ProcessorResult};
use crate::operator::{Admission, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::window::{EventTimeTrigger, WindowTrigger};

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    P: Plan<Event = T>,
{
    /// Runs until a bounded source ends (then every open window is flushed) or an
    /// unrecoverable error occurs (a sink failing past its retries).
    ///
    /// With a state backend and a source that can be read again, the run resumes from the
    /// latest checkpoint and takes one every checkpoint interval; a stop request then
    /// takes a last checkpoint instead of firing the open windows, which the next run
    /// resumes (see [`checkpoint`](super::checkpoint)).
    #[tracing::instrument(skip_all, fields(pipeline = %self.name))]
    pub async fn run(self) -> ProcessorResult<RunSummary> {
        #[cfg(feature = "kafka")]
        if matches!(self.source, SourceChoice::Kafka(_)) {
            return self.run_kafka().await;
        }
        let Pipeline {
            kafka_timestamp_fallback: _,
            kafka_partitioned_by_key: _,
            name,
            source,
            mut watermark,
            window,
            lateness_ms,
            late_handler,
            trigger,
            state_backend,
            checkpoint_interval,
            spill,
            sinks,
            mut error_handler,
            plan,
            metrics,
            buffer_size,
            shutdown,
            parallelism,
            max_future_skew_ms: skew,
            replay_rate,
        } = self;
        let mut source = match source {
            SourceChoice::Source(s) => s,
            SourceChoice::Kafka(_) => {
                return Err(ProcessorError::InvalidPipeline(
                    "this build has no Kafka connector; build with the cargo feature `kafka`"
                        .into(),
                ))
            }
        };
        let mut shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let source_name = source.describe();
        let started = Instant::now();
        for p in source.partitions() {
            watermark.register_partition(p, started);
        }
        let trigger: Box<dyn WindowTrigger> = trigger.unwrap_or_else(|| Box::new(EventTimeTrigger));
        let late_sink = late_handler.as_ref().and_then(|h| h.side_output());
        let drop_late = late_handler.as_ref().is_some_and(|h| h.drops());

        // Checkpoints: restore the latest before the first record is read.
        let mut checkpointer = match state_backend {
            Some(_) if checkpoint_interval.is_zero() => None,
            Some(backend) if source.resumable() => Some(Checkpointer::new(
                backend,
                &name,
                format!("{}; {window:?}; lateness {lateness_ms} ms", plan.describe()),
                checkpoint_interval,
            )),
            Some(_) => {
                tracing::info!(source = %source_name, "checkpoints are off: this source cannot be read again after a restart");
                None
            }
            None => None,
        };
        let set = SinkSet {
            results: &sinks,
            late: late_sink.as_ref(),
            handler: &mut error_handler,
        };
        let Resumed {
            mut summary,
            mut positions,
            at,
            operators: restored,
        } = resume::<P::Key, <P::Func as WindowFunction>::Acc, P::Row>(
            checkpointer.as_mut(),
            parallelism,
            set,
            &mut *watermark,
        )
        .await?;
        if restored.is_some() {
            source.seek(&at).await?;
        }

        // The source runs in its own task, which decodes too; the bounded channel of
        // batches gives backpressure.
        let live = !source.resumable();
        let decoder = plan.json_decoder();
        // A paced replay takes records one at a time, so that each is fed (and its rows
        // delivered) when its time comes.
        let pacer = replay_rate.map(Pacer::new);
        let batch = if pacer.is_some() { 1 } else { BATCH };
        let recycler = Recycler::new(decoder.reuses_events());
        let (mut rx, reader) = spawn_reader(source, decoder, recycler.clone(), buffer_size, batch);

        let mut out: Vec<(P::Row, bool)> = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(source = %source_name, parallelism, "pipeline started");

        if parallelism > 1 {
            let interval = checkpointer.as_ref().map(Checkpointer::interval);
            return run_parallel(
                Parallel {
                    plan,
                    window,
                    lateness_ms,
                    trigger,
                    source_name,
                    sinks,
                    error_handler,
                    late_sink,
                    drop_late,
                    metrics,
                    buffer_size,
                    parallelism,
                    persist: checkpointer
                        .map(|c| (Persist::Files(c), interval.unwrap_or_default())),
                    restored,
                    summary,
                    positions,
                    spill,
                    skew,
                    live,
                    pacer,
                    recycler,
                    routing: Routing::Keyed,
                    committer: None,
                },
                Front::Lines { rx, reader },
                watermark,
                shutdown,
            )
            .await;
        }

        let func = plan.function();
        let mut op: WindowOperator<P::Key, P::Func, Box<dyn WindowTrigger>> =
            WindowOperator::with_trigger(window, lateness_ms, func.clone(), trigger)?;
        if let Some((store, max_windows)) = spill {
            op = op.with_spill(store, max_windows);
        }
        if let Some(mut ops) = restored {
            op.restore(ops.pop().expect("one snapshot per worker"));
        }
        let mut stopped = false;
        let mut fed_since_tick = false;
        let mut pacer = pacer;
        let mut newest = i64::MIN;

        loop {
            let batch = tokio::select! {
                b = rx.recv() => b,
                _ = &mut shutdown => {
                    stopped = true;
                    None
                }
                _ = ticker.tick() => {
                    // Processing time decides only idleness.
                    let fed = std::mem::take(&mut fed_since_tick);
                    if let Some(wm) = idle_tick(&mut *watermark, live, fed, &metrics) {
                        op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                        metrics.record_open_windows(op.state_len() as u64);
                        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
                    }
                    if let Some(c) = checkpointer.as_mut().filter(|c| c.due()) {
                        summary.final_watermark = op.watermark();
                        let state = encode_state(&op)?;
                        let sinks = SinkSet { results: &sinks, late: late_sink.as_ref(), handler: &mut error_handler };
                        let meta = checkpoint_meta(c.next_id(), false, &positions, &*watermark, summary);
                        take_checkpoint(c, sinks, meta, vec![state], &metrics).await?;
                    }
                    continue;
                }
            };
            let Some(batch) = batch else { break };
            let mut batch = batch?;
            fed_since_tick = true;
            // One clock read per batch: for idleness and the skew guard, never for lateness.
            let t0 = Instant::now();
            let guard = skew.map(SkewGuard::now);
            summary.events_in += batch.len() as u64;
            metrics.record_events_processed(batch.len() as u64);
            if let Some(last) = batch.last() {
                metrics.record_source_offset(last.partition, last.offset);
            }
            for item in batch.iter_mut() {
                if let (Some(p), Ok((event, _, envelope))) = (pacer.as_mut(), &item.decoded) {
                    if let Ok(ts) = plan.event_time(event, &mut envelope.clone()) {
                        p.pace(ts).await;
                    }
                }
                positions.record(item.partition, item.offset, item.sequence);
                let (partition, sequence, offset) = (item.partition, item.sequence, item.offset);
                let position =
                    move || format!("partition {partition} line {sequence} (offset {offset})");
                let partition_wm = watermark.partition_watermark(partition);
                let offered = RecordPath {
                    plan: &plan,
                    func: &func,
                    source_name: &source_name,
                    late_sink: late_sink.as_ref(),
                    drop_late,
                    lateness_ms,
                    metrics: &metrics,
                    handler: &mut error_handler,
                    summary: &mut summary,
                    skew: guard,
                }
                .offer(&mut op, &mut item.decoded, position, partition_wm, &mut out)
                .await?;
                let Some(event_time) = offered else { continue };
                newest = newest.max(event_time);
                if let Some(wm) = watermark.on_event(partition, event_time, t0) {
                    op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                    metrics.record_watermark(wm);
                }
            }
            // The records go back to the reader to be read and decoded into again.
            recycler.give_batch(batch);
            metrics.record_newest_event(newest);
            metrics.record_open_windows(op.state_len() as u64);
            deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
            metrics.record_processing_latency(t0.elapsed());
        }
        drop(rx);
        reader.abort();
        let _ = reader.await;

        summary.final_watermark = op.watermark();
        if let (true, Some(c)) = (stopped, checkpointer.as_mut()) {
            // Stop with a checkpoint: the open windows stay open for the next run.
            let state = encode_state(&op)?;
            let set = SinkSet {
                results: &sinks,
                late: late_sink.as_ref(),
                handler: &mut error_handler,
            };
            let meta = checkpoint_meta(c.next_id(), false, &positions, &*watermark, summary);
            take_checkpoint(c, set, meta, vec![state], &metrics).await?;
            tracing::info!(
                events_in = summary.events_in,
                "stopped at a checkpoint: open windows resume on the next start"
            );
            return Ok(summary);
        }
        if stopped {
            tracing::info!("shutdown requested: flushing open windows and sinks");
        }
        op.flush(&mut collect_rows(&plan, &func, &mut out));
        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
        if let Some(c) = checkpointer.as_mut() {
            // The input is done and every window fired: publish, and let a new run start over.
            let set = SinkSet {
                results: &sinks,
                late: late_sink.as_ref(),
                handler: &mut error_handler,
            };
            let meta = checkpoint_meta(c.next_id(), true, &positions, &*watermark, summary);
            take_checkpoint(c, set, meta, vec![Vec::new()], &metrics).await?;
        }
        for sink in &sinks {
            error_handler.retry(|| sink.flush()).await?;
        }
        if let Some(s) = &late_sink {
            s.flush().await?;
        }
        error_handler.dead_letter_sink().flush().await?;
        tracing::info!(
            events_in = summary.events_in,
            rows = summary.rows_emitted,
            late = summary.events_late,
            dead_lettered = summary.events_dead_lettered,
            "pipeline finished"
        );
        Ok(summary)
    }
}

/// What a run loop needs to take one record through the plan and lateness.
pub(super) struct RecordPath<'a, P: Plan> {
    pub plan: &'a P,
    pub func: &'a P::Func,
    pub source_name: &'a str,
    pub late_sink: Option<&'a Arc<dyn EventSink<DeadLetterRecord>>>,
    pub drop_late: bool,
    pub lateness_ms: i64,
    pub metrics: &'a crate::metrics::ProcessorMetrics,
    pub handler: &'a mut crate::error::ErrorHandler,
    pub summary: &'a mut RunSummary,
    pub skew: Option<SkewGuard>,
}

impl<P: Plan> RecordPath<'_, P> {
    /// Offers one decoded record to `op` (rows fired go to `out`): a record that failed
    /// to decode, lacks a key field or is stamped too far ahead is dead-lettered, a late
    /// one sent to the side output, and every one counted. Returns the event time that
    /// moves the watermark, or `None` when the record failed. The record stays where it
    /// is, to be given back for reuse.
    pub async fn offer<Tr: WindowTrigger>(
        self,
        op: &mut WindowOperator<P::Key, P::Func, Tr>,
        decoded: &mut Result<Decoded<P::Event>, (ProcessorError, String)>,
        position: impl Fn() -> String,
        partition_wm: i64,
        out: &mut Vec<(P::Row, bool)>,
    ) -> ProcessorResult<Option<i64>> {
        let (event, raw, envelope) = match decoded {
            Ok((event, raw, envelope)) => (&*event, raw.as_deref(), envelope),
            Err((err, text)) => {
                let rec = dead_letter(err, self.source_name, position(), std::mem::take(text));
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        };
        if let Some(guard) = self.skew {
            let refused = match self.plan.event_time(event, envelope) {
                Ok(ts) => guard.check(ts),
                Err(e) => Some(e),
            };
            if let Some(err) = refused {
                let payload = payload_text(event, raw);
                let rec = dead_letter(&err, self.source_name, position(), payload);
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        }
        let fed = self.plan.feed(
            op,
            partition_wm,
            event,
            std::mem::take(envelope),
            &mut collect_rows(self.plan, self.func, out),
        );
        if let Some(e) = op.take_spill_error() {
            return Err(e);
        }
        let (event_time, admission) = match fed {
            Ok(Fed::Offered(ts, admission)) => (ts, Some(admission)),
            Ok(Fed::Filtered(ts)) => (ts, None),
            Err(err) => {
                let payload = payload_text(event, raw);
                let rec = dead_letter(&err, self.source_name, position(), payload);
                handle_bad(self.handler, rec, self.summary, self.metrics).await?;
                return Ok(None);
            }
        };
        match admission {
            None => self.summary.events_filtered += 1,
            Some(Admission::Accepted) => self.summary.events_aggregated += 1,
            Some(Admission::Late) => {
                self.summary.events_late += 1;
                self.metrics.record_late_event();
                if !self.drop_late {
                    let rec = late_record(
                        event_time,
                        partition_wm.max(op.watermark()),
                        self.lateness_ms,
                        self.source_name,
                        position(),
                        payload_text(event, raw),
                    );
                    send_late(self.late_sink, self.handler, rec).await?;
                }
            }
        }
        Ok(Some(event_time))
    }
}
