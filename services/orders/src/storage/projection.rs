//! The `orders` table: the fold of each order's events, kept in step with
//! every append (same transaction) and rebuildable from the event store.

use jetshop_contracts::{
    catalog::Money,
    orders::{OrderLine, OrderStatus, OrderView, TimelineEntry},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::OnConflict,
};
use uuid::Uuid;

use super::entity::order::{ActiveModel, Column, Entity as Orders, Model};
use crate::{Error, domain::order::Order};

/// Write the fold of an order (insert or replace).
pub async fn save<C: ConnectionTrait>(db: &C, order: &Order) -> Result<(), Error> {
    let row = ActiveModel {
        id: Set(order.id.to_string()),
        customer_id: Set(order.customer_id.to_string()),
        status: Set(order.status.as_str().to_owned()),
        lines: Set(serde_json::to_string(&order.lines)
            .map_err(|e| Error::Corrupt(format!("lines: {e}")))?),
        total_minor: Set(order.total.amount_minor),
        currency: Set(order.total.currency.clone()),
        cancel_reason: Set(order.cancel_reason.clone()),
        version: Set(order.version),
        created_at: Set(order.created_at),
        updated_at: Set(order.updated_at),
    };
    Orders::insert(row)
        .on_conflict(
            OnConflict::column(Column::Id)
                .update_columns([
                    Column::Status,
                    Column::Lines,
                    Column::TotalMinor,
                    Column::Currency,
                    Column::CancelReason,
                    Column::Version,
                    Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One order's row.
pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<Model>, Error> {
    Ok(Orders::find_by_id(id.to_string()).one(db).await?)
}

/// A page of orders, newest first (ids are UUIDv7), strictly older than `before`.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    customer_id: Option<Uuid>,
    status: Option<OrderStatus>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Model>, Error> {
    let mut q = Orders::find();
    if let Some(c) = customer_id {
        q = q.filter(Column::CustomerId.eq(c.to_string()));
    }
    if let Some(s) = status {
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(Column::Id.lt(b.to_string()));
    }
    Ok(q.order_by_desc(Column::Id).limit(limit).all(db).await?)
}

fn parse_id(s: &str) -> Result<Uuid, Error> {
    s.parse()
        .map_err(|e| Error::Corrupt(format!("stored id {s:?}: {e}")))
}

/// The row as the RPC serves it, with its timeline.
pub fn to_view(row: &Model, timeline: Vec<TimelineEntry>) -> Result<OrderView, Error> {
    let lines: Vec<OrderLine> = serde_json::from_str(&row.lines)
        .map_err(|e| Error::Corrupt(format!("lines of {}: {e}", row.id)))?;
    Ok(OrderView {
        id: parse_id(&row.id)?,
        customer_id: parse_id(&row.customer_id)?,
        status: OrderStatus::parse(&row.status)
            .ok_or_else(|| Error::Corrupt(format!("status {:?}", row.status)))?,
        lines,
        total: Money {
            amount_minor: row.total_minor,
            currency: row.currency.clone(),
        },
        cancel_reason: row.cancel_reason.clone(),
        timeline,
        version: row.version,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
