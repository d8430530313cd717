//! The payments bounded context: one payment intent per order, a card
//! provider behind timeouts, retries, a circuit breaker and a bulkhead,
//! and a double-entry ledger of every money movement.
//!
//! It owns its database and talks to the world only over NATS: the order
//! saga's commands (authorize, capture, void, refund) arrive on
//! `PAYMENTS_COMMANDS` and each is answered by an
//! event on `PAYMENTS_EVENTS`, written through the outbox in the same
//! transaction as the intent's change and its ledger postings. Every
//! operation is idempotent per order, and the provider is called with an
//! idempotency key per payment and operation, so no redelivery, retry,
//! restart or crash charges a card twice.
//!
//! - [`domain`]: the intent's states and rules, pure.
//! - [`ledger`]: the chart of accounts and each movement's postings.
//! - [`provider`]: the provider adapter trait and the simulated card processor.
//! - [`resilience`]: timeout, retries, circuit breaker and bulkhead around a provider.

pub mod domain;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod provider;
pub mod resilience;
pub mod settings;

pub use error::Error;
pub use provider::{PaymentProvider, SimulatedProvider};
pub use resilience::{BreakerState, ResilientProvider};
pub use settings::PaymentsSettings;

/// Name of the payments service (outbox relay, logs).
pub const SERVICE_NAME: &str = "payments";
