//! Account queries and writes. Writes take a connection or transaction so
//! the caller can put the outbox row in the same one.

use chrono::Utc;
use jetshop_contracts::users::{Role, User};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entity::user::{self, Column, Entity as Users};
use crate::{
    Error,
    domain::{DisplayName, Email, decode_roles, encode_roles},
};

/// The wire shape of a row (no password hash).
pub fn to_wire(m: &user::Model) -> Result<User, Error> {
    Ok(User {
        id: parse_id(&m.id)?,
        email: m.email.clone(),
        display_name: m.display_name.clone(),
        roles: decode_roles(&m.roles)
            .map_err(|e| Error::Internal(format!("stored roles of user {}: {e}", m.id)))?,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    id.parse()
        .map_err(|e| Error::Internal(format!("stored user id {id:?}: {e}")))
}

/// One account.
pub async fn find<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<Option<user::Model>, Error> {
    Ok(Users::find_by_id(id.to_string()).one(db).await?)
}

/// The account holding `email`, if any.
pub async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    email: &Email,
) -> Result<Option<user::Model>, Error> {
    Ok(Users::find()
        .filter(Column::Email.eq(email.as_str()))
        .one(db)
        .await?)
}

/// A validated account to insert.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Normalised email.
    pub email: &'a Email,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Display name.
    pub display_name: &'a DisplayName,
    /// Roles.
    pub roles: &'a [Role],
}

/// Insert a new account. A unique violation (the same email registered
/// concurrently) is [`Error::EmailTaken`].
pub async fn insert<C: ConnectionTrait>(db: &C, new: NewUser<'_>) -> Result<user::Model, Error> {
    let now = Utc::now();
    let row = user::ActiveModel {
        id: Set(Uuid::now_v7().to_string()),
        email: Set(new.email.as_str().to_owned()),
        password_hash: Set(new.password_hash),
        display_name: Set(new.display_name.as_str().to_owned()),
        roles: Set(encode_roles(new.roles)),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    };
    row.insert(db)
        .await
        .map_err(|e| Error::from_insert(e, Error::EmailTaken))
}

/// Change the display name if the row is still at `current.version`.
pub async fn update_display_name<C: ConnectionTrait>(
    db: &C,
    current: user::Model,
    name: &DisplayName,
) -> Result<user::Model, Error> {
    let id = parse_id(&current.id)?;
    let version = current.version;
    let mut row: user::ActiveModel = current.into();
    row.display_name = Set(name.as_str().to_owned());
    row.version = Set(version + 1);
    row.updated_at = Set(Utc::now());
    // Optimistic concurrency: only the writer that saw `version` wins.
    let result = Users::update_many()
        .set(row)
        .filter(Column::Id.eq(id.to_string()))
        .filter(Column::Version.eq(version))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::Conflict(id));
    }
    find(db, id).await?.ok_or(Error::UserNotFound(id))
}
