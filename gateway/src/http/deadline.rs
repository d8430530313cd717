//! An overall deadline per request: whatever a request waits on (services
//! over NATS, Redis, retries with backoff), its answer starts within
//! `--request-deadline` or it is a `504` problem. Per-call timeouts bound
//! each hop; only this bounds their sum, so a client (and the worker
//! serving it) never waits longer than the deadline.
//!
//! The deadline covers producing the response head, not streaming its
//! body: an order's event stream (`text/event-stream`) stays open after
//! its head is sent. It sits inside the idempotency layer, which stores no
//! 5xx, so a retry with the same key is tried afresh.

use std::time::Duration;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::{error::Error, http::problem::Problem};

/// Answer `504` when the response is not ready after `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// How long a request may take to produce its response.
    pub limit: Duration,
}

impl<E: Endpoint> Middleware<E> for Deadline {
    type Output = DeadlineEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        DeadlineEndpoint {
            inner,
            limit: self.limit,
        }
    }
}

/// [`Deadline`] around an endpoint.
#[derive(Debug)]
pub struct DeadlineEndpoint<E> {
    inner: E,
    limit: Duration,
}

impl<E: Endpoint> Endpoint for DeadlineEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        match tokio::time::timeout(self.limit, self.inner.call(req)).await {
            Ok(answer) => answer.map(IntoResponse::into_response),
            Err(_elapsed) => {
                let err = Error::DeadlineExceeded { after: self.limit };
                tracing::warn!(error = %err, path, "answering 504");
                Ok(Problem::from(&err).at(&path).into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use poem::{EndpointExt, handler, http::StatusCode, test::TestClient};

    use super::*;

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    }

    #[handler]
    async fn quick() -> &'static str {
        "on time"
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_is_a_504_problem() {
        let app = slow.with(Deadline {
            limit: Duration::from_secs(10),
        });
        let resp = TestClient::new(app).get("/v1/orders").send().await;
        resp.assert_status(StatusCode::GATEWAY_TIMEOUT);
        resp.assert_content_type("application/problem+json");
        let body = resp.json().await;
        body.value().object().get("status").assert_i64(504);
        body.value()
            .object()
            .get("type")
            .assert_string("urn:jetshop:problem:deadline-exceeded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_within_its_deadline_is_untouched() {
        let app = quick.with(Deadline {
            limit: Duration::from_secs(10),
        });
        let resp = TestClient::new(app).get("/").send().await;
        resp.assert_status_is_ok();
        resp.assert_text("on time").await;
    }
}
