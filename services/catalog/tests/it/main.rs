//! The catalog driven from outside, over a real `nats-server` and a real
//! database (SQLite, or PostgreSQL with `TEST_DATABASE=postgres`), exactly
//! as other services and the gateway reach it.

mod commands;
mod helpers;
mod reservations;
mod rpc;
