//! Request-reply over the NATS micro protocol, for the rare synchronous read.
//!
//! Servers: [`RpcService`] registers a micro service (name, version,
//! description, endpoints, queue group `q`), so `nats micro ls|info|stats`
//! and `$SRV.PING` see every instance and replicas share the load. Each
//! endpoint takes JSON or MessagePack, answers in the same encoding, and
//! answers errors with the micro error headers plus the full [`RpcError`]
//! as JSON in `Jetshop-Error`.
//!
//! Clients: [`RpcClient`] sends with a timeout, the correlation id and the
//! trace context, and retries idempotent reads with jittered backoff. With
//! [`RpcClient::with_breakers`] it also keeps one circuit breaker per
//! service it calls (the subject's first token): when a service stops
//! answering, callers learn it at once ([`CallError::CircuitOpen`], with
//! how long until the next probe) instead of each waiting out its timeout.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{
    Client, HeaderMap,
    service::{self, ServiceExt},
};
use futures::StreamExt;
use jetshop_contracts::{Encoding, ErrorCode, Message, Rpc, RpcError, headers};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    Error,
    breaker::{BreakerPermit, BreakerState, CircuitBreaker},
    envelope::MessageMeta,
    metrics as m, telemetry,
};

/// Header carrying the whole [`RpcError`] as JSON on an error reply.
pub const ERROR_HEADER: &str = "Jetshop-Error";

/// A registered micro service and the tasks serving its endpoints.
pub struct RpcService {
    service: service::Service,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for RpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcService").finish_non_exhaustive()
    }
}

impl RpcService {
    /// Register a micro service.
    pub async fn start(
        client: &Client,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<Self, Error> {
        let service = client
            .service_builder()
            .description(description)
            .start(name, version)
            .await
            .map_err(|e| Error::jetstream(format!("register micro service {name}"), e))?;
        Ok(Self {
            service,
            tasks: JoinSet::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Serve `R` at `<group>.<endpoint>` with `handler`.
    pub async fn endpoint<R, H, Fut>(
        &mut self,
        group: &str,
        endpoint: &str,
        handler: H,
    ) -> Result<(), Error>
    where
        R: Rpc,
        H: Fn(R, MessageMeta) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R::Reply, RpcError>> + Send + 'static,
    {
        let subject = format!("{group}.{endpoint}");
        let mut requests = self
            .service
            .group(group)
            .endpoint(endpoint)
            .await
            .map_err(|e| Error::jetstream(format!("add endpoint {subject}"), e))?;
        let shutdown = self.shutdown.clone();
        // Bound concurrent handlers so a burst cannot exhaust the database pool.
        let permits = Arc::new(Semaphore::new(256));
        self.tasks.spawn(async move {
            let mut inflight = JoinSet::new();
            loop {
                let request = tokio::select! {
                    r = requests.next() => r,
                    _ = shutdown.cancelled() => break,
                };
                let Some(request) = request else { break };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let handler = handler.clone();
                let subject = subject.clone();
                inflight.spawn(async move {
                    handle::<R, H, Fut>(request, handler, &subject).await;
                    drop(permit);
                });
                while inflight.try_join_next().is_some() {}
            }
            let _ = requests.stop().await;
            while inflight.join_next().await.is_some() {}
        });
        Ok(())
    }

    /// Stop taking requests, finish the ones in hand, and deregister.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        let _ = self.service.stop().await;
    }
}

async fn handle<R, H, Fut>(request: service::Request, handler: H, subject: &str)
where
    R: Rpc,
    H: Fn(R, MessageMeta) -> Fut,
    Fut: Future<Output = Result<R::Reply, RpcError>>,
{
    let started = std::time::Instant::now();
    let msg_headers = request.message.headers.as_ref();
    let meta = MessageMeta::from_headers(msg_headers);
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format!("rpc {subject}"),
        otel.kind = "server",
        subject,
        correlation_id = meta.correlation_id.as_deref().unwrap_or(""),
        trace_id = tracing::field::Empty,
    );
    // The service whose subject this is answers it.
    telemetry::set_parent(&span, service_of(subject), msg_headers);
    let content_type = msg_headers
        .and_then(|h| h.get(headers::CONTENT_TYPE))
        .map(|v| v.as_str().to_owned());
    let outcome = async {
        let encoding = Encoding::detect(content_type.as_deref(), &request.message.payload)
            .map_err(|e| (Encoding::Json, RpcError::bad_request(e.to_string())))?;
        let req: R = encoding.decode(&request.message.payload).map_err(|e| {
            (
                encoding,
                RpcError::bad_request(format!("malformed {} request: {e}", R::TYPE)),
            )
        })?;
        // A panicking handler still answers, with an internal error, instead
        // of leaving the caller to time out.
        let reply =
            futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(handler(req, meta)))
                .await
                .unwrap_or_else(|panic| {
                    Err(RpcError::internal(format!(
                        "handler panicked: {}",
                        crate::consumer::panic_message(&panic)
                    )))
                })
                .map_err(|e| (encoding, e))?;
        let body = encoding
            .encode(&reply)
            .map_err(|e| (encoding, RpcError::internal(e.to_string())))?;
        Ok::<_, (Encoding, RpcError)>((encoding, body))
    }
    .instrument(span.clone())
    .await;
    // Instrumented, not entered: see the consumer runner.
    let status = async {
        match outcome {
            Ok((encoding, body)) => {
                let mut h = HeaderMap::new();
                h.insert(headers::CONTENT_TYPE, encoding.content_type());
                h.insert(headers::TYPE, R::Reply::TYPE);
                if let Err(err) = request.respond_with_headers(Ok(body.into()), h).await {
                    tracing::warn!(error = %err, "cannot send reply");
                }
                "ok"
            }
            Err((_, err)) => {
                if err.code == ErrorCode::Internal {
                    tracing::error!(error = %err.message, "rpc failed");
                } else {
                    tracing::debug!(error = %err.message, "rpc refused");
                }
                let mut h = HeaderMap::new();
                h.insert(
                    ERROR_HEADER,
                    serde_json::to_string(&err).unwrap_or_default().as_str(),
                );
                let micro = service::error::Error {
                    status: header_safe(&err.message),
                    code: usize::from(err.code.status()),
                };
                if let Err(e) = request.respond_with_headers(Err(micro), h).await {
                    tracing::warn!(error = %e, "cannot send error reply");
                }
                error_label(err.code)
            }
        }
    }
    .instrument(span)
    .await;
    metrics::counter!(m::RPC_REQUESTS, "endpoint" => subject.to_owned(), "outcome" => status)
        .increment(1);
    metrics::histogram!(m::RPC_DURATION, "endpoint" => subject.to_owned())
        .record(started.elapsed().as_secs_f64());
}

fn error_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::NotFound => "not_found",
        ErrorCode::Conflict => "conflict",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Internal => "internal",
    }
}

fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Why a call did not produce a reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// Nobody answered within the deadline.
    #[error("{subject} did not answer within {timeout:?}")]
    Timeout {
        /// Where we asked.
        subject: String,
        /// How long we waited per attempt.
        timeout: Duration,
    },
    /// No instance of the service is running.
    #[error("no service answers {subject}")]
    NoResponders {
        /// Where we asked.
        subject: String,
    },
    /// The service answered with an error.
    #[error("{0}")]
    Remote(RpcError),
    /// The reply could not be read.
    #[error("bad reply from {subject}: {reason}")]
    BadReply {
        /// Where we asked.
        subject: String,
        /// What was wrong.
        reason: String,
    },
    /// The request could not be sent.
    #[error("cannot send to {subject}: {reason}")]
    Transport {
        /// Where we asked.
        subject: String,
        /// What failed.
        reason: String,
    },
    /// The service stopped answering lately; the call was not made.
    #[error("{service} is not answering (circuit open); next try in {retry_after:?}")]
    CircuitOpen {
        /// The service (the subject's first token).
        service: String,
        /// How long until the breaker lets a probe through.
        retry_after: Duration,
    },
}

impl CallError {
    /// Whether the service failed to answer (rather than answered no):
    /// what a retry of an idempotent read may fix, and what a circuit
    /// breaker counts. An open circuit is neither: it says when to come back.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::NoResponders { .. } | Self::Transport { .. }
        ) || matches!(self, Self::Remote(e) if e.code == ErrorCode::Unavailable)
    }
}

/// When a per-service breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failed calls in a row (timeouts, no responders, unavailable) that open it.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

/// Calls RPC endpoints with a timeout, trace context and correlation id.
#[derive(Clone, Debug)]
pub struct RpcClient {
    client: Client,
    timeout: Duration,
    retries: u32,
    breakers: Option<Arc<Breakers>>,
}

/// One breaker per called service, made on first use.
#[derive(Debug)]
struct Breakers {
    policy: BreakerPolicy,
    /// Names the breakers' gauges: `<owner>-<service>`.
    owner: &'static str,
    by_service: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
}

impl Breakers {
    fn of(&self, service: &str) -> Arc<CircuitBreaker> {
        let mut map = self.by_service.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(service.to_owned())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    format!("{}-{service}", self.owner),
                    self.policy.failure_threshold,
                    self.policy.open_for,
                ))
            })
            .clone()
    }
}

/// The service a subject belongs to: `users.rpc.user.get` is `users`'s.
fn service_of(subject: &str) -> &str {
    subject.split('.').next().unwrap_or(subject)
}

impl RpcClient {
    /// A client with a per-attempt timeout and a number of retries for idempotent calls.
    pub fn new(client: Client, timeout: Duration, retries: u32) -> Self {
        Self {
            client,
            timeout,
            retries,
            breakers: None,
        }
    }

    /// Guard each called service with its own circuit breaker; `owner`
    /// names them in metrics (`gateway` gives `gateway-orders`, ...).
    pub fn with_breakers(mut self, owner: &'static str, policy: BreakerPolicy) -> Self {
        self.breakers = Some(Arc::new(Breakers {
            policy,
            owner,
            by_service: Mutex::default(),
        }));
        self
    }

