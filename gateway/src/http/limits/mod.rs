//! Rate limiting: a budget per caller ([`CallerKey`]: the authenticated user
//! or client, else the client IP) and per route group, shared by every
//! gateway replica through Redis, or kept in process without a Redis URL.
//!
//! **Algorithm: GCRA** ([`gcra`]), a token bucket stored as one timestamp
//! per key, in one Lua script so the read-decide-write is atomic in Redis.
//! Chosen over a sliding-window log because it needs O(1) memory per caller
//! (a log keeps one entry per request in the window: 120 per caller at the
//! default limit) and one key per decision, and over fixed windows because
//! it has no boundary burst (2x the limit across a window edge). It yields
//! exact `RateLimit-Remaining`, `RateLimit-Reset` and `Retry-After` values.
//!
//! Route groups: `auth` (`/oauth/*` and `POST /v1/users`), `writes` (other
//! non-GET `/v1` requests), `default` (everything else). Health, metrics,
//! the OpenAPI document and Swagger UI are not limited.
//!
//! Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset` (seconds) and `RateLimit-Policy` (IETF
//! draft-ietf-httpapi-ratelimit-headers); past the limit the answer is a
//! `429` problem with `Retry-After`.
//!
//! When Redis fails (timeout of `--redis-timeout`, then a one-second circuit
//! that does not ask it), `--rate-limit-redis-failure open` serves without a
//! limit (a warning at most every 10 s and
//! [`REDIS_ERRORS`]), `closed` answers `503`. Either way it recovers by
//! itself when Redis returns.

pub mod caller;
pub mod gcra;
pub mod redis;

use std::{fmt, str::FromStr, sync::Arc, time::Duration};

use jetshop_platform::config::redact_url;
use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderName, HeaderValue, Method},
};

pub use caller::{AuthenticatedCaller, CallerKey, CallerPolicy, Identified, Identify};
pub use gcra::{Decision, LocalLimiter, Quota};
pub use redis::{RedisStore, Unavailable};

use crate::{error::Error, http::problem::Problem};

/// Requests Redis could not decide (label `cause`: `error`, `timeout`, `circuit_open`).
pub const REDIS_ERRORS: &str = "jetshop_rate_limit_redis_errors_total";
/// Requests refused with 429 (label `group`).
pub const LIMITED: &str = "jetshop_rate_limit_refused_total";

/// `RateLimit-Limit`.
pub const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `RateLimit-Policy`.
pub const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The default `--rate-limit`.
pub const DEFAULT_POLICY: &str = "default=120/60s,auth=20/60s,writes=30/60s";

/// A Redis URL that never prints its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ::redis::Client::open(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|e| format!("not a Redis URL ({e})"))
    }
}

/// What to do when Redis cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailureMode {
    /// Serve the request unlimited (and warn).
    Open,
    /// Refuse it with 503.
    Closed,
}

/// Rate limits, idempotency keys, and the Redis they share.
#[derive(clap::Args, Clone, Debug)]
pub struct LimitSettings {
    /// Redis for rate limits and idempotency keys, shared by all gateway
    /// replicas (`redis://127.0.0.1:6379`). Without it both are kept in process.
    #[arg(long = "redis-url", env = "REDIS_URL")]
    pub redis_url: Option<RedisUrl>,
    /// Prefix of every Redis key the gateway writes.
    #[arg(
        long = "redis-key-prefix",
        env = "JETSHOP_REDIS_KEY_PREFIX",
        default_value = "jetshop:"
    )]
    pub redis_key_prefix: String,
    /// Longest a Redis command may take before Redis counts as unreachable.
    #[arg(long = "redis-timeout", env = "JETSHOP_REDIS_TIMEOUT", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,
    /// Requests per window for each route group: `default`, `auth` (/oauth,
    /// POST /v1/users), `writes` (non-GET /v1). Groups left out keep their default.
    #[arg(long = "rate-limit", env = "JETSHOP_RATE_LIMIT", default_value = DEFAULT_POLICY)]
    pub rate_limit: RatePolicy,
    /// When Redis is unreachable: `open` serves unlimited, `closed` answers 503.
    #[arg(
        long = "rate-limit-redis-failure",
        env = "JETSHOP_RATE_LIMIT_REDIS_FAILURE",
        value_enum,
        default_value = "open"
    )]
    pub redis_failure: FailureMode,
    /// Take the client address from `X-Forwarded-For` (its last entry):
    /// only behind a proxy that sets it.
    #[arg(long = "trust-proxy", env = "JETSHOP_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// How long a completed request is remembered under its Idempotency-Key.
    #[arg(long = "idempotency-ttl", env = "JETSHOP_IDEMPOTENCY_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_ttl: Duration,
    /// How long a request in progress holds its Idempotency-Key (a crashed
    /// gateway's lock expires after this).
    #[arg(long = "idempotency-lock-ttl", env = "JETSHOP_IDEMPOTENCY_LOCK_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idempotency_lock_ttl: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_key_prefix: "jetshop:".to_owned(),
            redis_timeout: Duration::from_millis(150),
            rate_limit: RatePolicy::default(),
            redis_failure: FailureMode::Open,
            trust_proxy: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_lock_ttl: Duration::from_secs(60),
        }
    }
}

