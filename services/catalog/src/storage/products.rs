//! Product queries and writes. Writes take a connection or transaction so
//! the handler can put the outbox row and the inbox claim in the same one.

use chrono::Utc;
use jetshop_contracts::catalog::{self as wire, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait, Func},
};
use uuid::Uuid;

use super::entity::{self, Column, Entity as Products};
use crate::{
    Error,
    domain::{NewProduct, ProductChanges},
};

/// The wire shape of a row.
pub fn to_wire(m: &entity::Model) -> Result<wire::Product, Error> {
    Ok(wire::Product {
        id: m
            .id
            .parse()
            .map_err(|e| Error::Internal(format!("stored id {:?}: {e}", m.id)))?,
        sku: m.sku.clone(),
        name: m.name.clone(),
        description: m.description.clone(),
        price: wire::Money {
            amount_minor: m.price_minor,
            currency: m.currency.clone(),
        },
        stock: m.stock,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// One product.
pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<entity::Model>, Error> {
    Ok(Products::find_by_id(id.to_string()).one(db).await?)
}

/// The product holding `sku`, if any.
pub async fn find_by_sku<C: ConnectionTrait>(
    db: &C,
    sku: &str,
) -> Result<Option<entity::Model>, Error> {
    Ok(Products::find().filter(Column::Sku.eq(sku)).one(db).await?)
}

/// Insert a new product.
pub async fn insert<C: ConnectionTrait>(db: &C, p: &NewProduct) -> Result<entity::Model, Error> {
    let now = Utc::now();
    let row = entity::ActiveModel {
        id: Set(p.id.to_string()),
        sku: Set(p.sku.as_str().to_owned()),
        name: Set(p.name.as_str().to_owned()),
        description: Set(p.description.as_str().to_owned()),
        price_minor: Set(p.price.amount_minor()),
        currency: Set(p.price.currency().to_owned()),
        stock: Set(p.stock.units()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    row.insert(db)
        .await
        .map_err(|e| Error::from_insert(e, p.id))
}

/// Apply changes if the row is still at `current.version`.
pub async fn update<C: ConnectionTrait>(
    db: &C,
    current: entity::Model,
    changes: &ProductChanges,
) -> Result<entity::Model, Error> {
    let id = current.id.clone();
    let version = current.version;
    let mut row: entity::ActiveModel = current.into();
    if let Some(name) = &changes.name {
        row.name = Set(name.as_str().to_owned());
    }
    if let Some(d) = &changes.description {
        row.description = Set(d.as_str().to_owned());
    }
    if let Some(price) = &changes.price {
        row.price_minor = Set(price.amount_minor());
        row.currency = Set(price.currency().to_owned());
    }
    row.version = Set(version + 1);
    row.updated_at = Set(Utc::now());
    // Optimistic concurrency: only the writer that saw `version` wins.
    let result = Products::update_many()
        .set(row)
        .filter(Column::Id.eq(id.clone()))
        .filter(Column::Version.eq(version))
        .exec(db)
        .await?;
    let uuid: Uuid = id
        .parse()
        .map_err(|e| Error::Internal(format!("stored id {id:?}: {e}")))?;
    if result.rows_affected == 0 {
        return Err(Error::Conflict(uuid));
    }
    find(db, uuid).await?.ok_or(Error::NotFound(uuid))
}

/// Add `delta` units atomically; never lets stock go below zero, even
/// under concurrent adjustments (the check is in the UPDATE itself).
pub async fn adjust_stock<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    delta: i64,
) -> Result<entity::Model, Error> {
    let result = Products::update_many()
        .col_expr(Column::Stock, Expr::col(Column::Stock).add(delta))
        .col_expr(Column::Version, Expr::col(Column::Version).add(1))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::Id.eq(id.to_string()))
        .filter(Expr::col(Column::Stock).add(delta).gte(0))
        .exec(db)
        .await?;
    let row = find(db, id).await?.ok_or(Error::NotFound(id))?;
    if result.rows_affected == 0 {
        return Err(Error::InsufficientStock {
            id,
            stock: row.stock,
            requested: -delta,
        });
    }
    Ok(row)
}

/// One page of products ordered by id, after `cursor`, matching `q`.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    req: &wire::ListProducts,
) -> Result<wire::ProductPage, Error> {
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let mut query = Products::find().order_by_asc(Column::Id);
    if let Some(cursor) = req.cursor.as_deref().filter(|c| !c.is_empty()) {
        query = query.filter(Column::Id.gt(decode_cursor(cursor)?.to_string()));
    }
    if let Some(sku) = req.sku.as_deref() {
        query = query.filter(Column::Sku.eq(crate::domain::Sku::parse(sku)?.as_str()));
    }
    if let Some(q) = req.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        if q.chars().count() > 200 {
            return Err(Error::invalid("q", "must be at most 200 characters"));
        }
        let pattern = format!("%{}%", escape_like(&q.to_lowercase()));
        let lower = |c: Column| Expr::expr(Func::lower(Expr::col(c)));
        query = query.filter(
            Condition::any()
                .add(
                    lower(Column::Sku)
                        .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')),
                )
                .add(
                    lower(Column::Name)
                        .like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')),
                )
                .add(
                    lower(Column::Description)
                        .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
                ),
        );
    }
    // One extra row tells whether there is a next page.
    let mut rows = query.limit(u64::from(limit) + 1).all(db).await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&r.id))
    } else {
        None
    };
    let items = rows.iter().map(to_wire).collect::<Result<_, _>>()?;
    Ok(wire::ProductPage { items, next_cursor })
}

/// Cursors are opaque to callers: the last id, without dashes.
fn encode_cursor(id: &str) -> String {
    id.replace('-', "")
}

fn decode_cursor(cursor: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(cursor)
        .map_err(|_| Error::invalid("cursor", "is not a cursor this service issued"))
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(&id.to_string())).unwrap(), id);
        assert!(decode_cursor("garbage").is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
