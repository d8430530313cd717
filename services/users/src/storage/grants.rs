//! Authorization codes and refresh tokens, kept by hash so that every
//! gateway replica can redeem what another issued. The single-use and
//! rotation rules are enforced by conditional UPDATEs, so they hold under
//! concurrent requests on SQLite and PostgreSQL alike.

use chrono::{TimeDelta, Utc};
use jetshop_contracts::users::{
    CodeGrant, IssueRefresh, RedeemCode, RefreshGrant, RotateRefresh, StoreCode,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::entity::{
    code::{self, Column as CodeCol, Entity as Codes},
    refresh::{self, Column as RefreshCol, Entity as Refresh},
};
use crate::{
    Error,
    error::{BAD_REFRESH, REFRESH_REUSE},
};

/// Expired codes and tokens are deleted this long after they expire.
const KEEP_EXPIRED: TimeDelta = TimeDelta::days(1);

fn parse_uuid(what: &str, s: &str) -> Result<Uuid, Error> {
    s.parse()
        .map_err(|e| Error::Internal(format!("stored {what} {s:?}: {e}")))
}

/// A token or code hash as the gateway sends it: hex, bounded.
pub fn check_hash(field: &'static str, hash: &str) -> Result<(), Error> {
    if hash.is_empty() || hash.len() > 128 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::invalid(field, "must be a hex digest (SHA-256)"));
    }
    Ok(())
}

/// Keep a new authorization code.
pub async fn store_code<C: ConnectionTrait>(db: &C, req: &StoreCode) -> Result<(), Error> {
    check_hash("code_hash", &req.code_hash)?;
    Codes::delete_many()
        .filter(CodeCol::ExpiresAt.lt(Utc::now() - KEEP_EXPIRED))
        .exec(db)
        .await?;
    code::ActiveModel {
        code_hash: Set(req.code_hash.clone()),
        client_id: Set(req.client_id.clone()),
        user_id: Set(req.user_id.to_string()),
        redirect_uri: Set(req.redirect_uri.clone()),
        scope: Set(req.scope.clone()),
        challenge: Set(req.code_challenge.clone()),
        method: Set(req.code_challenge_method.clone()),
        nonce: Set(req.nonce.clone()),
        expires_at: Set(req.expires_at),
        redeemed_at: Set(None),
    }
    .insert(db)
    .await
    .map_err(|e| Error::from_insert(e, Error::DuplicateGrant("code")))?;
    Ok(())
}

/// Redeem a code exactly once: one atomic UPDATE decides, so of two
/// concurrent redemptions only one sees `rows_affected == 1`.
pub async fn redeem_code<C: ConnectionTrait>(db: &C, req: &RedeemCode) -> Result<CodeGrant, Error> {
    let now = Utc::now();
    let result = Codes::update_many()
        .col_expr(CodeCol::RedeemedAt, Expr::value(now))
        .filter(CodeCol::CodeHash.eq(req.code_hash.as_str()))
        .filter(CodeCol::ClientId.eq(req.client_id.as_str()))
        .filter(CodeCol::RedeemedAt.is_null())
        .filter(CodeCol::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Err(Error::CodeNotRedeemable);
    }
    let row = Codes::find_by_id(req.code_hash.clone())
        .one(db)
        .await?
        .ok_or(Error::CodeNotRedeemable)?;
    Ok(CodeGrant {
        user_id: parse_uuid("code user id", &row.user_id)?,
        redirect_uri: row.redirect_uri,
        scope: row.scope,
        code_challenge: row.challenge,
        code_challenge_method: row.method,
        nonce: row.nonce,
    })
}

/// Keep a new refresh token (the first of a family, at login).
pub async fn issue_refresh<C: ConnectionTrait>(db: &C, req: &IssueRefresh) -> Result<(), Error> {
    check_hash("token_hash", &req.token_hash)?;
    Refresh::delete_many()
        .filter(RefreshCol::ExpiresAt.lt(Utc::now() - KEEP_EXPIRED))
        .exec(db)
        .await?;
    insert_refresh(
        db,
        &req.token_hash,
        req.family_id,
        &req.client_id,
        req.user_id,
        &req.scope,
        req.expires_at,
    )
    .await
}

