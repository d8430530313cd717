//! External issuer mode (`--oauth-issuer URL`): the gateway trusts another
//! OpenID Connect provider's tokens. It reads `URL/.well-known/openid-configuration`
//! for the issuer name and `jwks_uri`, caches the JWKS, and fetches it again
//! when a token names a `kid` it does not know (a rotation on the issuer),
//! at most once per [`MIN_REFETCH`] so that tokens with made-up `kid`s
//! cannot make the gateway hammer the issuer.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use serde::Deserialize;
use url::Url;

use crate::{
    Error,
    auth::jwt::{EXTERNAL_ALGORITHMS, TokenError},
};

/// Least time between two JWKS fetches caused by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Timeout of each request to the issuer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The parts of a discovery document we use.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// What we learned from the issuer.
#[derive(Debug)]
struct Known {
    /// The `iss` its tokens carry.
    issuer: String,
    /// Verification keys by `kid`, with the one algorithm each may verify.
    keys: HashMap<String, (Arc<DecodingKey>, Algorithm)>,
}

/// An external OpenID Connect issuer and its cached keys.
#[derive(Debug)]
pub struct ExternalIssuer {
    url: Url,
    http: reqwest::Client,
    known: RwLock<Option<Arc<Known>>>,
    /// When we last fetched (serialises fetches, and rate-limits them).
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl ExternalIssuer {
    /// An issuer at `url`; nothing is fetched until first needed.
    pub fn new(url: Url) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            url,
            http,
            known: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The configured issuer URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn cached(&self) -> Option<Arc<Known>> {
        self.known.read().expect("jwks lock").clone()
    }

    /// The key with this `kid`, its algorithm and the issuer name, fetching
    /// the JWKS again (rate-limited) when the `kid` is unknown.
    pub async fn key(
        &self,
        kid: &str,
    ) -> Result<(Arc<DecodingKey>, Algorithm, String), TokenError> {
        let lookup = |known: &Known| {
            known
                .keys
                .get(kid)
                .map(|(k, a)| (k.clone(), *a, known.issuer.clone()))
        };
        if let Some(found) = self.cached().as_deref().and_then(lookup) {
            return Ok(found);
        }
        let mut last = self.last_fetch.lock().await;
        // Someone else may have fetched while we waited for the lock.
        if let Some(found) = self.cached().as_deref().and_then(lookup) {
            return Ok(found);
        }
        let have_keys = self.cached().is_some();
        if have_keys && last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return Err(TokenError::UnknownKey);
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(known) => {
                let known = Arc::new(known);
                *self.known.write().expect("jwks lock") = Some(known.clone());
                lookup(&known).ok_or(TokenError::UnknownKey)
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.url, %reason, "cannot fetch the issuer's keys");
                Err(if have_keys {
                    TokenError::UnknownKey
                } else {
                    TokenError::IssuerUnavailable
                })
            }
        }
    }

    /// Fetch discovery and the JWKS now (at start, to fail early and warm the cache).
    pub async fn prefetch(&self) -> Result<usize, String> {
        let known = self.fetch().await?;
        let n = known.keys.len();
        *self.known.write().expect("jwks lock") = Some(Arc::new(known));
        *self.last_fetch.lock().await = Some(Instant::now());
        Ok(n)
    }

    async fn fetch(&self) -> Result<Known, String> {
        let base = self.url.as_str().trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        // OpenID Connect Discovery 1.0, section 4.3: the document must name
        // the issuer we asked.
        if discovery.issuer.trim_end_matches('/') != base {
            return Err(format!(
                "discovery names issuer {:?}, expected {base:?}",
                discovery.issuer
            ));
        }
        let jwks: serde_json::Value = self.get_json(&discovery.jwks_uri).await?;
        let keys = jwks["keys"]
            .as_array()
            .ok_or("the JWKS has no `keys` array")?
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| usable(&jwk))
            .collect::<HashMap<_, _>>();
        tracing::info!(issuer = %discovery.issuer, keys = keys.len(), "fetched the issuer's keys");
        Ok(Known {
            issuer: discovery.issuer,
            keys,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: {}", resp.status()));
        }
        resp.json().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

/// A JWK we may verify with: a signing key with a `kid` and an accepted
/// asymmetric algorithm (never `oct`, whose "public" key is the HMAC secret).
fn usable(jwk: &Jwk) -> Option<(String, (Arc<DecodingKey>, Algorithm))> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kid = jwk.common.key_id.clone()?;
    let alg = match jwk.common.key_algorithm {
        Some(a) => Algorithm::from_str(&a.to_string()).ok()?,
        None => match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Algorithm::EdDSA
            }
            _ => return None,
        },
    };
    if !EXTERNAL_ALGORITHMS.contains(&alg)
        || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, (Arc::new(key), alg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(json: serde_json::Value) -> Jwk {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_asymmetric_signing_keys_are_used() {
        // An Ed25519 public key as an issuer publishes it (RFC 8037).
        let ed = jwk(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "e", "use": "sig", "alg": "EdDSA",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }));
        assert!(usable(&ed).is_some());
        let oct =
            jwk(serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"}));
        assert!(usable(&oct).is_none());
        let mut enc = ed.clone();
        enc.common.public_key_use = Some(PublicKeyUse::Encryption);
        assert!(usable(&enc).is_none());
        let mut no_kid = ed.clone();
        no_kid.common.key_id = None;
        assert!(usable(&no_kid).is_none());
    }
}
