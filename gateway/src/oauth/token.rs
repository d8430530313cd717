//! `POST /oauth/token` (RFC 6749 section 3.2): the `authorization_code`
//! (with PKCE), `client_credentials` and `refresh_token` grants. The
//! password and implicit grants are not offered.
//!
//! Refresh tokens are opaque random strings stored by the users service as
//! SHA-256 hashes, in families: each use rotates the token, and presenting
//! an already rotated token revokes the whole family (the users service
//! decides; we answer `invalid_grant`).

use std::{collections::BTreeSet, sync::Arc};

use chrono::Utc;
use jetshop_contracts::users::{
    GetUser, GrantType, IssueRefresh, OAuthClient, RedeemCode, RotateRefresh, User,
};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::{Body, IntoResponse, Request, Response, handler, web::Data};
use uuid::Uuid;

use super::{
    Issuer, TokenResponse,
    error::OAuthError,
    form::{self, Params},
    no_store, pkce, random_token, sha256_hex,
};
use crate::{auth::scopes, http::request_id::RequestId};

/// `POST /oauth/token`.
#[handler]
pub async fn token(
    req: &Request,
    body: Body,
    Data(issuer): Data<&Arc<Issuer>>,
    Data(rpc): Data<&RpcClient>,
    Data(request_id): Data<&RequestId>,
) -> Response {
    let meta = MessageMeta::correlated(request_id.as_str());
    match grant(req, body, issuer, rpc, &meta).await {
        Ok(tokens) => no_store(poem::web::Json(tokens).into_response()),
        Err(err) => {
            tracing::info!(error = err.error, description = %err.description, "token request refused");
            err.into_response()
        }
    }
}

async fn grant(
    req: &Request,
    body: Body,
    issuer: &Issuer,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<TokenResponse, OAuthError> {
    let params = Params::from_form(req, body).await?;
    let grant_type = params.require("grant_type")?.to_owned();
    let known = matches!(
        grant_type.as_str(),
        "authorization_code" | "client_credentials" | "refresh_token"
    );
    if !known {
        return Err(OAuthError::unsupported_grant_type(
            "supported grants: authorization_code, client_credentials, refresh_token",
        ));
    }
    let client = form::authenticate(rpc, form::client_auth(req, &params)?, meta).await?;
    tracing::debug!(client_id = %client.client_id, grant_type, "token request");
    match grant_type.as_str() {
        "authorization_code" => authorization_code(&params, &client, issuer, rpc, meta).await,
        "client_credentials" => client_credentials(&params, &client, issuer, rpc, meta).await,
        _ => refresh(&params, &client, issuer, rpc, meta).await,
    }
}

fn allowed(client: &OAuthClient, grant: GrantType) -> Result<(), OAuthError> {
    if client.grant_types.contains(&grant) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(
            "this client may not use this grant type",
        ))
    }
}

async fn user(rpc: &RpcClient, id: Uuid, meta: &MessageMeta) -> Result<User, OAuthError> {
    rpc.call(&GetUser { id }, meta).await.map_err(|e| {
        OAuthError::from_call(
            &e,
            OAuthError::invalid_grant("the account no longer exists"),
        )
    })
}

/// Start a refresh-token family for a client that may refresh.
async fn new_refresh(
    issuer: &Issuer,
    rpc: &RpcClient,
    client: &OAuthClient,
    user_id: Uuid,
    scope: &str,
    meta: &MessageMeta,
) -> Result<Option<String>, OAuthError> {
    if !client.grant_types.contains(&GrantType::RefreshToken) {
        return Ok(None);
    }
    let refresh_token = random_token();
    let issue = IssueRefresh {
        token_hash: sha256_hex(&refresh_token),
        family_id: Uuid::now_v7(),
        client_id: client.client_id.clone(),
        user_id,
        scope: scope.to_owned(),
        expires_at: refresh_expiry(issuer),
    };
    rpc.call_once(&issue, meta).await.map_err(|e| {
        OAuthError::from_call(
            &e,
            OAuthError::invalid_grant("cannot keep the refresh token"),
        )
    })?;
    Ok(Some(refresh_token))
}

fn refresh_expiry(issuer: &Issuer) -> chrono::DateTime<Utc> {
    Utc::now()
        + chrono::Duration::from_std(issuer.refresh_ttl).unwrap_or(chrono::Duration::days(30))
}

