//! HTTP RED metrics and their Prometheus exposition: a middleware counts
//! every request by method, route template and status and times it; `GET
//! /metrics` renders everything the process recorded.

use std::{sync::Arc, time::Instant};

use jetshop_platform::metrics::{HTTP_DURATION, HTTP_REQUESTS};
use poem::{Endpoint, IntoResponse, Request, Response, http::Method};

use crate::http::route::RouteTable;

/// Middleware (for `around`): record [`HTTP_REQUESTS`] and [`HTTP_DURATION`].
pub async fn record<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = method_label(req.method());
    let routes = RouteTable::of(&req);
    let resp = match ep.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let route = routes.template(&resp);
    metrics::counter!(
        HTTP_REQUESTS,
        "method" => method,
        "route" => route.clone(),
        "status" => resp.status().as_str().to_owned(),
    )
    .increment(1);
    metrics::histogram!(HTTP_DURATION, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(resp)
}

/// Standard methods by name; anything else is `other` (bounded cardinality).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: the Prometheus text exposition.
#[poem::handler]
pub fn exposition() -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(jetshop_platform::metrics::render())
}
