//! The users service's NATS edge: the RPC endpoints ([`rpc`]) and the
//! operations behind them ([`accounts`], [`oauth`]).

pub mod accounts;
pub mod oauth;
pub mod rpc;

use jetshop_platform::outbox::OutboxNotifier;
use sea_orm::DatabaseConnection;

use crate::passwords::Hasher;

/// What every operation needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The users' database.
    pub db: DatabaseConnection,
    /// Password and secret hashing.
    pub hasher: Hasher,
    /// Wakes the outbox relay after a commit; `None` outside the service
    /// (the CLI), where the running service's relay finds the rows by polling.
    pub outbox: Option<OutboxNotifier>,
}

impl Ctx {
    fn committed(&self) {
        if let Some(n) = &self.outbox {
            n.notify();
        }
    }
}
