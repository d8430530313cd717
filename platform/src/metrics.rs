//! Prometheus metrics through the `metrics` facade.
//!
//! One recorder per process ([`install`] is idempotent), so under
//! `jetshop up` every service's metrics appear at the gateway's `/metrics`.
//! Metric names live here so dashboards have one place to look.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests, by method, route and status.
pub const HTTP_REQUESTS: &str = "jetshop_http_requests_total";
/// HTTP request latency in seconds.
pub const HTTP_DURATION: &str = "jetshop_http_request_duration_seconds";
/// RPC requests served, by endpoint and outcome.
pub const RPC_REQUESTS: &str = "jetshop_rpc_requests_total";
/// RPC handling latency in seconds.
pub const RPC_DURATION: &str = "jetshop_rpc_request_duration_seconds";
/// RPC calls made by clients, by subject and outcome.
pub const RPC_CALLS: &str = "jetshop_rpc_client_calls_total";
/// Messages delivered to a consumer.
pub const CONSUMER_DELIVERIES: &str = "jetshop_consumer_deliveries_total";
/// Deliveries that were redeliveries.
pub const CONSUMER_REDELIVERIES: &str = "jetshop_consumer_redeliveries_total";
/// Messages a consumer dead-lettered.
pub const CONSUMER_DLQ: &str = "jetshop_consumer_dead_letters_total";
/// Handler latency in seconds.
pub const CONSUMER_DURATION: &str = "jetshop_consumer_handler_duration_seconds";
/// Outbox rows not yet published.
pub const OUTBOX_BACKLOG: &str = "jetshop_outbox_backlog";
/// Circuit breaker state by breaker: 0 closed, 1 half-open, 2 open.
pub const BREAKER_STATE: &str = "jetshop_circuit_breaker_state";
/// Outbox rows published.
pub const OUTBOX_PUBLISHED: &str = "jetshop_outbox_published_total";
/// Outbox rows the stream already had when they were published (a
/// republish, dropped by `Nats-Msg-Id` dedupe).
pub const OUTBOX_DUPLICATES: &str = "jetshop_outbox_duplicates_total";
/// Age in seconds of the oldest outbox row not yet published (0 when none).
pub const OUTBOX_OLDEST_AGE: &str = "jetshop_outbox_oldest_unpublished_age_seconds";
/// 1 on the replica whose relay holds the outbox's lease (and publishes), else 0.
pub const OUTBOX_LEASE_HELD: &str = "jetshop_outbox_lease_held";

/// Messages a durable has not yet been delivered (JetStream's `num_pending`), sampled.
pub const CONSUMER_PENDING: &str = "jetshop_consumer_pending_messages";
/// Messages delivered to a durable and not yet acknowledged, sampled.
pub const CONSUMER_ACK_PENDING: &str = "jetshop_consumer_ack_pending_messages";
/// Unacknowledged messages a durable has had delivered more than once, sampled.
pub const CONSUMER_REDELIVERED: &str = "jetshop_consumer_redelivered_messages";
/// Dead letters in the DLQ stream, by the durable that gave up, sampled.
pub const DLQ_DEPTH: &str = "jetshop_dlq_messages";
/// Messages in a stream the service provisions, sampled.
pub const STREAM_MESSAGES: &str = "jetshop_stream_messages";
/// Bytes stored by a stream the service provisions, sampled.
pub const STREAM_BYTES: &str = "jetshop_stream_bytes";
/// Replicas of a stream that are current (the leader included), sampled.
pub const STREAM_REPLICAS_CURRENT: &str = "jetshop_stream_replicas_current";
/// Leader changes of a stream, as seen between two samples.
pub const STREAM_LEADER_CHANGES: &str = "jetshop_stream_leader_changes_total";
/// 1 while the service's NATS connection is up, else 0.
pub const NATS_CONNECTED: &str = "jetshop_nats_connected";
/// JetStream samples that failed (their gauges keep the last value).
pub const SAMPLER_ERRORS: &str = "jetshop_jetstream_sample_errors_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process-wide recorder (once) and return the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .expect("static buckets are valid");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in tests that embed us; ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install().render()
}

/// The `# HELP` line of every metric named here.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "HTTP requests, by method, route and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency.");
    describe_counter!(
        RPC_REQUESTS,
        "RPC requests served, by endpoint and outcome."
    );
    describe_histogram!(RPC_DURATION, Unit::Seconds, "RPC handling latency.");
    describe_counter!(
        RPC_CALLS,
        "RPC calls made by clients, by subject and outcome."
    );
    describe_counter!(CONSUMER_DELIVERIES, "Messages delivered to a consumer.");
    describe_counter!(CONSUMER_REDELIVERIES, "Deliveries that were redeliveries.");
    describe_counter!(CONSUMER_DLQ, "Messages a consumer dead-lettered.");
    describe_histogram!(
        CONSUMER_DURATION,
        Unit::Seconds,
        "Consumer handler latency."
    );
    describe_gauge!(
        OUTBOX_BACKLOG,
        "Outbox rows not yet published, by service (measured by every replica)."
    );
    describe_counter!(OUTBOX_PUBLISHED, "Outbox rows published, by service.");
    describe_counter!(
        OUTBOX_DUPLICATES,
        "Outbox rows the stream already had (republished, deduplicated by Nats-Msg-Id), by service."
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest outbox row not yet published, by service; 0 when there is none."
    );
    describe_gauge!(
        OUTBOX_LEASE_HELD,
        "1 when this replica's outbox relay holds the lease and publishes, else 0."
    );
    describe_gauge!(
        CONSUMER_PENDING,
        "Messages a durable consumer has not been delivered yet (JetStream num_pending), by consumer and stream; sampled every 5 s."
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        "Messages delivered to a durable consumer and not acknowledged yet, by consumer and stream; sampled."
    );
    describe_gauge!(
        CONSUMER_REDELIVERED,
        "Unacknowledged messages delivered to a durable consumer more than once, by consumer and stream; sampled."
    );
    describe_gauge!(
        DLQ_DEPTH,
        "Dead letters waiting in the DLQ stream, by the consumer that gave up; sampled."
    );
    describe_gauge!(
        STREAM_MESSAGES,
        "Messages stored in a stream, by stream (sampled by the service that provisions it)."
    );
    describe_gauge!(
        STREAM_BYTES,
        Unit::Bytes,
        "Bytes stored in a stream, by stream (sampled by the service that provisions it)."
    );
    describe_gauge!(
        STREAM_REPLICAS_CURRENT,
        "Replicas of a stream that are current, the leader included, by stream; sampled."
    );
    describe_counter!(
        STREAM_LEADER_CHANGES,
        "Changes of a stream's leader seen between two samples, by stream."
    );
    describe_gauge!(
        NATS_CONNECTED,
        "1 while the service's NATS connection is up, 0 while it reconnects, by service."
    );
    describe_counter!(
        SAMPLER_ERRORS,
        "JetStream samples that failed, by service; the sampled gauges then keep their last value."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by breaker: 0 closed, 1 half-open, 2 open."
    );
}
