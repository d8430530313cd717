//! The event store: append an order's new events (with the optimistic
//! check on their sequence) and read them back.

use chrono::{DateTime, Utc};
use jetshop_contracts::orders::HistoryEntry;
use jetshop_platform::{envelope::new_message_id, outbox};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr};
use uuid::Uuid;

use super::entity::order_event::{ActiveModel, Column, Entity as Events, Model};
use crate::{Error, domain::order::OrderEvent};

/// An event as read back, with when it was recorded.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its sequence in the order.
    pub sequence: i64,
    /// Its id.
    pub event_id: Uuid,
    /// The event.
    pub event: OrderEvent,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Every event of an order, oldest first.
pub async fn load<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<Stored>, Error> {
    let rows = Events::find()
        .filter(Column::OrderId.eq(order_id.to_string()))
        .order_by_asc(Column::Sequence)
        .all(db)
        .await?;
    rows.iter().map(decode).collect()
}

fn decode(row: &Model) -> Result<Stored, Error> {
    Ok(Stored {
        sequence: row.sequence,
        event_id: row
            .event_id
            .parse()
            .map_err(|e| Error::Corrupt(format!("event id {:?}: {e}", row.event_id)))?,
        event: OrderEvent::from_json(&row.event_type, &row.data)?,
        recorded_at: row.recorded_at,
    })
}

/// Append `events` after sequence `after` and put each in the outbox, in
/// the caller's transaction. A concurrent writer that appended first makes
/// this fail with [`Error::Conflict`]: the caller retries from a fresh read.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    after: i64,
    events: &[OrderEvent],
    meta: &jetshop_platform::envelope::MessageMeta,
    at: DateTime<Utc>,
) -> Result<Vec<Stored>, Error> {
    let mut stored = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let sequence = after + 1 + i as i64;
        let event_id = new_message_id();
        let row = ActiveModel {
            order_id: Set(order_id.to_string()),
            sequence: Set(sequence),
            event_id: Set(event_id.to_string()),
            event_type: Set(event.type_name().to_owned()),
            data: Set(event.to_json().to_string()),
            recorded_at: Set(at),
        };
        if let Err(err) = Events::insert(row).exec_without_returning(db).await {
            return Err(match err.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(order_id),
                _ => Error::Db(err),
            });
        }
        publish(db, event, &event_id.to_string(), meta).await?;
        stored.push(Stored {
            sequence,
            event_id,
            event: event.clone(),
            recorded_at: at,
        });
    }
    Ok(stored)
}

/// Put a stored event in the outbox under its own id, so the published
/// message and the stored one are the same event.
async fn publish<C: ConnectionTrait>(
    db: &C,
    event: &OrderEvent,
    event_id: &str,
    meta: &jetshop_platform::envelope::MessageMeta,
) -> Result<(), Error> {
    match event {
        OrderEvent::Placed(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
        OrderEvent::StockReserved(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
        OrderEvent::PaymentAuthorized(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
        OrderEvent::PaymentCaptured(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
        OrderEvent::Confirmed(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
        OrderEvent::CancellationRequested(e) => {
            outbox::enqueue_event_as(db, e, event_id, meta).await
        }
        OrderEvent::Cancelled(e) => outbox::enqueue_event_as(db, e, event_id, meta).await,
    }
    .map_err(Error::from)
}

/// The history as the RPC serves it.
pub fn to_history(stored: &[Stored]) -> Vec<HistoryEntry> {
    stored
        .iter()
        .map(|s| HistoryEntry {
            sequence: s.sequence,
            event_type: s.event.type_name().to_owned(),
            event_id: s.event_id,
            recorded_at: s.recorded_at,
            data: s.event.to_json(),
        })
        .collect()
}
