//! `POST /oauth/revoke` (RFC 7009). Refresh tokens are revoked with their
//! whole family by the users service. Access tokens are self-contained JWTs
//! that nobody looks up, so revoking one is accepted and has no effect: it
//! expires within `--oauth-access-ttl`. Unknown tokens are answered 200
//! too, so the endpoint tells nothing about which tokens exist.

use std::sync::Arc;

use jetshop_contracts::users::RevokeRefresh;
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::{Body, IntoResponse, Request, Response, handler, http::StatusCode, web::Data};

use super::{
    Issuer,
    error::OAuthError,
    form::{self, Params},
    no_store,
};
use crate::{http::request_id::RequestId, oauth::sha256_hex};

/// `POST /oauth/revoke`.
#[handler]
pub async fn revoke(
    req: &Request,
    body: Body,
    Data(_issuer): Data<&Arc<Issuer>>,
    Data(rpc): Data<&RpcClient>,
    Data(request_id): Data<&RequestId>,
) -> Response {
    let meta = MessageMeta::correlated(request_id.as_str());
    match run(req, body, rpc, &meta).await {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => err.into_response(),
    }
}

async fn run(
    req: &Request,
    body: Body,
    rpc: &RpcClient,
    meta: &MessageMeta,
) -> Result<(), OAuthError> {
    let params = Params::from_form(req, body).await?;
    let client = form::authenticate(rpc, form::client_auth(req, &params)?, meta).await?;
    let token = params.require("token")?;
    if token.contains('.') {
        // A JWT access token: nothing is stored to revoke.
        return Ok(());
    }
    let request = RevokeRefresh {
        token_hash: sha256_hex(token),
        client_id: client.client_id.clone(),
    };
    match rpc.call_once(&request, meta).await {
        Ok(_) => {
            tracing::info!(client_id = %client.client_id, "refresh token revoked");
            Ok(())
        }
        Err(err) => {
            let e = OAuthError::from_call(&err, OAuthError::invalid_request(""));
            // Refusals (unknown token, another client's) are not errors here.
            if e.error == "invalid_request" {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}
