//! The platform's one error type, classified by what the caller can do.

use std::time::Duration;

/// Everything the platform runtime can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid; the process should stop with this line.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Could not reach NATS in time.
    #[error("cannot connect to NATS at {url} within {timeout:?}: {source}")]
    Connect {
        /// Where we tried.
        url: String,
        /// How long we tried.
        timeout: Duration,
        /// The last failure.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The NATS server lacks features we rely on.
    #[error(
        "NATS server {version} is too old: jetshop needs 2.10 or newer (JetStream multi-filter consumers, backoff)"
    )]
    ServerTooOld {
        /// What the server reported.
        version: String,
    },
    /// A JetStream administrative call failed.
    #[error("JetStream {what}: {source}")]
    JetStream {
        /// What we were doing.
        what: String,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
    /// Publishing failed or was not acknowledged.
    #[error("publish to {subject}: {source}")]
    Publish {
        /// Where to.
        subject: String,
        /// Why not.
        #[source]
        source: async_nats::Error,
    },
    /// A database call failed.
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// Encoding or decoding a payload failed.
    #[error(transparent)]
    Codec(#[from] jetshop_contracts::CodecError),
    /// Binding or serving a socket failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A task of a service panicked (a bug); the service stops.
    #[error("{task} panicked: {source}")]
    Panicked {
        /// Which task.
        task: &'static str,
        /// The panic, as tokio reports it.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Telemetry could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
}

impl Error {
    /// Whether this is a database infrastructure failure that retrying
    /// later can fix (see [`crate::db::is_transient`]).
    pub fn is_transient_db(&self) -> bool {
        matches!(self, Self::Db(e) if crate::db::is_transient(e))
    }

    /// Wrap a JetStream administrative failure.
    pub fn jetstream(what: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Self::JetStream {
            what: what.into(),
            source: source.into(),
        }
    }
}
