//! Reading OAuth requests: form bodies and query strings as parameter maps
//! (RFC 6749 section 3.1: no parameter twice, an empty value is absent),
//! and client authentication (section 2.3.1: HTTP Basic or `client_secret`
//! in the body, never both; public clients send only `client_id`).

use std::collections::HashMap;

use base64::Engine;
use jetshop_contracts::users::{AuthenticateClient, GetClient, OAuthClient};
use jetshop_platform::{envelope::MessageMeta, rpc::RpcClient};
use poem::{Body, Request, http::header};

use super::error::OAuthError;

/// Largest form body we read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Request parameters by name.
#[derive(Default)]
pub struct Params(HashMap<String, String>);

// Parameters hold passwords, secrets, codes and tokens: never print them.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Params {
    /// Parse `a=1&b=2`.
    pub fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in form_urlencoded::parse(encoded) {
            if map.insert(name.to_string(), value.to_string()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "the `{name}` parameter is repeated"
                )));
            }
        }
        map.retain(|_, v: &mut String| !v.is_empty());
        Ok(Self(map))
    }

    /// The query string's parameters.
    pub fn from_query(req: &Request) -> Result<Self, OAuthError> {
        Self::parse(req.uri().query().unwrap_or_default().as_bytes())
    }

    /// A form body's parameters (`application/x-www-form-urlencoded` only).
    pub async fn from_form(req: &Request, body: Body) -> Result<Self, OAuthError> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = body
            .into_bytes_limit(MAX_FORM_BYTES)
            .await
            .map_err(|_| OAuthError::invalid_request("the body is unreadable or too large"))?;
        Self::parse(&bytes)
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A parameter that must be there.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("the `{name}` parameter is missing"))
        })
    }
}

/// How a client identified itself.
pub enum ClientAuth {
    /// With a secret (confidential client).
    Secret {
        /// Client id.
        client_id: String,
        /// Secret in clear.
        secret: String,
        /// Whether it came as HTTP Basic.
        basic: bool,
    },
    /// By id alone (public client).
    Public {
        /// Client id.
        client_id: String,
    },
}

/// Read the client's credentials from `Authorization: Basic` or the form.
pub fn client_auth(req: &Request, params: &Params) -> Result<ClientAuth, OAuthError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
    if let Some(encoded) = basic {
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_client(true))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client(true))?;
        // RFC 6749 2.3.1: both halves are form-urlencoded first.
        let (id, secret) = (form_decode(id), form_decode(secret));
        if params.get("client_id").is_some_and(|form_id| form_id != id) {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ));
        }
        return Ok(ClientAuth::Secret {
            client_id: id,
            secret,
            basic: true,
        });
    }
    let client_id = params
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client(false))?
        .to_owned();
    Ok(match params.get("client_secret") {
        Some(secret) => ClientAuth::Secret {
            client_id,
            secret: secret.to_owned(),
            basic: false,
        },
        None => ClientAuth::Public { client_id },
    })
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Authenticate the client through the users service.
pub async fn authenticate(
    rpc: &RpcClient,
    auth: ClientAuth,
    meta: &MessageMeta,
) -> Result<OAuthClient, OAuthError> {
    match auth {
        ClientAuth::Secret {
            client_id,
            secret,
            basic,
        } => rpc
            .call(
                &AuthenticateClient {
                    client_id,
                    client_secret: secret,
                },
                meta,
            )
            .await
            .map_err(|e| OAuthError::from_call(&e, OAuthError::invalid_client(basic))),
        ClientAuth::Public { client_id } => {
            let client = rpc
                .call(&GetClient { client_id }, meta)
                .await
                .map_err(|e| OAuthError::from_call(&e, OAuthError::invalid_client(false)))?;
            if client.confidential {
                // A confidential client must prove who it is.
                return Err(OAuthError::invalid_client(false));
            }
            Ok(client)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_absent() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=&b=x%20y+z").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y z"));
        assert_eq!(p.require("a").unwrap_err().error, "invalid_request");
        assert!(!format!("{p:?}").contains("x y"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut req = Request::builder()
            .header(
                header::AUTHORIZATION,
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("my%3Aid:s%2Bcr t")
                ),
            )
            .finish();
        let params = Params::default();
        match client_auth(&req, &params).unwrap() {
            ClientAuth::Secret {
                client_id,
                secret,
                basic,
            } => assert_eq!(
                (client_id.as_str(), secret.as_str(), basic),
                ("my:id", "s+cr t", true)
            ),
            ClientAuth::Public { .. } => panic!("basic is a secret"),
        }
        req.headers_mut().remove(header::AUTHORIZATION);
        assert_eq!(
            client_auth(&req, &params).err().unwrap().error,
            "invalid_client"
        );
    }
}
