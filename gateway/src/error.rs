//! The crate's one error type: why the gateway could not serve at all, or
//! why one request failed, with the token, credential and key failures it
//! wraps. This is the bottom layer: it imports nothing of the crate, so
//! every other module may use it. How each becomes an HTTP response is
//! decided in `http::problem`, nowhere else.

use std::{net::SocketAddr, path::PathBuf};

use jetshop_platform::rpc::CallError;
use jsonwebtoken::errors::ErrorKind;

/// Everything the gateway can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Where we tried.
        addr: SocketAddr,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("HTTP server: {0}")]
    Serve(#[source] std::io::Error),
    /// The request took longer than its overall deadline.
    #[error("no answer within the request deadline of {after:?}")]
    DeadlineExceeded {
        /// The deadline.
        after: std::time::Duration,
    },
    /// A call to a service behind the gateway did not succeed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A command could not be handed to JetStream.
    #[error("cannot send the command: {0}")]
    Publish(#[source] jetshop_platform::Error),
    /// The request's credentials are missing, invalid or not enough.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The OAuth signing keys could not be loaded.
    #[error("OAuth signing keys: {0}")]
    Keys(#[from] KeyError),
    /// The HTTP client for the external issuer could not be built.
    #[error("HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// A request field is invalid in a way the schema cannot say.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A body value of another JSON type than its schema says (a boolean
    /// where a string is documented, `null` for an optional string).
    #[error("{at}: expected {expected}, found {found}")]
    BodyShape {
        /// Where in the body, as a path (`lines[0].quantity`), or `body`.
        at: String,
        /// What the schema says.
        expected: &'static str,
        /// What was sent.
        found: &'static str,
    },
    /// The write would clash with what exists (a taken sku, an existing id),
    /// or the resource's state does not allow it (cancelling a confirmed order).
    #[error("{0}")]
    Conflict(String),
    /// The resource does not exist, or the caller may not know that it does
    /// (another customer's order): both answer the same 404.
    #[error("{0}")]
    NotFound(String),
    /// The body names products the catalog does not have.
    #[error("unknown product(s): {}", unknown_list(.0))]
    UnknownProducts(Vec<UnknownProduct>),
    /// The lines of one product add up to more units than an order may ask
    /// for (each line alone is within the schema's bound).
    #[error("{units} units of product {product_id} over all its lines; at most {max}")]
    TooManyUnits {
        /// The index of the first line naming the product.
        line: usize,
        /// The product.
        product_id: uuid::Uuid,
        /// What its lines add up to.
        units: i64,
        /// The most one order may ask for.
        max: i64,
    },
    /// Redis, for rate limits and idempotency keys, is configured wrongly.
    #[error("Redis: {0}")]
    Redis(#[source] redis::RedisError),
    /// The caller used up its rate limit.
    #[error("rate limit exceeded; retry in {retry_after}s")]
    RateLimited {
        /// Seconds until a request may pass again.
        retry_after: u32,
    },
    /// A store this request needs (Redis) is unreachable.
    #[error("{what} is unavailable")]
    StoreUnavailable {
        /// Which store.
        what: &'static str,
    },
    /// The request body is larger than the gateway accepts.
    #[error("request body larger than {max} bytes")]
    PayloadTooLarge {
        /// The limit.
        max: usize,
    },
    /// An `Idempotency-Key` that is not 1 to 255 visible ASCII characters.
    #[error("Idempotency-Key must be 1 to 255 visible ASCII characters")]
    IdempotencyKeyMalformed,
    /// The `Idempotency-Key` was used before for a different request.
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still running.
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInFlight,
    /// A CORS preflight from an origin that is not allowed.
    #[error("cross-origin requests from this origin are not allowed")]
    OriginNotAllowed,
}

/// A line of a request that names a product the catalog does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownProduct {
    /// Where in the request: the index of the line in `lines`.
    pub line: usize,
    /// The product id it names.
    pub product_id: uuid::Uuid,
}

fn unknown_list(unknown: &[UnknownProduct]) -> String {
    unknown
        .iter()
        .map(|u| u.product_id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why an authenticated request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The bearer token is not acceptable (401, `invalid_token`).
    #[error("{0}")]
    InvalidToken(#[from] TokenError),
    /// The token lacks a scope the operation needs (403, `insufficient_scope`).
    #[error("this operation needs the `{0}` scope")]
    InsufficientScope(&'static str),
    /// The token speaks for a client, not an account (403).
    #[error("this operation needs a token issued to an account")]
    NotAUser,
}

/// Why a token was refused. Each says so in a sentence safe to show the
/// client (never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or a claim has the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// `alg` is none, HMAC or otherwise not accepted.
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// No published key has this `kid`.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the issuer we trust.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` does not name us.
    #[error("the token is meant for another audience")]
    Audience,
    /// A required claim is missing.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The token is a JWT of another kind (an ID token, say).
    #[error("the token is not an access token")]
    Type,
    /// The external issuer's keys could not be fetched.
    #[error("the token issuer's keys are unavailable")]
    IssuerUnavailable,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(_) => Self::MissingClaim,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => Self::Algorithm,
            _ => Self::Malformed,
        }
    }
}

/// Why keys could not be loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold an Ed25519 PKCS#8 PEM private key.
    #[error("{path}: not an Ed25519 PKCS#8 PEM private key")]
    Format {
        /// The file.
        path: PathBuf,
    },
}
