//! Webhooks: which URLs are accepted, the secret, the signature, and the
//! HTTP call.
//!
//! # What a receiver gets
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Jetshop-Event: orders.confirmed
//! Jetshop-Delivery: 9b0c...           (the same on every retry: dedupe on it)
//! Jetshop-Signature: t=1767225600,v1=5f1c...
//!
//! {"id":"9b0c...","type":"orders.confirmed","created_at":"...","data":{...the event...}}
//! ```
//!
//! `v1` is the lower-case hex HMAC-SHA256 of `"<t>.<body>"`, keyed with the
//! webhook's secret (its text, as UTF-8 bytes), where `t` is the Unix time
//! of this attempt in seconds and `body` the exact bytes received. A
//! receiver recomputes it, compares in constant time, and refuses a `t`
//! too far from its clock (five minutes, say) to stop replays; [`verify`]
//! does exactly that.
//!
//! A 2xx answer is success. A 4xx other than 408 and 429 is a refusal no
//! retry will change: the delivery fails and is dead-lettered at once.
//! Anything else (5xx, 408, 429, 3xx — redirects are not followed —,
//! timeouts, refused connections) is retried with backoff and dead-lettered
//! after the last attempt.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use sha2::Sha256;
use uuid::Uuid;

use crate::{Error, delivery::SendError, settings::is_loopback_host};

