//! Accounts: register, read, change a profile, verify credentials.
//!
//! Every state change is committed in one transaction together with the
//! event it causes (outbox). Nothing here logs or returns a password or a
//! hash.

use jetshop_contracts::users::{
    GetUser, ProfileChanged, RegisterUser, Role, UpdateProfile, User, UserRegistered,
    VerifyCredentials,
};
use jetshop_platform::{envelope::MessageMeta, outbox};
use sea_orm::TransactionTrait;

use super::Ctx;
use crate::{
    Error,
    domain::{DisplayName, Email, Password},
    error::BAD_CREDENTIALS,
    storage::users::{self, NewUser},
};

/// RPC: register a customer account.
pub async fn register(ctx: Ctx, req: RegisterUser, meta: MessageMeta) -> Result<User, Error> {
    create(
        &ctx,
        &req.email,
        &req.password,
        req.display_name.as_deref(),
        &[Role::Customer],
        &meta,
    )
    .await
}

/// Create an account with `roles`: validate, hash, then insert it and its
/// `UserRegistered` event in one transaction. The email's unique index is
/// the real guard against two concurrent registrations; the lookup first
/// only spares a hash when the answer is already known.
pub async fn create(
    ctx: &Ctx,
    email: &str,
    password: &str,
    display_name: Option<&str>,
    roles: &[Role],
    meta: &MessageMeta,
) -> Result<User, Error> {
    let email = Email::parse(email)?;
    let password = Password::parse(password, &email)?;
    let display_name = DisplayName::parse(display_name.unwrap_or(email.local_part()))?;
    if users::find_by_email(&ctx.db, &email).await?.is_some() {
        return Err(Error::EmailTaken);
    }
    let password_hash = ctx.hasher.hash(password.expose()).await?;
    let txn = ctx.db.begin().await?;
    let row = users::insert(
        &txn,
        NewUser {
            email: &email,
            password_hash,
            display_name: &display_name,
            roles,
        },
    )
    .await?;
    let user = users::to_wire(&row)?;
    outbox::enqueue(
        &txn,
        &UserRegistered { user: user.clone() },
        &meta.caused_by(),
    )
    .await?;
    txn.commit().await?;
    ctx.committed();
    tracing::info!(user_id = %user.id, roles = %row.roles, "user registered");
    Ok(user)
}

/// RPC: one account.
pub async fn get(ctx: Ctx, req: GetUser, _meta: MessageMeta) -> Result<User, Error> {
    let row = users::find(&ctx.db, req.id)
        .await?
        .ok_or(Error::UserNotFound(req.id))?;
    users::to_wire(&row)
}

/// RPC: change a profile and emit `ProfileChanged`.
pub async fn update(ctx: Ctx, req: UpdateProfile, meta: MessageMeta) -> Result<User, Error> {
    let Some(name) = req.display_name.as_deref() else {
        return Err(Error::invalid(
            "display_name",
            "no field to change was given",
        ));
    };
    let name = DisplayName::parse(name)?;
    // Read outside the transaction and let the versioned UPDATE be its
    // first statement: on SQLite a transaction that reads before it writes
    // fails at once (SQLITE_BUSY_SNAPSHOT) if another writer got in between.
    let current = users::find(&ctx.db, req.id)
        .await?
        .ok_or(Error::UserNotFound(req.id))?;
    let txn = ctx.db.begin().await?;
    let row = users::update_display_name(&txn, current, &name).await?;
    let user = users::to_wire(&row)?;
    outbox::enqueue(
        &txn,
        &ProfileChanged { user: user.clone() },
        &meta.caused_by(),
    )
    .await?;
    txn.commit().await?;
    ctx.committed();
    tracing::info!(user_id = %user.id, version = user.version, "profile changed");
    Ok(user)
}

/// RPC: check an email and password. An unknown (or malformed) email still
/// costs one argon2 verification, against the dummy hash, and both
/// failures answer the same `unauthorized` error.
pub async fn verify(ctx: Ctx, req: VerifyCredentials, _meta: MessageMeta) -> Result<User, Error> {
    let row = match Email::parse(&req.email) {
        Ok(email) => users::find_by_email(&ctx.db, &email).await?,
        Err(_) => None,
    };
    let stored = row.as_ref().map(|r| r.password_hash.as_str());
    let matched = ctx.hasher.verify(&req.password, stored).await?;
    match row {
        Some(row) if matched => {
            tracing::info!(user_id = %row.id, "credentials verified");
            users::to_wire(&row)
        }
        _ => {
            tracing::info!("credentials refused");
            Err(Error::Unauthorized(BAD_CREDENTIALS))
        }
    }
}
