//! The users service's one error type, and its translation to an RPC error
//! reply. Nowhere else decides what a failure means to the outside. (The
//! service consumes no stream, so unlike the catalog it needs no consumer
//! translation.)
//!
//! No variant carries a password, a secret, a token or a hash: messages
//! reach callers and logs.

use jetshop_contracts::{ErrorCode, RpcError};
use sea_orm::{DbErr, SqlErr};

/// The one answer to every failed credential check, whatever the cause
/// (unknown email, wrong password), so callers cannot tell them apart.
pub const BAD_CREDENTIALS: &str = "invalid email or password";
/// The one answer to every failed client authentication.
pub const BAD_CLIENT: &str = "invalid client credentials";
/// A refresh token that cannot be used (unknown, expired, revoked, another client's).
pub const BAD_REFRESH: &str = "refresh token is invalid, expired or revoked";
/// A rotated refresh token presented again.
pub const REFRESH_REUSE: &str = "refresh token reuse detected; the session is revoked";

/// Everything the users service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule (malformed email, weak password, ...): the sender must fix it.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Another account already has this email (in any case).
    #[error("an account with this email already exists")]
    EmailTaken,
    /// No account has this id.
    #[error("user {0} not found")]
    UserNotFound(uuid::Uuid),
    /// No OAuth client has this id.
    #[error("OAuth client {0:?} not found")]
    ClientNotFound(String),
    /// The client id is taken.
    #[error("OAuth client {0:?} already exists")]
    ClientExists(String),
    /// The authorization code cannot be redeemed.
    #[error("authorization code is unknown, expired, already redeemed or issued to another client")]
    CodeNotRedeemable,
    /// A grant with this hash is already stored.
    #[error("a {0} with this hash is already stored")]
    DuplicateGrant(&'static str),
    /// The caller could not prove who it is; the message is one of the
    /// constants above, the same for every cause it covers.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Someone else changed the row meanwhile; retrying will work.
    #[error("user {0} changed concurrently")]
    Conflict(uuid::Uuid),
    /// A setting is invalid; the process should stop with this line.
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

    /// Map an insert's database error: a unique violation becomes `taken`
    /// (a concurrent writer got in between our check and the insert).
    pub fn from_insert(err: DbErr, taken: Self) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => taken,
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
            Error::UserNotFound(_) | Error::ClientNotFound(_) | Error::CodeNotRedeemable => {
                RpcError::not_found(message)
            }
            Error::Unauthorized(_) => RpcError::new(ErrorCode::Unauthorized, message),
            Error::EmailTaken
            | Error::ClientExists(_)
            | Error::DuplicateGrant(_)
            | Error::Conflict(_) => RpcError::new(ErrorCode::Conflict, message),
            Error::Db(_) | Error::Platform(_) => RpcError::new(ErrorCode::Unavailable, message),
            Error::Config(_) | Error::Internal(_) => RpcError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_lands_on_the_code_its_caller_acts_on() {
        let code = |e: Error| RpcError::from(e).code;
        assert_eq!(code(Error::invalid("email", "x")), ErrorCode::BadRequest);
        assert_eq!(code(Error::EmailTaken), ErrorCode::Conflict);
        assert_eq!(code(Error::CodeNotRedeemable), ErrorCode::NotFound);
        assert_eq!(
            code(Error::Unauthorized(BAD_CREDENTIALS)),
            ErrorCode::Unauthorized
        );
        let e = RpcError::from(Error::invalid("password", "too short"));
        assert_eq!(e.details.unwrap()["field"], "password");
    }
}
