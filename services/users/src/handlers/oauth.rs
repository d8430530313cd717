//! OAuth clients and the grants every gateway replica shares: codes and
//! refresh tokens, by hash.

use jetshop_contracts::users::{
    Ack, AuthenticateClient, CodeGrant, GetClient, IssueRefresh, OAuthClient, RedeemCode,
    RefreshGrant, RevokeRefresh, RotateRefresh, StoreCode,
};
use jetshop_platform::envelope::MessageMeta;

use super::Ctx;
use crate::{
    Error,
    error::BAD_CLIENT,
    storage::{clients, grants},
};

/// RPC: one client, without its secret.
pub async fn get_client(
    ctx: Ctx,
    req: GetClient,
    _meta: MessageMeta,
) -> Result<OAuthClient, Error> {
    let row = clients::find(&ctx.db, &req.client_id)
        .await?
        .ok_or_else(|| Error::ClientNotFound(req.client_id.clone()))?;
    clients::to_wire(&row)
}

/// RPC: check a confidential client's secret. Unknown clients and public
/// clients (which have no secret) cost one verification against the dummy
/// hash and get the same answer as a wrong secret.
pub async fn authenticate_client(
    ctx: Ctx,
    req: AuthenticateClient,
    _meta: MessageMeta,
) -> Result<OAuthClient, Error> {
    let row = clients::find(&ctx.db, &req.client_id).await?;
    let stored = row.as_ref().and_then(|r| r.secret_hash.as_deref());
    let matched = ctx.hasher.verify(&req.client_secret, stored).await?;
    match row {
        Some(row) if matched => clients::to_wire(&row),
        _ => {
            tracing::info!(client_id = %req.client_id, "client authentication refused");
            Err(Error::Unauthorized(BAD_CLIENT))
        }
    }
}

/// RPC: keep an authorization code.
pub async fn store_code(ctx: Ctx, req: StoreCode, _meta: MessageMeta) -> Result<Ack, Error> {
    grants::store_code(&ctx.db, &req).await?;
    Ok(Ack {})
}

/// RPC: redeem an authorization code, once.
pub async fn redeem_code(
    ctx: Ctx,
    req: RedeemCode,
    _meta: MessageMeta,
) -> Result<CodeGrant, Error> {
    grants::redeem_code(&ctx.db, &req).await
}

/// RPC: keep a new refresh token.
pub async fn issue_refresh(ctx: Ctx, req: IssueRefresh, _meta: MessageMeta) -> Result<Ack, Error> {
    grants::issue_refresh(&ctx.db, &req).await?;
    Ok(Ack {})
}

/// RPC: rotate a refresh token; reuse revokes its family.
pub async fn rotate_refresh(
    ctx: Ctx,
    req: RotateRefresh,
    _meta: MessageMeta,
) -> Result<RefreshGrant, Error> {
    grants::rotate_refresh(&ctx.db, &req).await
}

/// RPC: revoke a refresh token's family; unknown tokens are acknowledged too.
pub async fn revoke_refresh(
    ctx: Ctx,
    req: RevokeRefresh,
    _meta: MessageMeta,
) -> Result<Ack, Error> {
    grants::revoke_refresh(&ctx.db, &req.token_hash, &req.client_id).await?;
    Ok(Ack {})
}
