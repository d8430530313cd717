//! The catalog's one error type, and its two translations: to an RPC error
//! reply and to a consumer outcome (retry or dead-letter). Nowhere else
//! decides what a failure means to the outside.

use jetshop_contracts::RpcError;
use jetshop_platform::consumer::HandlerError;
use sea_orm::{DbErr, SqlErr};

/// Everything the catalog can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule (bad sku, negative price, ...): the sender must fix it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No product has this id.
    #[error("product {0} not found")]
    NotFound(uuid::Uuid),
    /// Another product already has this sku.
    #[error("sku {0} is already taken by another product")]
    DuplicateSku(String),
    /// The product has a different sku than a repeated create says.
    #[error("product {0} already exists with different content")]
    AlreadyExists(uuid::Uuid),
    /// Taking this much stock would make it negative.
    #[error("stock of product {id} is {stock}; cannot remove {requested}")]
    InsufficientStock {
        /// The product.
        id: uuid::Uuid,
        /// Units on hand.
        stock: i64,
        /// Units asked for.
        requested: i64,
    },
    /// No stock is reserved for this order.
    #[error("no reservation for order {0}")]
    ReservationNotFound(uuid::Uuid),
    /// The order's reservation was released; it can no longer be committed.
    #[error("the reservation of order {0} was released; it cannot be committed")]
    ReservationReleased(uuid::Uuid),
    /// Someone else changed the product meanwhile; retrying will work.
    #[error("product {0} changed concurrently")]
    Conflict(uuid::Uuid),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The runtime failed (NATS, streams, outbox).
    #[error(transparent)]
    Platform(#[from] jetshop_platform::Error),
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

    /// Map an insert's database error. A unique violation here means a
    /// concurrent writer got in between our checks and the insert: a retry
    /// sees its row and decides (no-op or duplicate sku).
    pub fn from_insert(err: DbErr, id: uuid::Uuid) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict(id),
            _ => Self::Db(err),
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
            Error::NotFound(_) | Error::ReservationNotFound(_) => RpcError::not_found(message),
            Error::DuplicateSku(_)
            | Error::AlreadyExists(_)
            | Error::InsufficientStock { .. }
            | Error::ReservationReleased(_)
            | Error::Conflict(_) => RpcError::new(jetshop_contracts::ErrorCode::Conflict, message),
            Error::Db(_) | Error::Platform(_) => {
                RpcError::new(jetshop_contracts::ErrorCode::Unavailable, message)
            }
            Error::Internal(_) => RpcError::internal(message),
        }
    }
}

impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        match err {
            // Retrying cannot fix these: dead-letter with the reason.
            Error::Invalid { .. }
            | Error::NotFound(_)
            | Error::DuplicateSku(_)
            | Error::AlreadyExists(_)
            | Error::InsufficientStock { .. }
            | Error::ReservationNotFound(_)
            | Error::ReservationReleased(_)
            | Error::Internal(_) => HandlerError::permanent(err),
            Error::Conflict(_) => HandlerError::transient(err),
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
}
