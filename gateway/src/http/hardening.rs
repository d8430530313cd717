//! Hardening applied to every request and response:
//!
//! - [`BodyLimit`]: bodies over `--max-body-bytes` are refused with a `413`
//!   problem, from `Content-Length` before reading anything, and by
//!   counting while reading when the body is streamed without a length.
//! - [`SecurityHeaders`]: `X-Content-Type-Options: nosniff`,
//!   `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, and a
//!   `Content-Security-Policy`: locked down for API responses, relaxed for
//!   HTML pages (Swagger UI, the login page) whose scripts and styles are
//!   inline. Responses under `/oauth` and `/v1/users` are `no-store`; HSTS
//!   is sent when the public URL is `https`.
//! - [`CorsGate`]: CORS for the `--cors-origins` list only (none by
//!   default), exposing the rate limit and request id headers. A preflight
//!   from any other origin is a `403` problem; a simple request from one is
//!   served without CORS headers, so the browser keeps the answer from the page.
//!
//! Strict JSON is the other half of hardening: every request object is
//! `#[oai(deny_unknown_fields)]`, and [`problem`] names the unknown
//! field in the 400 problem.

use std::{collections::HashSet, str::FromStr, sync::Arc};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::{Cors, CorsEndpoint},
};

use crate::{
    error::Error,
    http::{idempotency, limits, problem, problem::Problem, request_id},
};

/// Default `--max-body-bytes`: 64 KiB.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

/// CSP of API responses: nothing may load, nothing may frame them.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// CSP of HTML pages: Swagger UI and the login page inline their scripts
/// and styles and use `data:` images; Swagger UI may call a token endpoint
/// of an external issuer.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self' https:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";
/// HSTS for an `https` public URL: one year.
pub const HSTS: &str = "max-age=31536000";

/// Request size limits and browser-facing policy.
#[derive(clap::Args, Clone, Debug)]
pub struct HardeningSettings {
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long = "max-body-bytes", env = "JETSHOP_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body_bytes: usize,
    /// Origins allowed to call the API from a browser
    /// (`https://shop.example,http://localhost:3000`, or `*`); none by default.
    #[arg(
        long = "cors-origins",
        env = "JETSHOP_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<CorsOrigin>,
}

impl Default for HardeningSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY,
            cors_origins: Vec::new(),
        }
    }
}

/// An origin (`scheme://host[:port]`) or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorsOrigin(String);

impl FromStr for CorsOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().trim_end_matches('/');
        if s == "*" {
            return Ok(Self(s.to_owned()));
        }
        let host = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| format!("`{s}`: an origin starts with http:// or https://"))?;
        if host.is_empty() || host.contains(['/', '?', '#', ' ', '@']) {
            return Err(format!("`{s}`: an origin is scheme://host[:port], no path"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

// ---------------------------------------------------------------- body size

/// Middleware: refuse bodies larger than `max` bytes with a 413 problem.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    /// Largest body accepted.
    pub max: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max: self.max,
        }
    }
}

/// [`BodyLimit`] around an endpoint.
#[derive(Debug)]
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let too_large = || {
            Problem::from(&Error::PayloadTooLarge { max: self.max })
                .at(&path)
                .into_response()
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            // The server reads exactly Content-Length bytes: checking it is enough.
            Some(len) if len > self.max as u64 => return Ok(too_large()),
            Some(_) => {}
            // Streamed (chunked): read it here, counting, so that no
            // handler ever buffers more than the limit.
            None => match req.take_body().into_bytes_limit(self.max).await {
                Ok(bytes) => req.set_body(bytes),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
                Err(err) => return Err(err.into()),
            },
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

// ---------------------------------------------------------- security headers

/// Middleware: security headers on every response.
#[derive(Debug, Clone, Copy)]
pub struct SecurityHeaders {
    /// Send `Strict-Transport-Security` (the public URL is https).
    pub hsts: bool,
}

impl SecurityHeaders {
    /// HSTS when `public_url` is `https`.
    pub fn for_public_url(public_url: Option<&str>) -> Self {
        Self {
            hsts: public_url.is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
        }
    }
}

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        SecurityHeadersEndpoint {
            inner,
            hsts: self.hsts,
        }
    }
}

/// [`SecurityHeaders`] around an endpoint.
#[derive(Debug)]
pub struct SecurityHeadersEndpoint<E> {
    inner: E,
    hsts: bool,
}

