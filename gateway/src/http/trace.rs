//! One `http` span per request (SERVER, the gateway's work), child of the
//! caller's W3C `traceparent` when there is one, else a trace's root. Handlers run inside it, so the RPC client's spans (and the
//! trace context it puts into NATS headers) continue the caller's trace.

use std::sync::Arc;

use opentelemetry::{propagation::Extractor, trace::TraceContextExt};
use poem::{Endpoint, IntoResponse, Request, Response, http::HeaderMap};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::http::{request_id::RequestId, route::RouteTable};

/// Reads trace context from HTTP request headers.
struct HttpHeaders<'a>(&'a HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Middleware (for `around`): run the request inside an `http` span.
pub async fn http_span<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let method = req.method().clone();
    let routes = RouteTable::of(&req);
    let request_id = req
        .data::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        method = %method,
        route = Empty,
        request_id = %request_id,
        status = Empty,
    );
    jetshop_platform::telemetry::set_parent_from(
        &span,
        crate::SERVICE_NAME,
        &HttpHeaders(req.headers()),
    );
    let resp = match ep.call(req).instrument(span.clone()).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let route = routes.template(&resp);
    let status = resp.status();
    let name = format!("{method} {route}");
    // The OTel span has started by now (its context went into NATS
    // headers), so rename it directly; `otel.name` serves other layers.
    span.record("otel.name", name.as_str());
    span.context().span().update_name(name);
    span.record("route", route.as_str());
    span.record("status", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    tracing::debug!(parent: &span, status = status.as_u16(), "request served");
    Ok(resp)
}
