//! The orders service's one error type and its translations: to an RPC
//! error reply and to a consumer outcome (retry or dead-letter).

use jetshop_contracts::{ErrorCode, RpcError};
use jetshop_platform::consumer::HandlerError;
use sea_orm::DbErr;
use uuid::Uuid;

/// Everything the orders service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule: the sender must fix it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No order has this id.
    #[error("order {0} not found")]
    NotFound(Uuid),
    /// No saga drives this order.
    #[error("no saga for order {0}")]
    SagaNotFound(Uuid),
    /// The saga is not in a state the operation applies to.
    #[error("saga of order {order_id} is {state}: {reason}")]
    SagaState {
        /// The order.
        order_id: Uuid,
        /// Its saga's state.
        state: String,
        /// Why that does not fit.
        reason: &'static str,
    },
    /// Another instance changed the order meanwhile; retrying will work.
    #[error("order {0} changed concurrently")]
    Conflict(Uuid),
    /// The catalog could not be asked (down, slow): retrying may work.
    #[error("catalog unavailable: {0}")]
    CatalogUnavailable(String),
    /// A stored row does not decode: a bug or a hand-edited database.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The runtime failed (NATS, streams, outbox).
    #[error(transparent)]
    Platform(#[from] jetshop_platform::Error),
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
            Error::NotFound(_) | Error::SagaNotFound(_) => RpcError::not_found(message),
            Error::SagaState { .. } | Error::Conflict(_) => {
                RpcError::new(ErrorCode::Conflict, message)
            }
            Error::CatalogUnavailable(_) => RpcError::new(ErrorCode::Unavailable, message),
            // The database is down or saturated: the caller may retry.
            Error::Db(ref e) if jetshop_platform::db::is_transient(e) => {
                tracing::warn!(error = %message, "orders rpc: database unavailable");
                RpcError::new(ErrorCode::Unavailable, "database unavailable; retry later")
            }
            Error::Platform(ref e) if e.is_transient_db() => {
                tracing::warn!(error = %message, "orders rpc: database unavailable");
                RpcError::new(ErrorCode::Unavailable, "database unavailable; retry later")
            }
            Error::Corrupt(_) | Error::Db(_) | Error::Platform(_) => {
                tracing::error!(error = %message, "orders rpc failed");
                RpcError::internal("internal error")
            }
        }
    }
}

impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        match err {
            // Retrying cannot fix these: dead-letter with the reason.
            Error::Invalid { .. }
            | Error::NotFound(_)
            | Error::SagaNotFound(_)
            | Error::SagaState { .. }
            | Error::Corrupt(_) => HandlerError::permanent(err),
            Error::Conflict(_) | Error::CatalogUnavailable(_) => HandlerError::transient(err),
            // A database that is down or saturated is retried until it is
            // back (never dead-lettered); any other database error as before.
            Error::Db(e) => HandlerError::from(e),
            Error::Platform(e) => HandlerError::from(e),
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

    #[test]
    fn an_rpc_caller_is_told_to_retry_while_the_database_is_down() {
        let down = RpcError::from(Error::Db(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert_eq!(down.code, ErrorCode::Unavailable);
        let bug = RpcError::from(Error::Db(DbErr::Type("bad column".into())));
        assert_eq!(bug.code, ErrorCode::Internal);
    }
}
