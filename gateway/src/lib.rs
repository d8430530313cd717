//! The jetshop REST gateway: Poem + poem-openapi in front of the services,
//! which it reaches over NATS request-reply and JetStream commands.
//!
//! The modules are layers; each uses only the ones above it in this list
//! (`tests/layers.rs` fails when one reaches up or sideways):
//!
//! - [`error`]: the crate's error type (token, credential and key failures too).
//! - [`auth`]: the resource server: token validation, scopes, the route guard.
//! - [`http`]: what every request passes through: request ids, spans,
//!   metrics, hardening, problems, rate limits, idempotency, health.
//! - [`api`]: the `/v1` operations, their OpenAPI document and Swagger UI.
//! - [`oauth`]: the built-in authorization server (`/oauth/*`,
//!   `/.well-known/*`): signing keys, minting, the endpoints. Beside `api`;
//!   neither uses the other.
//! - [`settings`]: flags and environment variables.
//! - [`app`]: the one place that builds the route table and the middleware
//!   stack, and serves it ([`run`]).

/// The gateway's name in traces and metrics.
pub const SERVICE_NAME: &str = "gateway";

pub mod error;

pub mod auth;

pub mod http;

pub mod api;
pub mod oauth;

pub mod settings;

pub mod app;

pub use app::{app, openapi_json, run};
pub use error::Error;
pub use settings::GatewaySettings;
