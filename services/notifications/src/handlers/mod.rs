//! The notifications service's NATS edges: the event consumers that turn
//! orders and users facts into emails (and webhook deliveries), the
//! consumer that calls webhooks, and the webhook registry's RPC.

pub mod events;
pub mod rpc;
pub mod webhooks;

use jetshop_platform::outbox::OutboxNotifier;
use lettre::message::Mailbox;
use sea_orm::DatabaseConnection;

use crate::{mailer::Mailer, webhook::WebhookClient};

/// What every handler needs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Deps {
    /// The service's database.
    pub db: DatabaseConnection,
    /// Wakes the outbox relay after a commit.
    pub outbox: OutboxNotifier,
    /// Sends email.
    pub mailer: Mailer,
    /// The `From` of every email.
    pub from: Mailbox,
    /// Calls webhooks.
    pub webhooks: WebhookClient,
    /// Longest time one webhook call may take.
    pub webhook_timeout: std::time::Duration,
    /// The consumers' `max_deliver` (to know a message's last attempt).
    pub max_deliver: i64,
}
