//! Runs the long-lived parts of a process (gateway, services, admin server)
//! side by side, and stops them in order.
//!
//! Each part gets its own cancellation token. The supervisor waits for the
//! shutdown token or for any part to stop on its own (which is always a
//! failure: parts run until told to stop). Then it cancels the parts in the
//! order they were added, waiting for each to drain before the next, so the
//! gateway stops taking requests before the services behind it go away.

use std::{future::Future, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

struct Part {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A set of running parts, stopped in insertion order.
pub struct Supervisor {
    parts: Vec<Part>,
    exited_tx: mpsc::UnboundedSender<&'static str>,
    exited_rx: mpsc::UnboundedReceiver<&'static str>,
}

impl Supervisor {
    /// An empty supervisor.
    pub fn new() -> Self {
        let (exited_tx, exited_rx) = mpsc::unbounded_channel();
        Self {
            parts: Vec::new(),
            exited_tx,
            exited_rx,
        }
    }

    /// Start a part: `start` receives the token that tells it to drain.
    pub fn spawn<F, Fut, E>(&mut self, name: &'static str, start: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let stop = CancellationToken::new();
        let fut = start(stop.clone());
        let exited = self.exited_tx.clone();
        let task = tokio::spawn(async move {
            let result = fut.await.map_err(Into::into);
            let _ = exited.send(name);
            result
        });
        self.parts.push(Part { name, stop, task });
    }

    /// Run until `shutdown` or until a part stops by itself, then stop every
    /// part in order, giving each `drain` to finish. Returns the first
    /// failure, if any.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) -> anyhow::Result<()> {
        let early = tokio::select! {
            _ = shutdown.cancelled() => None,
            Some(name) = self.exited_rx.recv() => Some(name),
        };
        let mut first_error: Option<anyhow::Error> = None;
        for part in self.parts {
            part.stop.cancel();
            let mut task = part.task;
            let outcome = match tokio::time::timeout(drain, &mut task).await {
                Ok(Ok(Ok(()))) if early == Some(part.name) => {
                    Err(anyhow::anyhow!("stopped unexpectedly"))
                }
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(anyhow::anyhow!("panicked: {join}")),
                Err(_) => {
                    task.abort();
                    Err(anyhow::anyhow!("did not drain within {drain:?}"))
                }
            };
            match outcome {
                Ok(()) => tracing::info!(part = part.name, "stopped"),
                Err(err) => {
                    let err = err.context(part.name);
                    tracing::error!(error = format!("{err:#}"), "stopped with an error");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
