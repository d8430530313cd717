//! `/v1/me/webhook`: the caller's webhook, where the notifications service
//! POSTs the caller's order events (signed with HMAC-SHA256 over the
//! timestamp and body, with the secret shown once when it is set).
//!
//! The notifications service owns the rules (which URLs are acceptable)
//! and answers over its `notifications.rpc.webhook.*` endpoints; its
//! refusals come back as 400 problems naming the field. Reading needs
//! `orders:read`, changing needs `orders:write` (a webhook only ever
//! carries order events), and the token must speak for a customer.

use chrono::{DateTime, Utc};
use jetshop_contracts::notifications::{DeleteWebhook, GetWebhook, SetWebhook, Webhook};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json, types::Example};

use crate::{
    auth::{guard::Authenticated, scopes::Scope},
    error::Error,
    http::{
        problem::{Guarded, operation as problems},
        request_id::RequestId,
        strict_json::StrictJson,
    },
};

#[derive(Tags)]
enum Tag {
    /// Webhooks: your order events, POSTed to your server.
    Webhooks,
}

/// Your webhook.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "Webhook")]
pub struct WebhookBody {
    /// Where your order events are POSTed.
    pub url: String,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

/// Your webhook as just set, with its signing secret: shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "WebhookWithSecret", example)]
pub struct WebhookWithSecretBody {
    /// Where your order events are POSTed.
    pub url: String,
    /// The HMAC-SHA256 key the deliveries are signed with. Keep it: it is
    /// not shown again (set the webhook again for a new one).
    pub secret: String,
    /// When it was set.
    pub created_at: DateTime<Utc>,
}

impl Example for WebhookWithSecretBody {
    fn example() -> Self {
        Self {
            url: "https://shop-hooks.example/jetshop".into(),
            secret: "whsec_3f1c0a9e5d7b4e2a8c6f0d1b9e7a5c3f".into(),
            created_at: DateTime::parse_from_rfc3339("2025-01-31T12:00:00Z")
                .expect("a valid timestamp")
                .with_timezone(&Utc),
        }
    }
}

/// The webhook to set.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
#[oai(rename = "NewWebhook", deny_unknown_fields, example)]
pub struct NewWebhookBody {
    /// Where to POST: an `https://` URL to a named host (or `http://` to
    /// `localhost`, `127.0.0.1` or `[::1]`), optionally a port, path and
    /// query; no credentials, no `#fragment`; up to 2000 characters.
    #[oai(validator(
        min_length = 8,
        max_length = 2000,
        pattern = r"^(?:[Hh][Tt][Tt][Pp][Ss]://(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|[Hh][Tt][Tt][Pp]://(?:localhost|127\.0\.0\.1|\[::1\]))(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
    ))]
    pub url: String,
}

impl Example for NewWebhookBody {
    fn example() -> Self {
        Self {
            url: "https://shop-hooks.example/jetshop".into(),
        }
    }
}

impl From<Webhook> for WebhookBody {
    fn from(w: Webhook) -> Self {
        Self {
            url: w.url,
            created_at: w.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum Deleted {
    /// The webhook is gone (or there was none).
    #[oai(status = 204)]
    NoContent,
}

/// The caller's webhook operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhooksApi;

#[OpenApi(tag = "Tag::Webhooks")]
impl WebhooksApi {
    /// Set your webhook
    ///
    /// Register (or replace) the URL your order events are POSTed to.
    /// Needs `orders:write` and a token issued to a customer. Answers with
    /// a new signing secret, shown only this once.
    #[oai(
        path = "/v1/me/webhook",
        method = "put",
        operation_id = "setWebhook",
        transform = "problems"
    )]
    async fn set(
        &self,
        #[oai(scope = "Scope::OrdersWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
        body: StrictJson<NewWebhookBody>,
    ) -> Result<Json<WebhookWithSecretBody>, Guarded> {
        auth.require(Scope::OrdersWrite)?;
        let user_id = auth.user_id()?;
        // Not retried: each call makes a new secret.
        let hook = rpc
            .call_once(
                &SetWebhook {
                    user_id,
                    url: body.0.url.trim().to_owned(),
                },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        let Some(secret) = hook.secret else {
            tracing::error!(%user_id, "the notifications service set a webhook without a secret");
            return Err(Error::Call(jetshop_platform::rpc::CallError::BadReply {
                subject: jetshop_contracts::subjects::notifications::RPC_WEBHOOK_SET.into(),
                reason: "no secret in the reply".into(),
            })
            .into());
        };
        tracing::info!(%user_id, "webhook set");
        Ok(Json(WebhookWithSecretBody {
            url: hook.url,
            secret,
            created_at: hook.created_at,
        }))
    }

    /// Your webhook
    ///
    /// The URL your order events are POSTed to (never the secret). Needs
    /// `orders:read`; 404 when you have none.
    #[oai(
        path = "/v1/me/webhook",
        method = "get",
        operation_id = "getWebhook",
        transform = "problems"
    )]
    async fn get(
        &self,
        #[oai(scope = "Scope::OrdersRead")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
    ) -> Result<Json<WebhookBody>, Guarded> {
        auth.require(Scope::OrdersRead)?;
        let user_id = auth.user_id()?;
        let hook = rpc
            .call(
                &GetWebhook { user_id },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        Ok(Json(hook.into()))
    }

    /// Remove your webhook
    ///
    /// Stop POSTing your order events. Needs `orders:write`. Answers 204
    /// whether or not you had one.
    #[oai(
        path = "/v1/me/webhook",
        method = "delete",
        operation_id = "deleteWebhook",
        transform = "problems"
    )]
    async fn delete(
        &self,
        #[oai(scope = "Scope::OrdersWrite")] auth: Authenticated,
        rpc: Data<&RpcClient>,
        request_id: Data<&RequestId>,
    ) -> Result<Deleted, Guarded> {
        auth.require(Scope::OrdersWrite)?;
        let user_id = auth.user_id()?;
        // Deleting twice is harmless, so a lost reply may be retried.
        let outcome = rpc
            .call(
                &DeleteWebhook { user_id },
                &MessageMeta::correlated(request_id.as_str()),
            )
            .await?;
        tracing::info!(%user_id, deleted = outcome.deleted, "webhook removed");
        Ok(Deleted::NoContent)
    }
}
