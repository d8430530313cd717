//! `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0,
//! RFC 8414) and `GET /.well-known/jwks.json` (the public keys, current
//! first, then those retired but still verifying unexpired tokens).

use std::sync::Arc;

use poem::{
    IntoResponse, Response, handler,
    http::{HeaderValue, header},
    web::{Data, Json},
};

use super::{AUTHORIZE_PATH, Issuer, JWKS_PATH, REVOKE_PATH, TOKEN_PATH, USERINFO_PATH};
use crate::auth::scopes;

/// `GET /.well-known/openid-configuration`.
#[handler]
pub fn openid_configuration(Data(issuer): Data<&Arc<Issuer>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "issuer": issuer.issuer(),
        "authorization_endpoint": issuer.url(AUTHORIZE_PATH),
        "token_endpoint": issuer.url(TOKEN_PATH),
        "revocation_endpoint": issuer.url(REVOKE_PATH),
        "userinfo_endpoint": issuer.url(USERINFO_PATH),
        "jwks_uri": issuer.url(JWKS_PATH),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": scopes::ALL,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "email", "name", "roles"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

/// `GET /.well-known/jwks.json`.
#[handler]
pub fn jwks(Data(issuer): Data<&Arc<Issuer>>) -> Response {
    let mut resp = Json(issuer.keys().jwks()).into_response();
    // Short, so a rotation reaches resource servers that honour caching
    // well within the grace period of the previous key.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
