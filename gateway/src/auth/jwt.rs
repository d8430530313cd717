//! JWTs: the access-token claims we issue (RFC 9068 profile), signing, and
//! the one validation path every bearer token on `/v1` goes through.
//!
//! Validation pins the algorithm list to asymmetric ones (`EdDSA` for our
//! own tokens; `EdDSA`, `RS256` and `ES256` for an external issuer), so
//! `alg: none` and HMAC tokens (which would let anyone holding the public
//! key forge tokens) are refused before any key is looked at. The key is
//! chosen by `kid`, and its algorithm must be the header's.

use std::{collections::BTreeSet, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::auth::{
    issuer::ExternalIssuer,
    keys::{KeyPair, KeyRing},
    scopes,
};

/// The `typ` header of our access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// Algorithms accepted from an external issuer.
pub const EXTERNAL_ALGORITHMS: &[Algorithm] =
    &[Algorithm::EdDSA, Algorithm::RS256, Algorithm::ES256];

/// The claims of an access token we issue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: our public URL.
    pub iss: String,
    /// The account id, or the client id for a client acting for itself.
    pub sub: String,
    /// Audience (`--oauth-audience`).
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique token id.
    pub jti: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The account's roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Sign claims with `key` (EdDSA, with its `kid` and the given `typ`).
pub fn sign<T: Serialize>(key: &KeyPair, typ: &str, claims: &T) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding())
        .expect("EdDSA signing of serialisable claims does not fail")
}

/// Why a token was refused. Each says so in a sentence safe to show the
/// client (never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or a claim has the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// `alg` is none, HMAC or otherwise not accepted.
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// No published key has this `kid`.
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the issuer we trust.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` does not name us.
    #[error("the token is meant for another audience")]
    Audience,
    /// A required claim is missing.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The token is a JWT of another kind (an ID token, say).
    #[error("the token is not an access token")]
    Type,
    /// The external issuer's keys could not be fetched.
    #[error("the token issuer's keys are unavailable")]
    IssuerUnavailable,
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::InvalidSignature => Self::Signature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(_) => Self::MissingClaim,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => Self::Algorithm,
            _ => Self::Malformed,
        }
    }
}

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

/// Where verification keys come from.
#[derive(Debug)]
enum Keys {
    Local(Arc<KeyRing>),
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
    pub fn local(ring: Arc<KeyRing>, issuer: String, audience: String) -> Self {
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
                    ring,
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
    ring: &KeyRing,
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
    let key = ring.find_or_reload(kid).ok_or(TokenError::UnknownKey)?;
    decode(token, key.decoding(), header.alg, issuer, audience)
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
    use std::time::Duration;

    use base64::Engine;
    use jsonwebtoken::EncodingKey;

    use super::*;
    use crate::auth::b64url;

    const ISS: &str = "http://127.0.0.1:8080";
    const AUD: &str = "jetshop";

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: Uuid::new_v4().to_string(),
            aud: AUD.into(),
            exp: now() + 900,
            nbf: now(),
            iat: now(),
            jti: Uuid::new_v4().to_string(),
            scope: "catalog:write openid".into(),
            client_id: "swagger-ui".into(),
            roles: vec!["admin".into()],
        }
    }

    fn setup() -> (Arc<KeyRing>, Validator) {
        let ring = Arc::new(KeyRing::ephemeral(Duration::from_secs(900)));
        let v = Validator::local(ring.clone(), ISS.into(), AUD.into());
        (ring, v)
    }

    #[tokio::test]
    async fn a_fresh_token_validates() {
        let (ring, v) = setup();
        let c = claims();
        let token = sign(&ring.current(), ACCESS_TOKEN_TYP, &c);
        let p = v.validate(&token).await.unwrap();
        assert_eq!(p.subject, c.sub);
        assert_eq!(p.client_id.as_deref(), Some("swagger-ui"));
        assert!(p.has_scope("catalog:write") && !p.has_scope("users:admin"));
        assert_eq!(p.roles, vec!["admin"]);
        assert_eq!(p.user_id().map(|u| u.to_string()), Some(c.sub));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_for_the_right_reason() {
        let (ring, v) = setup();
        let key = ring.current();
        let at = |c: &AccessClaims| sign(&key, ACCESS_TOKEN_TYP, c);
        let cases = [
            (
                at(&AccessClaims {
                    exp: now() - 120,
                    ..claims()
                }),
                TokenError::Expired,
            ),
            (
                at(&AccessClaims {
                    nbf: now() + 600,
                    ..claims()
                }),
                TokenError::NotYetValid,
            ),
            (
                at(&AccessClaims {
                    aud: "other".into(),
                    ..claims()
                }),
                TokenError::Audience,
            ),
            (
                at(&AccessClaims {
                    iss: "http://evil".into(),
                    ..claims()
                }),
                TokenError::Issuer,
            ),
            (sign(&key, "JWT", &claims()), TokenError::Type),
            (
                sign(&KeyPair::generate(), ACCESS_TOKEN_TYP, &claims()),
                TokenError::UnknownKey,
            ),
            ("garbage".into(), TokenError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(v.validate(&token).await, Err(want));
        }
    }

    #[tokio::test]
    async fn a_forged_signature_under_our_kid_is_refused() {
        let (ring, v) = setup();
        let other = KeyPair::generate();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.current().kid().to_owned());
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        let token = jsonwebtoken::encode(&header, &claims(), other.encoding()).unwrap();
        assert_eq!(v.validate(&token).await, Err(TokenError::Signature));
    }

    #[tokio::test]
    async fn none_and_hmac_are_refused() {
        let (ring, v) = setup();
        let kid = ring.current().kid().to_owned();
        let body = b64url(serde_json::to_string(&claims()).unwrap().as_bytes());
        let none_header =
            b64url(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#).as_bytes());
        assert_eq!(
            v.validate(&format!("{none_header}.{body}.")).await,
            Err(TokenError::Algorithm)
        );
        // HS256 keyed with the public key: the classic confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(match &ring.current().jwk().algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x.clone(),
                _ => unreachable!(),
            })
            .unwrap();
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(v.validate(&token).await, Err(TokenError::Algorithm));
    }

    #[tokio::test]
    async fn rotated_keys_still_verify_their_tokens() {
        let (ring, v) = setup();
        let old = sign(&ring.current(), ACCESS_TOKEN_TYP, &claims());
        ring.rotate().unwrap();
        let new = sign(&ring.current(), ACCESS_TOKEN_TYP, &claims());
        assert!(v.validate(&old).await.is_ok());
        assert!(v.validate(&new).await.is_ok());
    }

    /// Prints what minting and validating one access token costs in this
    /// build (no assertion on time: the figures are for the docs).
    #[tokio::test]
    async fn cost_of_minting_and_validating() {
        const N: u32 = 500;
        let (ring, v) = setup();
        let key = ring.current();
        let c = claims();
        let started = std::time::Instant::now();
        let tokens: Vec<String> = (0..N).map(|_| sign(&key, ACCESS_TOKEN_TYP, &c)).collect();
        let mint = started.elapsed() / N;
        let started = std::time::Instant::now();
        for token in &tokens {
            v.validate(token).await.unwrap();
        }
        let validate = started.elapsed() / N;
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        println!(
            "EdDSA access token ({build} build, {} bytes): mint {mint:?}, validate {validate:?} per token",
            tokens[0].len()
        );
    }

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
