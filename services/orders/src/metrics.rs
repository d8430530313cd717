//! The orders service's metric names (Prometheus, through `metrics`).

/// Sagas parked as `stuck`, waiting for an operator (a gauge).
pub const SAGAS_STUCK: &str = "jetshop_sagas_stuck";
/// Saga step outcomes, by step and outcome (`succeeded`, `failed`, `retried`, `stuck`).
pub const SAGA_STEPS: &str = "jetshop_saga_steps_total";
/// Seconds from a step's first send to its answer, by step.
pub const SAGA_STEP_DURATION: &str = "jetshop_saga_step_duration_seconds";
/// Orders that reached a terminal state, by outcome.
pub const ORDERS_COMPLETED: &str = "jetshop_orders_completed_total";
/// Orders placed.
pub const ORDERS_PLACED: &str = "jetshop_orders_placed_total";
/// Seconds from an order's placement to its final state (confirmed or
/// cancelled), by outcome: the checkout SLO.
pub const ORDER_COMPLETION_DURATION: &str = "jetshop_order_completion_duration_seconds";

/// The `# HELP` of every name above; call once the recorder is installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        SAGAS_STUCK,
        "Order sagas parked as stuck, waiting for an operator."
    );
    describe_counter!(
        SAGA_STEPS,
        "Order saga step outcomes, by step and outcome (succeeded, failed, retried, stuck)."
    );
    describe_histogram!(
        SAGA_STEP_DURATION,
        Unit::Seconds,
        "Time from a saga step's first send to its answer, by step."
    );
    describe_counter!(
        ORDERS_COMPLETED,
        "Orders that reached a final state, by outcome (confirmed, cancelled) and reason class."
    );
    describe_counter!(ORDERS_PLACED, "Orders placed and accepted into the saga.");
    describe_histogram!(
        ORDER_COMPLETION_DURATION,
        Unit::Seconds,
        "Time from an order's placement to its final state, by outcome."
    );
}

/// A cancellation reason reduced to a few classes: the reasons themselves
/// carry SKUs and decline texts, which would make a label per order.
pub fn reason_class(reason: Option<&str>) -> &'static str {
    let Some(reason) = reason else {
        return "none";
    };
    if reason.starts_with("stock unavailable") {
        "stock_unavailable"
    } else if reason.starts_with("payment declined") {
        "payment_declined"
    } else if reason.contains("no answer after") {
        "step_timeout"
    } else if reason.starts_with("asked by") || reason.contains("cancelled by") {
        "requested"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::reason_class;

    #[test]
    fn reasons_fall_into_few_classes() {
        assert_eq!(reason_class(None), "none");
        assert_eq!(
            reason_class(Some("stock unavailable: sku-1 has 0")),
            "stock_unavailable"
        );
        assert_eq!(
            reason_class(Some("payment declined: card declined")),
            "payment_declined"
        );
        assert_eq!(
            reason_class(Some("reserve-stock: no answer after 6 attempts")),
            "step_timeout"
        );
        assert_eq!(reason_class(Some("something new")), "other");
    }
}
