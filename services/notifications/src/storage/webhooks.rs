//! Queries on the webhook registry.

use chrono::Utc;
use sea_orm::{ConnectionTrait, EntityTrait, Set, sea_query::OnConflict};
use uuid::Uuid;

use super::entity::webhook::{ActiveModel, Column, Entity, Model};
use crate::Error;

/// Register `url` with `secret` for `user_id`, replacing any webhook the
/// user had (and so its secret).
pub async fn upsert<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    url: &str,
    secret: &str,
) -> Result<Model, Error> {
    let row = ActiveModel {
        user_id: Set(user_id.to_string()),
        url: Set(url.to_owned()),
        secret: Set(secret.to_owned()),
        created_at: Set(Utc::now()),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::UserId)
                .update_columns([Column::Url, Column::Secret, Column::CreatedAt])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    find(db, user_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("webhook of user {user_id} vanished")))
}

/// The user's webhook, when there is one.
pub async fn find<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<Model>, Error> {
    Ok(Entity::find_by_id(user_id.to_string()).one(db).await?)
}

/// Remove the user's webhook; `false` when there was none.
pub async fn delete<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<bool, Error> {
    Ok(Entity::delete_by_id(user_id.to_string())
        .exec(db)
        .await?
        .rows_affected
        == 1)
}
