//! The users service driven from outside, over a real `nats-server` and a
//! real database (SQLite, or PostgreSQL with `TEST_DATABASE=postgres`),
//! exactly as the gateway reaches it.

mod accounts;
mod bootstrap;
mod helpers;
mod oauth;
