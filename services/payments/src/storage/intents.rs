//! The `payment_intents` table: one row per order, moved through its states
//! (see [`crate::domain`]) by conditional updates on state and version, so
//! two deliveries racing on one order cannot both move it.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::{Expr, OnConflict},
};
use uuid::Uuid;

use crate::{
    Error,
    domain::{self, AuthorizeSpec, IntentState, IntentView, NO_CURRENCY, ORDER_CLOSED},
};

/// The table's entity.
pub mod entity {
    use sea_orm::entity::prelude::*;

    use crate::domain::IntentState;

    /// One order's payment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payment_intents")]
    pub struct Model {
        /// The order, hyphenated lower-case UUID text.
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_id: String,
        /// The payment (derived from the order), our reference at the provider.
        #[sea_orm(unique)]
        pub payment_id: String,
        /// Amount held or to hold, in minor units (zero for a tombstone).
        pub amount_minor: i64,
        /// ISO 4217 code (`XXX` for a tombstone).
        pub currency: String,
        /// The card token authorized (empty for a tombstone).
        pub card_token: String,
        /// Where it stands.
        pub state: IntentState,
        /// The provider's authorization reference, once authorized.
        pub provider_ref: Option<String>,
        /// Why an authorize was refused (the card's decline, or `order_closed`).
        pub decline_code: Option<String>,
        /// The decline, for people.
        pub decline_reason: Option<String>,
        /// When the hold was placed.
        pub authorized_at: Option<DateTimeUtc>,
        /// When the money was taken.
        pub captured_at: Option<DateTimeUtc>,
        /// When it was closed without taking anything.
        pub voided_at: Option<DateTimeUtc>,
        /// When the money was given back.
        pub refunded_at: Option<DateTimeUtc>,
        /// When the intent was recorded.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
        /// Bumped on every change (optimistic concurrency).
        pub version: i64,
    }

    /// No relations: the ledger refers to intents by order id only.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model;
use entity::{Column, Entity as Intents};

impl Model {
    /// The order id as a UUID.
    pub fn order_uuid(&self) -> Result<Uuid, Error> {
        self.order_id
            .parse()
            .map_err(|e| Error::Internal(format!("stored order id {:?}: {e}", self.order_id)))
    }

    /// The payment id as a UUID.
    pub fn payment_uuid(&self) -> Result<Uuid, Error> {
        self.payment_id
            .parse()
            .map_err(|e| Error::Internal(format!("stored payment id {:?}: {e}", self.payment_id)))
    }

    /// What the rules need to know.
    pub fn view(&self) -> IntentView {
        IntentView {
            state: self.state,
            amount_minor: self.amount_minor,
            authorize_answered: self.authorized_at.is_some() || self.decline_code.is_some(),
        }
    }

    /// Whether `spec` asks for this very authorization.
    pub fn matches(&self, spec: &AuthorizeSpec) -> bool {
        self.amount_minor == spec.amount_minor
            && self.currency == spec.currency
            && self.card_token == spec.card_token
    }
}

/// The intent of an order.
pub async fn find<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<Model>, Error> {
    Ok(Intents::find_by_id(order_id.to_string()).one(db).await?)
}

/// Every intent, by order id.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>, Error> {
    Ok(Intents::find()
        .order_by_asc(Column::OrderId)
        .all(db)
        .await?)
}

