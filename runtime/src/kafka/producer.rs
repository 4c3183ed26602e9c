use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::kafka_error;
use crate::error::{ProcessorError, ProcessorResult};
use crate::sink::KafkaProducerConfig;

/// Records in flight past which [`RecordProducer::send`] waits for acknowledgements
/// (librdkafka's queue holds 100,000 by default).
const QUEUE_LIMIT: i32 = 50_000;

/// One record on its way: kept until the broker acknowledged it, so that it can be sent
/// again when delivery failed.
struct InFlight {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(&'static str, Vec<u8>)>,
    delivery: DeliveryFuture,
}

/// Produces records to one topic without waiting per record; [`flush`](Self::flush)
/// waits until every record sent so far is acknowledged, sending failed ones again.
pub(crate) struct RecordProducer {
    producer: FutureProducer,
    topic: String,
    retries: u32,
    in_flight: Mutex<Vec<InFlight>>,
}

impl std::fmt::Debug for RecordProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordProducer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl RecordProducer {
    /// A producer to `topic` with `config`'s brokers, compression, acks and retries.
    pub fn new(config: &KafkaProducerConfig, topic: &str) -> ProcessorResult<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("compression.type", &config.compression_type)
            .set("acks", &config.acks)
            .set("retries", config.retries.to_string())
            // Rows come in bursts (a watermark fires many windows at once): gather each
            // burst into few batches.
            .set("linger.ms", "20")
            .create()
            .map_err(kafka_error(format!(
                "creating a producer for topic `{topic}` on {}",
                config.bootstrap_servers
            )))?;
        Ok(RecordProducer {
            producer,
            topic: topic.to_owned(),
            retries: config.retries,
            in_flight: Mutex::new(Vec::new()),
        })
    }

    fn enqueue(
        &self,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&'static str, Vec<u8>)],
    ) -> Result<DeliveryFuture, KafkaError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).payload(payload).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.producer.send_result(record).map_err(|(e, _)| e)
    }

    /// Sends one record (without waiting for the broker's acknowledgement). When the
    /// local queue is full (a slow or absent broker), waits for what is in flight first.
    pub async fn send(
        &self,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: Vec<(&'static str, Vec<u8>)>,
    ) -> ProcessorResult<()> {
        if self.producer.in_flight_count() >= QUEUE_LIMIT {
            self.flush().await?;
        }
        self.requeue(key, payload, headers).await
    }

    /// Enqueues a record; waits while the local queue is full.
    async fn requeue(
        &self,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        headers: Vec<(&'static str, Vec<u8>)>,
    ) -> ProcessorResult<()> {
        loop {
            match self.enqueue(key.as_deref(), &payload, &headers) {
                Ok(delivery) => {
                    self.lock().push(InFlight {
                        key,
                        payload,
                        headers,
                        delivery,
                    });
                    return Ok(());
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(kafka_error(format!("producing to topic `{}`", self.topic))(
                        e,
                    ))
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<InFlight>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until every record sent so far is acknowledged; a record whose delivery
    /// failed is sent again, up to the configured retries, before this fails.
    pub async fn flush(&self) -> ProcessorResult<()> {
        let mut attempt = 0;
        loop {
            let batch = std::mem::take(&mut *self.lock());
            if batch.is_empty() {
                return Ok(());
            }
            let mut failed = Vec::new();
            let mut last_error = None;
            for f in batch {
                match f.delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => {
                        last_error = Some(e);
                        failed.push((f.key, f.payload, f.headers));
                    }
                    Err(_) => failed.push((f.key, f.payload, f.headers)),
                }
            }
            if failed.is_empty() {
                continue;
            }
            attempt += 1;
            if attempt > self.retries.max(1) {
                let n = failed.len();
                // Keep them: a later flush (the error policy's retry) sends them again.
                for (key, payload, headers) in failed {
                    if let Ok(delivery) = self.enqueue(key.as_deref(), &payload, &headers) {
                        self.lock().push(InFlight {
                            key,
                            payload,
                            headers,
                            delivery,
                        });
                    }
                }
                let context = format!("delivering {n} records to topic `{}`", self.topic);
                return Err(match last_error {
                    Some(e) => kafka_error(context)(e),
                    None => ProcessorError::Internal(format!("{context}: delivery was cancelled")),
                });
            }
            tracing::warn!(topic = %self.topic, records = failed.len(), attempt, "delivery failed; sending again");
            for (key, payload, headers) in failed {
                self.requeue(key, payload, headers).await?;
            }
        }
    }
}
