//! The standard header names every jetshop message carries. The payload is
//! the message itself; everything about the message travels here.

/// Event or command id (UUIDv7); JetStream drops a repeat within the duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `application/msgpack` or `application/json`.
pub const CONTENT_TYPE: &str = "Content-Type";
/// The message's [`crate::Message::TYPE`].
pub const TYPE: &str = "Jetshop-Type";
/// The message's [`crate::Message::VERSION`].
pub const SCHEMA: &str = "Jetshop-Schema";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace state.
pub const TRACESTATE: &str = "tracestate";
/// The id that ties together everything done for one outside request.
pub const CORRELATION_ID: &str = "X-Correlation-Id";
/// The id of the message that caused this one.
pub const CAUSATION_ID: &str = "Jetshop-Causation-Id";

/// On a message republished from the DLQ (`jetshop dlq replay`): the dead
/// letter's sequence in the `DLQ` stream.
pub const REPLAY_OF: &str = "Jetshop-Replay-Of";
/// On a message republished from the DLQ: the `Nats-Msg-Id` it was first
/// published with. The replay gets a new `Nats-Msg-Id` (the original may
/// still be in the duplicate window), but consumers deduplicate on this one,
/// so a consumer that already handled the original skips the replay.
pub const REPLAY_ORIGINAL_MSG_ID: &str = "Jetshop-Replay-Original-Msg-Id";

/// Set by the NATS micro protocol on an error reply: the description.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Set by the NATS micro protocol on an error reply: the numeric code.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Dead-letter headers, added next to the original headers.
pub mod dlq {
    /// Every dead-letter header starts with this; a replay drops them all.
    pub const PREFIX: &str = "Jetshop-Dlq-";
    /// Why the consumer gave up.
    pub const REASON: &str = "Jetshop-Dlq-Reason";
    /// The durable consumer that gave up.
    pub const CONSUMER: &str = "Jetshop-Dlq-Consumer";
    /// The stream the message came from.
    pub const STREAM: &str = "Jetshop-Dlq-Stream";
    /// Its sequence in that stream.
    pub const STREAM_SEQUENCE: &str = "Jetshop-Dlq-Stream-Sequence";
    /// How many times it was delivered.
    pub const DELIVERIES: &str = "Jetshop-Dlq-Deliveries";
    /// The subject it was originally published on.
    pub const SUBJECT: &str = "Jetshop-Dlq-Subject";
    /// The `Nats-Msg-Id` it was published with (the dead letter has its own).
    pub const ORIGINAL_MSG_ID: &str = "Jetshop-Dlq-Original-Msg-Id";

    /// Every dead-letter header.
    pub const ALL: [&str; 7] = [
        REASON,
        CONSUMER,
        STREAM,
        STREAM_SEQUENCE,
        DELIVERIES,
        SUBJECT,
        ORIGINAL_MSG_ID,
    ];

    /// Whether `name` is a dead-letter header (header names are case-insensitive).
    pub fn is_dlq_header(name: &str) -> bool {
        name.len() >= PREFIX.len()
            && name.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_dead_letter_header_has_the_prefix() {
            for h in ALL {
                assert!(is_dlq_header(h), "{h}");
            }
            assert!(is_dlq_header("jetshop-dlq-reason"));
            assert!(!is_dlq_header(crate::headers::MSG_ID));
            assert!(!is_dlq_header(crate::headers::REPLAY_OF));
        }
    }
}
