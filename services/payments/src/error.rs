//! The payments service's one error type, and its one translation to a
//! consumer outcome (retry or dead-letter). Nowhere else decides what a
//! failure means to the outside.

use jetshop_platform::consumer::HandlerError;
use sea_orm::{DbErr, SqlErr};

use crate::provider::ProviderError;

/// Everything the payments service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command breaks a rule (zero amount, bad currency, ...): the sender must fix it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command can never apply to this order's payment (capture of a
    /// voided intent, void of a captured one, ...).
    #[error("order {order_id}: {reason}")]
    Refused {
        /// The order.
        order_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
    /// The command cannot apply yet (the authorization is in progress, or
    /// the intent changed concurrently): retrying will work.
    #[error("order {order_id}: {reason}")]
    NotYet {
        /// The order.
        order_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
    /// The provider failed or refused an operation.
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
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

    /// Map a write's database error: a unique violation means a concurrent
    /// writer got in first (another delivery for the same order), which a
    /// retry resolves by seeing its row.
    pub fn from_write(err: DbErr, order_id: uuid::Uuid) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::NotYet {
                order_id,
                reason: "the payment intent was changed concurrently".into(),
            },
            _ => Self::Db(err),
        }
    }
}

impl From<Error> for HandlerError {
    fn from(err: Error) -> Self {
        match err {
            // Retrying cannot fix these: dead-letter with the reason.
            Error::Invalid { .. }
            | Error::Refused { .. }
            | Error::Config(_)
            | Error::Internal(_)
            | Error::Provider(ProviderError::Declined { .. }) => HandlerError::permanent(err),
            Error::NotYet { .. }
            | Error::Provider(ProviderError::Transient(_) | ProviderError::Timeout) => {
                HandlerError::transient(err)
            }
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
