//! The admin HTTP surface of a service process: liveness, readiness and
//! Prometheus metrics. The gateway mounts the same handlers on its own port.

use std::net::SocketAddr;

use poem::{
    EndpointExt, IntoResponse, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::TcpListener,
    web::{Data, Json},
};
use tokio_util::sync::CancellationToken;

use crate::{Error, health::Health};

/// `GET /healthz`: the process is alive.
#[handler]
pub fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: every registered dependency answers.
#[handler]
pub async fn readyz(Data(health): Data<&Health>) -> Response {
    readiness(health).await
}

/// The readiness response for a set of checks (200 or 503 with details).
pub async fn readiness(health: &Health) -> Response {
    let checks = health.check().await;
    let ready = checks.iter().all(|c| c.ok);
    let body = serde_json::json!({ "status": if ready { "ready" } else { "not ready" }, "checks": checks });
    Json(body)
        .with_status(if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })
        .into_response()
}

/// `GET /metrics`: Prometheus text exposition.
#[handler]
pub fn metrics_text() -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

/// Serve the admin endpoints on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let app = Route::new()
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .at("/metrics", get(metrics_text))
        .data(health);
    tracing::info!(%addr, "admin endpoints (healthz, readyz, metrics) listening");
    Server::new(TcpListener::bind(addr))
        .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), None)
        .await?;
    Ok(())
}