async fn authorization_code(
    params: &Params,
    client: &OAuthClient,
    issuer: &Issuer,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<TokenResponse, OAuthError> {
    allowed(client, GrantType::AuthorizationCode)?;
    let code = params.require("code")?;
    let redeem = RedeemCode {
        code_hash: sha256_hex(code),
        client_id: client.client_id.clone(),
    };
    // Single use: the users service forgets the code as it answers.
    let grant = rpc.call_once(&redeem, meta).await.map_err(|e| {
        OAuthError::from_call(
            &e,
            OAuthError::invalid_grant(
                "the code is unknown, expired, used or not issued to this client",
            ),
        )
    })?;
    if params
        .get("redirect_uri")
        .is_some_and(|uri| uri != grant.redirect_uri)
    {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request's",
        ));
    }
    match (grant.code_challenge.is_empty(), params.get("code_verifier")) {
        (true, None) => {}
        (true, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "the authorization request had no code_challenge",
            ));
        }
        (false, None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        (false, Some(verifier)) => {
            if grant.code_challenge_method != pkce::S256
                || !pkce::verify(verifier, &grant.code_challenge)
            {
                return Err(OAuthError::invalid_grant(
                    "the code_verifier does not match",
                ));
            }
        }
    }
    let user = user(rpc, grant.user_id, meta).await?;
    // Roles may have changed since the login.
    let scope = scopes::join(&scopes::allowed_for_roles(
        &scopes::parse(&grant.scope),
        &user.roles,
    ));
    let refresh_token = new_refresh(issuer, rpc, client, user.id, &scope, meta).await?;
    tracing::info!(client_id = %client.client_id, user_id = %user.id, "tokens issued for a code");
    Ok(issuer.respond_for_user(
        &user,
        &client.client_id,
        &scope,
        refresh_token,
        grant.nonce.as_deref(),
    ))
}

async fn client_credentials(
    params: &Params,
    client: &OAuthClient,
    issuer: &Issuer,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<TokenResponse, OAuthError> {
    if !client.confidential {
        return Err(OAuthError::unauthorized_client(
            "a public client cannot use client credentials",
        ));
    }
    allowed(client, GrantType::ClientCredentials)?;
    let allowed: BTreeSet<String> = client.scopes.iter().cloned().collect();
    let scope = narrow(params, &allowed)?;
    let (sub, roles) = match client.service_account {
        Some(id) => {
            let account = user(rpc, id, meta).await?;
            let roles = account
                .roles
                .iter()
                .map(|r| scopes::role_name(*r).to_owned())
                .collect();
            (id.to_string(), roles)
        }
        None => (client.client_id.clone(), Vec::new()),
    };
    let (access_token, expires_in) = issuer.mint_access(sub, &client.client_id, &scope, roles);
    tracing::info!(client_id = %client.client_id, "tokens issued for client credentials");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
        scope,
        refresh_token: None,
        id_token: None,
    })
}

/// The `scope` parameter, which must be within `granted`; all of `granted` when absent.
fn narrow(params: &Params, granted: &BTreeSet<String>) -> Result<String, OAuthError> {
    match params.get("scope") {
        None => Ok(scopes::join(granted)),
        Some(asked) => {
            let asked = scopes::parse(asked);
            match asked.iter().find(|s| !granted.contains(*s)) {
                Some(bad) if scopes::is_valid_token(bad) => Err(OAuthError::invalid_scope(
                    format!("the scope `{bad}` was not granted"),
                )),
                Some(_) => Err(OAuthError::invalid_scope("a scope was not granted")),
                None => Ok(scopes::join(&asked)),
            }
        }
    }
}

async fn refresh(
    params: &Params,
    client: &OAuthClient,
    issuer: &Issuer,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<TokenResponse, OAuthError> {
    allowed(client, GrantType::RefreshToken)?;
    let presented = params.require("refresh_token")?;
    let successor = random_token();
    let rotate = RotateRefresh {
        token_hash: sha256_hex(presented),
        new_token_hash: sha256_hex(&successor),
        client_id: client.client_id.clone(),
        expires_at: refresh_expiry(issuer),
    };
    let grant = rpc.call_once(&rotate, meta).await.map_err(|e| {
        OAuthError::from_call(
            &e,
            OAuthError::invalid_grant(
                "the refresh token is unknown, expired, revoked or already used",
            ),
        )
    })?;
    let user = user(rpc, grant.user_id, meta).await?;
    let held = scopes::allowed_for_roles(&scopes::parse(&grant.scope), &user.roles);
    let scope = narrow(params, &held)?;
    tracing::info!(client_id = %client.client_id, user_id = %user.id, family_id = %grant.family_id, "refresh token rotated");
    Ok(issuer.respond_for_user(&user, &client.client_id, &scope, Some(successor), None))
}
