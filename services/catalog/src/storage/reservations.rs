//! The `reservations` table: stock held for an order, one row per product.
//!
//! A row is born `reserved` (its units already taken off the product's
//! stock) and moves once, to `released` (units given back) or `committed`
//! (units sold). Every move is a conditional UPDATE on the current state,
//! so two concurrent moves of one row cannot both win, on SQLite or on
//! PostgreSQL under READ COMMITTED.
//!
//! Each order also has one marker row (product [`ORDER_MARKER`], zero
//! units), inserted first by a reserve and by a release of an order the
//! catalog never saw. Its primary key serialises the two: whichever comes
//! second waits on the key and then fails as a conflict, is retried, and
//! sees the first one's outcome. So a release that overtakes its reserve
//! leaves a `released` marker behind and the late reserve is a no-op
//! instead of holding stock for an order that was given up.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::Error;

/// The table's entity.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// Where a reserved line stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    pub enum State {
        /// Units taken off stock and held for the order.
        #[sea_orm(string_value = "reserved")]
        Reserved,
        /// Units given back to stock.
        #[sea_orm(string_value = "released")]
        Released,
        /// Units sold; they never go back.
        #[sea_orm(string_value = "committed")]
        Committed,
    }

    /// One reserved line of an order.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reservations")]
    pub struct Model {
        /// The order, hyphenated lower-case UUID text.
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        /// The product, hyphenated lower-case UUID text.
        #[sea_orm(primary_key, auto_increment = false)]
        pub product_id: String,
        /// Units held.
        pub quantity: i64,
        /// Where the line stands.
        pub state: State,
        /// When it was reserved.
        pub created_at: DateTimeUtc,
        /// When its state last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations: the catalog's tables stand alone.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity as Reservations};

/// The product id of an order's marker row (see the module docs).
pub const ORDER_MARKER: Uuid = Uuid::nil();
pub use entity::{Model, State};

impl Model {
    /// The product id as a UUID.
    pub fn product_uuid(&self) -> Result<Uuid, Error> {
        self.product_id
            .parse()
            .map_err(|e| Error::Internal(format!("stored product id {:?}: {e}", self.product_id)))
    }
}

/// Every line of an order, ordered by product id.
pub async fn of_order<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<Model>, Error> {
    Ok(Reservations::find()
        .filter(Column::OrderId.eq(order_id.to_string()))
        .order_by_asc(Column::ProductId)
        .all(db)
        .await?)
}

/// One line of an order.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    product_id: Uuid,
) -> Result<Option<Model>, Error> {
    Ok(
        Reservations::find_by_id((order_id.to_string(), product_id.to_string()))
            .one(db)
            .await?,
    )
}

/// Record a `reserved` line. A unique violation means the same order is
/// being reserved concurrently: a conflict, so a retry sees the other's rows.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
) -> Result<(), Error> {
    insert_in_state(db, order_id, product_id, quantity, State::Reserved).await
}

/// Record a line in a given state (a `released` marker for an order
/// released before it was ever reserved).
pub async fn insert_in_state<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    product_id: Uuid,
    quantity: i64,
    state: State,
) -> Result<(), Error> {
    let now = Utc::now();
    entity::ActiveModel {
        order_id: Set(order_id.to_string()),
        product_id: Set(product_id.to_string()),
        quantity: Set(quantity),
        state: Set(state),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| Error::from_insert(e, order_id))?;
    Ok(())
}

/// Move a line from `from` to `to` if it is still in `from`. Returns whether
/// this call moved it.
pub async fn transition<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    product_id: Uuid,
    from: State,
    to: State,
) -> Result<bool, Error> {
    let result = Reservations::update_many()
        .col_expr(Column::State, Expr::value(to))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::OrderId.eq(order_id.to_string()))
        .filter(Column::ProductId.eq(product_id.to_string()))
        .filter(Column::State.eq(from))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Units of `product_id` in lines of `state`, over all orders.
pub async fn units_in_state<C: ConnectionTrait>(
    db: &C,
    product_id: Uuid,
    state: State,
) -> Result<i64, Error> {
    let rows = Reservations::find()
        .filter(Column::ProductId.eq(product_id.to_string()))
        .filter(Column::State.eq(state))
        .all(db)
        .await?;
    Ok(rows.iter().map(|r| r.quantity).sum())
}
