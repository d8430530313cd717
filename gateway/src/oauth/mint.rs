//! Minting: the access-token claims our authorization server issues
//! (RFC 9068 profile) and the EdDSA signature over them. Validation is the
//! resource server's (`auth::jwt`); the tests here check that what we mint
//! is what it accepts, and that what it must refuse is refused.

use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

pub use crate::auth::jwt::ACCESS_TOKEN_TYP;
use crate::oauth::keys::KeyPair;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::sync::Arc;

    use base64::Engine;
    use jsonwebtoken::EncodingKey;
    use uuid::Uuid;

    use super::*;
    use crate::{
        auth::jwt::{TokenError, Validator},
        oauth::{b64url, keys::KeyRing},
    };

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
}
