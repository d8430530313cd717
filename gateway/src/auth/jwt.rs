//! JWT access tokens as a resource server sees them: the one validation
//! path every bearer token on `/v1` goes through, and the [`Principal`] it
//! yields. Who signs the tokens is not this module's business: our own
//! authorization server (`oauth`) lends its keys through [`KeySource`], an
//! external issuer through its JWKS ([`ExternalIssuer`]).
//!
//! Validation pins the algorithm list to asymmetric ones (`EdDSA` for our
//! own tokens; `EdDSA`, `RS256` and `ES256` for an external issuer), so
//! `alg: none` and HMAC tokens (which would let anyone holding the public
//! key forge tokens) are refused before any key is looked at. The key is
//! chosen by `kid`, and its algorithm must be the header's.

use std::{collections::BTreeSet, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::auth::{issuer::ExternalIssuer, scopes};
pub use crate::error::TokenError;

/// The `typ` header of our access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// Algorithms accepted from an external issuer.
pub const EXTERNAL_ALGORITHMS: &[Algorithm] =
    &[Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256];

/// Who a valid token speaks for, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `sub`: an account id, or a client id.
    pub subject: String,
    /// The client the token was issued to, when the token says.
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scopes: BTreeSet<String>,
    /// Roles (`customer`, `admin`), when the token says.
    pub roles: Vec<String>,
}

impl Principal {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The account the token speaks for; `None` for a client acting for itself.
    pub fn user_id(&self) -> Option<Uuid> {
        if self.client_id.as_deref() == Some(self.subject.as_str()) {
            return None;
        }
        Uuid::parse_str(&self.subject).ok()
    }
}

/// What we read from any access token, ours or an external issuer's.
#[derive(Deserialize)]
struct Incoming {
    sub: String,
    #[serde(default)]
    scope: Option<String>,
    /// Some issuers (Entra, Okta) send scopes as `scp`, a string or a list.
    #[serde(default)]
    scp: Option<serde_json::Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    roles: Option<serde_json::Value>,
}

impl Incoming {
    fn into_principal(self) -> Principal {
        let mut scopes = self.scope.as_deref().map(scopes::parse).unwrap_or_default();
        match self.scp {
            Some(serde_json::Value::String(s)) => scopes.extend(scopes::parse(&s)),
            Some(serde_json::Value::Array(items)) => {
                scopes.extend(
                    items
                        .into_iter()
                        .filter_map(|v| v.as_str().map(str::to_owned)),
                );
            }
            _ => {}
        }
        let roles = match self.roles {
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Principal {
            subject: self.sub,
            client_id: self.client_id.or(self.azp),
            scopes,
            roles,
        }
    }
}

/// The verification keys of tokens we issue ourselves, by `kid`.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The public key with this `kid`, if it is one of ours (looking again
    /// when a replica may just have rotated in a key we have not seen).
    fn verifying_key(&self, kid: &str) -> Option<DecodingKey>;
}

/// Where verification keys come from.
#[derive(Debug)]
enum Keys {
    Local(Arc<dyn KeySource>),
    External(Arc<ExternalIssuer>),
}

/// Checks bearer tokens: signature, `iss`, `aud`, `exp`, `nbf`.
#[derive(Debug)]
pub struct Validator {
    keys: Keys,
    /// Our own issuer URL (local mode); external mode learns it from discovery.
    issuer: String,
    audience: String,
}

impl Validator {
    /// Validate tokens we issue ourselves.
    pub fn local(ring: Arc<dyn KeySource>, issuer: String, audience: String) -> Self {
        Self {
            keys: Keys::Local(ring),
            issuer,
            audience,
        }
    }

    /// Validate an external issuer's tokens.
    pub fn external(issuer: Arc<ExternalIssuer>, audience: String) -> Self {
        Self {
            keys: Keys::External(issuer),
            issuer: String::new(),
            audience,
        }
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Check a bearer token and say whom it speaks for.
    pub async fn validate(&self, token: &str) -> Result<Principal, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` (and any name jsonwebtoken does not know) fails here.
            ErrorKind::Json(_) => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let incoming: Incoming = match &self.keys {
            Keys::Local(ring) => {
                if !is_typ(&header, ACCESS_TOKEN_TYP) {
                    return Err(if header.alg == Algorithm::EdDSA {
                        TokenError::Type
                    } else {
                        TokenError::Algorithm
                    });
                }
                verify_local(
                    ring.as_ref(),
                    token,
                    &[Algorithm::EdDSA],
                    &self.issuer,
                    &self.audience,
                )?
            }
            Keys::External(external) => {
                if !EXTERNAL_ALGORITHMS.contains(&header.alg) {
                    return Err(TokenError::Algorithm);
                }
                let (key, alg, issuer) = external.key(kid).await?;
                if alg != header.alg {
                    return Err(TokenError::Algorithm);
                }
                decode(token, &key, alg, &issuer, &self.audience)?
            }
        };
        Ok(incoming.into_principal())
    }
}

/// Whether a header's `typ` is `want` (also as `application/<want>`).
pub fn is_typ(header: &Header, want: &str) -> bool {
    header.typ.as_deref().is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case(want)
    })
}

/// Verify a token signed by one of our keys and decode its claims.
pub fn verify_local<T: DeserializeOwned>(
    ring: &dyn KeySource,
    token: &str,
    algorithms: &[Algorithm],
    issuer: &str,
    audience: &str,
) -> Result<T, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !algorithms.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
    let key = ring.verifying_key(kid).ok_or(TokenError::UnknownKey)?;
    decode(token, &key, header.alg, issuer, audience)
}

fn decode<T: DeserializeOwned>(
    token: &str,
    key: &DecodingKey,
    alg: Algorithm,
    issuer: &str,
    audience: &str,
) -> Result<T, TokenError> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    Ok(jsonwebtoken::decode::<T>(token, key, &validation)?.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_have_no_user() {
        let p = Principal {
            subject: "machine".into(),
            client_id: Some("machine".into()),
            scopes: BTreeSet::new(),
            roles: vec![],
        };
        assert_eq!(p.user_id(), None);
    }
}
