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
            handle
        })
        .clone()
}

/// The Prometheus text exposition of everything recorded so far.
pub fn render() -> String {
    install().render()
}
