//! The crate's one error type: why the gateway could not serve at all, or
//! why one request failed. How each becomes an HTTP response is decided in
//! [`crate::problem`], nowhere else.

use std::net::SocketAddr;

use jetshop_platform::rpc::CallError;

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
    /// A call to a service behind the gateway did not succeed.
    #[error(transparent)]
    Call(#[from] CallError),
}
