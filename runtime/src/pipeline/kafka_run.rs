//! A pipeline over a Kafka source: the consumer thread and its decode task are the run's
//! front ([`super::front`]); the run loop, workers and collector are those of every run
//! ([`super::router`]).
//!
//! By default one instance owns every key: records go to workers by key hash whatever
//! partition or topic they came from, so each key and window gives one row, and the whole
//! pipeline is checkpointed as a file run is (the pipeline's state backend, sinks staged
//! and recovered), the offsets of each partition in it. The consumer assigns itself every
//! partition (no group rebalances); the group's offsets are committed after each
//! checkpoint, for lag.
//!
//! With `partitioned_by_key` the user declares that every key's events are in one
//! partition of one topic: each partition then has its own operator and checkpoint file,
//! which moves with the partition when the group rebalances, so instances can split the
//! partitions.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

use super::batch::Recycler;
use super::builder::{Pipeline, Shutdown, SourceChoice};
use super::checkpoint::Checkpointer;
use super::front::{spawn_decoder, Front, PartitionHomes};
use super::persist::{KafkaPersist, Persist};
use super::plan::Plan;
use super::router::{run_loop, Routing, Run};
use super::sinks::{resume, SinkSet};
use super::summary::RunSummary;
use crate::error::{ProcessorError, ProcessorResult};
use crate::kafka::{start_consumer, PartitionStore, Start};
use crate::operator::WindowFunction;
use crate::window::{EventTimeTrigger, WindowTrigger};

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    P: Plan<Event = T>,
{
    /// The Kafka run (see the module's documentation).
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
            kafka_partitioned_by_key,
            max_future_skew_ms: skew,
            parallelism,
            ..
        } = self;
        let SourceChoice::Kafka(config) = source else {
            return Err(ProcessorError::Internal(
                "run_kafka without a Kafka source".into(),
            ));
        };
        let shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
        // The topics are part of what a checkpoint belongs to: partition ids follow their order.
        let describe = format!(
            "{}; {window:?}; lateness {lateness_ms} ms; topics {:?}",
            plan.describe(),
            config.topics
        );
        // Checkpoints only where they survive the process: offsets committed after a
        // checkpoint kept in memory would skip what a restart cannot restore.
        let root = state_backend
            .as_ref()
            .and_then(|b| b.checkpoint_root())
            .map(std::path::Path::to_path_buf);
        match (&state_backend, &root) {
            (Some(_), None) => tracing::warn!("the state backend writes no checkpoint files: the Kafka run is not checkpointed and no offsets are committed; use RocksDBStateBackend or MemoryStateBackend::persistent"),
            (None, _) => tracing::info!("no state backend: the Kafka run is not checkpointed and no offsets are committed"),
            _ => {}
        }
        if checkpoint_interval.is_zero() && root.is_some() {
            tracing::info!("checkpoint interval 0: the Kafka run is not checkpointed");
        }
        let checkpoints = root.is_some() && !checkpoint_interval.is_zero();
        let source_name = format!("kafka:{}", config.topics.join(","));
        let late_sink = late_handler.as_ref().and_then(|h| h.side_output());
        let drop_late = late_handler.as_ref().is_some_and(|h| h.drops());

        // One owner of every key: the pipeline's own checkpoints, as a file run has.
        let mut checkpointer = match (kafka_partitioned_by_key, checkpoints, state_backend) {
            (false, true, Some(backend)) => Some(Checkpointer::new(
                backend,
                &name,
                describe.clone(),
                checkpoint_interval,
            )),
            _ => None,
        };
        let set = SinkSet {
            results: &sinks,
            late: late_sink.as_ref(),
            handler: &mut error_handler,
        };
        let mut resumed = resume::<P::Key, <P::Func as WindowFunction>::Acc, P::Row>(
            checkpointer.as_mut(),
            parallelism,
            set,
            &mut *watermark,
        )
        .await?;
        if resumed.finished {
            // A bounded run's last checkpoint (the same pipeline name over a file before):
            // its outputs are published now; a Kafka run starts afresh.
            resumed.summary = RunSummary::default();
        }
        let (start, persist, routing) = if kafka_partitioned_by_key {
            // Partition files whenever they can be written: a revoked partition and a stop
            // are checkpointed even without periodic checkpoints (interval 0).
            let store =
                root.map(|root| PartitionStore::new(&root.join("kafka"), &config.group_id, &name));
            let interval = if checkpoint_interval.is_zero() {
                std::time::Duration::MAX
            } else {
                checkpoint_interval
            };
            let persist = store.clone().map(|store| {
                let p = KafkaPersist {
                    store,
                    describe: describe.clone(),
                };
                (Persist::Kafka(p), interval)
            });
            (
                Start::PartitionFiles(store),
                persist,
                Routing::Partitions(PartitionHomes::new(parallelism)),
            )
        } else {
            // Each partition from the offset after the checkpoint's last record of it.
            let next: HashMap<u32, i64> = resumed
                .at
                .iter()
                .map(|p| (p.partition, p.offset as i64 + 1))
                .collect();
            let persist = checkpointer.map(|c| (Persist::Files(c), checkpoint_interval));
            (Start::Positions(next), persist, Routing::Keyed)
        };

        let (consumer, deliveries) =
            start_consumer(&config, start, describe, buffer_size, Arc::clone(&metrics))?;
        let committer = persist.as_ref().map(|_| consumer.committer());
        let decoder = plan.json_decoder();
        let recycler = Recycler::default();
        let (rx, decoding) = spawn_decoder(
            deliveries,
            decoder,
            recycler.clone(),
            kafka_timestamp_fallback,
            super::reader::decoders(),
        );
        let front = Front::Kafka {
            rx,
            waiting: None,
            decoder: decoding,
            consumer,
            topics: config.topics.clone(),
        };
        tracing::info!(source = %source_name, group = %config.group_id, parallelism, partitioned_by_key = kafka_partitioned_by_key, "pipeline started");
        let trigger: Box<dyn WindowTrigger> = trigger.unwrap_or_else(|| Box::new(EventTimeTrigger));
        let summary = run_loop(
            Run {
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
                persist,
                restored: resumed.operators,
                summary: resumed.summary,
                positions: resumed.positions,
                spill: None,
                skew,
                live: true,
                pacer: None,
                recycler,
                routing,
                committer,
            },
            front,
            watermark,
            shutdown,
        )
        .await?;
        tracing::info!(
            events_in = summary.events_in,
            rows = summary.rows_emitted,
            "pipeline finished"
        );
        Ok(summary)
    }
}
