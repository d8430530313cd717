//! The one error shape an RPC endpoint answers with. The same body travels
//! in the requested encoding; the NATS micro headers carry the code and
//! message too, so `nats req` shows them.

use serde::{Deserialize, Serialize};

/// Who must act on an error. Gateways map these to HTTP statuses in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or invalid: the caller must change it.
    BadRequest,
    /// The caller could not prove who it is (bad password, bad client secret).
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// The request conflicts with current state (duplicate, version).
    Conflict,
    /// A dependency is unavailable: retry later.
    Unavailable,
    /// Our fault.
    Internal,
}

impl ErrorCode {
    /// The numeric code used in the `Nats-Service-Error-Code` header (HTTP-like).
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The code for a `Nats-Service-Error-Code` value.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 422 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            409 => Self::Conflict,
            503 | 504 => Self::Unavailable,
            _ => Self::Internal,
        }
    }
}

/// An RPC error reply: a code, a human message and optional structured details.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, thiserror::Error,
)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    /// Who must act.
    pub code: ErrorCode,
    /// What went wrong, for a human.
    pub message: String,
    /// Machine-readable details (e.g. the offending field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl RpcError {
    /// An error with no details.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The caller sent something invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// Something on our side failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl crate::Message for RpcError {
    const TYPE: &'static str = "rpc-error";
    const VERSION: u32 = 1;
}
