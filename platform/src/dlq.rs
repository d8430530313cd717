//! Operating the dead-letter stream: list, show, replay and purge what the
//! consumers gave up on (`jetshop dlq ...` is a thin layer over this).
//!
//! A dead letter (see [`crate::consumer`]) is the original message, payload
//! and headers, published on `dlq.<consumer>` with the `Jetshop-Dlq-*`
//! headers added. Reads go through the stream's message-get API (the leader,
//! so a replay never reads a stale copy), one message at a time, bounded by
//! the stream's last sequence when the scan started: dead letters written
//! meanwhile (for example by a replay that failed again) are left for the
//! next run.
//!
//! A replay publishes the original payload to the original subject with the
//! original headers minus the dead-letter ones, a new `Nats-Msg-Id` (the
//! original may still be in the duplicate window), the original id in
//! [`headers::REPLAY_ORIGINAL_MSG_ID`] (consumers deduplicate on it, so one
//! that already handled the original skips the copy) and
//! [`headers::REPLAY_OF`]. Only once the PubAck is in is the dead letter
//! deleted. If that delete fails the replay has still happened: the dead
//! letter stays and the error says so.

use std::collections::BTreeMap;

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        message::StreamMessage,
        stream::{RawMessageErrorKind, Stream},
    },
};
use base64::Engine;
use jetshop_contracts::{Encoding, headers, streams, subjects};
use serde::Serialize;

use crate::{Error, envelope};

/// What the DLQ operations fail with.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// No message with that sequence in the `DLQ` stream.
    #[error("no dead letter with sequence {0}")]
    NotFound(u64),
    /// The message lacks the original subject, so it cannot be replayed.
    #[error("message {0} in the DLQ has no {h} header; cannot replay it", h = headers::dlq::SUBJECT)]
    NoSubject(u64),
    /// A NATS call failed.
    #[error(transparent)]
    Nats(#[from] Error),
}

/// Which dead letters an operation covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter.
    All,
    /// Those of one durable consumer.
    Consumer(String),
}

impl Selection {
    /// `Consumer` when given one, else `All`.
    pub fn from_consumer(consumer: Option<&str>) -> Self {
        consumer.map_or(Self::All, |c| Self::Consumer(c.to_owned()))
    }

    fn filter(&self) -> String {
        match self {
            Self::All => subjects::dlq::ALL.to_owned(),
            Self::Consumer(c) => subjects::dlq::for_consumer(c),
        }
    }
}

/// How many dead letters one consumer has for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonCount {
    /// The consumer that gave up (`?` when the header is missing).
    pub consumer: String,
    /// Why (`?` when the header is missing).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// `jetshop dlq ls`: counts per consumer and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Dead letters in all.
    pub total: u64,
    /// Sorted by consumer, then by count (most first), then reason.
    pub counts: Vec<ReasonCount>,
}

/// How the payload was decoded for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadEncoding {
    /// MessagePack, shown as JSON.
    Msgpack,
    /// JSON.
    Json,
    /// Neither: the raw bytes, base64 (standard alphabet, padded).
    Base64,
}

/// One dead letter, decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its sequence in the `DLQ` stream (what `show`, `replay` take).
    pub sequence: u64,
    /// When it was dead-lettered (RFC 3339, UTC).
    pub dead_lettered_at: String,
    /// The subject it has in the DLQ (`dlq.<consumer>`).
    pub dlq_subject: String,
    /// The subject it was originally published on.
    pub subject: Option<String>,
    /// The consumer that gave up.
    pub consumer: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// The stream it came from.
    pub stream: Option<String>,
    /// Its sequence in that stream.
    pub stream_sequence: Option<u64>,
    /// How many times it was delivered.
    pub deliveries: Option<i64>,
    /// Every header, the dead-letter ones included.
    pub headers: BTreeMap<String, Vec<String>>,
    /// How [`Self::payload`] was decoded.
    pub payload_encoding: PayloadEncoding,
    /// The payload as JSON, or a base64 string.
    pub payload: serde_json::Value,
}

/// One dead letter published again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Its sequence in the `DLQ` stream (now deleted).
    pub dlq_sequence: u64,
    /// The consumer that had given up on it.
    pub consumer: Option<String>,
    /// Where it went.
    pub subject: String,
    /// Its new `Nats-Msg-Id`.
    pub message_id: String,
    /// The stream that took it.
    pub stream: String,
    /// Its sequence there.
    pub stream_sequence: u64,
}

