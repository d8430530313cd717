//! RFC 6749 section 5.2 error responses of the token and revocation
//! endpoints: `{"error", "error_description"}` as JSON with
//! `Cache-Control: no-store`. This is the OAuth wire format, which clients
//! parse by contract; everything else the gateway answers with is a
//! problem document ([`crate::http::problem`]).

use jetshop_contracts::ErrorCode;
use jetshop_platform::rpc::CallError;
use poem::{IntoResponse, Response, http::StatusCode};

/// An OAuth error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// HTTP status: 400, 401 (`invalid_client`), 500 or 503.
    pub status: StatusCode,
    /// The RFC 6749 error code.
    pub error: &'static str,
    /// A sentence for the developer; never a credential.
    pub description: String,
    /// Answer a failed HTTP Basic client authentication with a `Basic` challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    /// `invalid_request` (400).
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// `invalid_client` (401).
    pub fn invalid_client(basic: bool) -> Self {
        Self {
            basic_challenge: basic,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
            )
        }
    }

    /// `invalid_grant` (400).
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// `unauthorized_client` (400).
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    /// `unsupported_grant_type` (400).
    pub fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    /// `invalid_scope` (400).
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// A failed call to the users service: a refusal becomes `rejected`, an
    /// outage `temporarily_unavailable` (503), anything else `server_error`.
    pub fn from_call(err: &CallError, rejected: Self) -> Self {
        match err {
            CallError::Remote(remote) => match remote.code {
                ErrorCode::NotFound
                | ErrorCode::Unauthorized
                | ErrorCode::Forbidden
                | ErrorCode::BadRequest
                | ErrorCode::Conflict => rejected,
                ErrorCode::Unavailable => Self::unavailable(),
                ErrorCode::Internal => Self::server_error(err),
            },
            CallError::Timeout { .. }
            | CallError::NoResponders { .. }
            | CallError::Transport { .. }
            | CallError::CircuitOpen { .. } => Self::unavailable(),
            CallError::BadReply { .. } => Self::server_error(err),
        }
    }

    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the users service is unavailable; retry later",
        )
    }

    fn server_error(err: &CallError) -> Self {
        tracing::error!(error = %err, "the users service failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the authorization server failed",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut resp = super::no_store(
            Response::builder()
                .status(self.status)
                .content_type("application/json")
                .body(body.to_string()),
        );
        if self.basic_challenge {
            resp.headers_mut().insert(
                poem::http::header::WWW_AUTHENTICATE,
                poem::http::HeaderValue::from_static("Basic realm=\"jetshop\""),
            );
        }
        resp
    }
}
