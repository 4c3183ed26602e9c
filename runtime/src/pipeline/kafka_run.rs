//! The run loop of a pipeline over a Kafka source: the consumer's records, decoded here,
//! go to `parallelism` workers, each holding the window operators of the partitions
//! assigned to it; checkpoints are per partition and aligned over the workers; see
//! [`crate::kafka`] and [`super::parallel`].

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::builder::Shutdown;
use super::builder::{Pipeline, SourceChoice};
use super::parallel::{route, Collector, Done, Routed, Shared, ToWorker, Workers};
use super::persist::{Begin, KafkaPersist, Persist, Place};
use super::plan::{Envelope, Plan};
use super::record::{dead_letter, payload_text, SkewGuard};
use super::summary::RunSummary;
use crate::error::{ProcessorError, ProcessorResult};
use crate::kafka::{start_consumer, Delivery, KafkaRecord, PartitionStore};
use crate::metrics::ProcessorMetrics;
use crate::source::Payload;
use crate::window::{EventTimeTrigger, WindowTrigger};

/// Where a record of partition `pid` is, for a dead letter.
fn at_text(places: &HashMap<u32, Place>, pid: u32, offset: i64) -> String {
    match places.get(&pid) {
        Some(p) => format!(
            "topic {} partition {} offset {offset}",
            p.topic, p.partition
        ),
        None => format!("partition {pid} offset {offset}"),
    }
}

/// Takes an aligned checkpoint of every worker's partitions; the next offsets to commit.
async fn checkpoint<T, R>(
    workers: &Workers<T, R>,
    id: u64,
    marks: Vec<(u32, i64)>,
    stop: bool,
) -> ProcessorResult<Vec<(u32, i64)>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    R: Clone + Send + Sync + 'static,
{
    let (reply, offsets) = tokio::sync::oneshot::channel();
    let begin = Begin::Kafka { id, marks, reply };
    workers.barrier(begin, stop).await?;
    offsets
        .await
        .map_err(|_| ProcessorError::Internal("the checkpoint was not written".into()))
}

/// The partition each key was first seen on. State is held per partition until the
/// keyed exchange of issue #25, so a key whose events arrive on two partitions (or two
/// topics) gets one partial row per partition: never silently. The first partition wins;
/// each key seen on another one is counted
/// (`processor_keys_on_several_partitions_total`) and warned about once.
#[derive(Default)]
struct KeyHomes {
    /// Looked up per record: hashbrown's fast hasher (the key is already a hash).
    home: hashbrown::HashMap<u64, u32>,
    split: hashbrown::HashSet<u64>,
}

/// Keys warned about by name at most; the metric counts them all.
const SPLIT_WARNINGS: usize = 20;

