//! The run loop of a pipeline over a Kafka source: one window operator per assigned
//! partition (a task), checkpointed per partition; see [`crate::kafka`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builder::{Pipeline, SourceChoice};
use super::plan::{Envelope, Plan};
use super::run::{
    collect_rows, deliver_rows, encode_state, RecordPath, RunSummary, Shutdown, SkewGuard,
};
use crate::error::{ErrorHandler, ProcessorError, ProcessorResult};
use crate::kafka::{
    start_consumer, Delivery, KafkaRecord, PartitionAssigned, PartitionCheckpoint, PartitionStore,
};
use crate::metrics::ProcessorMetrics;
use crate::operator::{OperatorSnapshot, WindowFunction, WindowOperator};
use crate::sink::{DeadLetterRecord, EventSink};
use crate::source::Payload;
use crate::watermark::WatermarkGenerator;
use crate::window::{EventTimeTrigger, WindowTrigger};

/// One assigned partition and its window state.
struct Task<P: Plan> {
    topic: String,
    partition: i32,
    op: WindowOperator<P::Key, P::Func, Arc<dyn WindowTrigger>>,
    /// The last offset whose record is in `op`.
    last_offset: Option<i64>,
}

/// What a checkpoint touches besides the tasks.
struct Checkpointing<'a, R: Send + 'static> {
    store: &'a PartitionStore,
    describe: &'a str,
    sinks: &'a [Arc<dyn EventSink<R>>],
    late: Option<&'a Arc<dyn EventSink<DeadLetterRecord>>>,
    metrics: &'a ProcessorMetrics,
}

