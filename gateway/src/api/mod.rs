//! The REST API under `/v1`: the poem-openapi operations, their bodies, and
//! the OpenAPI document and Swagger UI that describe them. Each operation
//! checks its scope (`auth`), reaches a service over NATS, and answers
//! through the HTTP layer's problems (`http`).
//!
//! - [`products`]: `/v1/products` (the catalog: reads by RPC, writes as commands).
//! - [`orders`]: `/v1/orders` (place, read, cancel, history, SSE status stream).
//! - [`order_hub`]: the one `orders.events.>` subscription behind the SSE streams.
//! - [`product_reads`]: product reads from a per-process cache kept fresh by catalog events.
//! - [`users`]: `/v1/users` (register, the caller's own profile).
//! - [`webhooks`]: `/v1/me/webhook` (the caller's webhook, via notifications).
//! - [`money`]: the money bodies products and orders share.
//! - [`spec`]: the OpenAPI document, served at `/openapi.json`.
//! - [`docs`]: Swagger UI at `/docs`, with PKCE sign-in.

pub mod docs;
pub mod money;
pub mod order_hub;
pub mod orders;
pub mod product_reads;
pub mod products;
pub mod spec;
pub mod users;
pub mod webhooks;
