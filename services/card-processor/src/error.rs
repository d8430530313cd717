//! The processor's one error type. Business refusals (declines, bad
//! requests) are not errors here: they are answers
//! ([`crate::domain::Refusal`]). What is left is the processor failing, which
//! its API answers with a 5xx `api_error` (see [`crate::api`], the one place
//! that maps it) and never stores for replay.

use std::net::SocketAddr;

use sea_orm::{DbErr, SqlErr};

/// Everything the card processor can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A concurrent request wrote first (same payment, same key): the
    /// transaction is retried and sees its write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] DbErr),
    /// The runtime helpers failed (database connection).
    #[error(transparent)]
    Platform(#[from] jetshop_platform::Error),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(#[source] std::io::Error),
    /// A bug or an impossible stored state.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Map a write's database error: a unique violation means a concurrent
    /// writer got in first, which a retry resolves by seeing its row.
    pub fn from_write(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(reason)) => Self::Conflict(reason),
            _ => Self::Db(err),
        }
    }

    /// Whether running the transaction again may succeed: a conflict
    /// (a concurrent writer got in first), or what the platform's one
    /// classifier calls transient (a busy SQLite, a PostgreSQL
    /// serialization failure or deadlock, the pool exhausted, the server
    /// restarting).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::Db(err) => {
                matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
                    || jetshop_platform::db::is_transient(err)
            }
            _ => false,
        }
    }
}
