//! `GET`/`POST /oauth/userinfo` (OpenID Connect Core 5.3): the account
//! behind a bearer access token with the `openid` scope. Errors are problem
//! documents with RFC 6750 `WWW-Authenticate` challenges, like `/v1`.

use std::sync::Arc;

use jetshop_contracts::users::GetUser;
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::{
    IntoResponse, Request, Response, handler,
    web::{Data, Json},
};
use poem_openapi::{auth::Bearer, error::AuthorizationError};

use super::{Issuer, no_store};
use crate::{
    auth::{guard::AuthError, jwt::Validator, scopes},
    error::Error,
    http::request_id::RequestId,
};

/// `GET /oauth/userinfo`.
#[handler]
pub async fn userinfo(
    req: &Request,
    Data(_issuer): Data<&Arc<Issuer>>,
    Data(validator): Data<&Arc<Validator>>,
    Data(rpc): Data<&RpcClient>,
    Data(request_id): Data<&RequestId>,
) -> poem::Result<Response> {
    use poem_openapi::auth::BearerAuthorization;
    let bearer = Bearer::from_request(req).map_err(|_| AuthorizationError)?;
    let principal = validator
        .validate(&bearer.token)
        .await
        .map_err(|e| Error::Auth(AuthError::InvalidToken(e)))?;
    if !principal.has_scope(scopes::OPENID) {
        return Err(Error::Auth(AuthError::InsufficientScope(scopes::OPENID)).into());
    }
    let id = principal
        .user_id()
        .ok_or(Error::Auth(AuthError::NotAUser))?;
    let user = rpc
        .call(
            &GetUser { id },
            &MessageMeta::correlated(request_id.as_str()),
        )
        .await
        .map_err(Error::from)?;
    let mut claims = serde_json::json!({ "sub": user.id.to_string() });
    if principal.has_scope(scopes::EMAIL) {
        claims["email"] = user.email.into();
    }
    if principal.has_scope(scopes::PROFILE) {
        claims["name"] = user.display_name.into();
    }
    claims["roles"] = user
        .roles
        .iter()
        .map(|r| scopes::role_name(*r))
        .collect::<Vec<_>>()
        .into();
    Ok(no_store(Json(claims).into_response()))
}
