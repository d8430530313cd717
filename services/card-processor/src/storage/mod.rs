//! The processor's own database: entities, migrations and the queries
//! [`crate::processor`] runs inside its transactions. Only this module
//! writes SQL-shaped code.
//!
//! Everything a second processor instance or a restart needs is here:
//! payments (with a version for conditional updates), money movements,
//! idempotency records, the request log behind the activity counts, the
//! per-order count of `tok_processingError` failures and the outage switch.

pub mod migrations;

use chrono::Utc;
use jetshop_contracts::card_processor::{Activity, AuthorizationId, PaymentStatus};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use crate::{
    Error,
    domain::{Movement, PaymentRecord},
};

/// Bring the schema up to date (run at every start; idempotent; replicas
/// take turns).
pub async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    jetshop_platform::db::migrate::<migrations::Migrator>(db).await
}

/// One payment per merchant reference.
pub mod payments {
    use sea_orm::entity::prelude::*;

    /// A payment.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        /// The merchant's reference, hyphenated UUID text.
        #[sea_orm(primary_key, auto_increment = false)]
        pub merchant_reference: String,
        /// The order.
        pub order_reference: String,
        /// `authorized`, `captured`, `refunded`, `voided` or `canceled`.
        pub status: String,
        /// The hold's id, once placed.
        #[sea_orm(unique)]
        pub authorization_id: Option<String>,
        /// ISO 4217 code.
        pub currency: String,
        /// Held.
        pub authorized_minor: i64,
        /// Taken.
        pub captured_minor: i64,
        /// Given back.
        pub refunded_minor: i64,
        /// Released by a void.
        pub released_minor: i64,
        /// When it was first recorded.
        pub created_at: DateTimeUtc,
        /// When it last changed.
        pub updated_at: DateTimeUtc,
        /// Bumped on every change (optimistic concurrency).
        pub version: i64,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every money movement, for the activity.
pub mod movements {
    use sea_orm::entity::prelude::*;

    /// A movement.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "movements")]
    pub struct Model {
        /// The id the answer carried (`auth_...`, `cap_...`, `void_...`, `re_...`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The payment.
        pub merchant_reference: String,
        /// The order.
        pub order_reference: String,
        /// `authorization`, `capture`, `void` or `refund`.
        pub kind: String,
        /// How much.
        pub amount_minor: i64,
        /// ISO 4217 code.
        pub currency: String,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The stored answer of each idempotency key.
pub mod idempotency_keys {
    use sea_orm::entity::prelude::*;

    /// A key and its answer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// The caller's key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        /// What it was first presented with (method, path, canonical body).
        pub fingerprint: String,
        /// The answer's status (2xx or 4xx: never a 5xx).
        pub status_code: i32,
        /// The answer's body, exactly as first sent.
        pub response: String,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Every request that reached an operation, for the activity counts.
pub mod requests {
    use sea_orm::entity::prelude::*;

    /// A request.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "requests")]
    pub struct Model {
        /// Sequence.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// `authorize`, `capture`, `void` or `refund`.
        pub operation: String,
        /// The order, when known.
        pub order_reference: Option<String>,
        /// The payment, when known.
        pub merchant_reference: Option<String>,
        /// The key it came with.
        pub idempotency_key: Option<String>,
        /// The answer's status, once decided.
        pub status_code: Option<i32>,
        /// When it arrived.
        pub received_at: DateTimeUtc,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How often each order's `tok_processingError` failed.
pub mod flaky_orders {
    use sea_orm::entity::prelude::*;

    /// An order's failures.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flaky_orders")]
    pub struct Model {
        /// The order.
        #[sea_orm(primary_key, auto_increment = false)]
        pub order_reference: String,
        /// Failures so far.
        pub failures: i32,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Named switches (the simulated outage).
pub mod switches {
    use sea_orm::entity::prelude::*;

    /// A switch.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "switches")]
    pub struct Model {
        /// Its name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// Whether it is on.
        pub enabled: bool,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The outage switch's name.
const OUTAGE: &str = "outage";

/// A stored payment and the version it was read at.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The payment.
    pub record: PaymentRecord,
    /// Its version.
    pub version: i64,
}

fn parse_uuid(what: &str, s: &str) -> Result<Uuid, Error> {
    s.parse()
        .map_err(|e| Error::Internal(format!("stored {what} {s:?}: {e}")))
}

impl TryFrom<payments::Model> for Stored {
    type Error = Error;

