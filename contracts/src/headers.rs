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

/// Set by the NATS micro protocol on an error reply: the description.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// Set by the NATS micro protocol on an error reply: the numeric code.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Dead-letter headers, added next to the original headers.
pub mod dlq {
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
}
