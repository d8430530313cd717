//! The gateway's settings: each one a flag and an environment variable with a
//! default that works for `jetshop up`.

use std::{net::SocketAddr, time::Duration};

/// Where the gateway listens and how it calls the services behind it.
#[derive(clap::Args, Clone, Debug)]
pub struct GatewaySettings {
    /// Address the HTTP API listens on.
    #[arg(
        long = "http-addr",
        env = "JETSHOP_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,
    /// Per-attempt timeout of an RPC to a service (`500ms`, `2s`).
    #[arg(long = "rpc-timeout", env = "JETSHOP_RPC_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub rpc_timeout: Duration,
    /// Retries of an idempotent read after a timeout or a missing service.
    #[arg(long = "rpc-retries", env = "JETSHOP_RPC_RETRIES", default_value_t = 1)]
    pub rpc_retries: u32,
    /// Overall deadline of one request, all its calls and retries
    /// included; past it the answer is a 504 problem.
    #[arg(long = "request-deadline", env = "JETSHOP_REQUEST_DEADLINE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_deadline: Duration,
    /// Failed calls in a row (timeouts, no responders, unavailable) after
    /// which the gateway stops asking that service and answers 503 with
    /// `Retry-After` at once.
    #[arg(
        long = "breaker-failures",
        env = "JETSHOP_BREAKER_FAILURES",
        default_value_t = 5
    )]
    pub breaker_failures: u32,
    /// How long a service's breaker stays open before one probe call. Short:
    /// a probe a second costs a failing service nothing, and a healed one is
    /// used again within a second.
    #[arg(long = "breaker-open-for", env = "JETSHOP_BREAKER_OPEN_FOR", default_value = "1s", value_parser = humantime::parse_duration)]
    pub breaker_open_for: Duration,
    /// Keep-alive comment period of idle Server-Sent Events streams
    /// (`/v1/orders/{id}/events`); keep it under your proxies' idle timeout.
    #[arg(long = "sse-keep-alive", env = "JETSHOP_SSE_KEEP_ALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_keep_alive: Duration,
    /// Longest time a product read is answered from the gateway's cache
    /// (changes reach it as catalog events within milliseconds; this
    /// bounds staleness when an event is missed). 0 disables the cache.
    #[arg(long = "product-cache-ttl", env = "JETSHOP_PRODUCT_CACHE_TTL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub product_cache_ttl: Duration,
    /// Products the gateway's read cache holds at most (0 disables it).
    #[arg(
        long = "product-cache-capacity",
        env = "JETSHOP_PRODUCT_CACHE_CAPACITY",
        default_value_t = 10_000
    )]
    pub product_cache_capacity: usize,
    /// Rate limits, idempotency keys and their Redis.
    #[command(flatten)]
    pub limits: crate::http::limits::LimitSettings,
    /// Body size limit and CORS.
    #[command(flatten)]
    pub hardening: crate::http::hardening::HardeningSettings,
    /// OAuth 2.0: the built-in issuer or an external one, keys, lifetimes.
    #[command(flatten)]
    pub auth: crate::auth::AuthSettings,
}

impl GatewaySettings {
    /// Default per-attempt RPC timeout.
    pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default number of retries for idempotent reads.
    pub const DEFAULT_RPC_RETRIES: u32 = 1;
    /// Default overall deadline of a request.
    pub const DEFAULT_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
    /// Default failures in a row that open a service's breaker.
    pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
    /// Default open period of a service's breaker.
    pub const DEFAULT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(1);

    /// Default of `--product-cache-ttl`.
    pub const DEFAULT_PRODUCT_CACHE_TTL: Duration = Duration::from_secs(2);
    /// Default of `--product-cache-capacity`.
    pub const DEFAULT_PRODUCT_CACHE_CAPACITY: usize = 10_000;

    /// Settings listening on `addr`, every other value at its default.
    pub fn for_addr(addr: SocketAddr) -> Self {
        Self {
            http_addr: addr,
            rpc_timeout: Self::DEFAULT_RPC_TIMEOUT,
            rpc_retries: Self::DEFAULT_RPC_RETRIES,
            request_deadline: Self::DEFAULT_REQUEST_DEADLINE,
            breaker_failures: Self::DEFAULT_BREAKER_FAILURES,
            breaker_open_for: Self::DEFAULT_BREAKER_OPEN_FOR,
            sse_keep_alive: crate::api::order_hub::DEFAULT_KEEP_ALIVE,
            product_cache_ttl: Self::DEFAULT_PRODUCT_CACHE_TTL,
            product_cache_capacity: Self::DEFAULT_PRODUCT_CACHE_CAPACITY,
            limits: Default::default(),
            hardening: Default::default(),
            auth: crate::auth::AuthSettings::in_memory(),
        }
    }

    /// The URL clients reach the gateway at: `--public-url`, or
    /// `http://<http-addr>` (no trailing slash), with a wildcard listen
    /// address (`0.0.0.0`, `::`) read as loopback.
    pub fn public_url(&self) -> String {
        match &self.auth.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None if self.http_addr.ip().is_unspecified() => {
                format!("http://127.0.0.1:{}", self.http_addr.port())
            }
            None => format!("http://{}", self.http_addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gateway: GatewaySettings,
    }

    #[test]
    fn flag_defaults_match_for_addr() {
        let parsed = Cli::try_parse_from(["gw"]).unwrap().gateway;
        let built = GatewaySettings::for_addr("127.0.0.1:8080".parse().unwrap());
        assert_eq!(parsed.http_addr, built.http_addr);
        assert_eq!(parsed.rpc_timeout, built.rpc_timeout);
        assert_eq!(parsed.rpc_retries, built.rpc_retries);
        assert_eq!(parsed.request_deadline, built.request_deadline);
        assert_eq!(parsed.breaker_failures, built.breaker_failures);
        assert_eq!(parsed.breaker_open_for, built.breaker_open_for);
        assert_eq!(parsed.sse_keep_alive, built.sse_keep_alive);
        assert_eq!(parsed.product_cache_ttl, built.product_cache_ttl);
        assert_eq!(parsed.product_cache_capacity, built.product_cache_capacity);
        assert_eq!(
            format!("{:?}", parsed.limits),
            format!("{:?}", built.limits)
        );
        assert_eq!(
            format!("{:?}", parsed.hardening),
            format!("{:?}", built.hardening)
        );
    }

    #[test]
    fn public_url_defaults_to_a_reachable_http_addr() {
        let at = |addr: &str| GatewaySettings::for_addr(addr.parse().unwrap());
        assert_eq!(at("127.0.0.1:8080").public_url(), "http://127.0.0.1:8080");
        assert_eq!(at("0.0.0.0:9000").public_url(), "http://127.0.0.1:9000");
        let mut s = at("0.0.0.0:9000");
        s.auth.public_url = Some("https://shop.example/".parse().unwrap());
        assert_eq!(s.public_url(), "https://shop.example");
    }

    #[test]
    fn durations_are_humantime() {
        let parsed = Cli::try_parse_from(["gw", "--rpc-timeout", "250ms", "--rpc-retries", "0"])
            .unwrap()
            .gateway;
        assert_eq!(parsed.rpc_timeout, Duration::from_millis(250));
        assert_eq!(parsed.rpc_retries, 0);
    }
}
