//! Which OAuth setup this gateway runs: our own authorization server
//! (`oauth`) with the resource server validating its tokens, or only the
//! resource server, trusting an external issuer. The only place that
//! knows both.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{AuthSettings, issuer::ExternalIssuer, jwt::Validator},
    error::Error,
    oauth,
};

/// Everything the gateway needs for OAuth, built once at start.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Checks bearer tokens on `/v1`.
    pub validator: Arc<Validator>,
    /// Our own authorization server, absent in external issuer mode.
    pub server: Option<Arc<oauth::Issuer>>,
    /// The external issuer, in external issuer mode.
    pub external: Option<Arc<ExternalIssuer>>,
}

impl Auth {
    /// Build from settings: load (or generate) our keys, or prepare the
    /// external issuer's JWKS cache (fetched on first use).
    pub fn from_settings(settings: &AuthSettings, public_url: &str) -> Result<Self, Error> {
        match &settings.issuer {
            Some(url) => {
                let external = Arc::new(ExternalIssuer::new(url.clone())?);
                Ok(Self {
                    validator: Arc::new(Validator::external(
                        external.clone(),
                        settings.audience.clone(),
                    )),
                    server: None,
                    external: Some(external),
                })
            }
            None => {
                let server = oauth::Issuer::from_settings(settings, public_url)?;
                let validator = Arc::new(Validator::local(
                    server.keys().clone(),
                    server.issuer().to_owned(),
                    settings.audience.clone(),
                ));
                Ok(Self {
                    validator,
                    server: Some(Arc::new(server)),
                    external: None,
                })
            }
        }
    }

    /// Background work while serving: warm the external issuer's JWKS (a
    /// failure is only a warning: it is fetched again on demand), or keep
    /// our key ring fresh.
    pub async fn start(&self, shutdown: CancellationToken) {
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
            server.keep_keys_fresh(shutdown);
        }
    }
}
