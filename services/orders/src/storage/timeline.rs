//! The saga's timeline: one line per thing it did, shown with the order.

use chrono::{DateTime, Utc};
use jetshop_contracts::orders::TimelineEntry;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::entity::saga_note::{ActiveModel, Column, Entity as Notes};
use crate::{Error, domain::saga::Note};

/// Record notes for an order, in the caller's transaction.
pub async fn add<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    notes: &[Note],
    at: DateTime<Utc>,
) -> Result<(), Error> {
    if notes.is_empty() {
        return Ok(());
    }
    let rows = notes.iter().map(|n| ActiveModel {
        order_id: Set(order_id.to_string()),
        step: Set(n.step.to_owned()),
        outcome: Set(n.outcome.to_owned()),
        detail: Set(n.detail.clone()),
        at: Set(at),
        ..Default::default()
    });
    Notes::insert_many(rows).exec_without_returning(db).await?;
    Ok(())
}

/// An order's timeline, oldest first.
pub async fn of_order<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
) -> Result<Vec<TimelineEntry>, Error> {
    Ok(Notes::find()
        .filter(Column::OrderId.eq(order_id.to_string()))
        .order_by_asc(Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|n| TimelineEntry {
            step: n.step,
            outcome: n.outcome,
            detail: n.detail,
            at: n.at,
        })
        .collect())
}
