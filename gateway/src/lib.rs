//! The jetshop REST gateway: Poem + poem-openapi in front of the services,
//! which it reaches over NATS request-reply.
//!
//! - [`settings`]: flags and environment variables.
//! - [`products`]: `/v1/products` (the `#[OpenApi]` operations and response objects).
//! - [`spec`]: the OpenAPI document, served at `/openapi.json`, Swagger UI at `/docs`.
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`metrics`]: HTTP metrics middleware and `/metrics`.
//! - [`problem`]: RFC 9457 errors; the only place errors become statuses.
//! - [`request_id`]: `X-Request-Id` in and out, carried into NATS as the correlation id.
//! - [`limits`]: rate limits per caller and route group (Redis or in process).
//! - [`idempotency`]: `Idempotency-Key` on `POST`: replays instead of acting twice.
//! - [`hardening`]: body size limit, security headers, CORS.
//! - [`auth`]: OAuth 2.0: token validation and scopes on `/v1`, and the
//!   built-in authorization server (`/oauth/*`, `/.well-known/*`).
//! - [`users`]: `/v1/users` (register, the caller's own profile).
//! - [`orders`]: `/v1/orders` (place, read, cancel, history, SSE status stream).
//! - [`order_hub`]: the one `orders.events.>` subscription behind the SSE streams.
//! - [`webhooks`]: `/v1/me/webhook` (the caller's webhook, via notifications).
//! - [`docs`]: Swagger UI with PKCE sign-in.
//! - [`trace`]: the per-request span, continuing the caller's `traceparent`.
//! - [`route`]: the matched route template, for labels.
//! - [`error`]: the crate's error type.

pub mod auth;
pub mod docs;
pub mod error;
pub mod hardening;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod metrics;
pub mod order_hub;
pub mod orders;
pub mod problem;
pub mod products;
pub mod request_id;
pub mod route;
pub mod settings;
pub mod spec;
pub mod trace;
pub mod users;
pub mod webhooks;

use std::time::Duration;

use jetshop_platform::{rpc::RpcClient, runtime::Runtime};
use poem::{
    Endpoint, EndpointExt, Route, Server, get,
    listener::{Acceptor, Listener, TcpListener},
};
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use settings::GatewaySettings;

/// How long in-flight requests may take to finish after shutdown is asked.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// The whole HTTP application, ready to serve (or to drive in tests and
/// benchmarks). The readiness check of the gateway's own NATS connection is
/// registered by [`run`].
///
/// # Panics
/// When the OAuth signing keys cannot be loaded; [`run`] reports that as
/// an error instead (it calls [`app_with_auth`]).
pub fn app(settings: &GatewaySettings, rt: Runtime) -> impl Endpoint + use<> {
    let auth = auth::Auth::from_settings(&settings.auth, &settings.public_url())
        .expect("OAuth signing keys");
    app_with_auth(settings, rt, auth)
}

/// [`app`] with OAuth already set up.
pub fn app_with_auth(
    settings: &GatewaySettings,
    rt: Runtime,
    auth: auth::Auth,
) -> impl Endpoint + use<> {
    let hub = order_hub::OrderHub::new(rt.nats.clone(), settings.sse_keep_alive);
    app_with_hub(settings, rt, auth, hub)
}

/// [`app_with_auth`] with the order events hub given (so that [`run`] can
/// end its streams at shutdown).
fn app_with_hub(
    settings: &GatewaySettings,
    rt: Runtime,
    auth: auth::Auth,
    hub: order_hub::OrderHub,
) -> impl Endpoint + use<> {
    jetshop_platform::metrics::install();
    let rpc = RpcClient::new(rt.nats.clone(), settings.rpc_timeout, settings.rpc_retries);
    let api = spec::service();
    let docs = api.swagger_ui();
    // A parsed Redis URL always opens; connecting happens on first use.
    let rate_limit = limits::RateLimit::from_settings(&settings.limits)
        .expect("Redis URL")
        .identify_with(auth.validator.clone());
    let idempotency = idempotency::Idempotency::from_settings(&settings.limits)
        .expect("Redis URL")
        .identify_with(auth.validator.clone());
    let routes = Route::new()
        .nest_no_strip("/v1", api)
        .nest(
            spec::DOCS_PATH,
            docs::with_pkce(docs, docs::SWAGGER_CLIENT_ID),
        )
        .at(spec::SPEC_PATH, get(spec::serve))
        .at("/healthz", get(health::healthz))
        .at("/readyz", get(health::readyz))
        .at("/metrics", get(metrics::exposition));
    // In external issuer mode the issuer's own endpoints serve all this.
    let routes = match &auth.server {
        Some(server) => server.mount(routes),
        None => routes,
    };
    routes
        .data(rpc)
        .data(hub)
        .data(auth.validator.clone())
        .data(rt.jetstream())
        .data(rt.health)
        // Innermost first: errors become problems before they are counted,
        // traced and stamped with the request id.
        .around(problem::catch)
        // Replays see the final (problem) response; bodies are bounded
        // before anything reads them; refusals are counted and traced;
        // every answer, CORS refusals included, gets the security headers.
        .with(idempotency)
        .with(hardening::BodyLimit {
            max: settings.hardening.max_body_bytes,
        })
        .with(rate_limit)
        .around(metrics::record)
        .around(trace::http_span)
        .with(hardening::CorsGate::new(&settings.hardening.cors_origins))
        .around(request_id::propagate)
        .with(hardening::SecurityHeaders::for_public_url(Some(
            &settings.public_url(),
        )))
}

/// The OpenAPI document as JSON (what `/openapi.json` serves).
pub fn openapi_json() -> String {
    spec::json()
}

/// Serve the gateway on `settings.http_addr` until `shutdown`, then let
/// in-flight requests finish.
pub async fn run(
    settings: GatewaySettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tracing::info!(?settings, "gateway starting");
    let auth = auth::Auth::from_settings(&settings.auth, &settings.public_url())?;
    auth.start(shutdown.clone()).await;
    rt.health
        .add_nats(health::NATS_CHECK, rt.nats.clone())
        .await;
    let addr = settings.http_addr;
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local = acceptor
        .local_addr()
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| addr.to_string());
    tracing::info!(addr = %local, "gateway listening (API under /v1, docs at /docs)");
    // Open event streams would hold the graceful shutdown for its whole
    // grace period: end them as soon as shutdown is asked.
    let hub = order_hub::OrderHub::new(rt.nats.clone(), settings.sse_keep_alive);
    let closer = hub.clone();
    let asked = shutdown.clone();
    tokio::spawn(async move {
        asked.cancelled().await;
        closer.close();
    });
    let app = app_with_hub(&settings, rt, auth, hub);
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), Some(GRACEFUL_SHUTDOWN))
        .await
        .map_err(Error::Serve)?;
    tracing::info!("gateway stopped");
    Ok(())
}
