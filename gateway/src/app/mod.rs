//! The one place the gateway is put together: the route table (the API,
//! its document and Swagger UI, the probes, the authorization server) and
//! the middleware stack around it, each middleware applied once, here.
//!
//! The stack is type-erased at three boundaries ([`EndpointExt::boxed`]):
//! the routes with their data and problem mapping, the request guards,
//! and the edge. Without them the endpoint type nests every layer inside
//! the next, and the release build of the `jetshop` binary failed
//! computing the layout of the resulting future (`queries overflow the
//! depth limit!`). A boxed boundary costs one allocation and one dynamic
//! call per request.
//!
//! - [`auth`]: our own authorization server, or an external issuer.

pub mod auth;

use std::{sync::Arc, time::Duration};

use jetshop_platform::{
    rpc::{BreakerPolicy, RpcClient},
    runtime::Runtime,
};
use poem::{
    EndpointExt, Response, Route, Server,
    endpoint::BoxEndpoint,
    get,
    listener::{Acceptor, Listener, TcpListener},
};
use poem_openapi::OpenApi;
use tokio_util::sync::CancellationToken;

pub use auth::Auth;

use crate::{
    api::{self, docs, order_hub::OrderHub, product_reads::ProductReads, spec},
    error::Error,
    http::{
        deadline, hardening, health, idempotency, limits, metrics, problem, request_id,
        route::RouteTable, trace,
    },
    oauth,
    settings::GatewaySettings,
};

/// How long in-flight requests may take to finish after shutdown is asked.
const GRACEFUL_SHUTDOWN: Duration = Duration::from_secs(10);

/// Liveness.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness.
pub const READYZ_PATH: &str = "/readyz";
/// The Prometheus exposition.
pub const METRICS_PATH: &str = "/metrics";

/// The whole HTTP application, ready to serve (or to drive in tests and
/// benchmarks). The readiness check of the gateway's own NATS connection is
/// registered by [`run`].
///
/// # Panics
/// When the OAuth signing keys cannot be loaded; [`run`] reports that as
/// an error instead.
pub fn app(settings: &GatewaySettings, rt: Runtime) -> BoxEndpoint<'static, Response> {
    let auth =
        Auth::from_settings(&settings.auth, &settings.public_url()).expect("OAuth signing keys");
    let hub = OrderHub::new(rt.nats.clone(), settings.sse_keep_alive);
    let reads = ProductReads::new(
        settings.product_cache_capacity,
        settings.product_cache_ttl,
        rt.nats.clone(),
    );
    assemble(settings, rt, auth, hub, reads)
}

/// The routes and the middleware stack, with OAuth, the order events hub
/// and the product reads given (so that [`run`] can end the hub's streams
/// and the cache's event follower at shutdown).
fn assemble(
    settings: &GatewaySettings,
    rt: Runtime,
    auth: Auth,
    hub: OrderHub,
    reads: ProductReads,
) -> BoxEndpoint<'static, Response> {
    jetshop_platform::metrics::install();
    describe_metrics();
    // One breaker per service: a service that stops answering costs
    // callers a 503 at once, not a timeout each.
    let rpc = RpcClient::new(rt.nats.clone(), settings.rpc_timeout, settings.rpc_retries)
        .with_breakers(
            "gateway",
            BreakerPolicy {
                failure_threshold: settings.breaker_failures,
                open_for: settings.breaker_open_for,
            },
        );
    let table = Arc::new(route_table(auth.server.is_some()));
    // A parsed Redis URL always opens; connecting happens on first use.
    let rate_limit = limits::RateLimit::from_settings(&settings.limits)
        .expect("Redis URL")
        .identify_with(auth.validator.clone())
        .unlimited(limits::Unlimited::new(
            [HEALTHZ_PATH, READYZ_PATH, METRICS_PATH, spec::SPEC_PATH],
            [spec::DOCS_PATH],
        ));
    let idempotency = idempotency::Idempotency::from_settings(&settings.limits)
        .expect("Redis URL")
        .identify_with(auth.validator.clone());

    // What the routes need, and errors become problems before anything
    // outside sees them (so they are counted, traced and replayed as such).
    let served = routes(auth.server.as_ref())
        .data(rpc)
        .data(hub)
        .data(reads)
        .data(auth.validator.clone())
        .data(rt.jetstream())
        .data(rt.health)
        .with(deadline::Deadline {
            limit: settings.request_deadline,
        })
        .around(problem::catch)
        .boxed();
    // Request guards, innermost first: replays see the final (problem)
    // response; bodies are bounded before anything reads them; refusals of
    // the rate limiter are counted and traced like any answer.
    let guarded = served
        .with(idempotency)
        .with(hardening::BodyLimit {
            max: settings.hardening.max_body_bytes,
        })
        .with(rate_limit)
        .boxed();
    // The edge: metrics and the span see every answer, CORS refusals get a
    // request id, every answer gets the security headers, and the route
    // table is there for whoever labels or explains a route.
    guarded
        .around(metrics::record)
        .around(trace::http_span)
        .with(hardening::CorsGate::new(&settings.hardening.cors_origins))
        .around(request_id::propagate)
        .with(hardening::SecurityHeaders::for_public_url(Some(
            &settings.public_url(),
        )))
        .data(table)
        .boxed()
}

