//! The `notifications-webhooks` consumer: one signed POST per
//! `DeliverWebhook` command, retried with backoff, dead-lettered after the
//! last attempt or at once when the receiver refuses it (4xx). See
//! [`crate::webhook`] for what the receiver gets and [`crate::delivery`]
//! for the once-only bookkeeping.

use jetshop_contracts::{notifications::DeliverWebhook, streams, subjects};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
};
use tokio_util::sync::CancellationToken;

use super::Deps;
use crate::{
    delivery::{self, Attempt},
    storage::{deliveries, webhooks},
};

/// Durable name of the webhook consumer.
pub const CONSUMER: &str = "notifications-webhooks";

/// Consume webhook deliveries until `shutdown`.
pub async fn run(
    js: async_nats::jetstream::Context,
    deps: Deps,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::NOTIFICATIONS_COMMANDS.into(),
        durable: CONSUMER.into(),
        description: "Calls users' webhooks, signed, with retries".into(),
        filter_subjects: vec![subjects::notifications::DELIVER_WEBHOOK.into()],
    };
    let handler = move |d: Delivery| {
        let deps = deps.clone();
        async move { handle(&deps, &d).await }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// Handle one `DeliverWebhook`.
pub async fn handle(deps: &Deps, d: &Delivery) -> Result<(), HandlerError> {
    if d.subject != subjects::notifications::DELIVER_WEBHOOK {
        return Err(HandlerError::Permanent(format!(
            "notifications has no command {}",
            d.subject
        )));
    }
    let cmd: DeliverWebhook = d.decode()?;
    let id = cmd.delivery_id;
    if deliveries::find(&deps.db, id).await?.is_none() {
        // Only this service creates these commands, each with its row.
        return Err(HandlerError::Permanent(format!(
            "no delivery {id} in the delivery log"
        )));
    }
    // The URL and secret as they are now: a user who replaced the webhook
    // since the event wants the new one.
    let Some(hook) = webhooks::find(&deps.db, cmd.user_id).await? else {
        if deliveries::mark_skipped(&deps.db, id, "the webhook was removed before the call").await?
        {
            tracing::info!(delivery_id = %id, user_id = %cmd.user_id, "webhook removed; call skipped");
        }
        return Ok(());
    };
    let attempt = Attempt {
        delivered: d.delivered,
        max_deliver: deps.max_deliver,
    };
    let client = deps.webhooks.clone();
    delivery::deliver(
        &deps.db,
        &deps.outbox,
        id,
        deps.webhook_timeout,
        attempt,
        &d.meta.caused_by(),
        |_row| async move {
            let status = client
                .post(&hook.url, &hook.secret, id, &cmd.event_type, &cmd.body)
                .await?;
            Ok(format!("webhook {} answered {status}", hook.url))
        },
    )
    .await
}
