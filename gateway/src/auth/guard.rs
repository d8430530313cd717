//! The resource server's side of OAuth: the security schemes `/v1`
//! operations declare (so the OpenAPI document says what each needs), and
//! the check behind them.
//!
//! poem-openapi's `oauth2` and `bearer` schemes accept any token; the
//! `checker` here validates it ([`Validator`](crate::auth::jwt::Validator))
//! and yields the [`Principal`]. The `#[oai(scope = ...)]` attribute only
//! documents a scope, so every operation also calls
//! [`Authenticated::require`] with the same scope.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use uuid::Uuid;

pub use crate::auth::jwt::Principal;
pub use crate::error::AuthError;
use crate::{
    auth::{jwt::Validator, scopes::Scope},
    error::Error,
};

/// A bearer token validated earlier in this request, and its principal
/// (request extension): a middleware that had to identify the caller (the
/// rate limiter) leaves it for the guard, so that one request costs one
/// signature check. Only good for that exact token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBearer {
    /// The token as sent.
    pub token: String,
    /// Who it speaks for.
    pub principal: Principal,
}

impl ValidatedBearer {
    /// The principal, if `token` is the one validated.
    pub fn principal_of(&self, token: &str) -> Option<&Principal> {
        (self.token == token).then_some(&self.principal)
    }
}

async fn check(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    // The rate limiter (or the idempotency layer) validated this very
    // token a moment ago: one signature check per request is enough.
    if let Some(principal) = req
        .extensions()
        .get::<ValidatedBearer>()
        .and_then(|v| v.principal_of(&bearer.token))
    {
        return Ok(principal.clone());
    }
    let validator = req
        .data::<Arc<Validator>>()
        .expect("the token validator is installed as request data");
    validator
        .validate(&bearer.token)
        .await
        .map_err(|e| Error::Auth(AuthError::InvalidToken(e)).into())
}

/// OAuth 2.0: authorization code with PKCE (Swagger UI's Authorize button,
/// public client `swagger-ui`) or client credentials, against the gateway's
/// own `/oauth/*` endpoints.
#[derive(SecurityScheme)]
#[oai(
    rename = "oauth2",
    ty = "oauth2",
    flows(
        authorization_code(
            authorization_url = "/oauth/authorize",
            token_url = "/oauth/token",
            refresh_url = "/oauth/token",
            scopes = "Scope"
        ),
        client_credentials(token_url = "/oauth/token", scopes = "Scope")
    ),
    checker = "check"
)]
pub struct OAuth2(Principal);

/// A JWT access token in `Authorization: Bearer`, obtained elsewhere.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearer",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check"
)]
pub struct BearerJwt(Principal);

/// An operation that needs a valid access token.
#[derive(SecurityScheme)]
pub enum Authenticated {
    /// Through the OAuth 2.0 flows.
    OAuth2(OAuth2),
    /// A bearer token.
    Bearer(BearerJwt),
}

impl Authenticated {
    /// Who the token speaks for.
    pub fn principal(&self) -> &Principal {
        match self {
            Self::OAuth2(OAuth2(p)) | Self::Bearer(BearerJwt(p)) => p,
        }
    }

    /// Refuse unless the token grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<&Principal, Error> {
        let p = self.principal();
        if p.has_scope(scope.as_str()) {
            Ok(p)
        } else {
            Err(AuthError::InsufficientScope(scope.as_str()).into())
        }
    }

    /// The account the token speaks for; refused for client tokens.
    pub fn user_id(&self) -> Result<Uuid, Error> {
        self.principal()
            .user_id()
            .ok_or_else(|| AuthError::NotAUser.into())
    }
}

/// An operation open to everyone; a token, when sent, is not needed (the
/// OpenAPI document lists the empty requirement `{}` next to the schemes).
#[derive(SecurityScheme)]
pub enum Public {
    /// Through the OAuth 2.0 flows.
    OAuth2(OAuth2),
    /// A bearer token.
    Bearer(BearerJwt),
    /// No token.
    #[oai(fallback)]
    Anonymous,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_validated_earlier_in_the_request_is_not_validated_again() {
        let principal = Principal {
            subject: "u-1".into(),
            client_id: Some("web".into()),
            scopes: ["orders:read".to_owned()].into(),
            roles: vec![],
        };
        // No validator is installed: validating again would panic.
        let mut req = Request::builder().finish();
        req.extensions_mut().insert(ValidatedBearer {
            token: "abc".into(),
            principal: principal.clone(),
        });
        let got = check(
            &req,
            Bearer {
                token: "abc".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(got, principal);
    }
}
