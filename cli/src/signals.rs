//! Ctrl-C and SIGTERM, turned into a cancellation token.
//!
//! Signal handling lives here and nowhere else: everything below `main`
//! takes a `CancellationToken` and drains when it is cancelled. The first
//! signal asks for a graceful shutdown; a second one exits at once (child
//! processes still die with us, see `nats_child`).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Install the handlers and return a token cancelled by the first SIGINT or
/// SIGTERM. Call it early: until it runs, a signal kills the process outright.
pub fn shutdown_token() -> anyhow::Result<CancellationToken> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!(
            signal = name,
            "shutting down (send it again to exit at once)"
        );
        cancel.cancel();
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        eprintln!("second signal: exiting without draining");
        std::process::exit(130);
    });
    Ok(token)
}