impl KeyHomes {
    fn check(
        &mut self,
        hash: u64,
        pid: u32,
        places: &HashMap<u32, Place>,
        metrics: &ProcessorMetrics,
    ) {
        let home = *self.home.entry(hash).or_insert(pid);
        if home == pid || !self.split.insert(hash) {
            return;
        }
        metrics.record_key_split();
        if self.split.len() <= SPLIT_WARNINGS {
            let place = |pid: u32| match places.get(&pid) {
                Some(p) => format!("{}/{}", p.topic, p.partition),
                None => format!("partition {pid}"),
            };
            tracing::warn!(
                key_hash = hash,
                first = %place(home),
                now = %place(pid),
                "a key arrives on a second partition: its rows are partial, one per partition; key the producers by the grouping key (the keyed exchange that lifts this is issue #25)"
            );
        }
    }
}

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    P: Plan<Event = T>,
{
    /// The Kafka run: this task polls the consumer, decodes, moves the watermark (the
    /// minimum over the assigned partitions) and routes each record to the worker that
    /// owns its partition; `parallelism` workers (see [`super::parallel`]) each hold the
    /// operators of their partitions, and one collector owns the sinks and writes the
    /// checkpoints, aligned over all workers.
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
            error_handler,
            plan,
            metrics,
            buffer_size,
            shutdown,
            kafka_timestamp_fallback,
            max_future_skew_ms: skew,
            parallelism,
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
        let checkpoints = store.is_some();
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
        let decoder = plan.json_decoder();
        let plan = Arc::new(plan);
        let workers: Workers<T, P::Row> = Workers::start(
            parallelism,
            buffer_size,
            Shared {
                plan: Arc::clone(&plan),
                window,
                lateness_ms,
                trigger,
                source_name: source_name.clone(),
                spill: None,
                file_slot: false,
            },
            Collector {
                sinks,
                error_handler,
                late_sink,
                drop_late,
                metrics: Arc::clone(&metrics),
                persist: store.map(|store| Persist::Kafka(KafkaPersist { store, describe })),
                summary: RunSummary::default(),
            },
            None,
            None,
        )?;
        // Which worker holds each partition, and how many each holds.
        let mut owner: HashMap<u32, usize> = HashMap::new();
        let mut load = vec![0usize; parallelism];
        let mut last_offsets: HashMap<u32, i64> = HashMap::new();
        let mut places: HashMap<u32, Place> = HashMap::new();
        let mut homes = KeyHomes::default();
        let mut parts: Vec<Vec<ToWorker<T>>> = (0..parallelism).map(|_| Vec::new()).collect();
        let mut events_in = 0u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(200));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut checkpoint_id = 0u64;
        let mut stopped = false;
        let mut fed_since_tick = false;
        let mut newest = i64::MIN;
        tracing::info!(source = %source_name, group = %config.group_id, parallelism, "pipeline started");

        // The loop in a block: when it fails, the collector may hold the first error (a
        // sink that failed), which is the one to report.
        let ran: ProcessorResult<()> = async {
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
                            workers.advance(wm).await?;
                            metrics.record_watermark(wm);
                        }
                        let due = !checkpoint_interval.is_zero() && last_checkpoint.elapsed() >= checkpoint_interval;
                        if due && checkpoints {
                            checkpoint_id += 1;
                            consumer.commit(checkpoint(&workers, checkpoint_id, watermark.snapshot(), false).await?);
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
                            let now = Instant::now();
                            let restored = match a.checkpoint {
                                Some(c) => {
                                    watermark.restore(&[(a.id, c.max_event_time)], now);
                                    tracing::info!(topic = %a.topic, partition = a.partition, offset = c.offset, "partition restored from its checkpoint");
                                    Some((c.operator, c.offset))
                                }
                                None => {
                                    watermark.register_partition(a.id, now);
                                    None
                                }
                            };
                            // To the worker holding the fewest partitions.
                            let w = (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0);
                            load[w] += 1;
                            owner.insert(a.id, w);
                            let place = Place {
                                topic: a.topic,
                                partition: a.partition,
                            };
                            places.insert(a.id, place.clone());
                            workers.open(w, a.id, place, restored).await?;
                        }
                        continue;
                    }
                    Delivery::Revoked(ids, ack) => {
                        let mut offsets = Vec::new();
                        if checkpoints {
                            checkpoint_id += 1;
                            offsets = checkpoint(&workers, checkpoint_id, watermark.snapshot(), false)
                                .await?;
                            offsets.retain(|(id, _)| ids.contains(id));
                        }
                        for id in &ids {
                            if let Some(w) = owner.remove(id) {
                                load[w] -= 1;
                                workers.close(w, vec![*id]).await?;
                            }
                            last_offsets.remove(id);
                            places.remove(id);
                            watermark.unregister_partition(*id);
                        }
                        let _ = ack.send(offsets);
                        continue;
                    }
                    Delivery::Records(batch) => batch,
                };
                // One poll round: decoded here, handed to the workers in one message each.
                let t0 = Instant::now();
                fed_since_tick = true;
                // Per round, as the file path does per batch: one clock read for the guard.
                let guard = skew.map(SkewGuard::now);
                let mut offered_n = 0u64;
                let mut found: Done<P::Row> = Done::default();
                for KafkaRecord {
                    id: pid,
                    offset,
                    payload,
                    timestamp: record_time,
                } in batch
                {
                    let Some(&w) = owner.get(&pid) else {
                        continue;
                    };
                    offered_n += 1;
                    last_offsets.insert(pid, offset);
                    let decoded = decoder
                        .decode(Payload::Bytes(payload.unwrap_or_default()), None)
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
                    let at = (
                        pid,
                        u64::try_from(offset).unwrap_or(0),
                        u64::try_from(offset).unwrap_or(0),
                    );
                    // Decoded and timed, or the reason it goes to the dead letters.
                    let timed = decoded.and_then(|(event, raw, mut envelope)| {
                        let routed = plan.route(&event, &mut envelope).and_then(|(ts, hash)| {
                            guard.and_then(|g| g.check(ts)).map_or(Ok((ts, hash)), Err)
                        });
                        match routed {
                            Ok((ts, hash)) => Ok((event, raw, envelope, ts, hash)),
                            Err(e) => Err((e, payload_text(&event, raw.as_deref()))),
                        }
                    });
                    let (event, raw, envelope, ts, hash) = match timed {
                        Ok(t) => t,
                        Err((err, text)) => {
                            let at = at_text(&places, pid, offset);
                            found.bad.push(dead_letter(&err, &source_name, at, text));
                            continue;
                        }
                    };
                    newest = newest.max(ts);
                    homes.check(hash, pid, &places, &metrics);
                    let routed = Routed { slot: pid, partition: pid, ts, event, envelope, raw, at };
                    route(&mut parts, w, routed, &mut *watermark, t0, &metrics);
                }
                events_in += offered_n;
                workers.send(&mut parts).await?;
                workers.report(found).await;
                metrics.record_events_processed(offered_n);
                metrics.record_newest_event(newest);
                // Where each partition is, per round (a gauge update costs a label lookup).
                for (pid, offset) in &last_offsets {
                    metrics.record_source_offset(*pid, u64::try_from(*offset).unwrap_or(0));
                }
                metrics.record_processing_latency(t0.elapsed());
            }
            Ok(())
        }
        .await;
        // No more deliveries: a revocation the consumer thread is handing on right now is
        // dropped with the channel, which releases the thread (it waits for an answer to
        // it) so that it can stop. The stop checkpoint below covers those partitions.
        drop(rx);
        if let Err(e) = ran {
            consumer.stop().await;
            // Failed: no open window is fired (they stay in the last checkpoint).
            tracing::error!(error = %e, "the run failed; open windows stay unpublished until the next start");
            return Err(workers.abort().await.err().unwrap_or(e));
        }

        let final_watermark = watermark.emitted_millis();
        if stopped && checkpoints {
            // Stop with checkpoints: the open windows stay open for whoever reads the
            // partitions next.
            checkpoint_id += 1;
            consumer.commit(checkpoint(&workers, checkpoint_id, watermark.snapshot(), true).await?);
            consumer.stop().await;
            let mut summary = workers.finish(None).await?;
            summary.events_in = events_in;
            summary.final_watermark = final_watermark;
            tracing::info!(
                events_in,
                "stopped at a checkpoint: open windows resume on the next start"
            );
            return Ok(summary);
        }
        consumer.stop().await;
        // The workers fire their open windows as their queues close.
        let mut summary = workers.finish(None).await?;
        summary.events_in = events_in;
        summary.final_watermark = final_watermark;
        tracing::info!(
            events_in = summary.events_in,
            rows = summary.rows_emitted,
            "pipeline finished"
        );
        Ok(summary)
    }
}
