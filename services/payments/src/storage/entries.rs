//! The `ledger_entries` table: the postings of [`crate::ledger`], written
//! in the transaction that moves the intent, and the sums the audit reads.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    Error,
    ledger::{self, Movement},
};

/// The table's entity.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One posting: a debit or a credit to one account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The transaction this line belongs to (one per payment and movement).
        pub txn_id: String,
        /// The order.
        pub order_id: String,
        /// The payment.
        pub payment_id: String,
        /// `authorize`, `capture`, `void` or `refund`.
        pub movement: String,
        /// The account (see the chart in [`crate::ledger`]).
        pub account: String,
        /// Debited minor units (zero on a credit line).
        pub debit_minor: i64,
        /// Credited minor units (zero on a debit line).
        pub credit_minor: i64,
        /// ISO 4217 code.
        pub currency: String,
        /// The provider's reference for the movement, when known.
        pub provider_ref: Option<String>,
        /// When it was booked.
        pub created_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model;
use entity::{Column, Entity as Entries};

/// Book `movement` of a payment, inside the caller's transaction.
pub async fn post<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    payment_id: Uuid,
    currency: &str,
    movement: &Movement,
) -> Result<(), Error> {
    let txn_id = ledger::txn_id(payment_id, movement.kind).to_string();
    let now = Utc::now();
    let rows = movement
        .postings()
        .into_iter()
        .map(|p| entity::ActiveModel {
            txn_id: Set(txn_id.clone()),
            order_id: Set(order_id.to_string()),
            payment_id: Set(payment_id.to_string()),
            movement: Set(movement.kind.as_str().to_owned()),
            account: Set(p.account.as_str().to_owned()),
            debit_minor: Set(p.debit_minor),
            credit_minor: Set(p.credit_minor),
            currency: Set(currency.to_owned()),
            provider_ref: Set(movement.provider_ref.clone()),
            created_at: Set(now),
            ..Default::default()
        });
    Entries::insert_many(rows)
        .exec_without_returning(db)
        .await
        .map_err(|e| Error::from_write(e, order_id))?;
    Ok(())
}

/// Every line of an order, in booking order.
pub async fn of_order<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Vec<Model>, Error> {
    Ok(Entries::find()
        .filter(Column::OrderId.eq(order_id.to_string()))
        .order_by_asc(Column::Id)
        .all(db)
        .await?)
}

/// Debits and credits per account and currency.
pub async fn account_totals<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<(String, String, i64, i64)>, Error> {
    // SUM of BIGINT is NUMERIC on PostgreSQL: cast back so both backends
    // decode an i64.
    Ok(Entries::find()
        .select_only()
        .column(Column::Account)
        .column(Column::Currency)
        .column_as(
            Expr::col(Column::DebitMinor).sum().cast_as("BIGINT"),
            "debits",
        )
        .column_as(
            Expr::col(Column::CreditMinor).sum().cast_as("BIGINT"),
            "credits",
        )
        .group_by(Column::Account)
        .group_by(Column::Currency)
        .order_by_asc(Column::Account)
        .order_by_asc(Column::Currency)
        .into_tuple()
        .all(db)
        .await?)
}

/// Transactions whose debits differ from their credits (there should be none).
pub async fn unbalanced_transactions<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, Error> {
    Ok(Entries::find()
        .select_only()
        .column(Column::TxnId)
        .group_by(Column::TxnId)
        .having(
            Expr::col(Column::DebitMinor)
                .sum()
                .ne(Expr::col(Column::CreditMinor).sum()),
        )
        .order_by_asc(Column::TxnId)
        .into_tuple()
        .all(db)
        .await?)
}

/// How many transactions of each movement every order has.
pub async fn movement_counts<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<(String, String, i64)>, Error> {
    Ok(Entries::find()
        .select_only()
        .column(Column::OrderId)
        .column(Column::Movement)
        .column_as(
            Expr::col(Column::TxnId).count_distinct().cast_as("BIGINT"),
            "transactions",
        )
        .group_by(Column::OrderId)
        .group_by(Column::Movement)
        .into_tuple()
        .all(db)
        .await?)
}