/// Whether responses under `path` carry credentials or personal data.
fn sensitive(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/oauth") || under("/v1/users")
}

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let no_store = sensitive(req.uri().path());
        let mut resp = match self.inner.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => err.into_response(),
        };
        let html = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/html"));
        let h = resp.headers_mut();
        let fixed = |v: &'static str| HeaderValue::from_static(v);
        h.insert(header::X_CONTENT_TYPE_OPTIONS, fixed("nosniff"));
        h.insert(header::X_FRAME_OPTIONS, fixed("DENY"));
        h.insert(header::REFERRER_POLICY, fixed("no-referrer"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            fixed(if html { PAGE_CSP } else { API_CSP }),
        );
        if no_store {
            h.insert(header::CACHE_CONTROL, fixed("no-store"));
            h.insert(header::PRAGMA, fixed("no-cache"));
        }
        if self.hsts {
            h.insert(header::STRICT_TRANSPORT_SECURITY, fixed(HSTS));
        }
        Ok(resp)
    }
}

// --------------------------------------------------------------------- CORS

/// Response headers a browser page may read.
fn exposed() -> [HeaderName; 8] {
    [
        limits::LIMIT,
        limits::REMAINING,
        limits::RESET,
        limits::POLICY,
        header::RETRY_AFTER,
        header::LOCATION,
        request_id::HEADER,
        idempotency::REPLAYED_HEADER,
    ]
}

/// Middleware: CORS for configured origins only.
#[derive(Debug, Clone)]
pub struct CorsGate {
    origins: Arc<HashSet<String>>,
    any: bool,
}

impl CorsGate {
    /// Allow exactly `origins` (`*`: any).
    pub fn new(origins: &[CorsOrigin]) -> Self {
        Self {
            any: origins.iter().any(|o| o.0 == "*"),
            origins: Arc::new(origins.iter().map(|o| o.0.clone()).collect()),
        }
    }

    fn cors(&self) -> Cors {
        let origins = self.origins.clone();
        let any = self.any;
        Cors::new()
            .allow_origins_fn(move |o| any || origins.contains(&o.to_ascii_lowercase()))
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                idempotency::KEY_HEADER,
                request_id::HEADER,
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers(exposed())
            .allow_credentials(false)
            .max_age(600)
    }
}

impl<E: Endpoint + 'static> Middleware<E> for CorsGate {
    type Output = CorsGateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        let inner = Arc::new(inner);
        CorsGateEndpoint {
            cors: self.cors().transform(inner.clone()),
            bare: inner,
            gate: self.clone(),
        }
    }
}

/// [`CorsGate`] around an endpoint.
pub struct CorsGateEndpoint<E> {
    cors: CorsEndpoint<Arc<E>>,
    bare: Arc<E>,
    gate: CorsGate,
}

impl<E> std::fmt::Debug for CorsGateEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorsGateEndpoint")
            .field("origins", &self.gate.origins)
            .finish_non_exhaustive()
    }
}

impl<E: Endpoint> Endpoint for CorsGateEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        match origin {
            None => self.bare.call(req).await.map(IntoResponse::into_response),
            Some(o) if self.gate.any || self.gate.origins.contains(&o) => {
                // Poem's errors (method or header not allowed) become problems.
                let path = req.uri().path().to_owned();
                match self.cors.call(req).await {
                    Ok(resp) => Ok(resp),
                    Err(err) => Ok(problem::respond(err, &path, None)),
                }
            }
            Some(_) if preflight => Ok(Problem::from(&Error::OriginNotAllowed)
                .at(req.uri().path())
                .into_response()),
            Some(_) => self.bare.call(req).await.map(IntoResponse::into_response),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse() {
        assert_eq!(
            "https://Shop.Example/".parse::<CorsOrigin>().unwrap().0,
            "https://shop.example"
        );
        assert!("http://localhost:3000".parse::<CorsOrigin>().is_ok());
        assert!("*".parse::<CorsOrigin>().is_ok());
        for bad in ["shop.example", "https://", "https://a/b", "ftp://x"] {
            assert!(bad.parse::<CorsOrigin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sensitive_paths() {
        assert!(sensitive("/oauth/token"));
        assert!(sensitive("/v1/users/me"));
        assert!(sensitive("/v1/users"));
        assert!(!sensitive("/v1/usersx"));
        assert!(!sensitive("/v1/products"));
    }
}