async fn insert_refresh<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
    family_id: Uuid,
    client_id: &str,
    user_id: Uuid,
    scope: &str,
    expires_at: chrono::DateTime<Utc>,
) -> Result<(), Error> {
    refresh::ActiveModel {
        token_hash: Set(token_hash.to_owned()),
        family_id: Set(family_id.to_string()),
        client_id: Set(client_id.to_owned()),
        user_id: Set(user_id.to_string()),
        scope: Set(scope.to_owned()),
        expires_at: Set(expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
    .map_err(|e| Error::from_insert(e, Error::DuplicateGrant("refresh token")))?;
    Ok(())
}

/// Exchange a refresh token for its successor in the same family.
///
/// The first statement is the conditional UPDATE that marks the presented
/// token rotated, so it both decides the race (only one rotation of a
/// token wins) and takes SQLite's write lock before any read. When it
/// matches nothing, a token that was already rotated is reuse: the whole
/// family is revoked (committed) and the answer is `unauthorized`.
pub async fn rotate_refresh(
    db: &DatabaseConnection,
    req: &RotateRefresh,
) -> Result<RefreshGrant, Error> {
    check_hash("new_token_hash", &req.new_token_hash)?;
    let now = Utc::now();
    let txn = db.begin().await?;
    let rotated = Refresh::update_many()
        .col_expr(RefreshCol::RotatedAt, Expr::value(now))
        .filter(RefreshCol::TokenHash.eq(req.token_hash.as_str()))
        .filter(RefreshCol::ClientId.eq(req.client_id.as_str()))
        .filter(RefreshCol::RotatedAt.is_null())
        .filter(RefreshCol::RevokedAt.is_null())
        .filter(RefreshCol::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    let row = Refresh::find_by_id(req.token_hash.clone())
        .one(&txn)
        .await?;
    let Some(row) = row.filter(|r| r.client_id == req.client_id) else {
        return Err(Error::Unauthorized(BAD_REFRESH));
    };
    if rotated.rows_affected != 1 {
        if row.rotated_at.is_some() && row.revoked_at.is_none() {
            revoke_family(&txn, &row.family_id).await?;
            txn.commit().await?;
            tracing::warn!(family_id = %row.family_id, client_id = %row.client_id, "refresh token reuse; family revoked");
            return Err(Error::Unauthorized(REFRESH_REUSE));
        }
        return Err(Error::Unauthorized(BAD_REFRESH));
    }
    let family_id = parse_uuid("refresh family id", &row.family_id)?;
    let user_id = parse_uuid("refresh user id", &row.user_id)?;
    insert_refresh(
        &txn,
        &req.new_token_hash,
        family_id,
        &row.client_id,
        user_id,
        &row.scope,
        req.expires_at,
    )
    .await?;
    txn.commit().await?;
    Ok(RefreshGrant {
        family_id,
        user_id,
        scope: row.scope,
    })
}

/// Revoke the family of a token presented by its own client. Unknown
/// tokens and tokens of other clients change nothing and are not an error
/// (RFC 7009), so the answer reveals nothing.
pub async fn revoke_refresh<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
    client_id: &str,
) -> Result<(), Error> {
    let row = Refresh::find_by_id(token_hash.to_owned()).one(db).await?;
    if let Some(row) = row.filter(|r| r.client_id == client_id) {
        revoke_family(db, &row.family_id).await?;
        tracing::info!(family_id = %row.family_id, client_id, "refresh family revoked");
    }
    Ok(())
}

async fn revoke_family<C: ConnectionTrait>(db: &C, family_id: &str) -> Result<(), Error> {
    Refresh::update_many()
        .col_expr(RefreshCol::RevokedAt, Expr::value(Utc::now()))
        .filter(RefreshCol::FamilyId.eq(family_id))
        .filter(RefreshCol::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}
