//! The `sagas` table. Every change is a conditional UPDATE on the version
//! read (optimistic concurrency): two instances acting on one order at once
//! cannot both win, the loser retries from a fresh read. That, with the
//! event store's unique sequence, is how events of one order are applied in
//! order even with several consumer instances.

use chrono::{DateTime, Utc};
use jetshop_contracts::orders::SagaView;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::saga::{ActiveModel, Column, Entity as Sagas, Model};
use crate::{
    Error,
    domain::saga::{Saga, SagaState, Step},
};

/// A saga's mutable fields after a decision.
#[derive(Debug, Clone)]
pub struct Change {
    /// New state.
    pub state: SagaState,
    /// Pending step.
    pub step: Option<Step>,
    /// Sends of that step.
    pub attempts: i32,
    /// Sends of every step.
    pub sends: i32,
    /// When the step times out.
    pub deadline_at: Option<DateTime<Utc>>,
    /// When the step was first sent.
    pub step_started_at: DateTime<Utc>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Why it compensates.
    pub cancel_reason: Option<String>,
}

impl Change {
    /// The current fields of a stored saga, to be modified.
    pub fn from_row(row: &Model) -> Result<Self, Error> {
        let saga = to_domain(row)?;
        Ok(Self {
            state: saga.state,
            step: saga.step,
            attempts: row.attempts,
            sends: row.sends,
            deadline_at: row.deadline_at,
            step_started_at: row.step_started_at,
            last_error: row.last_error.clone(),
            cancel_reason: row.cancel_reason.clone(),
        })
    }
}

/// Start a saga, in the caller's transaction.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    change: &Change,
    card_token: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let row = ActiveModel {
        order_id: Set(order_id.to_string()),
        state: Set(change.state.as_str().to_owned()),
        step: Set(change.step.map(|s| s.as_str().to_owned())),
        attempts: Set(change.attempts),
        sends: Set(change.sends),
        deadline_at: Set(change.deadline_at),
        step_started_at: Set(change.step_started_at),
        last_error: Set(change.last_error.clone()),
        cancel_reason: Set(change.cancel_reason.clone()),
        card_token: Set(card_token.to_owned()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Sagas::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// One order's saga.
pub async fn find<C: ConnectionTrait>(db: &C, order_id: Uuid) -> Result<Option<Model>, Error> {
    Ok(Sagas::find_by_id(order_id.to_string()).one(db).await?)
}

/// Apply `change` if the saga is still at `version`; [`Error::Conflict`] otherwise.
pub async fn update<C: ConnectionTrait>(
    db: &C,
    order_id: Uuid,
    version: i64,
    change: &Change,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let result = Sagas::update_many()
        .col_expr(Column::State, Expr::value(change.state.as_str()))
        .col_expr(Column::Step, Expr::value(change.step.map(|s| s.as_str())))
        .col_expr(Column::Attempts, Expr::value(change.attempts))
        .col_expr(Column::Sends, Expr::value(change.sends))
        .col_expr(Column::DeadlineAt, Expr::value(change.deadline_at))
        .col_expr(Column::StepStartedAt, Expr::value(change.step_started_at))
        .col_expr(Column::LastError, Expr::value(change.last_error.clone()))
        .col_expr(
            Column::CancelReason,
            Expr::value(change.cancel_reason.clone()),
        )
        .col_expr(Column::Version, Expr::value(version + 1))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::OrderId.eq(order_id.to_string()))
        .filter(Column::Version.eq(version))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        Ok(())
    } else {
        Err(Error::Conflict(order_id))
    }
}

/// Waiting sagas whose deadline has passed, oldest deadline first.
pub async fn overdue<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Model>, Error> {
    let waiting: Vec<&str> = SagaState::ALL
        .into_iter()
        .filter(|s| s.is_waiting())
        .map(|s| s.as_str())
        .collect();
    Ok(Sagas::find()
        .filter(Column::State.is_in(waiting))
        .filter(Column::DeadlineAt.lt(now))
        .order_by_asc(Column::DeadlineAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// Sagas in `state`, or every one not completed; least recently changed first.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    state: Option<SagaState>,
    limit: u64,
) -> Result<Vec<Model>, Error> {
    let q = match state {
        Some(s) => Sagas::find().filter(Column::State.eq(s.as_str())),
        None => Sagas::find().filter(Column::State.ne(SagaState::Completed.as_str())),
    };
    Ok(q.order_by_asc(Column::UpdatedAt)
        .limit(limit)
        .all(db)
        .await?)
}

/// How many sagas are not completed (stuck ones included).
pub async fn count_open<C: ConnectionTrait>(db: &C) -> Result<u64, Error> {
    Ok(Sagas::find()
        .filter(Column::State.ne(SagaState::Completed.as_str()))
        .count(db)
        .await?)
}

/// How many sagas are in `state`.
pub async fn count<C: ConnectionTrait>(db: &C, state: SagaState) -> Result<u64, Error> {
    Ok(Sagas::find()
        .filter(Column::State.eq(state.as_str()))
        .count(db)
        .await?)
}

/// The rules' view of a stored saga.
pub fn to_domain(row: &Model) -> Result<Saga, Error> {
    Ok(Saga {
        order_id: row
            .order_id
            .parse()
            .map_err(|e| Error::Corrupt(format!("saga id {:?}: {e}", row.order_id)))?,
        state: SagaState::parse(&row.state)
            .ok_or_else(|| Error::Corrupt(format!("saga state {:?}", row.state)))?,
        step: match &row.step {
            None => None,
            Some(s) => {
                Some(Step::parse(s).ok_or_else(|| Error::Corrupt(format!("saga step {s:?}")))?)
            }
        },
        attempts: row.attempts,
        cancel_reason: row.cancel_reason.clone(),
    })
}

/// A stored saga as operators see it.
pub fn to_view(row: &Model) -> Result<SagaView, Error> {
    let saga = to_domain(row)?;
    Ok(SagaView {
        order_id: saga.order_id,
        state: row.state.clone(),
        step: row.step.clone().unwrap_or_default(),
        attempts: row.attempts,
        deadline_at: row.deadline_at,
        last_error: row.last_error.clone(),
        updated_at: row.updated_at,
    })
}
