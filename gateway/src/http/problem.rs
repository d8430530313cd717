//! RFC 9457 problem details: every error the gateway answers is an
//! `application/problem+json` body `{type, title, status, detail, instance}`
//! (plus `errors` for invalid parameters).
//!
//! This module is the one place where a failure becomes an HTTP status:
//! [`Problem::from`] maps the crate's [`Error`] (RPC outcomes included) and
//! [`Problem::from_poem`] maps what Poem and poem-openapi raise (bad
//! parameters, unknown routes, wrong methods). [`catch`] applies it to
//! whole responses: it is installed around every operation (so parameter
//! errors keep their structure) and around the whole app (so router errors
//! and plain-text error responses are converted too).

use std::sync::Arc;

use jetshop_contracts::ErrorCode;
use jetshop_platform::rpc::CallError;
use poem::{
    Endpoint, IntoResponse, PathPattern, Request, Response,
    error::{MethodNotAllowedError, NotFoundError, ResponseError},
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    error::{AuthorizationError, ParseParamError, ParsePathError, ParseRequestPayloadError},
    payload::Json,
    registry::{MetaResponses, Registry},
    types::ToJSON,
};

use crate::{
    error::{AuthError, Error, TokenError},
    http::route::RouteTable,
};

/// The media type of every error body.
pub const CONTENT_TYPE: &str = "application/problem+json";
/// The realm of our `WWW-Authenticate` challenges.
pub const REALM: &str = "jetshop";
/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;
/// The `type` of a problem that needs no more than its status to explain it.
const ABOUT_BLANK: &str = "about:blank";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Problem")]
pub struct Problem {
    /// A URI identifying the kind of problem (`urn:jetshop:problem:not-found`),
    /// or `about:blank` when the status says it all.
    #[oai(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a human.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
    /// The request path this problem occurred on.
    #[oai(skip_serializing_if_is_none)]
    pub instance: Option<String>,
    /// Which parameters were invalid, and why.
    #[oai(skip_serializing_if_is_none)]
    pub errors: Option<Vec<InvalidParam>>,
    /// Seconds until a retry may succeed (sent as `Retry-After`).
    #[oai(skip)]
    pub retry_after: Option<u32>,
    /// The RFC 6750 challenge of a 401 or 403 (sent as `WWW-Authenticate`).
    #[oai(skip)]
    pub www_authenticate: Option<String>,
}

/// One invalid request parameter.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct InvalidParam {
    /// The parameter's name.
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

impl Problem {
    /// A problem of kind `slug` (`urn:jetshop:problem:<slug>`).
    fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self::of_type(status, format!("urn:jetshop:problem:{slug}"), title)
    }

    /// A problem that only has a status (`about:blank`, title = reason phrase).
    pub fn from_status(status: StatusCode) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        Self::of_type(status, ABOUT_BLANK.to_owned(), title)
    }

    fn of_type(status: StatusCode, problem_type: String, title: &str) -> Self {
        Self {
            problem_type,
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            errors: None,
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS),
            www_authenticate: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The same problem, located at `instance` (the request path) unless it already is.
    pub fn at(mut self, instance: &str) -> Self {
        self.instance.get_or_insert_with(|| instance.to_owned());
        self
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Map an error raised by Poem or poem-openapi (or one of ours carried
    /// inside a `poem::Error`).
    pub fn from_poem(err: &poem::Error) -> Self {
        if let Some(ours) = err.downcast_ref::<Error>() {
            return Self::from(ours);
        }
        if let Some(Guarded(ours)) = err.downcast_ref::<Guarded>() {
            return Self::from(ours);
        }
        let invalid = |name: &str, reason: &str| {
            let mut p = Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            )
            .detail("a request parameter is invalid; `errors` says which and why");
            p.errors = Some(vec![InvalidParam {
                name: name.to_owned(),
                reason: reason.to_owned(),
            }]);
            p
        };
        if let Some(e) = err.downcast_ref::<ParseParamError>() {
            return invalid(e.name, &e.reason);
        }
        if let Some(e) = err.downcast_ref::<ParsePathError>() {
            return invalid(e.name, &e.reason);
        }
        if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
            let mut p = Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "Invalid request",
            )
            .detail(e.reason.clone());
            // Objects with `deny_unknown_fields` say "unknown field `name`.".
            if let Some(name) = unknown_field(&e.reason) {
                p.errors = Some(vec![InvalidParam {
                    name: name.to_owned(),
                    reason: "unknown field".to_owned(),
                }]);
            } else if let Some((name, rule)) = failed_validator(&e.reason) {
                p.errors = Some(vec![InvalidParam {
                    name: name.to_owned(),
                    reason: format!("does not meet the documented {rule}"),
                }]);
            }
            return p;
        }
        if err.is::<AuthorizationError>() {
            // No credentials at all: RFC 6750 section 3.1 says to name no error code.
            let mut p = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
                .detail("this operation needs a bearer access token");
            p.www_authenticate = Some(bearer_challenge(None));
            return p;
        }
        if err.is::<NotFoundError>() {
            return Self::from_status(StatusCode::NOT_FOUND).detail("no such route");
        }
        if err.is::<MethodNotAllowedError>() {
            return Self::from_status(StatusCode::METHOD_NOT_ALLOWED)
                .detail("this route does not accept that method");
        }
        let status = err.status();
        if status.is_server_error() {
            // Never show internals to the client; the log has them.
            tracing::error!(error = %err, %status, "request failed");
            Self::from_status(status)
        } else {
            Self::from_status(status).detail(err.to_string())
        }
    }

    /// The `application/problem+json` response, with `Retry-After` when set.
    pub fn into_response(self) -> Response {
        let mut resp = Response::builder()
            .status(self.status_code())
            .content_type(CONTENT_TYPE)
            .body(self.to_json_string());
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self
            .www_authenticate
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        resp
    }
}

