//! Read-only views of the delivery log for system-wide invariant tests
//! and operators: "each terminal order has exactly one email".
//!
//! ```no_run
//! # async fn check(url: &str) -> Result<(), jetshop_notifications::Error> {
//! use jetshop_notifications::audit::{self, DeliveryState};
//! let db = audit::connect(url).await?;
//! for (order, emails) in audit::emails_by_order(&db).await? {
//!     let sent = emails.iter().filter(|(_, s)| *s == DeliveryState::Sent).count();
//!     assert_eq!(sent, 1, "order {order}: {emails:?}");
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use jetshop_contracts::notifications::Channel;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

pub use crate::storage::deliveries::DeliveryState;
use crate::{
    Error,
    delivery::parse_uuid,
    email::KIND_WELCOME,
    storage::{self, deliveries},
};

/// Connect to a notifications database and bring its schema up to date
/// (so an audit of a service that never started sees empty tables).
pub async fn connect(url: &str) -> Result<DatabaseConnection, Error> {
    let db = jetshop_platform::db::connect(url).await?;
    storage::migrate(&db).await?;
    Ok(db)
}

/// Per order, the `(kind, state)` of each email about it
/// (`order-confirmed` / `order-cancelled`).
pub async fn emails_by_order(
    db: &DatabaseConnection,
) -> Result<HashMap<Uuid, Vec<(String, DeliveryState)>>, Error> {
    by_order(db, Channel::Email).await
}

/// Per order, the `(kind, state)` of each webhook call about it.
pub async fn webhooks_by_order(
    db: &DatabaseConnection,
) -> Result<HashMap<Uuid, Vec<(String, DeliveryState)>>, Error> {
    by_order(db, Channel::Webhook).await
}

/// Per user, the state of their welcome email.
pub async fn welcomes_by_user(
    db: &DatabaseConnection,
) -> Result<HashMap<Uuid, DeliveryState>, Error> {
    let mut out = HashMap::new();
    for row in deliveries::of_kind(db, KIND_WELCOME).await? {
        out.insert(parse_uuid(&row.user_id)?, state_of(&row.state)?);
    }
    Ok(out)
}

async fn by_order(
    db: &DatabaseConnection,
    channel: Channel,
) -> Result<HashMap<Uuid, Vec<(String, DeliveryState)>>, Error> {
    let mut out: HashMap<Uuid, Vec<(String, DeliveryState)>> = HashMap::new();
    for row in deliveries::of_orders(db).await? {
        if deliveries::parse_channel(&row.channel)? != channel {
            continue;
        }
        let Some(order) = row.order_id.as_deref() else {
            continue;
        };
        out.entry(parse_uuid(order)?)
            .or_default()
            .push((row.kind.clone(), state_of(&row.state)?));
    }
    Ok(out)
}

fn state_of(s: &str) -> Result<DeliveryState, Error> {
    DeliveryState::parse(s).ok_or_else(|| Error::Internal(format!("unknown delivery state {s:?}")))
}
