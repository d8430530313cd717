//! The runtime every jetshop service and the gateway share.
//!
//! - [`config`]: settings as flags and environment variables, printed with secrets masked.
//! - [`nats`]: connect with reconnect and backoff, check the server version, provision streams.
//! - [`envelope`]: headers around a message (ids, type, schema, trace, correlation) and typed publish.
//! - [`consumer`]: the durable pull-consumer runner with retry, backoff and dead letters.
//! - [`dlq`]: list, show, replay and purge dead letters.
//! - [`outbox`] and [`inbox`]: exactly-once effects over at-least-once delivery.
//! - [`rpc`]: NATS micro services and a client with timeout, retries and a breaker per service.
//! - [`read_cache`]: a read-through cache of versioned records kept fresh by their events.
//! - [`breaker`]: the circuit breaker shared by RPC clients and the payments provider guard.
//! - [`telemetry`], [`metrics`], [`health`], [`admin`]: seeing what runs.
//! - [`runtime`]: what a service's `run` gets from its caller.
//! - [`sampler`]: consumer lag, dead-letter depth and stream gauges read from JetStream.
//! - [`host`]: the one start-up and drain sequence every service runs.
//! - [`db`]: SeaORM connections for SQLite and PostgreSQL, and the shared tables' migrations.
//!
//! Nothing here knows any bounded context; services bring their own domain.

pub mod admin;
pub mod breaker;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod health;
pub mod host;
pub mod html;
pub mod inbox;
pub mod metrics;
pub mod nats;
pub mod outbox;
pub mod read_cache;
pub mod rpc;
pub mod runtime;
pub mod sampler;
pub mod telemetry;

pub use error::Error;
