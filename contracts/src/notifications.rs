//! The notifications context's messages: webhook deliveries, the facts it
//! publishes about what it delivered, and the webhook registry's RPC.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{message::wire, subjects::notifications as subj};

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An email over SMTP (or an `.eml` file in development).
    Email,
    /// A signed HTTP POST to the user's webhook.
    Webhook,
}

/// Command: POST one event to a user's webhook. Retried with backoff on
/// failure and dead-lettered after the last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliverWebhook {
    /// The delivery (one per source event and webhook).
    pub delivery_id: Uuid,
    /// The user whose webhook it is.
    pub user_id: Uuid,
    /// The event's type (`orders.confirmed`), sent as `Jetshop-Event`.
    pub event_type: String,
    /// The JSON body to POST, exactly as signed.
    pub body: String,
}

/// Event: a notification was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationSent {
    /// The delivery.
    pub notification_id: Uuid,
    /// How.
    pub channel: Channel,
    /// What about (`order-confirmed`, `order-cancelled`, `welcome`).
    pub kind: String,
    /// The user it was for.
    pub user_id: Uuid,
    /// The order it was about, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// When.
    pub sent_at: DateTime<Utc>,
}

/// Event: a notification could not be delivered (after every retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationFailed {
    /// The delivery.
    pub notification_id: Uuid,
    /// How.
    pub channel: Channel,
    /// What about.
    pub kind: String,
    /// The user it was for.
    pub user_id: Uuid,
    /// The order it was about, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// Why.
    pub reason: String,
}

/// A user's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Webhook {
    /// The user.
    pub user_id: Uuid,
    /// Where events are POSTed (`https://...`, or `http://` to loopback).
    pub url: String,
    /// The HMAC-SHA256 key; only [`SetWebhook`]'s reply carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// RPC: register or replace a user's webhook; a new secret is generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    /// The user.
    pub user_id: Uuid,
    /// Where to POST.
    pub url: String,
}

/// RPC: fetch a user's webhook (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetWebhook {
    /// The user.
    pub user_id: Uuid,
}

/// RPC: remove a user's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeleteWebhook {
    /// The user.
    pub user_id: Uuid,
}

/// RPC reply: whether something was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookDeleted {
    /// `false` when the user had no webhook.
    pub deleted: bool,
}

wire!(DeliverWebhook, "notifications.deliver-webhook", command subj::DELIVER_WEBHOOK);
wire!(NotificationSent, "notifications.sent", event subj::SENT);
wire!(NotificationFailed, "notifications.failed", event subj::FAILED);
wire!(Webhook, "notifications.webhook");
wire!(SetWebhook, "notifications.set-webhook", rpc subj::RPC_WEBHOOK_SET => Webhook);
wire!(GetWebhook, "notifications.get-webhook", rpc subj::RPC_WEBHOOK_GET => Webhook);
wire!(DeleteWebhook, "notifications.delete-webhook", rpc subj::RPC_WEBHOOK_DELETE => WebhookDeleted);
wire!(WebhookDeleted, "notifications.webhook-deleted");