/// The one mapping from the crate's errors to problems (and so to statuses).
impl From<&Error> for Problem {
    fn from(err: &Error) -> Self {
        use StatusCode as S;
        match err {
            Error::Call(CallError::Remote(remote)) => {
                match remote.code {
                    ErrorCode::BadRequest => {
                        let mut p = Self::new(S::BAD_REQUEST, "invalid-request", "Invalid request")
                            .detail(remote.message.clone());
                        // Services name the offending field in the details.
                        if let Some(field) = remote
                            .details
                            .as_ref()
                            .and_then(|d| d.get("field"))
                            .and_then(|f| f.as_str())
                        {
                            p.errors = Some(vec![InvalidParam {
                                name: field.to_owned(),
                                reason: remote.message.clone(),
                            }]);
                        }
                        p
                    }
                    ErrorCode::Unauthorized => {
                        Self::new(S::UNAUTHORIZED, "unauthorized", "Unauthorized")
                            .detail(remote.message.clone())
                    }
                    ErrorCode::Forbidden => Self::new(S::FORBIDDEN, "forbidden", "Forbidden")
                        .detail(remote.message.clone()),
                    ErrorCode::NotFound => Self::new(S::NOT_FOUND, "not-found", "Not found")
                        .detail(remote.message.clone()),
                    ErrorCode::Conflict => Self::new(S::CONFLICT, "conflict", "Conflict")
                        .detail(remote.message.clone()),
                    ErrorCode::Unavailable => Self::new(
                        S::SERVICE_UNAVAILABLE,
                        "service-unavailable",
                        "Service unavailable",
                    )
                    .detail("a service behind the gateway is unavailable; retry later"),
                    // The service's internals stay in its own log.
                    ErrorCode::Internal => {
                        Self::new(S::BAD_GATEWAY, "service-failed", "Service failed")
                            .detail("a service behind the gateway failed to answer the request")
                    }
                }
            }
            Error::Call(CallError::Timeout { .. }) => Self::new(
                S::SERVICE_UNAVAILABLE,
                "service-timeout",
                "Service did not answer in time",
            )
            .detail("a service behind the gateway did not answer in time; retry later"),
            Error::Call(CallError::NoResponders { .. } | CallError::Transport { .. }) => Self::new(
                S::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            )
            .detail("a service behind the gateway is not reachable; retry later"),
            Error::Call(CallError::CircuitOpen {
                service,
                retry_after,
            }) => {
                let mut p = Self::new(
                    S::SERVICE_UNAVAILABLE,
                    "service-unavailable",
                    "Service unavailable",
                )
                .detail(format!(
                    "the {service} service is not answering; the gateway stopped asking it for a moment, retry later"
                ));
                // Whole seconds, never zero: the breaker probes again then.
                p.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u32);
                p
            }
            Error::DeadlineExceeded { .. } => {
                Self::new(S::GATEWAY_TIMEOUT, "deadline-exceeded", "Deadline exceeded").detail(
                    "the request did not complete within the gateway's deadline; retry later",
                )
            }
            Error::Call(CallError::BadReply { .. }) => {
                Self::new(S::BAD_GATEWAY, "bad-reply", "Bad reply from a service")
                    .detail("a service behind the gateway answered with an unreadable reply")
            }
            Error::Conflict(detail) => {
                Self::new(S::CONFLICT, "conflict", "Conflict").detail(detail.clone())
            }
            Error::NotFound(detail) => {
                Self::new(S::NOT_FOUND, "not-found", "Not found").detail(detail.clone())
            }
            Error::UnknownProducts(unknown) => {
                let mut p = Self::new(
                    S::UNPROCESSABLE_ENTITY,
                    "unknown-product",
                    "Unknown product",
                )
                .detail(err.to_string());
                p.errors = Some(
                    unknown
                        .iter()
                        .map(|u| InvalidParam {
                            name: format!("lines[{}].product_id", u.line),
                            reason: format!("no product with id {}", u.product_id),
                        })
                        .collect(),
                );
                p
            }
            Error::TooManyUnits {
                line, max, units, ..
            } => {
                let mut p = Self::new(
                    S::UNPROCESSABLE_ENTITY,
                    "too-many-units",
                    "Too many units of one product",
                )
                .detail(err.to_string());
                p.errors = Some(vec![InvalidParam {
                    name: format!("lines[{line}].quantity"),
                    reason: format!(
                        "the lines of this product add up to {units} units; at most {max}"
                    ),
                }]);
                p
            }
            Error::Invalid { field, reason } => {
                let mut p = Self::new(S::BAD_REQUEST, "invalid-request", "Invalid request")
                    .detail(format!("{field}: {reason}"));
                p.errors = Some(vec![InvalidParam {
                    name: (*field).to_owned(),
                    reason: (*reason).to_owned(),
                }]);
                p
            }
            Error::BodyShape {
                at,
                expected,
                found,
            } => {
                let mut p = Self::new(S::BAD_REQUEST, "invalid-request", "Invalid request")
                    .detail(err.to_string());
                p.errors = Some(vec![InvalidParam {
                    name: at.clone(),
                    reason: format!("expected {expected}, found {found}"),
                }]);
                p
            }
            Error::Publish(_) => Self::new(
                S::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            )
            .detail("the command could not be queued; retry later"),
            Error::Auth(auth) => {
                let (status, slug, title, error, extra) = match auth {
                    AuthError::InvalidToken(TokenError::IssuerUnavailable) => {
                        return Self::new(
                            S::SERVICE_UNAVAILABLE,
                            "issuer-unavailable",
                            "Token issuer unavailable",
                        )
                        .detail(auth.to_string());
                    }
                    AuthError::InvalidToken(_) => (
                        S::UNAUTHORIZED,
                        "invalid-token",
                        "Invalid access token",
                        "invalid_token",
                        None,
                    ),
                    AuthError::InsufficientScope(scope) => (
                        S::FORBIDDEN,
                        "insufficient-scope",
                        "Insufficient scope",
                        "insufficient_scope",
                        Some(format!("scope=\"{scope}\"")),
                    ),
                    AuthError::NotAUser => (
                        S::FORBIDDEN,
                        "forbidden",
                        "Forbidden",
                        "insufficient_scope",
                        None,
                    ),
                };
                let description = auth.to_string();
                let mut p = Self::new(status, slug, title).detail(description.clone());
                let mut params = vec![
                    format!("error=\"{error}\""),
                    format!("error_description=\"{description}\""),
                ];
                params.extend(extra);
                p.www_authenticate = Some(bearer_challenge(Some(&params.join(", "))));
                p
            }
            Error::RateLimited { retry_after } => {
                let mut p = Self::new(S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
                    .detail(format!(
                        "the rate limit of this route group is used up; retry in {retry_after}s"
                    ));
                p.retry_after = Some(*retry_after);
                p
            }
            Error::StoreUnavailable { .. } => Self::new(
                S::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
            )
            .detail(format!("{err}; retry later")),
            Error::PayloadTooLarge { .. } => Self::new(
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            )
            .detail(err.to_string()),
            Error::IdempotencyKeyMalformed => Self::new(
                S::BAD_REQUEST,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
            )
            .detail(err.to_string()),
            Error::IdempotencyKeyReused => Self::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail(err.to_string()),
            Error::IdempotencyInFlight => {
                Self::new(S::CONFLICT, "idempotency-key-in-use", "Request in progress")
                    .detail(err.to_string())
            }
            Error::OriginNotAllowed => {
                Self::new(S::FORBIDDEN, "origin-not-allowed", "Origin not allowed")
                    .detail(err.to_string())
            }
            Error::Bind { .. }
            | Error::Serve(_)
            | Error::Keys(_)
            | Error::HttpClient(_)
            | Error::Redis(_) => Self::new(S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

/// The field and the rule poem-openapi names when a body's value fails a
/// schema validator: "... field `url` verification failed. pattern(...)".
fn failed_validator(reason: &str) -> Option<(&str, &str)> {
    let rest = &reason[reason.find("field `")? + "field `".len()..];
    let (name, rest) = rest.split_once('`')?;
    let rule = rest.strip_prefix(" verification failed. ")?;
    let rule = rule.split_once('(').map_or(rule, |(name, _)| name);
    Some((name, rule))
}

/// The field poem-openapi names in an "unknown field `x`." parse error.
fn unknown_field(reason: &str) -> Option<&str> {
    let rest = &reason[reason.find("unknown field `")? + "unknown field `".len()..];
    rest.split_once('`').map(|(name, _)| name)
}

/// An RFC 6750 `Bearer` challenge in our realm, with `params` when given.
fn bearer_challenge(params: Option<&str>) -> String {
    match params {
        Some(params) => format!("Bearer realm=\"{REALM}\", {params}"),
        None => format!("Bearer realm=\"{REALM}\""),
    }
}

impl ResponseError for Error {
    fn status(&self) -> StatusCode {
        Problem::from(self).status_code()
    }

    fn as_response(&self) -> Response {
        Problem::from(self).into_response()
    }
}

/// The errors of an operation that needs an access token: [`Error`], and
/// the 401 and 403 answers documented for it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Guarded(pub Error);

impl<E: Into<Error>> From<E> for Guarded {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl ResponseError for Guarded {
    fn status(&self) -> StatusCode {
        self.0.status()
    }

    fn as_response(&self) -> Response {
        self.0.as_response()
    }
}

/// The extra answers of an operation that needs an access token.
#[derive(ApiResponse)]
#[allow(dead_code, reason = "only its OpenAPI metadata is used")]
enum DocumentedAuth {
    /// The access token is missing, malformed, expired, not yet valid, for
    /// another audience or issuer, or badly signed; `WWW-Authenticate` says why.
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(
        Json<Problem>,
        /// `Bearer realm="jetshop", error="invalid_token", error_description="..."`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The token lacks the scope the operation needs, or speaks for another caller.
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(
        Json<Problem>,
        /// `Bearer realm="jetshop", error="insufficient_scope", scope="..."`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
}

impl ApiResponse for Guarded {
    fn meta() -> MetaResponses {
        let mut meta = Documented::meta();
        let auth = DocumentedAuth::meta();
        // Keep the statuses in order: 400, 401, 403, 404, ...
        meta.responses.extend(auth.responses);
        meta.responses
            .sort_by_key(|r| r.status.map(|s| s.to_string()).unwrap_or_default());
        meta
    }

    fn register(registry: &mut Registry) {
        Documented::register(registry);
        DocumentedAuth::register(registry);
    }
}

/// The error responses an operation may answer with, for the OpenAPI document.
#[derive(ApiResponse)]
#[allow(dead_code, reason = "only its OpenAPI metadata is used")]
enum Documented {
    /// A parameter is invalid; `errors` says which.
    #[oai(status = 400, content_type = "application/problem+json")]
    BadRequest(Json<Problem>),
    /// The resource does not exist.
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// The request conflicts with the current state, or a request with the
    /// same `Idempotency-Key` is still running.
    #[oai(status = 409, content_type = "application/problem+json")]
    Conflict(Json<Problem>),
    /// The body is larger than the gateway accepts.
    #[oai(status = 413, content_type = "application/problem+json")]
    TooLarge(Json<Problem>),
    /// The body is not `application/json`.
    #[oai(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Json<Problem>),
    /// The `Idempotency-Key` was used before with another body, or the body
    /// is well-formed but cannot be acted on: it names something that does
    /// not exist (an unknown product), or more units of one product over
    /// its lines than an order may ask for; `errors` says where.
    #[oai(status = 422, content_type = "application/problem+json")]
    Unprocessable(Json<Problem>),
    /// The caller's rate limit is used up; retry after `Retry-After` seconds.
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyRequests(
        Json<Problem>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
    /// The gateway failed.
    #[oai(status = 500, content_type = "application/problem+json")]
    Internal(Json<Problem>),
    /// A service behind the gateway failed or answered badly.
    #[oai(status = 502, content_type = "application/problem+json")]
    BadGateway(Json<Problem>),
    /// A service behind the gateway is unavailable or too slow; retry after `Retry-After` seconds.
    #[oai(status = 503, content_type = "application/problem+json")]
    Unavailable(
        Json<Problem>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
    /// No answer within the request's overall deadline (`--request-deadline`).
    #[oai(status = 504, content_type = "application/problem+json")]
    GatewayTimeout(Json<Problem>),
}

impl ApiResponse for Error {
    fn meta() -> MetaResponses {
        Documented::meta()
    }

    fn register(registry: &mut Registry) {
        Documented::register(registry);
    }
}

/// Turn an error into its problem response, keeping what the routers
/// attached to it (the matched path pattern, for metrics). `pattern` is the
/// route the request matched, to name path parameters as documented.
pub fn respond(
    err: poem::Error,
    instance: &str,
    pattern: Option<(&PathPattern, &RouteTable)>,
) -> Response {
    let mut problem = Problem::from_poem(&err).at(instance);
    if let (Some((pattern, routes)), Some(errors)) = (pattern, problem.errors.as_mut()) {
        for e in errors {
            if let Some(name) = routes.param_name(&pattern.0, &e.name) {
                e.name = name.to_owned();
            }
        }
    }
    if problem.status >= 500 {
        tracing::warn!(error = %err, status = problem.status, "answering with a server error");
    }
    let no_route = err.is::<NotFoundError>();
    let mut resp = with_extensions_of(problem.into_response(), err.into_response());
    if no_route {
        unmatched(&mut resp);
    }
    resp
}

fn with_extensions_of(mut new: Response, mut old: Response) -> Response {
    *new.extensions_mut() = std::mem::take(old.extensions_mut());
    new
}

/// Whether an error response still needs converting (not JSON already,
/// nor an HTML page meant for a person, such as the OAuth login page).
fn needs_problem(resp: &Response) -> bool {
    let status = resp.status();
    (status.is_client_error() || status.is_server_error())
        && !resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json") || ct.starts_with("text/html"))
}

/// Convert a plain-text error response (what Poem answers for errors it
/// already turned into responses) into a problem with the same status.
async fn from_plain(mut resp: Response, instance: &str) -> Response {
    const MAX_DETAIL: usize = 512;
    let status = resp.status();
    let text = resp.take_body().into_string().await.unwrap_or_default();
    let text = text.trim();
    let mut problem = Problem::from_status(status).at(instance);
    let reason = status.canonical_reason().unwrap_or_default();
    if !status.is_server_error()
        && !text.is_empty()
        && text.len() <= MAX_DETAIL
        && !text.eq_ignore_ascii_case(reason)
    {
        problem.detail = Some(text.to_owned());
    }
    let mut out = with_extensions_of(problem.into_response(), resp);
    if status == StatusCode::NOT_FOUND {
        // A plain 404 comes from a router that found nothing to serve.
        unmatched(&mut out);
    }
    out
}

/// Forget the pattern of a response no route served: what a router leaves
/// on its "not found" is only the prefix of the nest it sits in.
fn unmatched(resp: &mut Response) {
    resp.extensions_mut().remove::<PathPattern>();
}

/// Middleware (for `around`): answer every error as a problem.
pub async fn catch<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let instance = req.original_uri().path().to_owned();
    let pattern = req.data::<PathPattern>().cloned();
    let routes = RouteTable::of(&req);
    match ep.call(req).await {
        Ok(resp) => {
            let resp = resp.into_response();
            Ok(if needs_problem(&resp) {
                from_plain(resp, &instance).await
            } else {
                resp
            })
        }
        Err(err) => {
            let not_allowed = err.is::<MethodNotAllowedError>();
            let mut resp = respond(err, &instance, pattern.as_ref().map(|p| (p, &*routes)));
            if not_allowed
                && let Some(allow) = routes.allowed_methods(&instance)
                && let Ok(value) = HeaderValue::from_str(&allow)
            {
                resp.headers_mut().insert(header::ALLOW, value);
            }
            Ok(resp)
        }
    }
}

/// poem-openapi operation transform: parameter errors become problems
/// before poem-openapi turns them into plain text.
pub fn operation<E: Endpoint + 'static>(ep: E) -> impl Endpoint {
    poem::EndpointExt::around(ep, catch)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jetshop_contracts::RpcError;

    use super::*;

    fn status_of(err: CallError) -> u16 {
        Problem::from(&Error::Call(err)).status
    }

    #[test]
    fn rpc_outcomes_map_to_statuses() {
        let subject = "x".to_owned();
        assert_eq!(status_of(CallError::Remote(RpcError::not_found("no"))), 404);
        assert_eq!(
            status_of(CallError::Remote(RpcError::bad_request("no"))),
            400
        );
        assert_eq!(status_of(CallError::Remote(RpcError::internal("db"))), 502);
        assert_eq!(
            status_of(CallError::Timeout {
                subject: subject.clone(),
                timeout: Duration::from_secs(1)
            }),
            503
        );
        assert_eq!(
            status_of(CallError::NoResponders {
                subject: subject.clone()
            }),
            503
        );
        assert_eq!(
            status_of(CallError::BadReply {
                subject,
                reason: "garbage".into()
            }),
            502
        );
    }

    #[test]
    fn a_failed_body_validator_names_its_field_and_rule() {
        let reason = "failed to parse \"NewWebhook\": field `url` verification failed. \
                      pattern(\"^https://\")";
        assert_eq!(failed_validator(reason), Some(("url", "pattern")));
        assert_eq!(failed_validator("unknown field `x`."), None);
        let p = Problem::from_poem(&poem::Error::from(ParseRequestPayloadError {
            reason: reason.to_owned(),
        }));
        let errors = p.errors.expect("the field is named");
        assert_eq!(errors[0].name, "url");
        assert_eq!(errors[0].reason, "does not meet the documented pattern");
    }

    #[test]
    fn internal_details_are_not_shown() {
        let p = Problem::from(&Error::Call(CallError::Remote(RpcError::internal(
            "password authentication failed for user app",
        ))));
        assert!(!p.detail.unwrap_or_default().contains("password"));
    }

    #[test]
    fn an_open_circuit_is_a_503_saying_when_to_come_back() {
        let p = Problem::from(&Error::Call(CallError::CircuitOpen {
            service: "orders".into(),
            retry_after: std::time::Duration::from_millis(4_200),
        }));
        assert!(p.detail.clone().unwrap_or_default().contains("orders"));
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let p = Problem::from(&Error::Call(CallError::NoResponders {
            subject: "x".into(),
        }));
        let resp = p.into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }

    #[test]
    fn parameter_errors_keep_their_structure() {
        let err: poem::Error = ParseParamError {
            name: "limit",
            reason: "too big".into(),
        }
        .into();
        let p = Problem::from_poem(&err).at("/v1/products");
        assert_eq!(p.status, 400);
        assert_eq!(p.instance.as_deref(), Some("/v1/products"));
        assert_eq!(
            p.errors,
            Some(vec![InvalidParam {
                name: "limit".into(),
                reason: "too big".into()
            }])
        );
    }

    #[test]
    fn router_errors_are_about_blank() {
        let p = Problem::from_poem(&NotFoundError.into());
        assert_eq!((p.status, p.problem_type.as_str()), (404, ABOUT_BLANK));
        assert_eq!(p.title, "Not Found");
        let p = Problem::from_poem(&MethodNotAllowedError.into());
        assert_eq!(p.status, 405);
        assert_eq!(p.retry_after, None);
    }
}