/// Every route the gateway serves: the API under `/v1`, its document and
/// Swagger UI, the probes and metrics, and (unless an external issuer is
/// configured, whose own endpoints then serve all that) the authorization
/// server's `/oauth/*` and `/.well-known/*`.
fn routes(server: Option<&Arc<oauth::Issuer>>) -> Route {
    let api = spec::service();
    let swagger = docs::with_pkce(api.swagger_ui(), docs::SWAGGER_CLIENT_ID);
    let routes = Route::new()
        .nest_no_strip("/v1", api)
        .nest(spec::DOCS_PATH, swagger)
        .at(spec::SPEC_PATH, get(spec::serve))
        .at(HEALTHZ_PATH, get(health::healthz))
        .at(READYZ_PATH, get(health::readyz))
        .at(METRICS_PATH, get(metrics::exposition));
    match server {
        Some(server) => server.mount(routes),
        None => routes,
    }
}

/// The documented routes of the API, and the plain GET-only ones.
fn route_table(with_issuer: bool) -> RouteTable {
    let table = RouteTable::from_meta(<spec::Api as OpenApi>::meta()).with_get_only([
        HEALTHZ_PATH,
        READYZ_PATH,
        METRICS_PATH,
        spec::SPEC_PATH,
    ]);
    if with_issuer {
        table.with_get_only([oauth::DISCOVERY_PATH, oauth::JWKS_PATH])
    } else {
        table
    }
}

/// The OpenAPI document as JSON (what `/openapi.json` serves).
pub fn openapi_json() -> String {
    api::spec::json()
}

/// Serve the gateway on `settings.http_addr` until `shutdown`, then let
/// in-flight requests finish.
pub async fn run(
    settings: GatewaySettings,
    rt: Runtime,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    tracing::info!(?settings, "gateway starting");
    let auth = Auth::from_settings(&settings.auth, &settings.public_url())?;
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
    let hub = OrderHub::new(rt.nats.clone(), settings.sse_keep_alive);
    let reads = ProductReads::new(
        settings.product_cache_capacity,
        settings.product_cache_ttl,
        rt.nats.clone(),
    );
    let (closer, reads_closer) = (hub.clone(), reads.clone());
    let asked = shutdown.clone();
    tokio::spawn(async move {
        asked.cancelled().await;
        closer.close();
        reads_closer.close();
    });
    let app = assemble(&settings, rt, auth, hub, reads);
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), Some(GRACEFUL_SHUTDOWN))
        .await
        .map_err(Error::Serve)?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// The `# HELP` of the gateway's own metrics (the shared HTTP ones are
/// described by the platform). Here, in the top layer, because the names
/// live in both `http` and `api`; call once the recorder is installed.
fn describe_metrics() {
    use crate::{
        api::order_hub,
        http::{idempotency, limits},
    };
    use ::metrics::{describe_counter, describe_gauge};
    describe_counter!(
        limits::REDIS_ERRORS,
        "Rate-limit decisions Redis could not make, by cause (error, timeout, circuit_open)."
    );
    describe_counter!(
        limits::LIMITED,
        "Requests refused with 429 by the rate limiter, by limit group."
    );
    describe_counter!(
        idempotency::REDIS_ERRORS,
        "Idempotency-Key lookups or stores that failed on Redis."
    );
    describe_counter!(
        idempotency::REPLAYS,
        "Responses replayed for a repeated Idempotency-Key."
    );
    describe_gauge!(order_hub::WATCHERS, "Open SSE streams watching an order.");
    crate::api::product_reads::describe();
    describe_counter!(
        order_hub::EVENTS,
        "Orders events the gateway's hub received, by whether a watcher was woken (routed)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_table_knows_the_api_and_the_plain_routes() {
        let table = route_table(true);
        assert_eq!(
            table.documented("/v1/products/:param0"),
            "/v1/products/{id}"
        );
        assert_eq!(
            table.param_name("/v1/products/:param0", "param0"),
            Some("id")
        );
        let id = "0191e2b0-0000-7000-8000-000000000000";
        assert_eq!(
            table
                .allowed_methods(&format!("/v1/products/{id}"))
                .as_deref(),
            Some("GET, PATCH")
        );
        assert_eq!(
            table.allowed_methods("/v1/products").as_deref(),
            Some("GET, POST")
        );
        assert_eq!(table.allowed_methods(HEALTHZ_PATH).as_deref(), Some("GET"));
        assert_eq!(
            table.allowed_methods(oauth::JWKS_PATH).as_deref(),
            Some("GET")
        );
        assert_eq!(route_table(false).allowed_methods(oauth::JWKS_PATH), None);
    }
}
