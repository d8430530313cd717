//! The checkout as a whole: catalog, orders, payments and notifications
//! over one real `nats-server`, four real databases (SQLite, or PostgreSQL
//! with `TEST_DATABASE=postgres`) and a real SMTP server (`aiosmtpd`),
//! under load and under faults. Every test ends by checking the
//! invariants in [`invariants`]: every accepted order ends confirmed or
//! cancelled exactly once, stock and money balance, one email per order.
//!
//! [`secure`] runs a checkout with NATS secured as `jetshop nats-config`
//! writes it.
//!
//! The load figures (orders per second) are printed, not asserted: speed
//! is measured by `make bench`-style runs, never by a timed test.

mod faults;
#[path = "../shared/invariants.rs"]
mod invariants;
mod load;
mod secure;
#[path = "../shared/secure_nats.rs"]
mod secure_nats;
mod system;
