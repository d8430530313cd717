//! The event consumers: `notifications-orders` (orders confirmed and
//! cancelled) and `notifications-users` (accounts registered).
//!
//! Each fact becomes deliveries keyed by what it is about
//! (`order-confirmed:<order_id>`, `order-cancelled:<order_id>`,
//! `welcome:<user_id>`), never by the message id, so the same fact
//! published twice under different ids, or redelivered, is one email.
//! For orders, when the customer has a webhook, a `DeliverWebhook` command
//! is enqueued in the same transaction as its delivery row, under the
//! delivery id as message id: the row exists once, so the command does too.
//! The email is then sent as [`crate::delivery`] describes.

use chrono::{DateTime, Utc};
use jetshop_contracts::{
    Message,
    notifications::{Channel, DeliverWebhook},
    orders::{OrderCancelled, OrderConfirmed},
    streams, subjects,
    users::UserRegistered,
};
use jetshop_platform::{
    config::ConsumerSettings,
    consumer::{self, ConsumerSpec, Delivery, HandlerError},
    envelope::MessageMeta,
    outbox,
};
use sea_orm::TransactionTrait;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Deps;
use crate::{
    Error,
    delivery::{self, Attempt, SendError},
    email::{self, Content, KIND_ORDER_CANCELLED, KIND_ORDER_CONFIRMED, KIND_WELCOME},
    storage::{
        deliveries::{self, DeliveryState, NewDelivery},
        webhooks,
    },
    webhook,
};

/// Durable name of the orders-events consumer.
pub const ORDERS_CONSUMER: &str = "notifications-orders";
/// Durable name of the users-events consumer.
pub const USERS_CONSUMER: &str = "notifications-users";

