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
}
