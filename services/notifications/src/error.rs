//! The notifications service's one error type, and its translation to an
//! RPC error reply. What a failed delivery means to a consumer (retry or
//! dead-letter) is decided by [`crate::delivery::SendError`], which knows
//! the channel's rules.

use jetshop_contracts::{ErrorCode, RpcError};
use jetshop_platform::consumer::HandlerError;
use sea_orm::DbErr;

/// Everything the notifications service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the process should stop with this line.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The input breaks a rule (a webhook URL that is not https): the sender must fix it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The user has no webhook.
    #[error("user {0} has no webhook")]
    WebhookNotFound(uuid::Uuid),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The runtime failed (NATS, streams, outbox).
    #[error(transparent)]
    Platform(#[from] jetshop_platform::Error),
    /// An email could not be built (an address that does not parse).
    #[error("email: {0}")]
    Email(#[from] lettre::error::Error),
    /// A bug or an impossible state.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// A validation failure on `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<Error> for RpcError {
    fn from(err: Error) -> Self {
        let message = err.to_string();
        match err {
            Error::Invalid { field, .. } => {
                RpcError::bad_request(message).with_details(serde_json::json!({ "field": field }))
            }
            Error::WebhookNotFound(_) => RpcError::not_found(message),
            Error::Db(_) | Error::Platform(_) => RpcError::new(ErrorCode::Unavailable, message),
            Error::Config(_) | Error::Email(_) | Error::Internal(_) => RpcError::internal(message),
        }
    }
}

impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        match err {
            // The database or NATS may be back in a moment; a database
            // that is down or saturated is retried until it is back (never
            // dead-lettered).
            Error::Db(e) => HandlerError::from(e),
            Error::Platform(e) => HandlerError::from(e),
            // Retrying the same message cannot fix these.
            Error::Config(_)
            | Error::Invalid { .. }
            | Error::WebhookNotFound(_)
            | Error::Email(_)
            | Error::Internal(_) => HandlerError::permanent(err),
        }
    }
}

#[cfg(test)]
mod db_failure_tests {
    use super::*;
    use jetshop_platform::consumer::HandlerError;
    use sea_orm::{ConnAcquireErr, DbErr};

    #[test]
    fn a_database_that_is_down_is_unavailable_other_database_errors_stay_transient() {
        let down = HandlerError::from(Error::Db(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert!(matches!(down, HandlerError::Unavailable(_)), "{down:?}");
        let down = HandlerError::from(Error::Platform(jetshop_platform::Error::Db(
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        )));
        assert!(matches!(down, HandlerError::Unavailable(_)), "{down:?}");
        let other = HandlerError::from(Error::Db(DbErr::Type("bad column".into())));
        assert!(matches!(other, HandlerError::Transient(_)), "{other:?}");
    }
}