/// Which budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// Reads and anything not in another group.
    Default,
    /// Login, tokens and registration.
    Auth,
    /// Non-GET requests under `/v1`.
    Writes,
}

impl RouteGroup {
    /// The group's name in `--rate-limit` and in keys and labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Auth => "auth",
            Self::Writes => "writes",
        }
    }

    /// The group of a limited request.
    pub fn of(method: &Method, path: &str) -> Self {
        let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if is_under(path, "/oauth") || (*method == Method::POST && path == "/v1/users") {
            Self::Auth
        } else if is_under(path, "/v1") && !read {
            Self::Writes
        } else {
            Self::Default
        }
    }
}

/// Whether `path` is `prefix` or below it (`/docs/x`, not `/docsx`).
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Paths that draw from no budget: probes, metrics, the API document and
/// its UI. The app that mounts them says which they are.
#[derive(Debug, Clone, Default)]
pub struct Unlimited {
    exact: Vec<String>,
    under: Vec<String>,
}

impl Unlimited {
    /// These exact paths, and everything under the `under` prefixes.
    pub fn new<S: Into<String>>(
        exact: impl IntoIterator<Item = S>,
        under: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            exact: exact.into_iter().map(Into::into).collect(),
            under: under.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether requests for `path` are not limited.
    pub fn contains(&self, path: &str) -> bool {
        self.exact.iter().any(|p| p == path) || self.under.iter().any(|p| is_under(path, p))
    }
}

/// The quota of each route group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    /// `default`.
    pub default: Quota,
    /// `auth`.
    pub auth: Quota,
    /// `writes`.
    pub writes: Quota,
}

impl RatePolicy {
    /// The quota of `group`.
    pub fn quota(&self, group: RouteGroup) -> Quota {
        match group {
            RouteGroup::Default => self.default,
            RouteGroup::Auth => self.auth,
            RouteGroup::Writes => self.writes,
        }
    }
}

impl Default for RatePolicy {
    fn default() -> Self {
        DEFAULT_POLICY.parse().expect("the default policy parses")
    }
}

/// `group=LIMIT/WINDOW,...` (`auth=20/60s`, `default=5/1m`).
impl FromStr for RatePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let minute = Duration::from_secs(60);
        let q = |limit| Quota {
            limit,
            period: minute,
        };
        let mut policy = Self {
            default: q(120),
            auth: q(20),
            writes: q(30),
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (group, quota) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected group=LIMIT/WINDOW"))?;
            let (limit, window) = quota
                .split_once('/')
                .ok_or_else(|| format!("`{part}`: expected LIMIT/WINDOW (20/60s)"))?;
            let limit: u32 = limit
                .trim()
                .parse()
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| format!("`{part}`: the limit must be a positive integer"))?;
            let period = humantime::parse_duration(window.trim())
                .ok()
                .filter(|p| *p >= Duration::from_millis(1))
                .ok_or_else(|| format!("`{part}`: the window must be a duration (60s, 1m)"))?;
            let quota = Quota { limit, period };
            match group.trim() {
                "default" => policy.default = quota,
                "auth" => policy.auth = quota,
                "writes" => policy.writes = quota,
                other => {
                    return Err(format!(
                        "unknown route group `{other}` (default, auth, writes)"
                    ));
                }
            }
        }
        Ok(policy)
    }
}

