//! Integration tests of the platform runtime against a real nats-server and
//! a real database (SQLite, or PostgreSQL with `TEST_DATABASE=postgres`).

#[path = "../common/mod.rs"]
mod common;

mod consumer;
mod db;
mod dlq;
mod host;
mod nats;
mod outbox;
mod per_key;
mod rpc;
mod sampler;