/// A dead letter that could not be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayFailure {
    /// Its sequence in the `DLQ` stream.
    pub dlq_sequence: u64,
    /// Why.
    pub error: String,
}

/// The outcome of replaying several dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Published and removed from the DLQ.
    pub replayed: Vec<Replayed>,
    /// Left in the DLQ (or, see the error, replayed but not removed).
    pub failed: Vec<ReplayFailure>,
}

/// Counts per consumer and reason.
pub async fn summary(js: &jetstream::Context, selection: &Selection) -> Result<Summary, DlqError> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut total = 0;
    let mut scan = Scan::start(js, selection).await?;
    while let Some(msg) = scan.next().await? {
        let key = (
            header(&msg.headers, headers::dlq::CONSUMER).unwrap_or_else(|| "?".into()),
            header(&msg.headers, headers::dlq::REASON).unwrap_or_else(|| "?".into()),
        );
        *counts.entry(key).or_default() += 1;
        total += 1;
    }
    let mut counts: Vec<ReasonCount> = counts
        .into_iter()
        .map(|((consumer, reason), count)| ReasonCount {
            consumer,
            reason,
            count,
        })
        .collect();
    counts.sort_by(|a, b| {
        (&a.consumer, std::cmp::Reverse(a.count), &a.reason).cmp(&(
            &b.consumer,
            std::cmp::Reverse(b.count),
            &b.reason,
        ))
    });
    Ok(Summary { total, counts })
}

/// The sequences of the selected dead letters, oldest first.
pub async fn sequences(
    js: &jetstream::Context,
    selection: &Selection,
) -> Result<Vec<u64>, DlqError> {
    let mut scan = Scan::start(js, selection).await?;
    let mut out = Vec::new();
    while let Some(msg) = scan.next().await? {
        out.push(msg.sequence);
    }
    Ok(out)
}

/// One dead letter, decoded.
pub async fn show(js: &jetstream::Context, sequence: u64) -> Result<DeadLetter, DlqError> {
    let stream = dlq_stream(js).await?;
    let msg = get(&stream, sequence).await?;
    Ok(decode(&msg))
}

/// Publish one dead letter again and, once acknowledged, delete it.
pub async fn replay(js: &jetstream::Context, sequence: u64) -> Result<Replayed, DlqError> {
    let stream = dlq_stream(js).await?;
    replay_one(js, &stream, sequence).await
}

/// Replay every selected dead letter, one after the other; a failure is
/// recorded and the rest go on.
pub async fn replay_all(
    js: &jetstream::Context,
    selection: &Selection,
) -> Result<ReplayReport, DlqError> {
    let stream = dlq_stream(js).await?;
    let mut report = ReplayReport::default();
    for sequence in sequences(js, selection).await? {
        match replay_one(js, &stream, sequence).await {
            Ok(r) => report.replayed.push(r),
            Err(err) => report.failed.push(ReplayFailure {
                dlq_sequence: sequence,
                error: err.to_string(),
            }),
        }
    }
    Ok(report)
}

/// Delete the selected dead letters for good. Returns how many went.
pub async fn purge(js: &jetstream::Context, selection: &Selection) -> Result<u64, DlqError> {
    let stream = dlq_stream(js).await?;
    let purged = match selection {
        Selection::All => stream.purge().await,
        Selection::Consumer(_) => stream.purge().filter(selection.filter()).await,
    }
    .map_err(|e| Error::jetstream(format!("purge {}", streams::DLQ), e))?;
    Ok(purged.purged)
}

async fn replay_one(
    js: &jetstream::Context,
    stream: &Stream,
    sequence: u64,
) -> Result<Replayed, DlqError> {
    let msg = get(stream, sequence).await?;
    let subject =
        header(&msg.headers, headers::dlq::SUBJECT).ok_or(DlqError::NoSubject(sequence))?;
    let (h, message_id) = replay_headers(&msg.headers, sequence);
    let ack = js
        .publish_with_headers(subject.clone(), h, msg.payload.clone())
        .await
        .map_err(|e| Error::Publish {
            subject: subject.clone(),
            source: e.into(),
        })?
        .await
        .map_err(|e| Error::Publish {
            subject: subject.clone(),
            source: e.into(),
        })?;
    stream.delete_message(sequence).await.map_err(|e| {
        Error::jetstream(
            format!(
                "dead letter {sequence} was replayed ({} #{}) but could not be deleted from {}",
                ack.stream,
                ack.sequence,
                streams::DLQ
            ),
            e,
        )
    })?;
    tracing::info!(
        dlq_sequence = sequence,
        %subject,
        %message_id,
        stream = %ack.stream,
        stream_sequence = ack.sequence,
        "dead letter replayed"
    );
    Ok(Replayed {
        dlq_sequence: sequence,
        consumer: header(&msg.headers, headers::dlq::CONSUMER),
        subject,
        message_id,
        stream: ack.stream,
        stream_sequence: ack.sequence,
    })
}

