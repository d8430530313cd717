//! The headers around every message, and typed publishing.
//!
//! A [`MessageMeta`] is what a handler knows about the message in hand: its
//! id, correlation id and the message that caused it. [`headers_for`] builds
//! the standard header set for an outgoing message, injecting the current
//! span's W3C trace context so the receiver's span becomes its child.
//! [`publish`] runs in a PRODUCER span of its own ([`producer_span`]), the
//! parent of the consumer's span on the other side.

use async_nats::{HeaderMap, jetstream};
use jetshop_contracts::{Encoding, Message, headers};
use uuid::Uuid;

use tracing::Instrument;

use crate::{Error, telemetry};

/// What travels with a message besides its payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// This message's id (`Nats-Msg-Id`), when it has one.
    pub message_id: Option<String>,
    /// The outside request this belongs to.
    pub correlation_id: Option<String>,
    /// The message that caused this one.
    pub causation_id: Option<String>,
}

impl MessageMeta {
    /// Read the metadata from received headers.
    pub fn from_headers(h: Option<&HeaderMap>) -> Self {
        let get = |name: &str| h.and_then(|h| h.get(name)).map(|v| v.as_str().to_owned());
        Self {
            message_id: get(headers::MSG_ID),
            correlation_id: get(headers::CORRELATION_ID),
            causation_id: get(headers::CAUSATION_ID),
        }
    }

    /// Metadata for a message caused by this one: same correlation, this id as causation.
    pub fn caused_by(&self) -> Self {
        Self {
            message_id: None,
            correlation_id: self
                .correlation_id
                .clone()
                .or_else(|| self.message_id.clone()),
            causation_id: self.message_id.clone(),
        }
    }

    /// Metadata for a fresh request with a correlation id.
    pub fn correlated(correlation_id: impl Into<String>) -> Self {
        Self {
            correlation_id: Some(correlation_id.into()),
            ..Default::default()
        }
    }
}

/// A new message id: UUIDv7, so ids sort by time.
pub fn new_message_id() -> Uuid {
    Uuid::now_v7()
}

/// The standard headers for message `M` with this id and metadata, plus the
/// current span's trace context.
pub fn headers_for<M: Message>(
    message_id: &str,
    encoding: Encoding,
    meta: &MessageMeta,
) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(headers::MSG_ID, message_id);
    h.insert(headers::CONTENT_TYPE, encoding.content_type());
    h.insert(headers::TYPE, M::TYPE);
    h.insert(headers::SCHEMA, M::VERSION.to_string().as_str());
    if let Some(c) = &meta.correlation_id {
        h.insert(headers::CORRELATION_ID, c.as_str());
    }
    if let Some(c) = &meta.causation_id {
        h.insert(headers::CAUSATION_ID, c.as_str());
    }
    telemetry::inject_current(&mut h);
    h
}

/// Publish a message to JetStream and wait for the stream's acknowledgement.
/// The message id doubles as `Nats-Msg-Id`, so a retried publish is dropped
/// as a duplicate by the server. Returns the stream sequence.
pub async fn publish<M: Message>(
    js: &jetstream::Context,
    subject: &str,
    message_id: &str,
    message: &M,
    meta: &MessageMeta,
) -> Result<u64, Error> {
    let payload = Encoding::MsgPack.encode(message)?;
    let span = producer_span(subject);
    async {
        // Inside the span: its context goes into the headers.
        let headers = headers_for::<M>(message_id, Encoding::MsgPack, meta);
        let ack = js
            .publish_with_headers(subject.to_owned(), headers, payload.into())
            .await
            .map_err(|e| Error::Publish {
                subject: subject.into(),
                source: e.into(),
            })?
            .await
            .map_err(|e| Error::Publish {
                subject: subject.into(),
                source: e.into(),
            })?;
        Ok(ack.sequence)
    }
    .instrument(span.clone())
    .await
    .inspect_err(|_| {
        span.record("otel.status_code", "ERROR");
    })
}

/// The PRODUCER span of one publish to `subject`, from the send to the
/// stream's acknowledgement: a child of the current span (see
/// [`crate::outbox`] for rows published later).
pub fn producer_span(subject: &str) -> tracing::Span {
    tracing::info_span!(
        "publish",
        // By the subject's base, as the consumer's span (see there).
        otel.name = %format!("publish {}", jetshop_contracts::subjects::keyed::base(subject)),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        subject,
    )
}

/// Send a command to its subject (see [`publish`]).
pub async fn send_command<C: jetshop_contracts::Command>(
    js: &jetstream::Context,
    command_id: &str,
    command: &C,
    meta: &MessageMeta,
) -> Result<u64, Error> {
    publish(js, &command.subject(), command_id, command, meta).await
}
