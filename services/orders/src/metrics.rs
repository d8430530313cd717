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
