//! Who a request counts against: the caller its bearer token speaks for,
//! else the client's IP address.
//!
//! The caller comes from an [`AuthenticatedCaller`] in the request's
//! extensions (an auth middleware that ran earlier may put it there). If
//! none is there and the request carries a bearer token, the [`Identify`]
//! hook the middlewares were given (the token validator) resolves it, and
//! the result is put into the extensions for whoever asks next: the
//! caller, and the validated [`Principal`] as a [`ValidatedBearer`], which
//! the route guard takes instead of verifying the signature a second time.
//! An invalid token simply counts by IP: refusing it is the operation's job.

use std::{
    future::Future,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::Arc,
};

use poem::{
    FromRequest, Request, RequestBody,
    http::{HeaderMap, header},
};

use crate::auth::{
    guard::ValidatedBearer,
    jwt::{Principal, Validator},
};

/// A caller whose credentials have been validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticatedCaller {
    /// An end user (the token's subject).
    User(String),
    /// An OAuth client acting for itself (client-credentials grant).
    Client(String),
}

/// What an [`Identify`] learned from a valid bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// Who the budgets and idempotency keys count against.
    pub caller: AuthenticatedCaller,
    /// The validated token's principal, when the identifier validated it
    /// fully (the token validator does): kept for the route guard.
    pub principal: Option<Principal>,
}

/// Resolves a bearer token to the caller it speaks for (`None`: not a
/// valid token). Implemented by the auth module's token validator.
pub trait Identify: Send + Sync {
    /// Who `token` speaks for, if it is valid.
    fn identify<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Identified>> + Send + 'a>>;
}

/// How the limits middlewares find the caller of a request.
#[derive(Clone, Default)]
pub struct CallerPolicy {
    /// Take the client address from `X-Forwarded-For` (one trusted proxy).
    pub trust_proxy: bool,
    /// Validates bearer tokens when no earlier middleware did.
    pub identify: Option<Arc<dyn Identify>>,
}

impl std::fmt::Debug for CallerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerPolicy")
            .field("trust_proxy", &self.trust_proxy)
            .field("identify", &self.identify.is_some())
            .finish()
    }
}

/// The key a request's budgets and idempotency keys are kept under:
/// `user:<id>`, `client:<id>` or `ip:<address>` (an IPv6 client counts by
/// its /64, since one host usually holds the whole prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallerKey(String);

impl CallerKey {
    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of `req`, computed once and then kept in its data (a
    /// bearer token is identified for it when no caller is known yet).
    pub async fn resolve(req: &mut Request, policy: &CallerPolicy) -> Self {
        if let Some(key) = req.data::<CallerKey>() {
            return key.clone();
        }
        if req.extensions().get::<AuthenticatedCaller>().is_none()
            && let Some(identify) = &policy.identify
            && let Some(token) = bearer(req).map(str::to_owned)
            && let Some(found) = identify.identify(&token).await
        {
            req.extensions_mut().insert(found.caller);
            if let Some(principal) = found.principal {
                req.extensions_mut()
                    .insert(ValidatedBearer { token, principal });
            }
        }
        let key = caller_key(req, policy.trust_proxy);
        req.set_data(key.clone());
        key
    }
}

/// The request's bearer token, if any.
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The caller key of a request, in order of preference: the authenticated
/// caller, the address `X-Forwarded-For` names (only with `trust_proxy`),
/// the peer address.
pub fn caller_key(req: &Request, trust_proxy: bool) -> CallerKey {
    if let Some(caller) = req.extensions().get::<AuthenticatedCaller>() {
        return CallerKey(match caller {
            AuthenticatedCaller::User(id) => format!("user:{id}"),
            AuthenticatedCaller::Client(id) => format!("client:{id}"),
        });
    }
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    ip_key(req.headers(), peer, trust_proxy)
}

/// The key of an anonymous caller connected from `peer`.
fn ip_key(headers: &HeaderMap, peer: Option<IpAddr>, trust_proxy: bool) -> CallerKey {
    let forwarded = trust_proxy.then(|| forwarded_for(headers)).flatten();
    CallerKey(match forwarded.or(peer) {
        Some(ip) => format!("ip:{}", bucket(ip)),
        None => "ip:unknown".to_owned(),
    })
}

/// The client address our (one) trusted proxy appended: the right-most
/// entry of the last `X-Forwarded-For` field. Entries further left were
/// sent by the client and can say anything.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    last.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
}