/// Decides whether a request fits its caller's budget.
#[derive(Debug)]
pub enum RateLimiter {
    /// Shared by every replica through Redis.
    Redis {
        /// The connection, with its circuit.
        store: RedisStore,
        /// [`gcra::LUA`], sent by hash after the first call.
        script: ::redis::Script,
    },
    /// Kept in this process only.
    Local(LocalLimiter),
}

impl RateLimiter {
    /// A limiter on Redis (connecting lazily) when a URL is set, else in process.
    pub fn from_settings(settings: &LimitSettings) -> Result<Self, ::redis::RedisError> {
        match &settings.redis_url {
            Some(url) => Ok(Self::Redis {
                store: RedisStore::new(
                    url.expose(),
                    &settings.redis_key_prefix,
                    settings.redis_timeout,
                    "rate-limit",
                    REDIS_ERRORS,
                )?,
                script: ::redis::Script::new(gcra::LUA),
            }),
            None => Ok(Self::Local(LocalLimiter::default())),
        }
    }

    /// Decide for one request of `caller` in `group`.
    pub async fn check(
        &self,
        group: RouteGroup,
        caller: &CallerKey,
        quota: Quota,
    ) -> Result<Decision, Unavailable> {
        let key = format!("rl:{}:{}", group.name(), caller.as_str());
        match self {
            Self::Local(local) => Ok(local.check(&key, quota)),
            Self::Redis { store, script } => {
                let key = store.key(&key);
                let (allowed, until_full, retry): (u8, u64, u64) = store
                    .run(|mut conn| async move {
                        script
                            .key(key)
                            .arg(quota.interval_us())
                            .arg(quota.span_us())
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await?;
                Ok(Decision::from_parts(quota, allowed == 1, until_full, retry))
            }
        }
    }
}

/// Middleware: the rate limiter in front of an endpoint.
#[derive(Debug, Clone)]
pub struct RateLimit(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    limiter: RateLimiter,
    policy: RatePolicy,
    failure: FailureMode,
    caller: CallerPolicy,
    unlimited: Unlimited,
}

impl RateLimit {
    /// The limiter the settings describe. Says at start where budgets live.
    pub fn from_settings(settings: &LimitSettings) -> Result<Self, ::redis::RedisError> {
        let limiter = RateLimiter::from_settings(settings)?;
        match &settings.redis_url {
            Some(url) => tracing::info!(
                redis = ?url,
                prefix = %settings.redis_key_prefix,
                on_failure = ?settings.redis_failure,
                "rate limits kept in Redis, shared by all gateway replicas"
            ),
            None => tracing::info!(
                "rate limits kept in process (no --redis-url): each gateway replica counts on its own"
            ),
        }
        Ok(Self::new(
            limiter,
            settings.rate_limit,
            settings.redis_failure,
            CallerPolicy {
                trust_proxy: settings.trust_proxy,
                identify: None,
            },
        ))
    }

    /// The same limiter, identifying bearer tokens with `identify`.
    pub fn identify_with(self, identify: Arc<dyn Identify>) -> Self {
        let mut shared = Arc::into_inner(self.0).expect("not shared yet");
        shared.caller.identify = Some(identify);
        Self(Arc::new(shared))
    }

    /// The same limiter, leaving `unlimited` paths alone.
    pub fn unlimited(self, unlimited: Unlimited) -> Self {
        let mut shared = Arc::into_inner(self.0).expect("not shared yet");
        shared.unlimited = unlimited;
        Self(Arc::new(shared))
    }

    /// A middleware around an explicit limiter.
    pub fn new(
        limiter: RateLimiter,
        policy: RatePolicy,
        failure: FailureMode,
        caller: CallerPolicy,
    ) -> Self {
        Self(Arc::new(Shared {
            limiter,
            policy,
            failure,
            caller,
            unlimited: Unlimited::default(),
        }))
    }
}

impl<E: Endpoint> Middleware<E> for RateLimit {
    type Output = RateLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RateLimitEndpoint {
            inner,
            shared: self.0.clone(),
        }
    }
}

/// [`RateLimit`] around an endpoint.
#[derive(Debug)]
pub struct RateLimitEndpoint<E> {
    inner: E,
    shared: Arc<Shared>,
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if self.shared.unlimited.contains(req.uri().path()) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let group = RouteGroup::of(req.method(), req.uri().path());
        let caller = CallerKey::resolve(&mut req, &self.shared.caller).await;
        let quota = self.shared.policy.quota(group);
        let decision = match self.shared.limiter.check(group, &caller, quota).await {
            Ok(d) => d,
            Err(_) if self.shared.failure == FailureMode::Open => {
                // Counted and logged by the store; serve unlimited.
                return self.inner.call(req).await.map(IntoResponse::into_response);
            }
            Err(_) => {
                let problem = Problem::from(&Error::StoreUnavailable {
                    what: "the rate limiter",
                });
                return Ok(problem.at(req.uri().path()).into_response());
            }
        };
        let mut resp = if decision.allowed {
            match self.inner.call(req).await {
                Ok(resp) => resp.into_response(),
                Err(err) => err.into_response(),
            }
        } else {
            metrics::counter!(LIMITED, "group" => group.name()).increment(1);
            let retry_after = ceil_secs(decision.retry_after).max(1);
            Problem::from(&Error::RateLimited { retry_after })
                .at(req.uri().path())
                .into_response()
        };
        set_headers(&mut resp, quota, &decision);
        Ok(resp)
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u32 {
    u32::try_from(d.as_micros().div_ceil(1_000_000)).unwrap_or(u32::MAX)
}

/// The `RateLimit-*` fields of a decision.
fn set_headers(resp: &mut Response, quota: Quota, d: &Decision) {
    let h = resp.headers_mut();
    h.insert(LIMIT, HeaderValue::from(d.limit));
    h.insert(REMAINING, HeaderValue::from(d.remaining));
    h.insert(RESET, HeaderValue::from(ceil_secs(d.reset)));
    let window = ceil_secs(quota.period).max(1);
    if let Ok(v) = HeaderValue::from_str(&format!("{};w={window}", quota.limit)) {
        h.insert(POLICY, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_groups() {
        let g = |m: Method, p: &str| RouteGroup::of(&m, p);
        assert_eq!(g(Method::POST, "/oauth/token"), RouteGroup::Auth);
        assert_eq!(g(Method::GET, "/oauth/authorize"), RouteGroup::Auth);
        assert_eq!(g(Method::POST, "/v1/users"), RouteGroup::Auth);
        assert_eq!(g(Method::PATCH, "/v1/users/me"), RouteGroup::Writes);
        assert_eq!(g(Method::POST, "/v1/products"), RouteGroup::Writes);
        assert_eq!(g(Method::GET, "/v1/products"), RouteGroup::Default);
        assert_eq!(g(Method::GET, "/oauthx"), RouteGroup::Default);
    }

    #[test]
    fn unlimited_paths_are_exact_or_whole_prefixes() {
        let u = Unlimited::new(["/healthz"], ["/docs"]);
        assert!(u.contains("/healthz") && u.contains("/docs"));
        assert!(u.contains("/docs/oauth-receiver.html"));
        assert!(!u.contains("/healthzx") && !u.contains("/docsx"));
        assert!(!u.contains("/v1/products"));
    }

    #[test]
    fn policy_parses_and_keeps_defaults() {
        let p: RatePolicy = "auth=5/10s, writes=1/1m".parse().unwrap();
        assert_eq!(
            p.auth,
            Quota {
                limit: 5,
                period: Duration::from_secs(10)
            }
        );
        assert_eq!(p.writes.period, Duration::from_secs(60));
        assert_eq!(p.default, RatePolicy::default().default);
        for bad in [
            "nope=1/1s",
            "auth=0/1s",
            "auth=x/1s",
            "auth=1",
            "auth=1/zz",
            "auth",
        ] {
            assert!(bad.parse::<RatePolicy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_urls_do_not_print_passwords() {
        let url: RedisUrl = "redis://:hunter2@127.0.0.1:6379/0".parse().unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!("http://x".parse::<RedisUrl>().is_err());
    }
}
