//! How JSON records become events: [`JsonDecoder`], chosen by a pipeline's plan, decoding
//! a batch's records in place (on the reader's decoder tasks, off the run loop).

use serde::de::DeserializeOwned;
use std::any::Any;

use super::batch::{Batch, Item};
use super::record::Envelope;
use crate::error::ProcessorError;
use crate::event::{FeedbackDecoder, FeedbackEvent, FeedbackFields};

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

    /// Decodes every record of `batch` that came as bytes, in place: into the event its
    /// slot already holds where the decoder can (the built-in event's strings keep their
    /// buffers); a record that cannot be decoded keeps its error.
    pub(super) fn decode_batch(&self, batch: &mut Batch<E>) {
        let (items, text) = batch.items_mut();
        for item in items {
            self.decode_item(item, text);
        }
    }

    /// Decodes one record of a batch whose bytes are in `text` (nothing when it came as
    /// an event). The envelope's fallback timestamp (a Kafka record's) is kept.
    pub(super) fn decode_item(&self, item: &mut Item<E>, text: &[u8]) {
        let Some((a, b)) = item.raw else { return };
        if let Err(e) = self.decode_slot(&text[a..b], &mut item.event, &mut item.envelope) {
            item.failed = Some(e);
        }
    }

    fn decode_slot(
        &self,
        json: &[u8],
        event: &mut Option<E>,
        envelope: &mut Envelope,
    ) -> Result<(), ProcessorError> {
        let failed = |e: serde_json::Error| ProcessorError::Deserialization(e.to_string());
        if let Some(d) = &self.feedback {
            let slot = (event as &mut dyn Any)
                .downcast_mut::<Option<FeedbackEvent>>()
                .ok_or_else(|| {
                    ProcessorError::Internal("feedback decoder for another type".into())
                })?;
            let present = d
                .decode_present(json, slot.get_or_insert_with(FeedbackEvent::default))
                .map_err(failed)?;
            *envelope = Envelope {
                present: Some(present),
                fallback_timestamp: envelope.fallback_timestamp,
                ..Envelope::default()
            };
            return Ok(());
        }
        *event = Some((self.decode)(json, self.read).map_err(failed)?);
        *envelope = Envelope {
            fallback_timestamp: envelope.fallback_timestamp,
            ..Envelope::default()
        };
        Ok(())
    }
}
