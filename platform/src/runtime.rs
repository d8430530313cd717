//! What a service's `run` receives from its caller besides its own
//! settings: the shared NATS connection, stream sizing and the health
//! registry. Under `jetshop up` every service gets the same one; under
//! `jetshop run <svc>` it is built for that service alone.

use async_nats::{Client, jetstream};
use jetshop_contracts::streams::StreamSpec;

use crate::{Error, health::Health};

/// Process-wide dependencies handed to each service.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The NATS connection.
    pub nats: Client,
    /// JetStream replicas per stream (1 on one server, 3 in a cluster).
    pub stream_replicas: u8,
    /// Where services register readiness checks.
    pub health: Health,
}

impl Runtime {
    /// A runtime around a connected client.
    pub fn new(nats: Client, stream_replicas: u8) -> Self {
        Self {
            nats,
            stream_replicas,
            health: Health::default(),
        }
    }

    /// A JetStream context on the connection.
    pub fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.nats.clone())
    }

    /// Create or update the given streams.
    pub async fn provision(&self, specs: &[StreamSpec]) -> Result<(), Error> {
        crate::nats::provision_streams(&self.jetstream(), specs, self.stream_replicas).await
    }
}
