//! The provider adapter for the card processor's HTTP API
//! ([`jetshop_contracts::card_processor`], served by `jetshop-card-processor`
//! in test mode): each [`PaymentProvider`] call is one HTTP request with
//! our idempotency key in the `Idempotency-Key` header.
//!
//! How answers become [`ProviderError`]s (the resilience layer retries only
//! the retryable ones):
//!
//! | answer | error |
//! |---|---|
//! | 2xx | none (the body is the receipt) |
//! | 402 and any other 4xx but 408 and 429 | [`ProviderError::Declined`] with the body's `error.code` |
//! | 5xx, 408, 429, a refused or broken connection, an unreadable 2xx | [`ProviderError::Transient`] |
//! | no answer within the timeout | [`ProviderError::Timeout`] |
//!
//! Plain HTTP: the processor runs next to the shop here. An adapter for a
//! real processor would add TLS (a rustls reqwest feature, which the
//! workspace keeps off so that no crate's plain client needs a crypto
//! provider) and its credentials.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use jetshop_contracts::card_processor::{
    self as api, AuthorizationId, ErrorBody, IDEMPOTENCY_KEY, codes, paths,
};
use reqwest::StatusCode;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use super::{
    Authorization, AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderError, Receipt,
    RefundRequest, VoidReceipt, VoidRequest,
};
use crate::Error;

/// The card processor, reached over HTTP.
#[derive(Debug, Clone)]
pub struct CardProcessorClient {
    /// `http://host:port`, without a trailing slash.
    base_url: String,
    /// Keeps connections to the processor open between calls.
    http: reqwest::Client,
}

impl CardProcessorClient {
    /// A client of the processor at `base_url` whose calls give up after
    /// `timeout` (the resilience layer has its own, the same by default;
    /// this one also bounds a call made without it).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("card processor client: {e}")))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Where it calls.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// One call, in a CLIENT span named after `route` (the path's
    /// template). No trace context goes out: the processor is another
    /// company's system, and a trace of ours ends at its door.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: &str,
        idempotency_key: &str,
        body: &B,
    ) -> Result<T, ProviderError> {
        let span = tracing::info_span!(
            "provider call",
            otel.name = %format!("POST {route}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        let result = self
            .send(path, idempotency_key, body)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(resp) => {
                span.record("http.response.status_code", resp.status().as_u16());
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        let resp = result?;
        let status = resp.status();
        if status.is_success() {
            // The operation took effect; a body we cannot read is retried
            // with the same key, which replays it.
            return resp.json::<T>().await.map_err(|e| {
                ProviderError::Transient(format!("unreadable answer from the card processor: {e}"))
            });
        }
        let text = resp.text().await.unwrap_or_default();
        Err(refusal(status, &text))
    }

    async fn send<B: Serialize>(
        &self,
        path: &str,
        idempotency_key: &str,
        body: &B,
    ) -> Result<reqwest::Response, ProviderError> {
        self.http
            .post(format!("{}{path}", self.base_url))
            .header(IDEMPOTENCY_KEY, idempotency_key)
            .json(body)
            .send()
            .await
            .map_err(unreachable)
    }
}

/// A request that got no answer.
fn unreachable(err: reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Transient(format!("card processor unreachable: {err}"))
    }
}

/// A non-2xx answer.
fn refusal(status: StatusCode, body: &str) -> ProviderError {
    let parsed = serde_json::from_str::<ErrorBody>(body).ok();
    let message = parsed.as_ref().map_or_else(
        || body.chars().take(200).collect(),
        |b| b.error.message.clone(),
    );
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return ProviderError::Transient(format!("card processor answered {status}: {message}"));
    }
    let code = parsed.map_or_else(|| format!("http_{}", status.as_u16()), |b| b.error.code);
    ProviderError::Declined {
        code,
        reason: message,
    }
}