impl<R: Send + 'static> Checkpointing<'_, R> {
    /// Checkpoints the tasks `ids`: result sinks deliver everything, each partition's
    /// state is written, sinks publish; returns the next offset to commit per partition.
    async fn run<P: Plan<Row = R>>(
        &self,
        id: u64,
        ids: &[u32],
        tasks: &HashMap<u32, Task<P>>,
        marks: &[(u32, i64)],
        handler: &mut ErrorHandler,
    ) -> ProcessorResult<Vec<(u32, i64)>> {
        let t0 = Instant::now();
        for sink in self.sinks {
            handler.retry(|| sink.prepare_commit(id)).await?;
        }
        if let Some(s) = self.late {
            handler.retry(|| s.flush()).await?;
        }
        let dead = handler.dead_letter_sink();
        handler.retry(|| dead.flush()).await?;
        let mut offsets = Vec::new();
        for pid in ids {
            let Some(task) = tasks.get(pid) else { continue };
            let Some(offset) = task.last_offset else {
                continue;
            };
            let max_event_time = marks
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(i64::MIN, |&(_, m)| m);
            let c = PartitionCheckpoint {
                pipeline: self.describe.to_owned(),
                offset,
                max_event_time,
                operator: encode_state(&task.op)?,
            };
            self.store.save(&task.topic, task.partition, &c)?;
            offsets.push((*pid, offset + 1));
        }
        for sink in self.sinks {
            sink.commit(id).await?;
        }
        self.metrics.record_checkpoint(id, t0.elapsed());
        tracing::debug!(
            checkpoint = id,
            partitions = offsets.len(),
            "partitions checkpointed"
        );
        Ok(offsets)
    }
}

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    P: Plan<Event = T>,
{
    pub(super) async fn run_kafka(self) -> ProcessorResult<RunSummary> {
        let Pipeline {
            name,
            source,
            mut watermark,
            window,
            lateness_ms,
            late_handler,
            trigger,
            state_backend,
            checkpoint_interval,
            sinks,
            mut error_handler,
            plan,
            metrics,
            buffer_size,
            shutdown,
            kafka_timestamp_fallback,
            max_future_skew_ms: skew,
            ..
        } = self;
        let SourceChoice::Kafka(config) = source else {
            return Err(ProcessorError::Internal(
                "run_kafka without a Kafka source".into(),
            ));
        };
        let mut shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        let describe = format!("{}; {window:?}; lateness {lateness_ms} ms", plan.describe());
        let store = state_backend
            .as_ref()
            .and_then(|b| b.checkpoint_root())
            .map(|root| PartitionStore::new(&root.join("kafka"), &config.group_id, &name));
        match (&state_backend, &store) {
            (Some(_), None) => tracing::warn!("the state backend writes no checkpoint files: partitions are not checkpointed and no offsets are committed; use RocksDBStateBackend or MemoryStateBackend::persistent"),
            (None, _) => tracing::info!("no state backend: partitions are not checkpointed and no offsets are committed"),
            _ => {}
        }
        let source_name = format!("kafka:{}", config.topics.join(","));
        let (consumer, mut rx) = start_consumer(
            &config,
            store.clone(),
            describe.clone(),
            buffer_size,
            Arc::clone(&metrics),
        )?;
        let trigger: Arc<dyn WindowTrigger> =
            Arc::from(trigger.unwrap_or_else(|| Box::new(EventTimeTrigger)));
        let late_sink = late_handler.as_ref().and_then(|h| h.side_output());
        let drop_late = late_handler.as_ref().is_some_and(|h| h.drops());
        let func = plan.function();
        let decoder = plan.json_decoder();
        let checkpointing = store.as_ref().map(|store| Checkpointing {
            store,
            describe: &describe,
            sinks: &sinks,
            late: late_sink.as_ref(),
            metrics: &metrics,
        });
        let mut tasks: HashMap<u32, Task<P>> = HashMap::new();
        let mut summary = RunSummary::default();
        let mut out: Vec<(P::Row, bool)> = Vec::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut checkpoint_id = 0u64;
        let mut stopped = false;
        let mut fed_since_tick = false;
        let mut newest = i64::MIN;
        tracing::info!(source = %source_name, group = %config.group_id, "pipeline started");

        loop {
            let delivery = tokio::select! {
                d = rx.recv() => d,
                _ = &mut shutdown => {
                    stopped = true;
                    None
                }
                _ = ticker.tick() => {
                    let mut pushed = watermark.on_tick(Instant::now());
                    if !fed_since_tick {
                        pushed = watermark.on_source_idle().or(pushed);
                    }
                    fed_since_tick = false;
                    if let Some(wm) = pushed {
                        for t in tasks.values_mut() {
                            t.op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                        }
                        metrics.record_watermark(wm);
                        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
                    }
                    let due = !checkpoint_interval.is_zero() && last_checkpoint.elapsed() >= checkpoint_interval;
                    if let (true, Some(c)) = (due, &checkpointing) {
                        checkpoint_id += 1;
                        let ids: Vec<u32> = tasks.keys().copied().collect();
                        consumer.commit(c.run(checkpoint_id, &ids, &tasks, &watermark.snapshot(), &mut error_handler).await?);
                        last_checkpoint = Instant::now();
                    }
                    continue;
                }
            };
            let Some(delivery) = delivery else { break };
            let batch = match delivery {
                Delivery::Failed(e) => return Err(e),
                Delivery::Assigned(list) => {
                    for a in list {
                        let task = assigned::<P>(
                            a,
                            &window,
                            lateness_ms,
                            &func,
                            &trigger,
                            &mut *watermark,
                        )?;
                        tasks.insert(task.0, task.1);
                    }
                    continue;
                }
                Delivery::Revoked(ids, ack) => {
                    let mut offsets = Vec::new();
                    if let Some(c) = &checkpointing {
                        checkpoint_id += 1;
                        offsets = c
                            .run(
                                checkpoint_id,
                                &ids,
                                &tasks,
                                &watermark.snapshot(),
                                &mut error_handler,
                            )
                            .await?;
                    }
                    for id in &ids {
                        tasks.remove(id);
                        watermark.unregister_partition(*id);
                    }
                    let _ = ack.send(offsets);
                    continue;
                }
                Delivery::Records(batch) => batch,
            };
            // One poll round: every record offered, rows handed on once, at the end.
            let t0 = Instant::now();
            fed_since_tick = true;
            // Per round, as the file path does per batch: one clock read for the guard.
            let guard = skew.map(SkewGuard::now);
            let mut offered_n = 0u64;
            for KafkaRecord {
                id: pid,
                offset,
                payload,
                timestamp: record_time,
            } in batch
            {
                let Some(task) = tasks.get_mut(&pid) else {
                    continue;
                };
                offered_n += 1;
                summary.events_in += 1;
                task.last_offset = Some(offset);
                let position = || {
                    format!(
                        "topic {} partition {} offset {offset}",
                        task.topic, task.partition
                    )
                };
                let partition_wm = watermark.partition_watermark(pid);
                let decoded = decoder
                    .decode(Payload::Bytes(payload.unwrap_or_default()))
                    .map(|(event, raw, envelope)| {
                        let fallback_timestamp = record_time.filter(|_| kafka_timestamp_fallback);
                        (
                            event,
                            raw,
                            Envelope {
                                fallback_timestamp,
                                ..envelope
                            },
                        )
                    });
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
                .offer(&mut task.op, decoded, position, partition_wm, &mut out)
                .await?;
                let Some(event_time) = offered else { continue };
                newest = newest.max(event_time);
                if let Some(wm) = watermark.on_event(pid, event_time, t0) {
                    for t in tasks.values_mut() {
                        t.op.advance_to(wm, &mut collect_rows(&plan, &func, &mut out));
                    }
                    metrics.record_watermark(wm);
                }
            }
            metrics.record_events_processed(offered_n);
            metrics.record_newest_event(newest);
            // Where each partition is, per round (a gauge update costs a label lookup).
            for (pid, task) in &tasks {
                if let Some(offset) = task.last_offset {
                    metrics.record_source_offset(*pid, u64::try_from(offset).unwrap_or(0));
                }
            }
            deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
            metrics.record_processing_latency(t0.elapsed());
        }

        summary.final_watermark = watermark.emitted_millis();
        if let (true, Some(c)) = (stopped, &checkpointing) {
            // Stop with checkpoints: the open windows stay open for whoever reads the
            // partitions next.
            checkpoint_id += 1;
            let ids: Vec<u32> = tasks.keys().copied().collect();
            consumer.commit(
                c.run(
                    checkpoint_id,
                    &ids,
                    &tasks,
                    &watermark.snapshot(),
                    &mut error_handler,
                )
                .await?,
            );
            consumer.stop().await;
            tracing::info!(
                events_in = summary.events_in,
                "stopped at a checkpoint: open windows resume on the next start"
            );
            return Ok(summary);
        }
        consumer.stop().await;
        for t in tasks.values_mut() {
            t.op.flush(&mut collect_rows(&plan, &func, &mut out));
        }
        deliver_rows(&sinks, &error_handler, &mut out, &mut summary, &metrics).await?;
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
            "pipeline finished"
        );
        Ok(summary)
    }
}

