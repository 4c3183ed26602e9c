//! Source → decode, in batches: the reader task takes records from the source in batches
//! and decodes them there, off the operator's task, so that reading and decoding run on
//! one core while the operator runs on another. One channel operation carries a batch.
//!
//! Batch boundaries change nothing downstream: the operator takes the records of a batch
//! one by one, in order, and the watermark moves per record (see the README's
//! "Semantics"), so the rows are a function of the input, not of how it was cut.

use serde::de::DeserializeOwned;
use std::any::Any;
use tokio::sync::mpsc;

use super::plan::Envelope;
use crate::error::{ProcessorError, ProcessorResult};
use crate::event::{EventTimestamp, FeedbackDecoder, FeedbackEvent, FeedbackFields};
use crate::source::{EventSource, Payload, SourceRecord};
use crate::time::to_millis;

/// Records per batch between the reader and the operator.
pub(super) const BATCH: usize = 1024;

/// A decoded record: the event, its raw bytes when it came as bytes, what its envelope gave.
pub(super) type Decoded<T> = (T, Option<Vec<u8>>, Envelope);

/// One record of a batch, decoded (or the decoding error with the payload as text).
pub(super) struct Item<T> {
    pub partition: u32,
    pub offset: u64,
    pub sequence: u64,
    pub decoded: Result<Decoded<T>, (ProcessorError, String)>,
}

/// How a pipeline decodes JSON records into its events, chosen by its [`Plan`]
/// ([`Plan::json_decoder`]): the built-in [`FeedbackEvent`] with its specialized
/// [`FeedbackDecoder`] (only the fields the plan reads, and which fields were present); an
/// event with `#[derive(Event)]` with its derived decoder (only the fields the plan reads,
/// the others skipped unread); any other type with serde_json. It runs on the reader task,
/// off the operator's.
///
/// [`Plan`]: super::Plan
/// [`Plan::json_decoder`]: super::Plan::json_decoder
pub struct JsonDecoder<E> {
    feedback: Option<FeedbackDecoder>,
    read: u64,
    decode: fn(&[u8], u64) -> serde_json::Result<E>,
}

impl<E> Clone for JsonDecoder<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for JsonDecoder<E> {}

impl<E> std::fmt::Debug for JsonDecoder<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonDecoder")
            .field("feedback", &self.feedback)
            .field("read", &format_args!("{:#x}", self.read))
            .finish()
    }
}

fn serde_decode<E: DeserializeOwned>(json: &[u8], _: u64) -> serde_json::Result<E> {
    serde_json::from_slice(json)
}

fn derived_decode<E: crate::dsl::Event>(json: &[u8], read: u64) -> serde_json::Result<E> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let e = E::deserialize_fields(&mut de, read)?;
    de.end()?;
    Ok(e)
}

impl<E: DeserializeOwned + 'static> JsonDecoder<E> {
    /// serde_json for any type; [`FeedbackDecoder`] for the built-in [`FeedbackEvent`],
    /// reading `fields` (`None`: all).
    pub fn serde(fields: Option<Vec<&'static str>>) -> Self {
        let is_feedback = std::any::TypeId::of::<E>() == std::any::TypeId::of::<FeedbackEvent>();
        let fields = fields
            .and_then(|f| FeedbackFields::of(f).ok())
            .unwrap_or(FeedbackFields::ALL);
        JsonDecoder {
            feedback: is_feedback.then(|| FeedbackDecoder::new(fields)),
            read: u64::MAX,
            decode: serde_decode::<E>,
        }
    }

    /// The decoder `#[derive(Event)]` generated for `E`, reading `fields` (`None`: all);
    /// [`FeedbackDecoder`] for the built-in [`FeedbackEvent`].
    pub fn derived(fields: Option<Vec<&'static str>>) -> Self
    where
        E: crate::dsl::Event,
    {
        let read = match &fields {
            None => u64::MAX,
            Some(names) => E::FIELD_NAMES
                .iter()
                .enumerate()
                .filter(|(_, n)| names.contains(n))
                .fold(0, |m, (i, _)| m | 1 << i),
        };
        JsonDecoder {
            read,
            decode: derived_decode::<E>,
            ..JsonDecoder::serde(fields)
        }
    }

    /// Decodes one payload.
    pub(super) fn decode(
        &self,
        payload: Payload<E>,
    ) -> Result<Decoded<E>, (ProcessorError, String)> {
        match payload {
            Payload::Bytes(bytes) => {
                let failed = |e: serde_json::Error, bytes: &[u8]| {
                    (
                        ProcessorError::Deserialization(e.to_string()),
                        String::from_utf8_lossy(bytes).into_owned(),
                    )
                };
                if let Some(d) = &self.feedback {
                    let mut event = FeedbackEvent::default();
                    let present = d
                        .decode_present(&bytes, &mut event)
                        .map_err(|e| failed(e, &bytes))?;
                    let mut slot = Some(event);
                    let event = (&mut slot as &mut dyn Any)
                        .downcast_mut::<Option<E>>()
                        .and_then(Option::take)
                        .ok_or_else(|| {
                            (
                                ProcessorError::Internal(
                                    "feedback decoder for another type".into(),
                                ),
                                String::new(),
                            )
                        })?;
                    let envelope = Envelope {
                        present: Some(present),
                        ..Envelope::default()
                    };
                    return Ok((event, Some(bytes), envelope));
                }
                match (self.decode)(&bytes, self.read) {
                    Ok(e) => Ok((e, Some(bytes), Envelope::default())),
                    Err(e) => Err(failed(e, &bytes)),
                }
            }
            Payload::Event(e) => Ok((e, None, Envelope::default())),
            Payload::Envelope(pe) => {
                let timestamp = match pe.timestamp {
                    EventTimestamp::Event(t) | EventTimestamp::Ingestion(t) => Some(to_millis(t)),
                    EventTimestamp::Processing(_) => None,
                };
                Ok((
                    pe.data,
                    None,
                    Envelope {
                        timestamp,
                        key: pe.key,
                        ..Envelope::default()
                    },
                ))
            }
        }
    }
}

/// A batch as it travels from the reader to the operator.
pub(super) type Batch<T> = ProcessorResult<Vec<Item<T>>>;

/// Starts the reader task: batches of up to `batch` decoded records into a channel
/// holding `buffer` records (the backpressure bound), until the source ends or fails
/// (the error is the last message).
pub(super) fn spawn_reader<T>(
    mut source: Box<dyn EventSource<T>>,
    decoder: JsonDecoder<T>,
    buffer: usize,
    batch: usize,
) -> (mpsc::Receiver<Batch<T>>, tokio::task::JoinHandle<()>)
where
    T: DeserializeOwned + Send + 'static,
{
    let batch = batch.max(1);
    let (tx, rx) = mpsc::channel::<Batch<T>>(buffer.div_ceil(batch).max(1));
    let task = tokio::spawn(async move {
        let mut records: Vec<SourceRecord<T>> = Vec::with_capacity(batch);
        loop {
            let more = match source.next_batch(batch, &mut records).await {
                Ok(more) => more,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            };
            if !records.is_empty() {
                let items: Vec<Item<T>> = records
                    .drain(..)
                    .map(|r| Item {
                        partition: r.partition,
                        offset: r.offset,
                        sequence: r.sequence,
                        decoded: decoder.decode(r.payload),
                    })
                    .collect();
                if tx.send(Ok(items)).await.is_err() {
                    break;
                }
            }
            if !more {
                break;
            }
        }
    });
    (rx, task)
}