    /// Where the breaker of `service` stands (`Closed` without breakers).
    pub fn breaker_state(&self, service: &str) -> BreakerState {
        self.breakers
            .as_ref()
            .map_or(BreakerState::Closed, |b| b.of(service).state())
    }

    /// Call an idempotent endpoint (a read): retried on timeouts and missing
    /// responders with jittered exponential backoff.
    pub async fn call<R: Rpc>(
        &self,
        request: &R,
        meta: &MessageMeta,
    ) -> Result<R::Reply, CallError> {
        let mut attempt = 0;
        loop {
            match self.call_once(request, meta).await {
                Err(err) if err.is_retryable() && attempt < self.retries => {
                    attempt += 1;
                    let base = 25u64 << attempt.min(6);
                    let delay = Duration::from_millis(base + rand::random_range(0..=base));
                    tracing::debug!(error = %err, attempt, ?delay, "retrying rpc");
                    tokio::time::sleep(delay).await;
                }
                result => return result,
            }
        }
    }

    /// Call once, without retrying (for requests that are not idempotent).
    pub async fn call_once<R: Rpc>(
        &self,
        request: &R,
        meta: &MessageMeta,
    ) -> Result<R::Reply, CallError> {
        let subject = R::SUBJECT;
        let breaker = self.breakers.as_ref().map(|b| b.of(service_of(subject)));
        let permit = match breaker.as_deref().map(CircuitBreaker::try_acquire) {
            Some(Err(open)) => {
                metrics::counter!(m::RPC_CALLS, "subject" => subject, "outcome" => "circuit_open")
                    .increment(1);
                return Err(CallError::CircuitOpen {
                    service: service_of(subject).to_owned(),
                    retry_after: open.retry_after,
                });
            }
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let result = self.send::<R>(request, meta).await;
        if let Some(permit) = permit {
            report(permit, &result);
        }
        result
    }

    async fn send<R: Rpc>(&self, request: &R, meta: &MessageMeta) -> Result<R::Reply, CallError> {
        let subject = R::SUBJECT;
        let span = tracing::info_span!("rpc call", otel.name = %format!("call {subject}"), otel.kind = "client", subject);
        let result = async {
            let payload = Encoding::MsgPack
                .encode(request)
                .map_err(|e| CallError::Transport {
                    subject: subject.into(),
                    reason: e.to_string(),
                })?;
            let mut h = HeaderMap::new();
            h.insert(headers::CONTENT_TYPE, Encoding::MsgPack.content_type());
            h.insert(headers::TYPE, R::TYPE);
            h.insert(headers::SCHEMA, R::VERSION.to_string().as_str());
            if let Some(c) = &meta.correlation_id {
                h.insert(headers::CORRELATION_ID, c.as_str());
            }
            telemetry::inject_current(&mut h);
            let request = async_nats::Request::new()
                .payload(payload.into())
                .headers(h)
                .timeout(Some(self.timeout));
            let reply = self
                .client
                .send_request(subject, request)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => CallError::Timeout {
                        subject: subject.into(),
                        timeout: self.timeout,
                    },
                    async_nats::RequestErrorKind::NoResponders => CallError::NoResponders {
                        subject: subject.into(),
                    },
                    _ => CallError::Transport {
                        subject: subject.into(),
                        reason: e.to_string(),
                    },
                })?;
            decode_reply::<R::Reply>(subject, &reply)
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CallError::Remote(e)) => error_label(e.code),
            Err(CallError::Timeout { .. }) => "timeout",
            Err(CallError::NoResponders { .. }) => "no_responders",
            Err(_) => "error",
        };
        metrics::counter!(m::RPC_CALLS, "subject" => subject, "outcome" => outcome).increment(1);
        result
    }
}

fn report<T>(permit: BreakerPermit<'_>, result: &Result<T, CallError>) {
    match result {
        Err(e) if e.is_retryable() => permit.failure(),
        _ => permit.success(),
    }
}

fn decode_reply<T: Message>(subject: &str, reply: &async_nats::Message) -> Result<T, CallError> {
    let h = reply.headers.as_ref();
    if let Some(code) = h.and_then(|h| h.get(headers::SERVICE_ERROR_CODE)) {
        let from_header = h
            .and_then(|h| h.get(ERROR_HEADER))
            .and_then(|v| serde_json::from_str::<RpcError>(v.as_str()).ok());
        let err = from_header.unwrap_or_else(|| {
            let status = code.as_str().parse().unwrap_or(500);
            let message = h
                .and_then(|h| h.get(headers::SERVICE_ERROR))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            RpcError::new(ErrorCode::from_status(status), message)
        });
        return Err(CallError::Remote(err));
    }
    let content_type = h
        .and_then(|h| h.get(headers::CONTENT_TYPE))
        .map(|v| v.as_str());
    Encoding::detect(content_type, &reply.payload)
        .and_then(|enc| enc.decode(&reply.payload))
        .map_err(|e| CallError::BadReply {
            subject: subject.into(),
            reason: e.to_string(),
        })
}
