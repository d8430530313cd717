//! The payments service's metric names, in one place for dashboards
//! (the shared ones are in `jetshop_platform::metrics`).

/// Provider calls, by provider, operation and outcome (`ok`, `declined`,
/// `transient`, `timeout`, and the calls we never made: `circuit_open`,
/// `bulkhead_full`).
pub const PROVIDER_CALLS: &str = "jetshop_payments_provider_calls_total";
/// Latency of provider calls that were made, in seconds, by provider and operation.
pub const PROVIDER_DURATION: &str = "jetshop_payments_provider_call_duration_seconds";
/// Money movements recorded in the ledger, by movement
/// (`authorize`, `capture`, `void`, `refund`).
pub const MOVEMENTS: &str = "jetshop_payments_movements_total";
/// Authorizations declined, by code.
pub const DECLINES: &str = "jetshop_payments_declines_total";

/// The `# HELP` of every name above; call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        PROVIDER_CALLS,
        "Card processor calls, by provider, operation and outcome (ok, declined, transient, timeout, circuit_open, bulkhead_full)."
    );
    describe_histogram!(
        PROVIDER_DURATION,
        Unit::Seconds,
        "Latency of card processor calls that were made, by provider and operation."
    );
    describe_counter!(
        MOVEMENTS,
        "Money movements recorded in the ledger, by movement (authorize, capture, void, refund)."
    );
    describe_counter!(DECLINES, "Authorizations declined, by decline code.");
}