/// An IPv4 address as is; an IPv6 address by its /64 (IPv4-mapped ones as IPv4).
fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// Extractor: the caller key the limits middleware resolved (or, outside
/// it, the one computed without trusting any proxy).
impl<'a> FromRequest<'a> for CallerKey {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(req
            .data::<CallerKey>()
            .cloned()
            .unwrap_or_else(|| caller_key(req, false)))
    }
}

/// Our token validator identifies bearer tokens: a token for an account
/// counts as that user, a client-credentials token as its client.
impl Identify for Validator {
    fn identify<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Identified>> + Send + 'a>> {
        Box::pin(async move {
            let p = self.validate(token).await.ok()?;
            let caller = match p.user_id() {
                Some(user) => AuthenticatedCaller::User(user.to_string()),
                None => AuthenticatedCaller::Client(
                    p.client_id.clone().unwrap_or_else(|| p.subject.clone()),
                ),
            };
            Some(Identified {
                caller,
                principal: Some(p),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn key(peer: &str, xff: Option<&str>, trust: bool) -> String {
        let mut headers = HeaderMap::new();
        if let Some(xff) = xff {
            headers.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        }
        ip_key(&headers, Some(peer.parse().unwrap()), trust).0
    }

    #[test]
    fn authenticated_callers_win() {
        let mut r = Request::builder().finish();
        assert_eq!(caller_key(&r, false).as_str(), "ip:unknown");
        r.extensions_mut()
            .insert(AuthenticatedCaller::Client("robot".into()));
        assert_eq!(caller_key(&r, false).as_str(), "client:robot");
        r.extensions_mut()
            .insert(AuthenticatedCaller::User("u-1".into()));
        assert_eq!(caller_key(&r, true).as_str(), "user:u-1");
    }

    /// Says every token is valid and speaks for user `u-<token>`.
    struct Everyone;

    impl Identify for Everyone {
        fn identify<'a>(
            &'a self,
            token: &'a str,
        ) -> Pin<Box<dyn Future<Output = Option<Identified>> + Send + 'a>> {
            Box::pin(async move {
                Some(Identified {
                    caller: AuthenticatedCaller::User(format!("u-{token}")),
                    principal: Some(Principal {
                        subject: format!("u-{token}"),
                        client_id: None,
                        scopes: Default::default(),
                        roles: vec![],
                    }),
                })
            })
        }
    }

    #[tokio::test]
    async fn a_validated_token_is_kept_for_the_guard() {
        let policy = CallerPolicy {
            trust_proxy: false,
            identify: Some(Arc::new(Everyone)),
        };
        let mut req = Request::builder()
            .header(header::AUTHORIZATION, "Bearer abc")
            .finish();
        let key = CallerKey::resolve(&mut req, &policy).await;
        assert_eq!(key.as_str(), "user:u-abc");
        let kept = req.extensions().get::<ValidatedBearer>().unwrap();
        assert_eq!(kept.principal_of("abc").unwrap().subject, "u-abc");
        assert_eq!(
            kept.principal_of("abd"),
            None,
            "only for the token validated"
        );
    }

    #[test]
    fn forwarded_for_only_behind_a_trusted_proxy() {
        let xff = Some("6.6.6.6, 203.0.113.9");
        assert_eq!(key("10.0.0.1", xff, false), "ip:10.0.0.1");
        assert_eq!(key("10.0.0.1", xff, true), "ip:203.0.113.9");
        assert_eq!(key("10.0.0.1", Some("garbage"), true), "ip:10.0.0.1");
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let a = key("2001:db8:1:2:aaaa::1", None, false);
        assert_eq!(a, key("2001:db8:1:2:bbbb::2", None, false));
        assert_eq!(a, "ip:2001:db8:1:2::/64");
        assert_eq!(key("::ffff:192.0.2.1", None, false), "ip:192.0.2.1");
    }
}