/// The original headers minus the dead-letter ones, with a new message id,
/// the original one kept for deduplication, and the DLQ sequence.
fn replay_headers(dead: &HeaderMap, sequence: u64) -> (HeaderMap, String) {
    let mut h = HeaderMap::new();
    for (name, values) in dead.iter() {
        let name = name.as_ref();
        if headers::dlq::is_dlq_header(name)
            || name.eq_ignore_ascii_case(headers::MSG_ID)
            || name.eq_ignore_ascii_case(headers::REPLAY_ORIGINAL_MSG_ID)
            || name.eq_ignore_ascii_case(headers::REPLAY_OF)
        {
            continue;
        }
        for v in values {
            h.append(name, v.as_str());
        }
    }
    // The id it was first published with: from the dead letter, or, for a
    // dead letter of a replay, the original id that replay carried.
    let original = header(dead, headers::REPLAY_ORIGINAL_MSG_ID)
        .or_else(|| header(dead, headers::dlq::ORIGINAL_MSG_ID));
    if let Some(original) = original {
        h.insert(headers::REPLAY_ORIGINAL_MSG_ID, original.as_str());
    }
    let message_id = envelope::new_message_id().to_string();
    h.insert(headers::MSG_ID, message_id.as_str());
    h.insert(headers::REPLAY_OF, sequence.to_string().as_str());
    (h, message_id)
}

fn decode(msg: &StreamMessage) -> DeadLetter {
    let h = &msg.headers;
    let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, values) in h.iter() {
        all.entry(name.to_string())
            .or_default()
            .extend(values.iter().map(|v| v.as_str().to_owned()));
    }
    let (payload_encoding, payload) =
        decode_payload(header(h, headers::CONTENT_TYPE).as_deref(), &msg.payload);
    let nanos = msg.time.unix_timestamp_nanos();
    let dead_lettered_at = chrono::DateTime::from_timestamp_nanos(nanos as i64)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    DeadLetter {
        sequence: msg.sequence,
        dead_lettered_at,
        dlq_subject: msg.subject.to_string(),
        subject: header(h, headers::dlq::SUBJECT),
        consumer: header(h, headers::dlq::CONSUMER),
        reason: header(h, headers::dlq::REASON),
        stream: header(h, headers::dlq::STREAM),
        stream_sequence: header(h, headers::dlq::STREAM_SEQUENCE).and_then(|s| s.parse().ok()),
        deliveries: header(h, headers::dlq::DELIVERIES).and_then(|s| s.parse().ok()),
        headers: all,
        payload_encoding,
        payload,
    }
}

/// MessagePack or JSON per the `Content-Type` (or a sniff without one), as
/// JSON; anything else as base64.
pub fn decode_payload(
    content_type: Option<&str>,
    payload: &[u8],
) -> (PayloadEncoding, serde_json::Value) {
    if let Ok(encoding) = Encoding::detect(content_type, payload)
        && !payload.is_empty()
        && let Ok(value) = encoding.decode::<serde_json::Value>(payload)
    {
        let shown = match encoding {
            Encoding::MsgPack => PayloadEncoding::Msgpack,
            Encoding::Json => PayloadEncoding::Json,
        };
        return (shown, value);
    }
    (
        PayloadEncoding::Base64,
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
    )
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| v.as_str().to_owned())
}

async fn dlq_stream(js: &jetstream::Context) -> Result<Stream, DlqError> {
    Ok(js
        .get_stream(streams::DLQ)
        .await
        .map_err(|e| Error::jetstream(format!("get stream {}", streams::DLQ), e))?)
}

