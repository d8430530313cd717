//! The webhook registry, served as the `notifications` micro service:
//! set (register or replace, with a fresh secret returned once), get
//! (never the secret) and delete.

use chrono::Utc;
use jetshop_contracts::{
    RpcError,
    notifications::{DeleteWebhook, GetWebhook, SetWebhook, Webhook, WebhookDeleted},
    subjects::notifications as subj,
};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcService};
use sea_orm::DatabaseConnection;

use crate::{
    Error,
    storage::{entity::webhook::Model, webhooks},
    webhook,
};

/// Register the micro service and its endpoints.
pub async fn start(
    client: &async_nats::Client,
    db: DatabaseConnection,
    allow_http: bool,
) -> Result<RpcService, Error> {
    let mut service = RpcService::start(
        client,
        crate::SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "Emails and webhooks of jetshop: the webhook registry",
    )
    .await?;
    let group = subj::RPC_WEBHOOK_GROUP;
    let set_db = db.clone();
    service
        .endpoint::<SetWebhook, _, _>(group, endpoint(subj::RPC_WEBHOOK_SET)?, move |req, meta| {
            set(set_db.clone(), allow_http, req, meta)
        })
        .await?;
    let get_db = db.clone();
    service
        .endpoint::<GetWebhook, _, _>(group, endpoint(subj::RPC_WEBHOOK_GET)?, move |req, meta| {
            get(get_db.clone(), req, meta)
        })
        .await?;
    service
        .endpoint::<DeleteWebhook, _, _>(
            group,
            endpoint(subj::RPC_WEBHOOK_DELETE)?,
            move |req, meta| delete(db.clone(), req, meta),
        )
        .await?;
    Ok(service)
}

/// The endpoint name of a subject in the webhook group (`set` of
/// `notifications.rpc.webhook.set`), so no subject is written twice.
fn endpoint(subject: &'static str) -> Result<&'static str, Error> {
    subject
        .strip_prefix(subj::RPC_WEBHOOK_GROUP)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|name| !name.is_empty() && !name.contains('.'))
        .ok_or_else(|| {
            Error::Internal(format!(
                "{subject} is not an endpoint of {}",
                subj::RPC_WEBHOOK_GROUP
            ))
        })
}

async fn set(
    db: DatabaseConnection,
    allow_http: bool,
    req: SetWebhook,
    _meta: MessageMeta,
) -> Result<Webhook, RpcError> {
    let url = webhook::validate_url(&req.url, allow_http)?;
    let secret = webhook::new_secret();
    let row = webhooks::upsert(&db, req.user_id, &url, &secret).await?;
    tracing::info!(user_id = %req.user_id, url = %url, "webhook registered");
    // The only answer that carries the secret.
    Ok(Webhook {
        secret: Some(secret),
        ..to_wire(&row)?
    })
}

async fn get(
    db: DatabaseConnection,
    req: GetWebhook,
    _meta: MessageMeta,
) -> Result<Webhook, RpcError> {
    let row = webhooks::find(&db, req.user_id)
        .await?
        .ok_or(Error::WebhookNotFound(req.user_id))?;
    Ok(to_wire(&row)?)
}

async fn delete(
    db: DatabaseConnection,
    req: DeleteWebhook,
    _meta: MessageMeta,
) -> Result<WebhookDeleted, RpcError> {
    let deleted = webhooks::delete(&db, req.user_id).await?;
    if deleted {
        tracing::info!(user_id = %req.user_id, "webhook removed");
    }
    Ok(WebhookDeleted { deleted })
}

/// The wire shape, without the secret.
fn to_wire(row: &Model) -> Result<Webhook, Error> {
    Ok(Webhook {
        user_id: crate::delivery::parse_uuid(&row.user_id)?,
        url: row.url.clone(),
        secret: None,
        created_at: row.created_at.with_timezone(&Utc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_last_subject_token() {
        assert_eq!(endpoint(subj::RPC_WEBHOOK_SET).unwrap(), "set");
        assert_eq!(endpoint(subj::RPC_WEBHOOK_GET).unwrap(), "get");
        assert_eq!(endpoint(subj::RPC_WEBHOOK_DELETE).unwrap(), "delete");
        assert!(endpoint(subj::SENT).is_err());
    }
}
