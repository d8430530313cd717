//! OAuth 2.0 in the gateway: the resource server that guards `/v1`, and
//! (unless an external issuer is configured) the authorization server that
//! issues the tokens.
//!
//! - [`settings`]: `--oauth-*` flags.
//! - [`keys`]: the issuer's Ed25519 signing keys, their rotation and JWKS.
//! - [`jwt`]: access-token claims, minting, and validation ([`jwt::Validator`]).
//! - [`issuer`]: external issuer mode: discovery and a cached JWKS.
//! - [`scopes`]: the scopes, and who may be granted which.
//! - [`guard`]: the poem-openapi security schemes and the authenticated [`guard::Principal`].
//! - [`server`]: `/oauth/*` and `/.well-known/*` (our own issuer).
//! - [`pkce`]: RFC 7636 checks.
//!
//! Tokens, secrets, passwords, codes and their hashes never reach a log
//! line: spans name clients and users, never credentials.

pub mod guard;
pub mod issuer;
pub mod jwt;
pub mod keys;
pub mod pkce;
pub mod scopes;
pub mod server;
pub mod settings;

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};

pub use settings::AuthSettings;

use crate::Error;

/// Everything the gateway needs for OAuth, built once at start.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Checks bearer tokens on `/v1`.
    pub validator: Arc<jwt::Validator>,
    /// Our own authorization server, absent in external issuer mode.
    pub server: Option<Arc<server::Issuer>>,
    /// The external issuer, in external issuer mode.
    pub external: Option<Arc<issuer::ExternalIssuer>>,
}

impl Auth {
    /// Build from settings: load (or generate) keys, or prepare the
    /// external issuer's JWKS cache (fetched on first use).
    pub fn from_settings(settings: &AuthSettings, public_url: &str) -> Result<Self, Error> {
        match &settings.issuer {
            Some(url) => {
                let external = Arc::new(issuer::ExternalIssuer::new(url.clone())?);
                Ok(Self {
                    validator: Arc::new(jwt::Validator::external(
                        external.clone(),
                        settings.audience.clone(),
                    )),
                    server: None,
                    external: Some(external),
                })
            }
            None => {
                let grace = settings.access_ttl;
                let ring = match (&settings.signing_key, &settings.key_dir) {
                    (Some(file), _) => keys::KeyRing::from_file(file, grace)?,
                    (None, Some(dir)) => keys::KeyRing::from_dir(dir, grace)?,
                    (None, None) => {
                        tracing::warn!(
                            "no OAuth key file or directory: signing with an in-memory key \
                             (tokens die with the process)"
                        );
                        keys::KeyRing::ephemeral(grace)
                    }
                };
                let ring = Arc::new(ring);
                let issuer_url = public_url.trim_end_matches('/').to_owned();
                let validator = Arc::new(jwt::Validator::local(
                    ring.clone(),
                    issuer_url.clone(),
                    settings.audience.clone(),
                ));
                let server = server::Issuer::new(ring, issuer_url, settings);
                Ok(Self {
                    validator,
                    server: Some(Arc::new(server)),
                    external: None,
                })
            }
        }
    }

    /// Background work while serving: warm the external issuer's JWKS (a
    /// failure is only a warning: it is fetched again on demand), or re-read
    /// the key directory every [`KEY_RELOAD`] so that a key an operator (or
    /// another replica's [`keys::KeyRing::rotate`]) dropped in becomes current.
    pub async fn start(&self, shutdown: tokio_util::sync::CancellationToken) {
        if let Some(external) = &self.external {
            match external.prefetch().await {
                Ok(keys) => {
                    tracing::info!(issuer = %external.url(), keys, "external OAuth issuer ready")
                }
                Err(reason) => {
                    tracing::warn!(issuer = %external.url(), %reason, "external OAuth issuer not reachable yet");
                }
            }
        }
        if let Some(server) = &self.server {
            tracing::info!(
                issuer = server.issuer(),
                kid = server.keys().current().kid(),
                "OAuth authorization server ready"
            );
            let ring = server.keys().clone();
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
    }
}

/// How often the key directory is re-read.
pub const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

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
