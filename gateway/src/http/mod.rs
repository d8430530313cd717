//! The HTTP layer every request passes through, whatever it asks for:
//! request ids, the request's span, RED metrics, hardening (body limit,
//! security headers, CORS), RFC 9457 problems, rate limits and
//! idempotency, plus the route table they label by and the health probes.
//!
//! - [`request_id`]: `X-Request-Id` in and out, carried into NATS as the correlation id.
//! - [`trace`]: the per-request span, continuing the caller's `traceparent`.
//! - [`metrics`]: HTTP metrics middleware and `/metrics`.
//! - [`hardening`]: body size limit, security headers, CORS.
//! - [`problem`]: RFC 9457 errors; the only place errors become statuses.
//! - [`strict_json`]: JSON bodies held to their schema's types (no coercion).
//! - [`deadline`]: an overall deadline per request (504 past it).
//! - [`limits`]: rate limits per caller and route group (Redis or in process).
//! - [`idempotency`]: `Idempotency-Key` on `POST`: replays instead of acting twice.
//! - [`route`]: the documented route of a request, for labels and `Allow`.
//! - [`health`]: `/healthz` and `/readyz`.
//!
//! It sits on `auth` (a bearer token identifies the caller a budget counts
//! against) and `error`; it knows no operation of the API: the app hands
//! it the route table and the paths it must leave unlimited.

pub mod deadline;
pub mod hardening;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod request_id;
pub mod route;
pub mod strict_json;
pub mod trace;