/// Record an `authorizing` intent unless the order has one (in any state).
/// Committed on its own, before the provider is called.
pub async fn open<C: ConnectionTrait>(db: &C, spec: &AuthorizeSpec) -> Result<(), Error> {
    let now = Utc::now();
    let row = entity::ActiveModel {
        order_id: Set(spec.order_id.to_string()),
        payment_id: Set(domain::payment_id(spec.order_id).to_string()),
        amount_minor: Set(spec.amount_minor),
        currency: Set(spec.currency.clone()),
        card_token: Set(spec.card_token.clone()),
        state: Set(IntentState::Authorizing),
        provider_ref: Set(None),
        decline_code: Set(None),
        decline_reason: Set(None),
        authorized_at: Set(None),
        captured_at: Set(None),
        voided_at: Set(None),
        refunded_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
    };
    Intents::insert(row)
        .on_conflict(OnConflict::column(Column::OrderId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Record a closed intent for an order that had none (void or refund first).
/// A unique violation means an authorize recorded its intent meanwhile: a
/// retry sees it.
pub async fn insert_tombstone<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Model, Error> {
    let now = Utc::now();
    entity::ActiveModel {
        order_id: Set(order_id.to_string()),
        payment_id: Set(domain::payment_id(order_id).to_string()),
        amount_minor: Set(0),
        currency: Set(NO_CURRENCY.into()),
        card_token: Set(String::new()),
        state: Set(IntentState::Voided),
        provider_ref: Set(None),
        decline_code: Set(None),
        decline_reason: Set(None),
        authorized_at: Set(None),
        captured_at: Set(None),
        voided_at: Set(Some(now)),
        refunded_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
    }
    .insert(db)
    .await
    .map_err(|e| Error::from_write(e, order_id))
}

/// Move `current` from `from` to `to` if nobody moved it since it was read;
/// otherwise a conflict (to be retried). Returns the updated row.
pub async fn transition<C: ConnectionTrait>(
    db: &C,
    current: &Model,
    from: IntentState,
    to: IntentState,
    provider_ref: Option<&str>,
    decline: Option<(&str, &str)>,
) -> Result<Model, Error> {
    let order_id = current.order_uuid()?;
    let now = Utc::now();
    let mut update = Intents::update_many()
        .col_expr(Column::State, Expr::value(to))
        .col_expr(Column::Version, Expr::value(current.version + 1))
        .col_expr(Column::UpdatedAt, Expr::value(now));
    let stamp = match to {
        IntentState::Authorized => Some(Column::AuthorizedAt),
        IntentState::Captured => Some(Column::CapturedAt),
        IntentState::Voided => Some(Column::VoidedAt),
        IntentState::Refunded => Some(Column::RefundedAt),
        IntentState::Authorizing | IntentState::Declined => None,
    };
    if let Some(col) = stamp {
        update = update.col_expr(col, Expr::value(now));
    }
    if let Some(r) = provider_ref {
        update = update.col_expr(Column::ProviderRef, Expr::value(r));
    }
    if let Some((code, reason)) = decline {
        update = update
            .col_expr(Column::DeclineCode, Expr::value(code))
            .col_expr(Column::DeclineReason, Expr::value(reason));
    }
    let result = update
        .filter(Column::OrderId.eq(current.order_id.clone()))
        .filter(Column::State.eq(from))
        .filter(Column::Version.eq(current.version))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::NotYet {
            order_id,
            reason: format!("the payment moved from {from} concurrently"),
        });
    }
    find(db, order_id).await?.ok_or_else(|| {
        Error::Internal(format!(
            "intent of order {order_id} vanished after an update"
        ))
    })
}

/// Note on a closed intent that a late authorize was refused, so that the
/// refusal is said once.
pub async fn refuse_closed<C: ConnectionTrait>(
    db: &C,
    current: &Model,
    reason: &str,
) -> Result<(), Error> {
    let order_id = current.order_uuid()?;
    let result = Intents::update_many()
        .col_expr(Column::DeclineCode, Expr::value(ORDER_CLOSED))
        .col_expr(Column::DeclineReason, Expr::value(reason))
        .col_expr(Column::Version, Expr::value(current.version + 1))
        .col_expr(Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(Column::OrderId.eq(current.order_id.clone()))
        .filter(Column::Version.eq(current.version))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::NotYet {
            order_id,
            reason: "the payment changed concurrently".into(),
        });
    }
    Ok(())
}