/// Consume orders' terminal events until `shutdown`.
pub async fn run_orders(
    js: async_nats::jetstream::Context,
    deps: Deps,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::ORDERS_EVENTS.into(),
        durable: ORDERS_CONSUMER.into(),
        description: "Emails (and webhooks) for confirmed and cancelled orders".into(),
        filter_subjects: vec![
            subjects::keyed::every(subjects::orders::CONFIRMED),
            subjects::keyed::every(subjects::orders::CANCELLED),
        ],
    };
    let handler = move |d: Delivery| {
        let deps = deps.clone();
        async move { handle_order_event(&deps, &d).await }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// Consume users' registrations until `shutdown`.
pub async fn run_users(
    js: async_nats::jetstream::Context,
    deps: Deps,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), jetshop_platform::Error> {
    let spec = ConsumerSpec {
        stream: streams::USERS_EVENTS.into(),
        durable: USERS_CONSUMER.into(),
        description: "Welcome emails for new accounts".into(),
        filter_subjects: vec![subjects::users::REGISTERED.into()],
    };
    let handler = move |d: Delivery| {
        let deps = deps.clone();
        async move { handle_user_event(&deps, &d).await }
    };
    consumer::run(js, spec, settings, handler, shutdown).await
}

/// Handle one orders event.
pub async fn handle_order_event(deps: &Deps, d: &Delivery) -> Result<(), HandlerError> {
    match subjects::keyed::base(&d.subject) {
        subjects::orders::CONFIRMED => {
            let e: OrderConfirmed = d.decode()?;
            let outcome = OrderOutcome {
                kind: KIND_ORDER_CONFIRMED,
                order_id: e.order_id,
                customer_id: e.customer_id,
                customer_email: e.customer_email.clone(),
                content: email::order_confirmed(&e),
                event_type: OrderConfirmed::TYPE,
                occurred_at: e.confirmed_at,
                data: to_json(&e)?,
            };
            notify_order(deps, d, outcome).await
        }
        subjects::orders::CANCELLED => {
            let e: OrderCancelled = d.decode()?;
            let outcome = OrderOutcome {
                kind: KIND_ORDER_CANCELLED,
                order_id: e.order_id,
                customer_id: e.customer_id,
                customer_email: e.customer_email.clone(),
                content: email::order_cancelled(&e),
                event_type: OrderCancelled::TYPE,
                occurred_at: e.cancelled_at,
                data: to_json(&e)?,
            };
            notify_order(deps, d, outcome).await
        }
        other => Err(HandlerError::Permanent(format!(
            "notifications does not handle {other}"
        ))),
    }
}

/// Handle one users event.
pub async fn handle_user_event(deps: &Deps, d: &Delivery) -> Result<(), HandlerError> {
    if d.subject != subjects::users::REGISTERED {
        return Err(HandlerError::Permanent(format!(
            "notifications does not handle {}",
            d.subject
        )));
    }
    let e: UserRegistered = d.decode()?;
    let user = e.user;
    let new = NewDelivery {
        channel: Channel::Email,
        business_key: format!("{KIND_WELCOME}:{}", user.id),
        kind: KIND_WELCOME,
        user_id: user.id,
        order_id: None,
        recipient: user.email.clone(),
    };
    let content = email::welcome(&user);
    if record_email(&deps.db, &new).await? {
        send_email(deps, d, &new, content).await?;
    }
    Ok(())
}

/// A terminal order fact, as far as notifications care.
struct OrderOutcome {
    kind: &'static str,
    order_id: Uuid,
    customer_id: Uuid,
    customer_email: Option<String>,
    content: Content,
    event_type: &'static str,
    occurred_at: DateTime<Utc>,
    data: serde_json::Value,
}

async fn notify_order(deps: &Deps, d: &Delivery, o: OrderOutcome) -> Result<(), HandlerError> {
    let meta = d.meta.caused_by();
    let email = NewDelivery {
        channel: Channel::Email,
        business_key: format!("{}:{}", o.kind, o.order_id),
        kind: o.kind,
        user_id: o.customer_id,
        order_id: Some(o.order_id),
        recipient: o.customer_email.clone().unwrap_or_default(),
    };
    let txn = deps.db.begin().await.map_err(HandlerError::from)?;
    let sendable = record_email(&txn, &email).await?;
    let enqueued = enqueue_webhook(&txn, &o, &meta).await?;
    txn.commit().await.map_err(HandlerError::from)?;
    if enqueued {
        deps.outbox.notify();
    }
    if sendable {
        send_email(deps, d, &email, o.content).await?;
    }
    Ok(())
}

/// Create the email delivery if it is new: pending, or skipped when there
/// is no address to send to. Returns whether there is an email to send.
async fn record_email<C: sea_orm::ConnectionTrait>(
    db: &C,
    new: &NewDelivery,
) -> Result<bool, Error> {
    if email::parse_recipient(&new.recipient).is_some() {
        deliveries::ensure(db, new, DeliveryState::Pending, None).await?;
        return Ok(true);
    }
    // A business outcome, not a failure: nothing to retry, nothing to
    // dead-letter. The row records why no email went out.
    let why = if new.recipient.is_empty() {
        "no email address".to_owned()
    } else {
        format!("not an email address: {:?}", new.recipient)
    };
    if deliveries::ensure(db, new, DeliveryState::Skipped, Some(why.clone())).await? {
        tracing::warn!(business_key = %new.business_key, reason = %why, "no email sent");
    }
    Ok(false)
}

/// When the customer has a webhook, create its delivery and, if new,
/// enqueue the call. Returns whether a command was enqueued.
async fn enqueue_webhook(
    txn: &sea_orm::DatabaseTransaction,
    o: &OrderOutcome,
    meta: &MessageMeta,
) -> Result<bool, Error> {
    let Some(hook) = webhooks::find(txn, o.customer_id).await? else {
        return Ok(false);
    };
    let new = NewDelivery {
        channel: Channel::Webhook,
        business_key: format!("{}:{}", o.kind, o.order_id),
        kind: o.kind,
        user_id: o.customer_id,
        order_id: Some(o.order_id),
        recipient: hook.url.clone(),
    };
    if !deliveries::ensure(txn, &new, DeliveryState::Pending, None).await? {
        return Ok(false);
    }
    let id = new.id();
    let cmd = DeliverWebhook {
        delivery_id: id,
        user_id: o.customer_id,
        event_type: o.event_type.to_owned(),
        body: webhook::body(id, o.event_type, o.occurred_at, &o.data)?,
    };
    // The delivery id as message id: JetStream's dedupe window and the
    // outbox's unique message id both see one command per delivery.
    outbox::enqueue_command(txn, &cmd, &id.to_string(), meta).await?;
    tracing::info!(delivery_id = %id, order_id = %o.order_id, "webhook call enqueued");
    Ok(true)
}

async fn send_email(
    deps: &Deps,
    d: &Delivery,
    new: &NewDelivery,
    content: Content,
) -> Result<(), HandlerError> {
    let attempt = Attempt {
        delivered: d.delivered,
        max_deliver: deps.max_deliver,
    };
    let meta = d.meta.caused_by();
    let id = new.id();
    let mailer = deps.mailer.clone();
    let from = deps.from.clone();
    delivery::deliver(
        &deps.db,
        &deps.outbox,
        id,
        mailer.max_duration(),
        attempt,
        &meta,
        |row| async move {
            // The stored recipient: the first arrival's, whatever later ones say.
            let to = email::parse_recipient(&row.recipient).ok_or_else(|| {
                SendError::Permanent(format!("not an email address: {:?}", row.recipient))
            })?;
            let message = email::build(&from, &to, id, &content)
                .map_err(|e| SendError::Permanent(e.to_string()))?;
            mailer.send(&message, &row.business_key).await
        },
    )
    .await
}

fn to_json(e: &impl serde::Serialize) -> Result<serde_json::Value, HandlerError> {
    serde_json::to_value(e).map_err(|e| HandlerError::Permanent(format!("event as JSON: {e}")))
}
