//! Queries on the delivery log.
//!
//! A delivery moves `pending -> sent`, or `pending -> failed` after its
//! last attempt (a replay from the DLQ may take a failed one again), or is
//! created `skipped` when there is nobody to send to. Sending is guarded by
//! a lease: [`claim`] is one conditional UPDATE that only one handler can
//! win while the lease runs, so the same fact handled twice at once (two
//! message ids, two replicas) is sent by one of them only.

use chrono::Utc;
use jetshop_contracts::notifications::Channel;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use super::entity::delivery::{self, ActiveModel, Column, Entity, Model};
use crate::Error;

/// Namespace of delivery ids (UUIDv5 of `<channel>:<business key>`).
const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x6a65_7473_686f_7000_8e0f_6e6f_7469_6679);

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Not sent yet (possibly being sent, or waiting for a retry).
    Pending,
    /// Handed to the SMTP server, written as a file, or answered 2xx.
    Sent,
    /// Given up on after the last attempt, or refused for good.
    Failed,
    /// Nothing to send to (an order without an email address).
    Skipped,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether nothing more will be sent for it (a DLQ replay may still
    /// take a `failed` one again).
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Sent | Self::Skipped)
    }
}

/// The stored name of a channel.
pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Webhook => "webhook",
    }
}

/// Parse a stored channel name.
pub fn parse_channel(s: &str) -> Result<Channel, Error> {
    match s {
        "email" => Ok(Channel::Email),
        "webhook" => Ok(Channel::Webhook),
        other => Err(Error::Internal(format!("unknown channel {other:?} stored"))),
    }
}

/// The id of the delivery of `business_key` over `channel`: the same on
/// every replica and every redelivery.
pub fn delivery_id(channel: Channel, business_key: &str) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("{}:{business_key}", channel_name(channel)).as_bytes(),
    )
}

/// A delivery to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// How.
    pub channel: Channel,
    /// What about (see [`Model::business_key`]).
    pub business_key: String,
    /// `order-confirmed`, `order-cancelled`, `welcome`.
    pub kind: &'static str,
    /// For whom.
    pub user_id: Uuid,
    /// About which order.
    pub order_id: Option<Uuid>,
    /// Email address or webhook URL.
    pub recipient: String,
}

impl NewDelivery {
    /// Its id.
    pub fn id(&self) -> Uuid {
        delivery_id(self.channel, &self.business_key)
    }
}

/// Record `new` in `state` unless a delivery of the same fact exists.
/// Returns whether this call created it.
pub async fn ensure<C: ConnectionTrait>(
    db: &C,
    new: &NewDelivery,
    state: DeliveryState,
    note: Option<String>,
) -> Result<bool, Error> {
    let now = Utc::now();
    let row = ActiveModel {
        id: Set(new.id().to_string()),
        channel: Set(channel_name(new.channel).to_owned()),
        business_key: Set(new.business_key.clone()),
        kind: Set(new.kind.to_owned()),
        user_id: Set(new.user_id.to_string()),
        order_id: Set(new.order_id.map(|id| id.to_string())),
        recipient: Set(new.recipient.clone()),
        state: Set(state.as_str().to_owned()),
        attempts: Set(0),
        last_error: Set(note),
        lease_token: Set(None),
        lease_until_ms: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
    };
    // The id is derived from channel and key, so either conflict target
    // means "the same fact": keep the first row.
    let inserted = Entity::insert(row)
        .on_conflict(OnConflict::column(Column::Id).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(inserted == 1)
}

/// One delivery.
pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<Model>, Error> {
    Ok(Entity::find_by_id(id.to_string()).one(db).await?)
}

/// A claim on a delivery, held while sending.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Proves the claim in the updates that follow.
    pub token: String,
    /// The row as claimed (attempts already counted).
    pub delivery: Model,
}

/// What [`claim`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This handler may send it.
    Mine(Box<Lease>),
    /// Nothing more to send: it is in this settled state.
    Settled(DeliveryState),
    /// Another handler holds the lease and is sending it now.
    Busy,
}

/// Take the lease on a pending (or failed) delivery for `lease`: count the
/// attempt and hold off any other handler until it runs out. A handler
/// that dies mid-send leaves a lease that simply expires.
///
/// The conditional UPDATE and the read of the row that follows are one
/// transaction: when the read fails (a database restart between the two),
/// the claim rolls back instead of leaving a lease that nobody holds, which
/// would keep every handler off the delivery until it ran out.
pub async fn claim(
    db: &DatabaseConnection,
    id: Uuid,
    lease: std::time::Duration,
) -> Result<Claim, Error> {
    let txn = db.begin().await?;
    let claim = claim_in(&txn, id, lease).await?;
    txn.commit().await?;
    Ok(claim)
}

