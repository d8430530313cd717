//! The HTTP surface (Poem): parse, hand to [`Processor`], answer. The one
//! place where a failure of the processor becomes an HTTP status.

use bytes::Bytes;
use jetshop_contracts::card_processor::{
    ActivityQuery, ApiError, CreateAuthorization, CreateCapture, CreateRefund, CreateVoid,
    ErrorType, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, Outage, codes, paths,
};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Response, Route, get, handler,
    http::StatusCode,
    post, put,
    web::{Data, Json, Path, Query},
};
use serde::de::DeserializeOwned;

use crate::{
    Error,
    processor::{Processor, Reply, Request},
};

/// Longest idempotency key accepted (Stripe's limit).
const MAX_KEY_LEN: usize = 255;

/// The routes, with the processor as shared data.
pub fn app(processor: Processor) -> impl Endpoint {
    Route::new()
        .at(paths::AUTHORIZATIONS, post(create_authorization))
        .at("/v1/authorizations/:id/capture", post(create_capture))
        .at(paths::VOIDS, post(create_void))
        .at(paths::REFUNDS, post(create_refund))
        .at("/v1/payments/:merchant_reference", get(read_payment))
        .at(paths::ACTIVITY, get(activity))
        .at(paths::OUTAGE, put(set_outage).get(get_outage))
        .at(paths::HEALTHZ, get(healthz))
        .data(processor)
}

fn send(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder()
        .status(status)
        .content_type("application/json");
    if reply.replayed {
        builder = builder.header(IDEMPOTENT_REPLAYED, "true");
    }
    builder.body(reply.body)
}

fn invalid(message: String) -> Response {
    send(Reply::error(
        400,
        ApiError::new(
            ErrorType::InvalidRequestError,
            codes::PARAMETER_INVALID,
            message,
        ),
    ))
}

/// A failure of the processor itself: 503 (try again) or 500 (a bug),
/// `api_error` either way, never stored for replay.
fn failed(err: &Error) -> Response {
    let status = match err {
        Error::Internal(_) | Error::Config(_) => 500,
        _ => 503,
    };
    tracing::warn!(error = %err, status, "request failed");
    send(Reply::error(
        status,
        ApiError::new(
            ErrorType::ApiError,
            codes::PROCESSING_ERROR,
            err.to_string(),
        ),
    ))
}

/// The body as `T`, or why not (for a 400).
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid request body: {e}"))
}

async fn operation(
    req: &poem::Request,
    processor: &Processor,
    parsed: Result<Request, String>,
) -> Response {
    let request = match parsed {
        Ok(r) => r,
        Err(why) => return invalid(why),
    };
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= MAX_KEY_LEN => Some(k.to_owned()),
            _ => {
                return invalid(format!(
                    "{IDEMPOTENCY_KEY} must be 1 to {MAX_KEY_LEN} visible characters"
                ));
            }
        },
    };
    match processor.execute(key.as_deref(), &request).await {
        Ok(reply) => {
            tracing::debug!(
                operation = request.operation(),
                status = reply.status,
                replayed = reply.replayed,
                "answered"
            );
            send(reply)
        }
        Err(err) => failed(&err),
    }
}

#[handler]
async fn create_authorization(
    req: &poem::Request,
    body: Bytes,
    Data(processor): Data<&Processor>,
) -> Response {
    let parsed = parse::<CreateAuthorization>(&body).map(Request::Authorize);
    operation(req, processor, parsed).await
}

#[handler]
async fn create_capture(
    req: &poem::Request,
    Path(id): Path<String>,
    body: Bytes,
    Data(processor): Data<&Processor>,
) -> Response {
    let parsed = parse::<CreateCapture>(&body).map(|c| Request::Capture(id, c));
    operation(req, processor, parsed).await
}

#[handler]
async fn create_void(
    req: &poem::Request,
    body: Bytes,
    Data(processor): Data<&Processor>,
) -> Response {
    let parsed = parse::<CreateVoid>(&body).map(Request::Void);
    operation(req, processor, parsed).await
}

#[handler]
async fn create_refund(
    req: &poem::Request,
    body: Bytes,
    Data(processor): Data<&Processor>,
) -> Response {
    let parsed = parse::<CreateRefund>(&body).map(Request::Refund);
    operation(req, processor, parsed).await
}

#[handler]
async fn read_payment(
    Path(merchant_reference): Path<String>,
    Data(processor): Data<&Processor>,
) -> Response {
    let not_found = || {
        send(Reply::error(
            404,
            ApiError::new(
                ErrorType::InvalidRequestError,
                codes::NO_SUCH_PAYMENT,
                format!("no payment {merchant_reference}"),
            ),
        ))
    };
    let Ok(reference) = merchant_reference.parse() else {
        return not_found();
    };
    match processor.payment(reference).await {
        Ok(Some(p)) => Json(p).into_response(),
        Ok(None) => not_found(),
        Err(err) => failed(&err),
    }
}

#[handler]
async fn activity(
    Query(query): Query<ActivityQuery>,
    Data(processor): Data<&Processor>,
) -> Response {
    match processor.activity(query.order_reference).await {
        Ok(a) => Json(a).into_response(),
        Err(err) => failed(&err),
    }
}

#[handler]
async fn set_outage(body: Bytes, Data(processor): Data<&Processor>) -> Response {
    let outage: Outage = match parse(&body) {
        Ok(o) => o,
        Err(why) => return invalid(why),
    };
    match processor.set_outage(outage.on).await {
        Ok(()) => Json(outage).into_response(),
        Err(err) => failed(&err),
    }
}

#[handler]
async fn get_outage(Data(processor): Data<&Processor>) -> Response {
    match processor.outage().await {
        Ok(on) => Json(Outage { on }).into_response(),
        Err(err) => failed(&err),
    }
}

#[handler]
fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}