impl PaymentProvider for CardProcessorClient {
    fn name(&self) -> &'static str {
        "card-processor"
    }

    fn authorize<'a>(
        &'a self,
        req: &'a AuthorizeRequest,
    ) -> BoxFuture<'a, Result<Authorization, ProviderError>> {
        async move {
            let body = api::CreateAuthorization {
                merchant_reference: req.payment_id,
                order_reference: req.order_id,
                amount_minor: req.amount_minor,
                currency: req.currency.clone(),
                card_token: req.card_token.clone(),
            };
            let a: api::Authorization = self
                .post(
                    paths::AUTHORIZATIONS,
                    paths::AUTHORIZATIONS,
                    &req.idempotency_key,
                    &body,
                )
                .await?;
            Ok(Authorization {
                provider_ref: a.id.to_string(),
            })
        }
        .boxed()
    }

    fn capture<'a>(
        &'a self,
        req: &'a CaptureRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        async move {
            let Ok(id) = AuthorizationId::parse(&req.authorization_ref) else {
                return Err(ProviderError::declined(
                    codes::NO_SUCH_AUTHORIZATION,
                    format!("not an authorization id: {:?}", req.authorization_ref),
                ));
            };
            let body = api::CreateCapture {
                amount_minor: req.amount_minor,
            };
            let c: api::Capture = self
                .post(
                    "/v1/authorizations/{id}/capture",
                    &paths::capture(&id),
                    &req.idempotency_key,
                    &body,
                )
                .await?;
            Ok(Receipt {
                provider_ref: c.id.to_string(),
            })
        }
        .boxed()
    }

    fn void<'a>(
        &'a self,
        req: &'a VoidRequest,
    ) -> BoxFuture<'a, Result<VoidReceipt, ProviderError>> {
        async move {
            let body = api::CreateVoid {
                merchant_reference: req.payment_id,
                order_reference: req.order_id,
            };
            let v: api::Void = self
                .post(paths::VOIDS, paths::VOIDS, &req.idempotency_key, &body)
                .await?;
            Ok(VoidReceipt {
                provider_ref: v.id.to_string(),
                released_minor: v.released_minor,
            })
        }
        .boxed()
    }

    fn refund<'a>(
        &'a self,
        req: &'a RefundRequest,
    ) -> BoxFuture<'a, Result<Receipt, ProviderError>> {
        async move {
            let body = api::CreateRefund {
                merchant_reference: req.payment_id,
                amount_minor: req.amount_minor,
            };
            let r: api::Refund = self
                .post(paths::REFUNDS, paths::REFUNDS, &req.idempotency_key, &body)
                .await?;
            Ok(Receipt {
                provider_ref: r.id.to_string(),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_body(code: &str) -> String {
        format!(r#"{{"error":{{"type":"card_error","code":"{code}","message":"no"}}}}"#)
    }

    #[test]
    fn client_errors_are_declines_with_the_processors_code() {
        for status in [402, 400, 404, 409, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                refusal(status, &error_body("card_declined")),
                ProviderError::declined("card_declined", "no"),
                "{status}"
            );
        }
        assert_eq!(
            refusal(StatusCode::FORBIDDEN, "nope"),
            ProviderError::declined("http_403", "nope")
        );
    }

    #[test]
    fn server_errors_throttling_and_request_timeouts_are_transient() {
        for status in [500, 502, 503, 408, 429] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(
                matches!(
                    refusal(status, &error_body("processing_error")),
                    ProviderError::Transient(_)
                ),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        // Bind then drop: nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            CardProcessorClient::new(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(1))
                .unwrap();
        assert_eq!(client.base_url(), format!("http://127.0.0.1:{port}"));
        let req = VoidRequest {
            idempotency_key: "k".into(),
            payment_id: uuid::Uuid::new_v4(),
            order_id: uuid::Uuid::new_v4(),
        };
        assert!(matches!(
            client.void(&req).await,
            Err(ProviderError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_timeout() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let client = CardProcessorClient::new(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(200),
        )
        .unwrap();
        let req = VoidRequest {
            idempotency_key: "k".into(),
            payment_id: uuid::Uuid::new_v4(),
            order_id: uuid::Uuid::new_v4(),
        };
        assert_eq!(client.void(&req).await, Err(ProviderError::Timeout));
        hold.abort();
    }
}