async fn claim_in<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    lease: std::time::Duration,
) -> Result<Claim, Error> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let token = Uuid::new_v4().to_string();
    let until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    let won = Entity::update_many()
        .col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1))
        .col_expr(Column::State, Expr::value(DeliveryState::Pending.as_str()))
        .col_expr(Column::LeaseToken, Expr::value(token.clone()))
        .col_expr(Column::LeaseUntilMs, Expr::value(until))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::State.is_in([
            DeliveryState::Pending.as_str(),
            DeliveryState::Failed.as_str(),
        ]))
        .filter(Column::LeaseUntilMs.lt(now_ms))
        .exec(db)
        .await?
        .rows_affected
        == 1;
    let row = find(db, id)
        .await?
        .ok_or_else(|| Error::Internal(format!("delivery {id} vanished")))?;
    if won {
        return Ok(Claim::Mine(Box::new(Lease {
            token,
            delivery: row,
        })));
    }
    let state = DeliveryState::parse(&row.state)
        .ok_or_else(|| Error::Internal(format!("unknown delivery state {:?}", row.state)))?;
    Ok(if state.is_settled() {
        Claim::Settled(state)
    } else {
        Claim::Busy
    })
}

/// Record that the delivery went out. Returns `false` when it was already
/// recorded as sent (the caller must then not announce it again). The
/// lease is not checked: the message left, whoever held the lease.
pub async fn mark_sent<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<bool, Error> {
    let now = Utc::now();
    let changed = Entity::update_many()
        .col_expr(Column::State, Expr::value(DeliveryState::Sent.as_str()))
        .col_expr(Column::SentAt, Expr::value(Some(now)))
        .col_expr(Column::LastError, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseUntilMs, Expr::value(0i64))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::State.ne(DeliveryState::Sent.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Give the lease back after a failed attempt that will be retried, with
/// the reason. Does nothing when the lease is no longer ours.
pub async fn release<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    token: &str,
    error: &str,
) -> Result<(), Error> {
    Entity::update_many()
        .col_expr(Column::LastError, Expr::value(truncate(error)))
        .col_expr(Column::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseUntilMs, Expr::value(0i64))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::LeaseToken.eq(token))
        .exec(db)
        .await?;
    Ok(())
}

/// Give up on a delivery. Returns `false` when it was sent or failed
/// already (nothing to announce).
pub async fn mark_failed<C: ConnectionTrait>(db: &C, id: Uuid, error: &str) -> Result<bool, Error> {
    let changed = Entity::update_many()
        .col_expr(Column::State, Expr::value(DeliveryState::Failed.as_str()))
        .col_expr(Column::LastError, Expr::value(truncate(error)))
        .col_expr(Column::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseUntilMs, Expr::value(0i64))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::State.is_in([DeliveryState::Pending.as_str()]))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Record that there is nothing to send after all (the webhook was
/// removed before its call went out). Returns whether the row changed.
pub async fn mark_skipped<C: ConnectionTrait>(db: &C, id: Uuid, why: &str) -> Result<bool, Error> {
    let changed = Entity::update_many()
        .col_expr(Column::State, Expr::value(DeliveryState::Skipped.as_str()))
        .col_expr(Column::LastError, Expr::value(truncate(why)))
        .col_expr(Column::LeaseToken, Expr::value(Option::<String>::None))
        .col_expr(Column::LeaseUntilMs, Expr::value(0i64))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::State.is_in([
            DeliveryState::Pending.as_str(),
            DeliveryState::Failed.as_str(),
        ]))
        .exec(db)
        .await?
        .rows_affected;
    Ok(changed == 1)
}

/// Every delivery about orders (for the audit).
pub async fn of_orders<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>, Error> {
    Ok(Entity::find()
        .filter(delivery::Column::OrderId.is_not_null())
        .all(db)
        .await?)
}

/// Every delivery of one kind (for the audit).
pub async fn of_kind<C: ConnectionTrait>(db: &C, kind: &str) -> Result<Vec<Model>, Error> {
    Ok(Entity::find()
        .filter(delivery::Column::Kind.eq(kind))
        .all(db)
        .await?)
}

/// Error texts are kept short enough for any column and log line.
fn truncate(error: &str) -> String {
    error.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_depend_on_channel_and_key_only() {
        let a = delivery_id(Channel::Email, "order-confirmed:1");
        assert_eq!(a, delivery_id(Channel::Email, "order-confirmed:1"));
        assert_ne!(a, delivery_id(Channel::Webhook, "order-confirmed:1"));
        assert_ne!(a, delivery_id(Channel::Email, "order-cancelled:1"));
    }

    #[test]
    fn states_round_trip() {
        for s in [
            DeliveryState::Pending,
            DeliveryState::Sent,
            DeliveryState::Failed,
            DeliveryState::Skipped,
        ] {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryState::parse("lost"), None);
    }
}
