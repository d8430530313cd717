//! The notifications service driven from outside, over a real
//! `nats-server`, a real database (SQLite, or PostgreSQL with
//! `TEST_DATABASE=postgres`), a real SMTP server (`aiosmtpd`) and a real
//! HTTP server for webhooks.

mod email;
mod helpers;
mod rpc;
mod webhooks;
