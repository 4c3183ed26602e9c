use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Instant;

use super::batch::{Recycler, BATCH};
use super::builder::Shutdown;
use super::builder::{Pipeline, SourceChoice};
use super::checkpoint::Checkpointer;
use super::front::Front;
use super::persist::Persist;
use super::plan::Plan;
use super::reader::spawn_reader;
use super::replay::Pacer;
use super::router::{run_loop, Routing, Run};
use super::sinks::{resume, Resumed, SinkSet};
use super::summary::RunSummary;
use crate::error::{ProcessorError, ProcessorResult};
use crate::operator::WindowFunction;
use crate::window::{EventTimeTrigger, WindowTrigger};

impl<T, P> Pipeline<T, P>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
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
        let shutdown: Shutdown = shutdown.unwrap_or_else(|| Box::pin(std::future::pending()));
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
            summary,
            positions,
            at,
            operators: restored,
            finished,
        } = resume::<P::Key, <P::Func as WindowFunction>::Acc, P::Row>(
            checkpointer.as_mut(),
            parallelism,
            set,
            &mut *watermark,
        )
        .await?;
        if finished {
            return Ok(summary);
        }
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
        let recycler = Recycler::default();
        // Decoding is spread over the cores (the batches stay in input order), except for
        // a paced replay, which takes one record at a time.
        let decoders = if pacer.is_some() {
            1
        } else {
            super::reader::decoders()
        };
        let (rx, reader) = spawn_reader(
            source,
            decoder,
            recycler.clone(),
            buffer_size,
            batch,
            decoders,
        );

        tracing::info!(source = %source_name, parallelism, "pipeline started");
        // Parallelism 1 is one worker of the same run loop.
        let interval = checkpointer.as_ref().map(Checkpointer::interval);
        run_loop(
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
                persist: checkpointer.map(|c| (Persist::Files(c), interval.unwrap_or_default())),
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
            Front::lines(rx, reader),
            watermark,
            shutdown,
        )
        .await
    }
}