/// A task for a newly assigned partition, restored from its checkpoint when it has one.
fn assigned<P: Plan>(
    a: PartitionAssigned,
    window: &crate::window::WindowSpec,
    lateness_ms: i64,
    func: &P::Func,
    trigger: &Arc<dyn WindowTrigger>,
    watermark: &mut dyn WatermarkGenerator,
) -> ProcessorResult<(u32, Task<P>)> {
    let mut op =
        WindowOperator::with_trigger(*window, lateness_ms, func.clone(), Arc::clone(trigger))?;
    let now = Instant::now();
    let mut last_offset = None;
    match a.checkpoint {
        Some(c) => {
            let snapshot: OperatorSnapshot<P::Key, <P::Func as WindowFunction>::Acc> =
                postcard::from_bytes(&c.operator).map_err(|e| {
                    ProcessorError::State(format!(
                        "partition checkpoint of {}-{} cannot be read ({e}); remove it to re-read the partition",
                        a.topic, a.partition
                    ))
                })?;
            op.restore(snapshot);
            watermark.restore(&[(a.id, c.max_event_time)], now);
            last_offset = Some(c.offset);
            tracing::info!(topic = %a.topic, partition = a.partition, offset = c.offset, "partition restored from its checkpoint");
        }
        None => watermark.register_partition(a.id, now),
    }
    Ok((
        a.id,
        Task {
            topic: a.topic,
            partition: a.partition,
            op,
            last_offset,
        },
    ))
}