async fn get(stream: &Stream, sequence: u64) -> Result<StreamMessage, DlqError> {
    match stream.get_raw_message(sequence).await {
        Ok(m) => Ok(m),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {
            Err(DlqError::NotFound(sequence))
        }
        Err(e) => Err(Error::jetstream(format!("get {} #{sequence}", streams::DLQ), e).into()),
    }
}

/// The selected dead letters, one at a time, up to the last sequence the
/// stream had when the scan started.
struct Scan {
    stream: Stream,
    filter: String,
    next: u64,
    last: u64,
}

impl Scan {
    async fn start(js: &jetstream::Context, selection: &Selection) -> Result<Self, DlqError> {
        let stream = dlq_stream(js).await?;
        let info = stream
            .get_info()
            .await
            .map_err(|e| Error::jetstream(format!("info {}", streams::DLQ), e))?;
        Ok(Self {
            stream,
            filter: selection.filter(),
            next: info.state.first_sequence.max(1),
            last: if info.state.messages == 0 {
                0
            } else {
                info.state.last_sequence
            },
        })
    }

    async fn next(&mut self) -> Result<Option<StreamMessage>, DlqError> {
        if self.next > self.last {
            return Ok(None);
        }
        let got = self
            .stream
            .raw_message_builder()
            .next_by_subject(self.filter.clone())
            .sequence(self.next)
            .send()
            .await;
        match got {
            Ok(m) if m.sequence <= self.last => {
                self.next = m.sequence + 1;
                Ok(Some(m))
            }
            Ok(_) => {
                self.next = self.last + 1;
                Ok(None)
            }
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {
                self.next = self.last + 1;
                Ok(None)
            }
            Err(e) => Err(Error::jetstream(format!("read {}", streams::DLQ), e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode_to_json_or_fall_back_to_base64() {
        #[derive(Serialize)]
        struct T {
            n: u32,
        }
        let packed = msgpack_n7();
        let (e, v) = decode_payload(Some("application/msgpack"), &packed);
        assert_eq!(e, PayloadEncoding::Msgpack);
        assert_eq!(v, serde_json::json!({"n": 7}));
        let json = serde_json::to_vec(&T { n: 7 }).unwrap();
        let (e, v) = decode_payload(Some("application/json"), &json);
        assert_eq!(e, PayloadEncoding::Json);
        assert_eq!(v, serde_json::json!({"n": 7}));
        let (e, v) = decode_payload(Some("application/json"), b"\xff\x00not json");
        assert_eq!(e, PayloadEncoding::Base64);
        assert_eq!(v, serde_json::json!("/wBub3QganNvbg=="));
        let (e, _) = decode_payload(Some("text/plain"), b"hello");
        assert_eq!(e, PayloadEncoding::Base64);
        let (e, v) = decode_payload(None, b"");
        assert_eq!((e, v), (PayloadEncoding::Base64, serde_json::json!("")));
    }

    /// `{"n": 7}` as MessagePack with named fields.
    fn msgpack_n7() -> Vec<u8> {
        Encoding::MsgPack
            .encode(&serde_json::json!({"n": 7}))
            .unwrap()
    }

    #[test]
    fn a_replay_drops_the_dead_letter_headers_and_gets_a_new_id() {
        let mut dead = HeaderMap::new();
        dead.insert(headers::MSG_ID, "s:1:c");
        dead.insert(headers::TYPE, "test.thing");
        dead.insert(headers::CORRELATION_ID, "corr");
        dead.insert(headers::dlq::ORIGINAL_MSG_ID, "orig");
        dead.insert(headers::dlq::REASON, "bad");
        dead.insert(headers::dlq::SUBJECT, "test.events.thing");
        let (h, id) = replay_headers(&dead, 42);
        assert_eq!(h.get(headers::MSG_ID).unwrap().as_str(), id);
        assert_ne!(id, "orig");
        assert_eq!(
            uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
            7,
            "UUIDv7"
        );
        assert_eq!(h.get(headers::REPLAY_OF).unwrap().as_str(), "42");
        assert_eq!(
            h.get(headers::REPLAY_ORIGINAL_MSG_ID).unwrap().as_str(),
            "orig"
        );
        assert_eq!(h.get(headers::TYPE).unwrap().as_str(), "test.thing");
        assert_eq!(h.get(headers::CORRELATION_ID).unwrap().as_str(), "corr");
        assert!(
            h.iter()
                .all(|(n, _)| !headers::dlq::is_dlq_header(n.as_ref()))
        );
    }
}