    fn try_from(m: payments::Model) -> Result<Self, Error> {
        let status = PaymentStatus::parse(&m.status)
            .ok_or_else(|| Error::Internal(format!("stored status {:?}", m.status)))?;
        let authorization = m
            .authorization_id
            .as_deref()
            .map(AuthorizationId::parse)
            .transpose()
            .map_err(|e| Error::Internal(format!("stored authorization id: {e}")))?;
        Ok(Stored {
            record: PaymentRecord {
                merchant_reference: parse_uuid("merchant reference", &m.merchant_reference)?,
                order_reference: parse_uuid("order reference", &m.order_reference)?,
                status,
                authorization,
                currency: m.currency,
                authorized_minor: m.authorized_minor,
                captured_minor: m.captured_minor,
                refunded_minor: m.refunded_minor,
                released_minor: m.released_minor,
            },
            version: m.version,
        })
    }
}

/// The payment of `merchant_reference`.
pub async fn payment<C: ConnectionTrait>(
    db: &C,
    merchant_reference: Uuid,
) -> Result<Option<Stored>, Error> {
    payments::Entity::find_by_id(merchant_reference.to_string())
        .one(db)
        .await?
        .map(Stored::try_from)
        .transpose()
}

/// The payment holding `authorization`.
pub async fn payment_by_authorization<C: ConnectionTrait>(
    db: &C,
    authorization: &AuthorizationId,
) -> Result<Option<Stored>, Error> {
    payments::Entity::find()
        .filter(payments::Column::AuthorizationId.eq(authorization.as_str()))
        .one(db)
        .await?
        .map(Stored::try_from)
        .transpose()
}

/// Write a payment's new state: an insert when `read` is `None` (a unique
/// violation means a concurrent request recorded it first), else an update
/// conditional on the version read (no row means it moved meanwhile).
/// Either way the caller's transaction is retried.
pub async fn save_payment<C: ConnectionTrait>(
    db: &C,
    read: Option<&Stored>,
    next: &PaymentRecord,
) -> Result<(), Error> {
    let now = Utc::now();
    let Some(read) = read else {
        payments::ActiveModel {
            merchant_reference: Set(next.merchant_reference.to_string()),
            order_reference: Set(next.order_reference.to_string()),
            status: Set(next.status.as_str().into()),
            authorization_id: Set(next.authorization.as_ref().map(|a| a.to_string())),
            currency: Set(next.currency.clone()),
            authorized_minor: Set(next.authorized_minor),
            captured_minor: Set(next.captured_minor),
            refunded_minor: Set(next.refunded_minor),
            released_minor: Set(next.released_minor),
            created_at: Set(now),
            updated_at: Set(now),
            version: Set(1),
        }
        .insert(db)
        .await
        .map_err(Error::from_write)?;
        return Ok(());
    };
    let result = payments::Entity::update_many()
        .col_expr(payments::Column::Status, Expr::value(next.status.as_str()))
        .col_expr(
            payments::Column::AuthorizationId,
            Expr::value(next.authorization.as_ref().map(|a| a.to_string())),
        )
        .col_expr(
            payments::Column::CapturedMinor,
            Expr::value(next.captured_minor),
        )
        .col_expr(
            payments::Column::RefundedMinor,
            Expr::value(next.refunded_minor),
        )
        .col_expr(
            payments::Column::ReleasedMinor,
            Expr::value(next.released_minor),
        )
        .col_expr(payments::Column::UpdatedAt, Expr::value(now))
        .col_expr(payments::Column::Version, Expr::value(read.version + 1))
        .filter(payments::Column::MerchantReference.eq(next.merchant_reference.to_string()))
        .filter(payments::Column::Version.eq(read.version))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::Conflict(format!(
            "payment {} changed concurrently",
            next.merchant_reference
        )));
    }
    Ok(())
}

/// Record a money movement of `payment`.
pub async fn add_movement<C: ConnectionTrait>(
    db: &C,
    payment: &PaymentRecord,
    movement: &Movement,
) -> Result<(), Error> {
    movements::ActiveModel {
        id: Set(movement.id.clone()),
        merchant_reference: Set(payment.merchant_reference.to_string()),
        order_reference: Set(payment.order_reference.to_string()),
        kind: Set(movement.kind.as_str().into()),
        amount_minor: Set(movement.amount_minor),
        currency: Set(payment.currency.clone()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map_err(Error::from_write)?;
    Ok(())
}

/// The stored answer of `key`.
pub async fn stored_answer<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<idempotency_keys::Model>, Error> {
    Ok(idempotency_keys::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?)
}

/// Keep a definitive answer for `key`. A unique violation means a
/// concurrent request with the same key answered first: the retried
/// transaction replays its answer.
pub async fn store_answer<C: ConnectionTrait>(
    db: &C,
    key: &str,
    fingerprint: &str,
    status_code: u16,
    response: &str,
) -> Result<(), Error> {
    idempotency_keys::ActiveModel {
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        status_code: Set(i32::from(status_code)),
        response: Set(response.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map_err(Error::from_write)?;
    Ok(())
}

/// Log an arriving request. It is the transaction's first statement, and a
/// write: on SQLite the transaction takes the write lock before it reads, so
/// it never has to upgrade a stale read snapshot (which fails at once
/// instead of waiting).
pub async fn log_request<C: ConnectionTrait>(
    db: &C,
    operation: &str,
    order_reference: Option<Uuid>,
    merchant_reference: Option<Uuid>,
    idempotency_key: Option<&str>,
) -> Result<i64, Error> {
    let row = requests::ActiveModel {
        operation: Set(operation.to_owned()),
        order_reference: Set(order_reference.map(|u| u.to_string())),
        merchant_reference: Set(merchant_reference.map(|u| u.to_string())),
        idempotency_key: Set(idempotency_key.map(str::to_owned)),
        status_code: Set(None),
        received_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(row.id)
}

/// Complete a logged request: its order and payment (learnt from the
/// payment when the request did not name them) and its answer's status.
pub async fn finish_request<C: ConnectionTrait>(
    db: &C,
    id: i64,
    order_reference: Option<Uuid>,
    merchant_reference: Option<Uuid>,
    status_code: u16,
) -> Result<(), Error> {
    let mut update = requests::Entity::update_many()
        .col_expr(
            requests::Column::StatusCode,
            Expr::value(i32::from(status_code)),
        )
        .filter(requests::Column::Id.eq(id));
    if let Some(order) = order_reference {
        update = update.col_expr(
            requests::Column::OrderReference,
            Expr::value(order.to_string()),
        );
    }
    if let Some(payment) = merchant_reference {
        update = update.col_expr(
            requests::Column::MerchantReference,
            Expr::value(payment.to_string()),
        );
    }
    update.exec(db).await?;
    Ok(())
}

/// How often `order_reference`'s `tok_processingError` failed so far.
pub async fn processing_failures<C: ConnectionTrait>(
    db: &C,
    order_reference: Uuid,
) -> Result<u32, Error> {
    Ok(
        flaky_orders::Entity::find_by_id(order_reference.to_string())
            .one(db)
            .await?
            .map_or(0, |r| u32::try_from(r.failures).unwrap_or(0)),
    )
}

/// Count one more failure of `order_reference`'s `tok_processingError`.
pub async fn count_processing_failure<C: ConnectionTrait>(
    db: &C,
    order_reference: Uuid,
) -> Result<(), Error> {
    flaky_orders::Entity::insert(flaky_orders::ActiveModel {
        order_reference: Set(order_reference.to_string()),
        failures: Set(1),
    })
    .on_conflict(
        OnConflict::column(flaky_orders::Column::OrderReference)
            .value(
                flaky_orders::Column::Failures,
                Expr::col((flaky_orders::Entity, flaky_orders::Column::Failures)).add(1),
            )
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Whether the simulated outage is on.
pub async fn outage<C: ConnectionTrait>(db: &C) -> Result<bool, Error> {
    Ok(switches::Entity::find_by_id(OUTAGE.to_owned())
        .one(db)
        .await?
        .is_some_and(|s| s.enabled))
}

/// Switch the simulated outage.
pub async fn set_outage<C: ConnectionTrait>(db: &C, on: bool) -> Result<(), Error> {
    switches::Entity::insert(switches::ActiveModel {
        name: Set(OUTAGE.into()),
        enabled: Set(on),
    })
    .on_conflict(
        OnConflict::column(switches::Column::Name)
            .update_column(switches::Column::Enabled)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// What the processor did for one order, or for all.
pub async fn activity<C: ConnectionTrait>(
    db: &C,
    order_reference: Option<Uuid>,
) -> Result<Activity, Error> {
    let mut calls = requests::Entity::find();
    let mut moved = movements::Entity::find();
    if let Some(order) = order_reference {
        calls = calls.filter(requests::Column::OrderReference.eq(order.to_string()));
        moved = moved.filter(movements::Column::OrderReference.eq(order.to_string()));
    }
    let mut activity = Activity {
        calls: calls.count(db).await?,
        ..Activity::default()
    };
    // One order moves a handful of times; the whole table only in tests.
    for m in moved.all(db).await? {
        let (count, amount) = match m.kind.as_str() {
            "authorization" => (&mut activity.authorizations, &mut activity.authorized_minor),
            "capture" => (&mut activity.captures, &mut activity.captured_minor),
            "void" => (&mut activity.voids, &mut activity.voided_minor),
            "refund" => (&mut activity.refunds, &mut activity.refunded_minor),
            other => return Err(Error::Internal(format!("stored movement kind {other:?}"))),
        };
        *count += 1;
        *amount += m.amount_minor;
    }
    Ok(activity)
}