/// Header naming the event type.
pub const HEADER_EVENT: &str = "Jetshop-Event";
/// Header carrying the delivery id.
pub const HEADER_DELIVERY: &str = "Jetshop-Delivery";
/// Header carrying the timestamp and signature.
pub const HEADER_SIGNATURE: &str = "Jetshop-Signature";
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Check a webhook URL: `https://` to any host; `http://` only to
/// loopback, unless `allow_http`; no credentials, no fragment. Returns it
/// normalised.
pub fn validate_url(raw: &str, allow_http: bool) -> Result<String, Error> {
    let invalid = |why: String| Error::invalid("url", why);
    if raw.len() > MAX_URL_LEN {
        return Err(invalid(format!("longer than {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(format!("not a URL: {e}")))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("has no host".into()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http || is_loopback_host(host) => {}
        "http" => {
            return Err(invalid(
                "must use https:// (http:// is accepted for localhost only)".into(),
            ));
        }
        other => return Err(invalid(format!("scheme {other}:// is not https://"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not hold credentials; verify the signature instead".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a #fragment".into()));
    }
    Ok(url.to_string())
}

/// A new webhook secret: 32 random bytes from the OS-seeded CSPRNG, as 64
/// lower-case hex digits.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The `Jetshop-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Check a `Jetshop-Signature` value as a receiver should: the MAC over
/// `"<t>.<body>"` matches (constant-time) and `t` is within `tolerance` of `now`.
pub fn verify(secret: &str, header: &str, body: &str, now: i64, tolerance: Duration) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if now.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    signatures.iter().any(|sig| {
        let mut m = keyed(secret);
        m.update(format!("{t}.").as_bytes());
        m.update(body.as_bytes());
        m.verify_slice(sig).is_ok()
    })
}

fn keyed(secret: &str) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length")
}

fn mac(secret: &str, timestamp: i64, body: &str) -> Vec<u8> {
    let mut m = keyed(secret);
    m.update(format!("{timestamp}.").as_bytes());
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// The JSON body of a webhook call: an envelope around the event.
pub fn body(
    delivery_id: Uuid,
    event_type: &str,
    created_at: DateTime<Utc>,
    data: &impl serde::Serialize,
) -> Result<String, Error> {
    serde_json::to_string(&serde_json::json!({
        "id": delivery_id,
        "type": event_type,
        "created_at": created_at,
        "data": data,
    }))
    .map_err(|e| Error::Internal(format!("webhook body: {e}")))
}

/// Makes webhook calls: one HTTP/1.1 connection per call (hyper), TLS
/// with rustls on ring and the Mozilla root certificates. Redirects are
/// not followed (a redirect could lead past the URL rules above), and no
/// proxy is used. Cheap to clone.
#[derive(Clone)]
pub struct WebhookClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client whose calls give up after `timeout` (connect, TLS, request
    /// and response head together).
    pub fn new(timeout: Duration) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("webhook TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            timeout,
        })
    }

    /// POST `body` to `url`, signed with `secret`. Returns the status on 2xx.
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        delivery_id: Uuid,
        event_type: &str,
        body: &str,
    ) -> Result<u16, SendError> {
        let target = url::Url::parse(url)
            .map_err(|e| SendError::Permanent(format!("webhook URL {url}: {e}")))?;
        let timestamp = Utc::now().timestamp();
        let request =
            hyper::Request::post(&target[url::Position::BeforePath..url::Position::AfterQuery])
                .header(
                    hyper::header::HOST,
                    &target[url::Position::BeforeHost..url::Position::AfterPort],
                )
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::USER_AGENT, USER_AGENT)
                .header(hyper::header::CONNECTION, "close")
                .header(HEADER_EVENT, event_type)
                .header(HEADER_DELIVERY, delivery_id.to_string())
                .header(HEADER_SIGNATURE, signature(secret, timestamp, body))
                .body(Full::new(Bytes::from(body.to_owned())))
                .map_err(|e| SendError::Permanent(format!("cannot call webhook {url}: {e}")))?;
        match tokio::time::timeout(self.timeout, self.exchange(&target, request)).await {
            Ok(Ok(status)) => classify(status),
            Ok(Err(reason)) => Err(SendError::Transient(format!("webhook {url}: {reason}"))),
            Err(_) => Err(SendError::Transient(format!(
                "webhook {url} did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Connect, send, and return the status of the answer.
    async fn exchange(
        &self,
        target: &url::Url,
        request: hyper::Request<Full<Bytes>>,
    ) -> Result<u16, String> {
        let host = match target.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("no host".into()),
        };
        let port = target
            .port_or_known_default()
            .ok_or_else(|| "no port".to_owned())?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match target.scheme() {
            "https" => {
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| format!("TLS server name: {e}"))?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake: {e}"))?;
                send(tls, request).await
            }
            "http" => send(tcp, request).await,
            other => Err(format!("scheme {other}:// is not http(s)")),
        }
    }
}

const USER_AGENT: &str = concat!("jetshop-notifications/", env!("CARGO_PKG_VERSION"));

/// One request over a fresh HTTP/1.1 connection; only the status matters.
async fn send<S>(io: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven by its own task until the answer's head is
    // in; the body is not read, and aborting the task closes the socket.
    let driver = tokio::spawn(connection);
    let answer = sender.send_request(request).await;
    driver.abort();
    answer
        .map(|response| response.status().as_u16())
        .map_err(|e| format!("HTTP: {}", error_chain(&e)))
}

/// What a webhook's answer means (see the module docs).
pub fn classify(status: u16) -> Result<u16, SendError> {
    match status {
        200..=299 => Ok(status),
        408 | 429 => Err(SendError::Transient(format!(
            "webhook answered {status}; will retry"
        ))),
        400..=499 => Err(SendError::Permanent(format!(
            "webhook refused the call with {status}"
        ))),
        _ => Err(SendError::Transient(format!("webhook answered {status}"))),
    }
}

/// hyper's top-level message is terse; the causes say what happened.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_or_local_http() {
        assert!(validate_url("https://hooks.example.com/jetshop", false).is_ok());
        assert!(validate_url("http://127.0.0.1:8080/hook", false).is_ok());
        assert!(validate_url("http://localhost/hook", false).is_ok());
        assert!(validate_url("http://[::1]:9000/", false).is_ok());
        assert!(validate_url("http://hooks.example.com/", false).is_err());
        assert!(validate_url("http://hooks.example.com/", true).is_ok());
        for bad in [
            "ftp://example.com/x",
            "not a url",
            "https://user:pw@example.com/",
            "https://example.com/#frag",
            "file:///etc/passwd",
            "",
        ] {
            let err = validate_url(bad, true).unwrap_err();
            assert!(
                matches!(err, Error::Invalid { field: "url", .. }),
                "{bad}: {err}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate_url(&long, false).is_err());
    }

    #[test]
    fn secrets_are_32_random_bytes_in_hex() {
        let a = new_secret();
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, new_secret());
    }

    #[test]
    fn signatures_verify_and_expire() {
        let body = r#"{"id":"1"}"#;
        let header = signature("s3cret", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        let tolerance = Duration::from_secs(300);
        assert!(verify("s3cret", &header, body, 1_700_000_100, tolerance));
        assert!(!verify("other", &header, body, 1_700_000_100, tolerance));
        assert!(!verify("s3cret", &header, "{}", 1_700_000_100, tolerance));
        assert!(!verify("s3cret", &header, body, 1_700_001_000, tolerance));
        assert!(!verify("s3cret", "garbage", body, 1_700_000_000, tolerance));
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // RFC 4231-style check against an independent computation:
        // HMAC-SHA256(key = "key", "1.body").
        let mut m = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        m.update(b"1.body");
        let expected = hex::encode(m.finalize().into_bytes());
        assert_eq!(signature("key", 1, "body"), format!("t=1,v1={expected}"));
    }

    #[test]
    fn answers_are_classified() {
        assert_eq!(classify(204), Ok(204));
        assert!(matches!(classify(400), Err(SendError::Permanent(_))));
        assert!(matches!(classify(410), Err(SendError::Permanent(_))));
        assert!(matches!(classify(408), Err(SendError::Transient(_))));
        assert!(matches!(classify(429), Err(SendError::Transient(_))));
        assert!(matches!(classify(500), Err(SendError::Transient(_))));
        assert!(matches!(classify(302), Err(SendError::Transient(_))));
    }

    /// A one-shot server on a free port that reads a request and writes `answer`.
    async fn one_shot(answer: &'static [u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer).await;
        });
        port
    }

    #[tokio::test]
    async fn a_plain_http_call_reports_the_status() {
        let client = WebhookClient::new(Duration::from_secs(5)).unwrap();
        let port = one_shot(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").await;
        let url = format!("http://127.0.0.1:{port}/hook?x=1");
        assert_eq!(
            client.post(&url, "k", Uuid::new_v4(), "t", "{}").await,
            Ok(202)
        );
        let port = one_shot(b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        let url = format!("http://127.0.0.1:{port}/hook");
        assert!(matches!(
            client.post(&url, "k", Uuid::new_v4(), "t", "{}").await,
            Err(SendError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn tls_failures_and_refused_connections_are_transient() {
        let client = WebhookClient::new(Duration::from_secs(5)).unwrap();
        // A server that does not speak TLS: the handshake fails.
        let port = one_shot(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let url = format!("https://127.0.0.1:{port}/hook");
        match client.post(&url, "k", Uuid::new_v4(), "t", "{}").await {
            Err(SendError::Transient(reason)) => assert!(reason.contains("TLS"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let closed = jetshop_free_port();
        let url = format!("http://127.0.0.1:{closed}/hook");
        match client.post(&url, "k", Uuid::new_v4(), "t", "{}").await {
            Err(SendError::Transient(reason)) => assert!(reason.contains("connect"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    fn jetshop_free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}
