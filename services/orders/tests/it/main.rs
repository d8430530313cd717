//! The orders service driven from outside, over a real `nats-server`, a
//! real catalog and a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`). Payments' side of the protocol is played by
//! the tests, which publish its events on `PAYMENTS_EVENTS` exactly as the
//! payments service does; the whole system runs together in the cli's tests.

mod helpers;
mod saga;
