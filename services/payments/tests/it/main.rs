//! The payments service driven from outside, over a real `nats-server` and
//! a real database (SQLite, or PostgreSQL with `TEST_DATABASE=postgres`),
//! exactly as the order saga reaches it: commands in, events out, and the
//! books read back through `jetshop_payments::audit`.

mod breaker;
mod helpers;
mod idempotency;
mod ledger;
mod replicas;
mod tokens;
