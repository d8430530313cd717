//! The built-in authorization server (when no external issuer is
//! configured): `/oauth/authorize` (login page, authorization code + PKCE),
//! `/oauth/token`, `/oauth/revoke`, `/oauth/userinfo`, and the discovery
//! documents under `/.well-known/`.
//!
//! It keeps no state of its own: authorization codes and refresh tokens
//! are stored (hashed) by the users service, so any gateway replica
//! redeems what another issued, and the login form carries the
//! authorization request signed by the issuer's key instead of a session.

pub mod authorize;
pub mod discovery;
pub mod error;
pub mod form;
pub mod keys;
pub mod mint;
pub mod pkce;
pub mod revoke;
pub mod token;
pub mod userinfo;

use std::{sync::Arc, time::Duration};

use base64::Engine;
use chrono::Utc;
use jetshop_contracts::users::User;
use poem::{
    EndpointExt, Response, Route, get,
    http::{HeaderValue, header},
    post,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{AuthSettings, scopes},
    error::Error,
    oauth::{
        keys::KeyRing,
        mint::{ACCESS_TOKEN_TYP, AccessClaims},
    },
};

/// How often the key directory is re-read.
pub const KEY_RELOAD: Duration = Duration::from_secs(30);

/// Where the authorization endpoint is served.
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
/// Where the token endpoint is served.
pub const TOKEN_PATH: &str = "/oauth/token";
/// Where the revocation endpoint is served.
pub const REVOKE_PATH: &str = "/oauth/revoke";
/// Where the userinfo endpoint is served.
pub const USERINFO_PATH: &str = "/oauth/userinfo";
/// Where the OpenID Connect discovery document is served.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the JWKS is served.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Our authorization server: keys, names and lifetimes.
#[derive(Debug)]
pub struct Issuer {
    ring: Arc<KeyRing>,
    /// Our issuer identifier (the public URL, no trailing slash).
    issuer: String,
    audience: String,
    access_ttl: Duration,
    refresh_ttl: Duration,
    code_ttl: Duration,
}

/// What the token endpoint hands out.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

/// The claims of an OpenID Connect ID token.
#[derive(Debug, Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

impl Issuer {
    /// Our issuer as the settings describe it: its signing keys from
    /// `--oauth-signing-key`, `--oauth-key-dir`, or (tests) memory, and
    /// `public_url` as its identifier.
    pub fn from_settings(settings: &AuthSettings, public_url: &str) -> Result<Self, Error> {
        let grace = settings.access_ttl;
        let ring = match (&settings.signing_key, &settings.key_dir) {
            (Some(file), _) => KeyRing::from_file(file, grace)?,
            (None, Some(dir)) => KeyRing::from_dir(dir, grace)?,
            (None, None) => {
                tracing::warn!(
                    "no OAuth key file or directory: signing with an in-memory key \
                     (tokens die with the process)"
                );
                KeyRing::ephemeral(grace)
            }
        };
        let issuer = public_url.trim_end_matches('/').to_owned();
        Ok(Self::new(Arc::new(ring), issuer, settings))
    }

    /// Re-read the key directory every [`KEY_RELOAD`] until `shutdown`, so
    /// that a key an operator (or another replica's [`KeyRing::rotate`])
    /// dropped in becomes current.
    pub fn keep_keys_fresh(&self, shutdown: CancellationToken) {
        tracing::info!(
            issuer = self.issuer(),
            kid = self.keys().current().kid(),
            "OAuth authorization server ready"
        );
        let ring = self.keys().clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEY_RELOAD);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(err) = ring.reload() {
                            tracing::warn!(error = %err, "cannot reload the OAuth signing keys");
                        }
                    }
                }
            }
        });
    }

    /// A server signing with `ring` as `issuer`.
    pub fn new(ring: Arc<KeyRing>, issuer: String, settings: &AuthSettings) -> Self {
        Self {
            ring,
            issuer,
            audience: settings.audience.clone(),
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            code_ttl: settings.code_ttl,
        }
    }

    /// The signing keys (to rotate them).
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Our issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// An absolute URL of one of our endpoints.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A signed access token for `sub`, with its lifetime in seconds.
    pub fn mint_access(
        &self,
        sub: String,
        client_id: &str,
        scope: &str,
        roles: Vec<String>,
    ) -> (String, u64) {
        let now = Utc::now().timestamp();
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub,
            aud: self.audience.clone(),
            exp: now + ttl as i64,
            nbf: now,
            iat: now,
            jti: Uuid::now_v7().to_string(),
            scope: scope.to_owned(),
            client_id: client_id.to_owned(),
            roles,
        };
        (
            mint::sign(&self.ring.current(), ACCESS_TOKEN_TYP, &claims),
            ttl,
        )
    }

    /// The full token response for an account: access token, the refresh
    /// token when one was stored, and an ID token when `openid` was granted.
    fn respond_for_user(
        &self,
        user: &User,
        client_id: &str,
        scope: &str,
        refresh_token: Option<String>,
        nonce: Option<&str>,
    ) -> TokenResponse {
        let roles = user
            .roles
            .iter()
            .map(|r| scopes::role_name(*r).to_owned())
            .collect();
        let (access_token, expires_in) =
            self.mint_access(user.id.to_string(), client_id, scope, roles);
        let granted = scopes::parse(scope);
        let id_token = granted.contains(scopes::OPENID).then(|| {
            let now = Utc::now().timestamp();
            let claims = IdClaims {
                iss: &self.issuer,
                sub: user.id.to_string(),
                aud: client_id,
                exp: now + expires_in as i64,
                iat: now,
                nonce,
                email: granted
                    .contains(scopes::EMAIL)
                    .then_some(user.email.as_str()),
                name: granted
                    .contains(scopes::PROFILE)
                    .then_some(user.display_name.as_str()),
            };
            mint::sign(&self.ring.current(), "JWT", &claims)
        });
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            scope: scope.to_owned(),
            refresh_token,
            id_token,
        }
    }

    /// Add the authorization server's routes to `route`.
    pub fn mount(self: &Arc<Self>, route: Route) -> Route {
        let me = self.clone();
        route
            .at(
                AUTHORIZE_PATH,
                get(authorize::show)
                    .post(authorize::submit)
                    .data(me.clone()),
            )
            .at(TOKEN_PATH, post(token::token).data(me.clone()))
            .at(REVOKE_PATH, post(revoke::revoke).data(me.clone()))
            .at(
                USERINFO_PATH,
                get(userinfo::userinfo)
                    .post(userinfo::userinfo)
                    .data(me.clone()),
            )
            .at(
                DISCOVERY_PATH,
                get(discovery::openid_configuration).data(me.clone()),
            )
            .at(JWKS_PATH, get(discovery::jwks).data(me))
    }
}

/// Mark a response as never to be cached (tokens, login pages).
pub fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// Unpadded base64url.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Lower-case hex SHA-256, how codes and refresh tokens are stored.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random opaque token: 256 bits, base64url (43 characters).
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    b64url(&bytes)
}

/// Compare secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
